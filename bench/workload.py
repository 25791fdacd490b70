"""The workload: vehicle-telemetry JSON readings from Kanal's own generator.

The topic is loaded once per record count and reused while it holds exactly that many
records (every partition from offset 0), so repeated runs read the same bytes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kanal_worker.connectors.telemetry import reading

SEED = 42
VEHICLES = 100
START_MS = 1_700_000_000_000
STEP_MS = 100
PARTITIONS = 6


@dataclass(frozen=True)
class Workload:
    topic: str
    records: int
    partitions: int
    value_bytes: int
    key_bytes: int

    @property
    def timeout(self) -> float:
        """Seconds one system gets to move the workload before its run counts as failed."""
        return 120 + self.records / 2000

    @property
    def mean_value_bytes(self) -> float:
        return self.value_bytes / self.records


def records(count: int) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of reading 0 .. count-1: the generator's JSON, keyed by vehicle."""
    dumps = orjson.dumps
    for seq in range(count):
        value = reading(SEED, seq, VEHICLES, START_MS, STEP_MS)
        yield value["vehicle_id"].encode(), dumps(value)


def topic_name(count: int) -> str:
    return f"bench.telemetry.{count}"


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, int]]:
    """(low, high) watermark of each partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kanal-bench-watermarks"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in range(partitions)]
    finally:
        consumer.close()


def ensure(bootstrap: str, count: int, partitions: int = PARTITIONS) -> Workload:
    """The workload topic for ``count`` records, produced only when missing or wrong."""
    topic = topic_name(count)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=10).topics.get(topic)
    if existing is not None and len(existing.partitions) == partitions:
        marks = end_offsets(bootstrap, topic, partitions)
        if all(low == 0 for low, _ in marks) and sum(h for _, h in marks) == count:
            return _describe(topic, count, partitions)
    if existing is not None:
        admin.delete_topics([topic])[topic].result(30)
        time.sleep(1)
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    produce_all(bootstrap, topic, count, partitions)
    marks = end_offsets(bootstrap, topic, partitions)
    if sum(h for _, h in marks) != count:
        raise RuntimeError(f"{topic} holds {sum(h for _, h in marks)} records, not {count}")
    return _describe(topic, count, partitions)


def produce_all(bootstrap: str, topic: str, count: int, partitions: int) -> None:
    """Every reading, round robin over the partitions (so tasks get equal shares)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "batch.size": 1_000_000, "compression.type": "lz4",
                         "enable.idempotence": True})
    produce = producer.produce
    for seq, (key, value) in enumerate(records(count)):
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


def _describe(topic: str, count: int, partitions: int) -> Workload:
    value_bytes = key_bytes = 0
    for key, value in records(count):
        key_bytes += len(key)
        value_bytes += len(value)
    return Workload(topic, count, partitions, value_bytes, key_bytes)


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
