"""B5: Kanal's ElasticsearchSinkConnector into OpenSearch against a raw opensearch-py
bulk indexer of the same documents (the workload's JSON lines, with ids), with the
same requests: 2,000 documents each, 5 in flight, no refresh. Both are timed until the
documents are indexed: Kanal on committed offsets (which follow the bulk responses),
the raw indexer on its last response."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

from bench.measure import Sample, run_raw
from bench.sinks import JSON, STRING
from bench.sources import lines_file
from bench.storage import until_committed
from bench.systems import Kanal
from bench.workload import Workload

BATCH = 2000
"""batch.size's default, and the raw indexer's documents per request."""
IN_FLIGHT = 5
"""max.in.flight.requests' default, and the raw indexer's pool."""


def _drop(url: str, index: str) -> None:
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[url], timeout=60)
    with contextlib.suppress(Exception):  # never created
        client.indices.delete(index=index)
    client.close()


def kanal_search(workload: Workload, bootstrap: str, url: str, run: int,
                 workdir: Path) -> Sample:
    name = f"bench-kanal-es-{uuid.uuid4().hex[:8]}"
    connector = {"name": name, "connector.class": "ElasticsearchSinkConnector",
                 "tasks.max": "1", "topics": workload.topic, "connection.url": url,
                 "key.ignore": "true", "schema.ignore": "true",
                 "batch.size": str(BATCH), "max.in.flight.requests": str(IN_FLIGHT),
                 # one fresh index per run, named like the connector
                 "transforms": "index", "transforms.index.type":
                     "org.apache.kafka.connect.transforms.RegexRouter",
                 "transforms.index.regex": ".*", "transforms.index.replacement": name,
                 "key.converter": STRING, "value.converter": JSON,
                 "value.converter.schemas.enable": "false"}
    sample = Sample("B5 search sink", "json", "kanal", run, workload.records)
    try:
        until_committed(Kanal(workdir / name, bootstrap, [connector]), sample, bootstrap, name,
                        workload)
    finally:
        _drop(url, name)
    return sample


def raw_bulk(workload: Workload, url: str, run: int, workdir: Path) -> Sample:
    index = f"bench-raw-es-{uuid.uuid4().hex[:8]}"
    sample = Sample("B5 search sink", "json", "raw bulk", run, workload.records)
    try:
        run_raw(sample, "bench.raw", ["bulk", url, index,
                                      str(lines_file(workdir, workload.records)), str(BATCH),
                                      str(IN_FLIGHT)], workload.timeout)
    finally:
        _drop(url, index)
    return sample


def b5(workload: Workload, bootstrap: str, url: str, run: int, workdir: Path) -> list[Sample]:
    return [kanal_search(workload, bootstrap, url, run, workdir),
            raw_bulk(workload, url, run, workdir)]
