"""B5: Kanal's ElasticsearchSinkConnector into OpenSearch against a raw opensearch-py
bulk indexer of the same documents (the workload's JSON lines, with ids), with the
same requests: 2,000 documents each, 5 in flight, no refresh. Both are timed until the
documents are indexed: Kanal on committed offsets (which follow the bulk responses),
the raw indexer on its last response."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

from bench.measure import Sample, watch
from bench.sinks import JSON, STRING
from bench.sources import lines_file
from bench.storage import Committed
from bench.systems import Kanal, delete_groups
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
    kanal = Kanal(workdir / name, bootstrap, [connector])
    sample = Sample("B5 search sink", "json", "kanal", run, workload.records)
    progress = Committed(bootstrap, f"connect-{name}", workload)
    try:
        kanal.start()
        window = watch(progress, workload.records, kanal.pid, workload.timeout,
                       started=kanal.started, interval=0.1, alive=kanal.alive)
        sample.peak_rss_mb = kanal.peak_rss_mb() if kanal.alive() else 0.0
        window.fill(sample)
    finally:
        progress.close()
        kanal.stop()
        if not sample.ok:
            sample.note += " | " + kanal.tail(5).replace("\n", " / ")
        delete_groups(bootstrap, f"connect-{name}")
        _drop(url, name)
    return sample


def raw_bulk(workload: Workload, url: str, run: int, workdir: Path) -> Sample:
    index = f"bench-raw-es-{uuid.uuid4().hex[:8]}"
    sample = Sample("B5 search sink", "json", "raw bulk", run, workload.records)
    try:
        out = subprocess.run([sys.executable, "-m", "bench.raw", "bulk", url, index,
                              str(lines_file(workdir, workload.records)), str(BATCH),
                              str(IN_FLIGHT)], capture_output=True, text=True,
                             timeout=workload.timeout, check=False)
        try:
            result = json.loads(out.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            sample.ok, sample.note = False, f"raw bulk failed: {out.stderr[-500:]}"
            return sample
        sample.startup_s, sample.active_s = result["startup_s"], result["active_s"]
        sample.cpu_s, sample.cpu_total_s = result["cpu_s"], result["cpu_total_s"]
        sample.peak_rss_mb = result["peak_rss_mb"]
        sample.active_records = result["active_records"]
    finally:
        _drop(url, index)
    return sample


def b5(workload: Workload, bootstrap: str, url: str, run: int, workdir: Path) -> list[Sample]:
    return [kanal_search(workload, bootstrap, url, run, workdir),
            raw_bulk(workload, url, run, workdir)]
