"""The schema registry of the Avro benches, and B6: the AvroConverter against
confluent-kafka's AvroDeserializer (the Python limit) and Apache's JsonConverter on the
equivalent JSON.

No Confluent-compatible registry can be installed here, so the bench serves the test tree's
(``tests/schema_registry.py``) from its own process, with the workload's Avro schema
registered first: id ``AVRO_SCHEMA_ID``, the id the Avro workload topic
(``bench.telemetry-avro.<count>``) carries. B2's avro-parquet and B6 read that topic.

B6: Kanal's FileStreamSink reads it with the AvroConverter and writes each record's Struct
as a line; ``python -m bench.raw avro-consume`` consumes it and decodes every record with
AvroDeserializer; the Apache peer's FileStreamSink reads the JSON workload with
JsonConverter (``schemas.enable=false``) and writes each map as a line. Kanal and Apache run
different converters here on purpose: the issue asks how far the Avro path is from Apache's
JSON path on the same readings.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka.schema_registry import Schema

from bench.measure import Sample, run_raw
from bench.sinks import SCHEMALESS, STRING, FileSinkVariant, apache_file_sink, kanal_file_sink
from bench.systems import ConnectWorker
from bench.workload import AVRO_SCHEMA, AVRO_SCHEMA_ID, Workload
from tests.schema_registry import TestRegistry, confluent_client

BENCH = "B6 avro converter"
AVRO_CONVERTER = "io.confluent.connect.avro.AvroConverter"


@contextmanager
def serving() -> Iterator[str]:
    """``with serving() as url:`` an empty registry of the test tree, for this step."""
    registry = TestRegistry().start()
    try:
        yield registry.url
    finally:
        registry.stop()


@contextmanager
def Registry() -> Iterator[str]:
    """``with Registry() as url:`` a registry holding the workload's schema under its id."""
    with serving() as url:
        registered = confluent_client(url).register_schema(
            "bench-telemetry-avro-value", Schema(json.dumps(AVRO_SCHEMA), "AVRO"))
        assert registered == AVRO_SCHEMA_ID, registered
        yield url


def b6(workloads: Mapping[str, Workload], bootstrap: str, run: int, workdir: Path,
       peer: ConnectWorker | None) -> list[Sample]:
    avro, json_workload = workloads["avro"], workloads["json"]
    doc = ("Avro records decoded by the AvroConverter (Kanal) / the same readings as JSON "
           "decoded by JsonConverter (Apache), written as lines")
    with Registry() as url:
        kanal = FileSinkVariant(
            "avro", {"key.converter": STRING, "value.converter": AVRO_CONVERTER,
                     "value.converter.schema.registry.url": url}, doc, form="avro")
        samples = [kanal_file_sink(avro, bootstrap, run, kanal, workdir, bench=BENCH)]
        raw = Sample(BENCH, "avro", "AvroDeserializer", run, avro.records)
        samples.append(run_raw(raw, "bench.raw", ["avro-consume", bootstrap, avro.topic,
                                                  str(avro.records), url], avro.timeout))
    if peer is not None:
        apache = FileSinkVariant("avro", dict(SCHEMALESS), doc)
        samples.append(apache_file_sink(json_workload, bootstrap, run, apache, workdir, peer,
                                        bench=BENCH))
    return samples
