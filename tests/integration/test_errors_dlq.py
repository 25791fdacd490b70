"""``errors.*`` against the real broker: tolerated records go to the dead-letter queue with
Apache's context headers, untolerated ones fail the task naming where they were; plus the
retry policy (errors.retry.timeout, errors.retry.delay.max.ms) on its own."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from kanal_worker.api.errors import DataError, RetriableError
from kanal_worker.runtime.errors import FAILED, ErrorHandler, Stage, ToleranceExceeded
from kanal_worker.runtime.standalone import StandaloneHerder
from kanal_worker.runtime.status import State
from tests.integration.standalone import in_process_herder, line_count, wait_for
from tests.kafka_helpers import consume_all

RECORDS = 100_000
BAD_EVERY = 100
BASE_TIMESTAMP = 1_700_000_000_000


def errors_header(message: object, name: str) -> str | None:
    headers = dict(message.headers() or [])  # type: ignore[attr-defined]
    value = headers.get(f"__connect.errors.{name}")
    return None if value is None else value.decode()


@pytest.fixture
def herder(kafka: str) -> Iterator[StandaloneHerder]:
    with in_process_herder(kafka, "JsonConverter") as worker:
        yield worker


def produce_with_malformed(kafka: str, topic: str) -> set[int]:
    """RECORDS JSON records, every BAD_EVERY-th one malformed; returns the bad numbers."""
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 20})
    bad = set()
    for n in range(RECORDS):
        if n % BAD_EVERY == 7:
            value = b'{"n": %d, "speed": ' % n
            bad.add(n)
        else:
            value = orjson.dumps({"n": n, "speed": n % 200})
        while True:
            try:
                producer.produce(topic, key=str(n).encode(), value=value,
                                 headers=[("origin", b"test")], timestamp=BASE_TIMESTAMP + n)
                break
            except BufferError:
                producer.poll(0.1)
        if n % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return bad


@pytest.mark.integration
def test_tolerance_all_delivers_every_good_record_and_dead_letters_every_bad_one(
        kafka: str, new_topic: Callable[..., str], herder: StandaloneHerder,
        tmp_path: Path) -> None:
    topic = new_topic("dlq-in", 1)
    dlq = f"{topic}-dlq"
    bad = produce_with_malformed(kafka, topic)
    out = tmp_path / "out.jsonl"
    name = f"dlq-{topic}"
    herder.put_connector(name, {
        "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
        "topics": topic, "file": str(out),
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": dlq,
        "errors.deadletterqueue.topic.replication.factor": "1",
        "errors.deadletterqueue.context.headers.enable": "true",
    })
    wait_for(lambda: line_count(out) >= RECORDS - len(bad), 240, "every good record written")
    dead = consume_all(kafka, dlq, len(bad), timeout=60)
    assert herder.connector_status(name)["tasks"][0]["state"] == State.RUNNING

    # each value printed as Java prints a map: {speed=7, n=7}
    written = [int(re.search(rb"\bn=(\d+)", line)[1])  # type: ignore[index]
               for line in out.read_bytes().splitlines()]
    assert sorted(written) == sorted(set(range(RECORDS)) - bad)
    assert len(dead) == len(bad)
    assert {int(m.key()) for m in dead} == bad
    for message in dead:
        n = int(message.key())
        assert message.value() == b'{"n": %d, "speed": ' % n
        assert message.timestamp()[1] == BASE_TIMESTAMP + n
        assert dict(message.headers())["origin"] == b"test"
        assert errors_header(message, "topic") == topic
        assert errors_header(message, "partition") == "0"
        assert errors_header(message, "offset") == str(n)
        assert errors_header(message, "connector.name") == name
        assert errors_header(message, "task.id") == "0"
        assert errors_header(message, "stage") == "VALUE_CONVERTER"
        assert errors_header(message, "class.name") == \
            "org.apache.kafka.connect.json.JsonConverter"
        assert errors_header(message, "exception.class.name") == \
            "org.apache.kafka.connect.errors.DataException"
        assert errors_header(message, "exception.message") == \
            "Converting byte[] to Kafka Connect data failed due to serialization error: "
        assert "Traceback" in (errors_header(message, "exception.stacktrace") or "")


@pytest.mark.integration
def test_tolerance_none_fails_the_task_naming_topic_partition_and_offset(
        kafka: str, new_topic: Callable[..., str], herder: StandaloneHerder,
        tmp_path: Path) -> None:
    topic = new_topic("dlq-none", 1)
    producer = Producer({"bootstrap.servers": kafka})
    for n in range(10):
        producer.produce(topic, key=str(n).encode(),
                         value=b"{broken" if n == 6 else orjson.dumps({"n": n}))
    assert producer.flush(30) == 0
    name = f"none-{topic}"
    herder.put_connector(name, {"connector.class": "FileStreamSink", "topics": topic,
                                "file": str(tmp_path / "out"), "errors.tolerance": "none",
                                "errors.log.enable": "true",
                                "errors.log.include.messages": "true"})
    wait_for(lambda: herder.connector_status(name)["tasks"][0]["state"] == State.FAILED, 60,
             "the task FAILED")
    trace = herder.connector_status(name)["tasks"][0]["trace"]
    assert "Tolerance exceeded in error handler" in trace
    assert f"topic='{topic}', partition=0, offset=6" in trace
    assert "VALUE_CONVERTER" in trace


@pytest.mark.integration
def test_transform_failures_are_dead_lettered_with_the_transformation_stage(
        kafka: str, new_topic: Callable[..., str], herder: StandaloneHerder,
        tmp_path: Path) -> None:
    topic = new_topic("dlq-smt", 1)
    producer = Producer({"bootstrap.servers": kafka})
    values = [b'{"n": 1}', b"42", b'{"n": 3}']
    for value in values:
        producer.produce(topic, value=value)
    assert producer.flush(30) == 0
    out = tmp_path / "out"
    herder.put_connector(f"smt-{topic}", {
        "connector.class": "FileStreamSink", "topics": topic, "file": str(out),
        "transforms": "n", "transforms.n.type": "ExtractField$Value", "transforms.n.field": "n",
        "errors.tolerance": "all", "errors.deadletterqueue.topic.name": f"{topic}-dlq",
        "errors.deadletterqueue.topic.replication.factor": "1",
        "errors.deadletterqueue.context.headers.enable": "true"})
    wait_for(lambda: line_count(out) >= 2, 60, "good records written")
    [dead] = consume_all(kafka, f"{topic}-dlq", 1)
    assert dead.value() == b"42"
    assert errors_header(dead, "stage") == "TRANSFORMATION"
    assert errors_header(dead, "class.name") == \
        "org.apache.kafka.connect.transforms.ExtractField$Value"
    assert errors_header(dead, "offset") == "1"
    assert out.read_text().splitlines() == ["1", "3"]


@pytest.mark.integration
def test_source_connectors_dead_letter_records_that_fail_transforms(
        kafka: str, new_topic: Callable[..., str], herder: StandaloneHerder,
        tmp_path: Path) -> None:
    topic = new_topic("dlq-src", 1)
    source = tmp_path / "speeds.txt"
    source.write_text("88\n130\nfast\n42\n")
    herder.put_connector(f"src-{topic}", {
        "connector.class": "FileStreamSource", "file": str(source), "topic": topic,
        "value.converter": "StringConverter",
        "transforms": "speed", "transforms.speed.type": "Cast$Value",
        "transforms.speed.spec": "int32",
        "errors.tolerance": "all", "errors.deadletterqueue.topic.name": f"{topic}-dlq",
        "errors.deadletterqueue.topic.replication.factor": "1",
        "errors.deadletterqueue.context.headers.enable": "true"})
    delivered = consume_all(kafka, topic, 3)
    [dead] = consume_all(kafka, f"{topic}-dlq", 1)
    assert [m.value() for m in delivered] == [b"88", b"130", b"42"]
    assert dead.value() == b"fast"
    assert errors_header(dead, "stage") == "TRANSFORMATION"
    assert errors_header(dead, "topic") == topic
    assert errors_header(dead, "source.offset") is not None
    assert errors_header(dead, "exception.message") == \
        "Value (fast) was out of range for requested data type"


def handler(**overrides: object) -> ErrorHandler:
    settings: dict[str, object] = {
        "tolerance": "none", "retry_timeout_ms": 0, "retry_delay_max_ms": 60_000,
        "log_enable": False, "log_messages": False, "task": "t-0", "dlq": None}
    settings.update(overrides)
    errors = ErrorHandler(**settings)  # type: ignore[arg-type]
    return errors


def flaky(failures: int) -> Callable[[], str]:
    calls = {"n": 0}

    def operation() -> str:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise RetriableError("not yet")
        return "done"
    return operation


def test_no_retries_by_default_and_none_fails() -> None:
    errors = handler()
    with pytest.raises(ToleranceExceeded, match="Tolerance exceeded in error handler"):
        errors.execute(flaky(1), Stage.TRANSFORMATION, "X")


def test_retries_back_off_exponentially_until_the_timeout() -> None:
    errors = handler(retry_timeout_ms=10_000, retry_delay_max_ms=60_000)
    slept: list[float] = []
    errors.sleep = slept.append
    assert errors.execute(flaky(3), Stage.KEY_CONVERTER, "X") == "done"
    assert slept == [0.3, 0.6, 1.2]


def test_delays_above_the_maximum_are_random_below_it() -> None:
    errors = handler(retry_timeout_ms=-1, retry_delay_max_ms=1000)
    slept: list[float] = []
    errors.sleep = slept.append
    assert errors.execute(flaky(6), Stage.VALUE_CONVERTER, "X") == "done"
    assert slept[:2] == [0.3, 0.6]
    assert all(0 <= delay < 1.0 for delay in slept[2:])


def test_retries_stop_at_the_deadline() -> None:
    errors = handler(retry_timeout_ms=200, tolerance="all")
    started = time.monotonic()
    assert errors.execute(flaky(1000), Stage.TRANSFORMATION, "X") is FAILED
    assert time.monotonic() - started < 2
    assert errors.failed == 1


def test_tolerance_all_skips_any_error_and_counts_it() -> None:
    errors = handler(tolerance="all")

    def broken() -> str:
        raise DataError("bad record")
    assert errors.execute(broken, Stage.TRANSFORMATION, "X") is FAILED
    assert errors.failed == 1
