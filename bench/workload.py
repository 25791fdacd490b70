"""The workload: vehicle-telemetry readings from Kanal's own generator, in three forms of
the same readings: schemaless JSON (the main topic), JSON with schemas (JsonConverter's
envelope) and Avro in Confluent's wire format (schema id ``AVRO_SCHEMA_ID`` of the
bench's registry, ``bench.registry``).

Each topic is loaded once per record count and reused while it holds exactly that many
records (every partition from offset 0), so repeated runs read the same bytes.
"""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kanal_worker.connectors.telemetry import VALUE_SCHEMA, reading
from kanal_worker.converters.json import schema_to_json

SEED = 42
VEHICLES = 100
START_MS = 1_700_000_000_000
STEP_MS = 100
PARTITIONS = 6
AVRO_SCHEMA_ID = 1
AVRO_SCHEMA = {"type": "record", "name": "VehicleReading", "namespace": "kanal.telemetry",
               "fields": [{"name": "vehicle_id", "type": "string"},
                          {"name": "timestamp", "type": "long"},
                          {"name": "speed_kmh", "type": "double"},
                          {"name": "fuel_level", "type": "double"},
                          {"name": "lat", "type": "double"},
                          {"name": "lon", "type": "double"},
                          {"name": "seq", "type": "long"}]}
"""The readings' Avro schema (the generator's ``VALUE_SCHEMA``)."""


def _envelope() -> Callable[[dict[str, Any]], bytes]:
    head = b'{"schema":' + orjson.dumps(schema_to_json(VALUE_SCHEMA)) + b',"payload":'
    dumps = orjson.dumps
    return lambda value: head + dumps(value) + b"}"


def _avro() -> Callable[[dict[str, Any]], bytes]:
    parsed = fastavro.parse_schema(AVRO_SCHEMA)
    header = struct.pack(">bI", 0, AVRO_SCHEMA_ID)

    def encode(value: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(header)
        fastavro.schemaless_writer(out, parsed, value)
        return out.getvalue()
    return encode


FORMS: dict[str, Callable[[], Callable[[dict[str, Any]], bytes]]] = {
    "json": lambda: orjson.dumps,
    "json-schemas": _envelope,
    "avro": _avro,
}
"""Workload form -> a factory of the value encoder."""


@dataclass(frozen=True)
class Workload:
    topic: str
    records: int
    partitions: int
    value_bytes: int
    key_bytes: int
    form: str = "json"

    @property
    def timeout(self) -> float:
        """Seconds one system gets to move the workload before its run counts as failed."""
        return 120 + self.records / 2000

    @property
    def mean_value_bytes(self) -> float:
        return self.value_bytes / self.records


def records(count: int, form: str = "json") -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of reading 0 .. count-1 in ``form``, keyed by vehicle."""
    encode = FORMS[form]()
    for seq in range(count):
        value = reading(SEED, seq, VEHICLES, START_MS, STEP_MS)
        yield value["vehicle_id"].encode(), encode(value)


def topic_name(count: int, form: str = "json") -> str:
    return f"bench.telemetry.{count}" if form == "json" else f"bench.telemetry-{form}.{count}"


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, int]]:
    """(low, high) watermark of each partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kanal-bench-watermarks"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in range(partitions)]
    finally:
        consumer.close()


def ensure(bootstrap: str, count: int, partitions: int = PARTITIONS,
           form: str = "json") -> Workload:
    """The workload topic for ``count`` records in ``form``, produced only when missing or
    wrong."""
    topic = topic_name(count, form)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=10).topics.get(topic)
    if existing is not None and len(existing.partitions) == partitions:
        marks = end_offsets(bootstrap, topic, partitions)
        if all(low == 0 for low, _ in marks) and sum(h for _, h in marks) == count:
            return _describe(topic, count, partitions, form)
    if existing is not None:
        admin.delete_topics([topic])[topic].result(30)
        time.sleep(1)
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    produce_all(bootstrap, topic, count, partitions, form)
    marks = end_offsets(bootstrap, topic, partitions)
    if sum(h for _, h in marks) != count:
        raise RuntimeError(f"{topic} holds {sum(h for _, h in marks)} records, not {count}")
    return _describe(topic, count, partitions, form)


def produce_all(bootstrap: str, topic: str, count: int, partitions: int,
                form: str = "json") -> None:
    """Every reading, round robin over the partitions (so tasks get equal shares)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "batch.size": 1_000_000, "compression.type": "lz4",
                         "enable.idempotence": True})
    produce = producer.produce
    for seq, (key, value) in enumerate(records(count, form)):
        while True:
            try:
                produce(topic, value=value, key=key, partition=seq % partitions)
                break
            except BufferError:
                producer.poll(0.05)
        if seq % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError(f"could not produce the workload to {topic}")


def _describe(topic: str, count: int, partitions: int, form: str) -> Workload:
    value_bytes = key_bytes = 0
    for key, value in records(count, form):
        key_bytes += len(key)
        value_bytes += len(value)
    return Workload(topic, count, partitions, value_bytes, key_bytes, form)


def write_lines(path: Path, count: int) -> int:
    """The readings as JSON lines (the file a FileStreamSource reads); its size."""
    with open(path, "wb") as out:
        chunk: list[bytes] = []
        for _, value in records(count):
            chunk.append(value)
            if len(chunk) == 10_000:
                out.write(b"\n".join(chunk) + b"\n")
                chunk.clear()
        if chunk:
            out.write(b"\n".join(chunk) + b"\n")
    return path.stat().st_size
