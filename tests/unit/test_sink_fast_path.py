"""The batch conversion path of sink tasks gives exactly what the one-by-one path gives,
and the file sink's joined lines are exactly its per-record lines."""

from __future__ import annotations

from typing import Any

import pytest

from kanal_worker.api.records import SinkRecord
from kanal_worker.connectors.file import FileStreamSinkConnector, line, lines
from kanal_worker.runtime.codec import build_codec
from kanal_worker.runtime.errors import ErrorHandler
from kanal_worker.runtime.sink import _FAST_RECORDS, SinkTaskRunner, many_decoder
from kanal_worker.runtime.status import TargetState
from kanal_worker.runtime.task import TaskId

STRING = "org.apache.kafka.connect.storage.StringConverter"
JSON = "org.apache.kafka.connect.json.JsonConverter"
BYTES = "org.apache.kafka.connect.converters.ByteArrayConverter"


class FakeMessage:
    """What confluent-kafka's Message answers, for the accessors the runtime calls."""

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None,
                 value: bytes | None, headers: list[tuple[str, bytes | None]] | None = None,
                 timestamp: tuple[int, int] = (1, 1_700_000_000_000)) -> None:
        self._fields = (topic, partition, offset, key, value, headers, timestamp)

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._fields[0]  # type: ignore[return-value]

    def partition(self) -> int:
        return self._fields[1]  # type: ignore[return-value]

    def offset(self) -> int:
        return self._fields[2]  # type: ignore[return-value]

    def key(self) -> bytes | None:
        return self._fields[3]  # type: ignore[return-value]

    def value(self) -> bytes | None:
        return self._fields[4]  # type: ignore[return-value]

    def headers(self) -> Any:
        return self._fields[5]

    def timestamp(self) -> tuple[int, int]:
        return self._fields[6]  # type: ignore[return-value]


def runner(config: dict[str, str]) -> SinkTaskRunner:
    worker: dict[str, str] = {}
    task = SinkTaskRunner(TaskId("c", 0), config, worker, "w", TargetState.STARTED,
                          lambda _: None, FileStreamSinkConnector)
    task.codec = build_codec(config, worker)
    task.keys_many = many_decoder(task.codec.key)
    task.values_many = many_decoder(task.codec.value)
    task.chain = []
    task.errors = ErrorHandler(tolerance="all", retry_timeout_ms=0, retry_delay_max_ms=0,
                               log_enable=False, log_messages=False, task="c-0", dlq=None)
    return task


MESSAGES = [
    FakeMessage("a", 0, 5, b"k1", b'{"x": 1, "y": [true, null]}'),
    FakeMessage("a", 0, 6, None, None),  # tombstone
    FakeMessage("a", 1, 7, b"k2", b'"just a string"', headers=[("h", b"42"), ("n", None)]),
    FakeMessage("b", 0, 9, b"\xc3\xa9", b"3.5", timestamp=(2, 123)),
    FakeMessage("b", 0, 10, b"k", b"[1,\n2]", timestamp=(0, -1)),
]


@pytest.mark.parametrize("converters", [
    {"key.converter": STRING, "value.converter": JSON, "value.converter.schemas.enable": "false"},
    {"key.converter": STRING, "value.converter": STRING},
    {"key.converter": BYTES, "value.converter": BYTES},
])
def test_batch_conversion_equals_one_by_one(converters: dict[str, str]) -> None:
    assert _FAST_RECORDS
    task = runner(converters)
    fast = task._to_records(MESSAGES)  # type: ignore[arg-type]
    assert fast is not None
    slow = task._one_by_one(MESSAGES)  # type: ignore[arg-type]
    assert fast[0] == slow[0]
    assert [type(r) for r in fast[0]] == [SinkRecord] * len(MESSAGES)
    assert fast[1] == slow[1]
    assert fast[2] == slow[2] == {("a", 0): 7, ("a", 1): 8, ("b", 0): 11}


def test_a_record_that_fails_sends_the_batch_one_by_one() -> None:
    task = runner({"key.converter": STRING, "value.converter": JSON,
                   "value.converter.schemas.enable": "false"})
    bad = [*MESSAGES, FakeMessage("a", 0, 11, b"k", b"{not json")]
    assert task._to_records(bad) is None  # type: ignore[arg-type]
    records, _, _ = task._one_by_one(bad)  # type: ignore[arg-type]
    assert len(records) == len(MESSAGES) and task.errors.failed == 1


def test_envelopes_take_the_one_by_one_path() -> None:
    task = runner({"key.converter": STRING, "value.converter": JSON})
    assert task.values_many is not None
    assert task._to_records(MESSAGES) is None  # type: ignore[arg-type]


def record(value: Any, encoded: bytes | None) -> SinkRecord:
    return SinkRecord(topic="t", kafka_offset=0, value=value, encoded_value=encoded)


@pytest.mark.parametrize("batch", [
    [record({"a": 1}, b'{"a":1}'), record([1, 2], b"[1, 2]")],
    [record({"a": 1}, b'{"a":\n1}'), record({"b": 2}, b'{"b":2}')],
    [record("text", b'"text"'), record({"a": 1}, b'{"a":1}')],
    [record({"a": 1}, None), record(b"raw", None), record("s", None)],
    [record({"a": 1}, b'{"a":1}')],
])
def test_joined_lines_are_the_per_record_lines(batch: list[SinkRecord]) -> None:
    assert lines(batch) == b"".join(line(r) for r in batch)
