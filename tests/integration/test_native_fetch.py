"""The native fetch against the real broker: what a poll holds, partitions forwarded in a
rebalance callback and un-forwarded on revoke, and the fallback when it cannot attach."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kanal_worker import native
from kanal_worker.runtime.fetch import Fetched


def _topic(kafka: str, partitions: int) -> str:
    name = f"native-fetch-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


def _produce(kafka: str, topic: str, records: list[dict[str, Any]]) -> None:
    producer = Producer({"bootstrap.servers": kafka})
    for record in records:
        producer.produce(topic, **record)
    assert producer.flush(30) == 0


def _consumer(kafka: str) -> Consumer:
    return Consumer({"bootstrap.servers": kafka, "group.id": f"native-{uuid.uuid4()}",
                     "auto.offset.reset": "earliest", "enable.auto.commit": "false",
                     "enable.partition.eof": "true"})


def _attached(consumer: Consumer, *topics: str) -> tuple[Any, list[tuple[str, int]]]:
    fetcher = native.fetcher(consumer)
    assert fetcher is not None, "the native fetch should attach to a confluent-kafka Consumer"
    forwarded: list[tuple[str, int]] = []

    def assigned(c: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        for p in partitions:
            assert fetcher.forward(p.topic, p.partition)
            forwarded.append((p.topic, p.partition))

    def revoked(c: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        for p in partitions:
            fetcher.unforward(p.topic, p.partition)
            forwarded.remove((p.topic, p.partition))

    consumer.subscribe(list(topics), on_assign=assigned, on_revoke=revoked)
    return fetcher, forwarded


def _drain(consumer: Consumer, fetcher: Any, count: int) -> list[Any]:
    polls: list[Any] = []
    deadline = time.monotonic() + 60
    while sum(map(len, polls)) < count and time.monotonic() < deadline:
        assert consumer.consume(100, 0) == [], "records must not reach confluent-kafka"
        poll = fetcher.consume(1000, 0.2)
        if len(poll) or poll.errors:
            polls.append(poll)
    return polls


def test_a_poll_holds_every_record_column_by_column(kafka: str) -> None:
    topic = _topic(kafka, 3)
    records: list[dict[str, Any]] = [
        {"partition": i % 3, "key": None if i % 4 == 0 else f"k{i}".encode(),
         "value": None if i % 5 == 0 else f"v{i}".encode() * (i % 3),
         "headers": [("h", f"{i}".encode()), ("empty", None)] if i % 7 == 0 else None,
         "timestamp": 1_700_000_000_000 + i}
        for i in range(300)]
    _produce(kafka, topic, records)
    consumer = _consumer(kafka)
    try:
        fetcher, forwarded = _attached(consumer, topic)
        polls = _drain(consumer, fetcher, len(records))
        assert sorted(forwarded) == [(topic, p) for p in range(3)]
        fetcher.close()
        with pytest.raises(RuntimeError, match="closed"):
            fetcher.consume(10, 0)
    finally:
        consumer.close()
    got = {}
    for poll in polls:
        values, keys = poll.values(), poll.keys()
        headers = poll.headers or [None] * len(poll)
        topics, partitions, offsets = poll.topics(), poll.partitions(), poll.offsets()
        timestamps = poll.timestamps()
        assert len(values) == len(keys) == len(poll.topics()) == len(poll)
        for i in range(len(poll)):
            assert topics[i] is topics[0], "one str object per topic"
            got[(partitions[i], offsets[i])] = (
                keys[i], values[i], headers[i], timestamps[i])
        assert poll.join_values(suffix=b"\n", none=b"null") == b"".join(
            (v if v is not None else b"null") + b"\n" for v in values)
        assert poll.join_values(sep=b",", none=b"null", open=b"[", close=b"]") == (
            b"[" + b",".join(v if v is not None else b"null" for v in values) + b"]")
    by_partition: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_partition.setdefault(record["partition"], []).append(record)
    expected = {(p, offset): (r["key"], r["value"], r["headers"], (1, r["timestamp"]))
                for p, rs in by_partition.items() for offset, r in enumerate(rs)}
    assert got == expected
    eofs = {(e[0], e[1]) for poll in polls for e in poll.errors if e[3] == -191}
    assert eofs <= {(topic, p) for p in range(3)}


def test_a_native_poll_reads_as_the_same_records_as_confluent_kafkas_messages(
        kafka: str) -> None:
    """Two topics' records in polls of many sizes: each native poll's columns (made
    when first read) and what the runtime asks of a poll (each partition's last offset,
    the runs of one topic) are those of the same records read as confluent-kafka's
    messages (the fallback without the native fetch)."""
    topics = [_topic(kafka, 3), _topic(kafka, 2)]
    rng = random.Random(21)
    records = [{"topic": rng.choice(topics), "partition": rng.randrange(2),
                "key": rng.choice([None, b"", b"k%d" % i]),
                "value": rng.choice([None, b"", b"v%d" % i * rng.randrange(4)]),
                "headers": [("h", b"%d" % i)] if rng.random() < 0.1 else None,
                "timestamp": 1_700_000_000_000 + rng.randrange(10**6)}
               for i in range(600)]
    producer = Producer({"bootstrap.servers": kafka})
    for record in records:
        producer.produce(**record)
    assert producer.flush(30) == 0
    consumer = _consumer(kafka)
    try:
        fetcher, _ = _attached(consumer, *topics)
        polls: list[Any] = []
        deadline = time.monotonic() + 60
        while sum(map(len, polls)) < len(records) and time.monotonic() < deadline:
            consumer.consume(100, 0)
            poll = fetcher.consume(rng.choice([1, 7, 50, 1000]), 0.2)
            if len(poll):
                polls.append(poll)
        fetcher.close()
    finally:
        consumer.close()
    # how a poll's partitions interleave is librdkafka's choice: a poll holding both
    # topics is what the runs need, whether or not they alternate
    assert any(len(Fetched.of_native(poll).topic_runs()) > 1 for poll in polls), \
        "some poll should hold both topics"
    native_rows = []
    for poll in polls:
        native = Fetched.of_native(poll)
        lists = Fetched(poll.topics(), poll.partitions(), poll.offsets(), poll.timestamps(),
                        poll.headers, poll.keys(), poll.values())
        assert native.last_offsets() == lists.last_offsets()
        assert list(native.last_offsets()) == list(lists.last_offsets())
        assert native.topic_runs() == lists.topic_runs()
        assert native.value_bytes == lists.value_bytes
        assert len(native) == len(lists) == len(poll)
        native_rows += _rows(native)
    assert len(native_rows) == len(records)
    messages = _messages(kafka, topics, len(records))
    assert sorted(native_rows) == sorted(_rows(Fetched.of_messages(messages)))


def _messages(kafka: str, topics: list[str], count: int) -> list[Message]:
    consumer = _consumer(kafka)
    consumer.subscribe(topics)
    messages: list[Message] = []
    deadline = time.monotonic() + 60
    try:
        while len(messages) < count and time.monotonic() < deadline:
            messages += [m for m in consumer.consume(500, 0.2) if m.error() is None]
    finally:
        consumer.close()
    return messages


def _rows(fetched: Fetched) -> list[tuple[Any, ...]]:
    headers = fetched.header_lists()
    return list(zip(fetched.topics, fetched.partitions, fetched.offsets, fetched.timestamps,
                    fetched.keys, fetched.values, headers, strict=True))


def test_a_revoked_partition_leaves_the_queue_and_a_new_member_takes_it(kafka: str) -> None:
    topic = _topic(kafka, 2)
    _produce(kafka, topic, [{"partition": i % 2, "value": b"x%d" % i} for i in range(200)])
    group = {"group.id": f"native-shared-{uuid.uuid4()}"}
    first = Consumer({**_conf(kafka), **group})
    second = Consumer({**_conf(kafka), **group})
    try:
        fetcher, forwarded = _attached(first, topic)
        assert sum(map(len, _drain(first, fetcher, 200))) == 200
        other, other_forwarded = _attached(second, topic)
        deadline = time.monotonic() + 60
        while (len(forwarded) != 1 or len(other_forwarded) != 1) and time.monotonic() < deadline:
            first.consume(10, 0)
            fetcher.consume(100, 0.1)
            second.consume(10, 0)
            other.consume(100, 0.1)
        assert len(forwarded) == len(other_forwarded) == 1
        assert set(forwarded) | set(other_forwarded) == {(topic, 0), (topic, 1)}
        _produce(kafka, topic, [{"partition": p, "value": b"late"} for p in (0, 1)] * 5)
        mine = _drain(first, fetcher, 5)
        theirs = _drain(second, other, 5)
        assert _partitions(mine) == set(forwarded)
        assert _partitions(theirs) == set(other_forwarded)
        fetcher.close()
        other.close()
    finally:
        first.close()
        second.close()


def _partitions(polls: list[Any]) -> set[tuple[str, int]]:
    return {(t, p) for poll in polls for t, p in zip(poll.topics(), poll.partitions(), strict=True)}


def _conf(kafka: str) -> dict[str, str]:
    return {"bootstrap.servers": kafka, "auto.offset.reset": "earliest",
            "enable.auto.commit": "false", "partition.assignment.strategy": "cooperative-sticky"}


