"""The batch conversion paths of sink tasks give exactly what the one-by-one path gives,
a batch validated as a whole always converts, and the file sink's joined lines are
exactly its per-record lines."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kanal_worker.api import DataError
from kanal_worker.api.records import SinkBatch, SinkRecord
from kanal_worker.connectors.file import FileStreamSinkConnector, line, lines
from kanal_worker.runtime.codec import build_codec
from kanal_worker.runtime.errors import ErrorHandler
from kanal_worker.runtime.sink import _FAST_RECORDS, SinkTaskRunner, batch_methods
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
    task.keys_many, task.keys_valid = batch_methods(task.codec.key)
    task.values_many, task.values_valid = batch_methods(task.codec.value)
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
    assert lines(SinkBatch(batch)) == b"".join(line(r) for r in batch)


def test_a_deferred_batch_is_built_once_and_only_when_read() -> None:
    built: list[int] = []
    records = [record({"a": 1}, b'{"a":1}'), record("s", b'"s"')]

    def build() -> list[SinkRecord]:
        built.append(1)
        return records
    batch = SinkBatch.deferred(2, build, [b'{"a":1}', b'"s"'], lambda: [("t", 0, 0)] * 2)
    assert len(batch) == 2 and batch.encoded_values == [b'{"a":1}', b'"s"'] and not built
    assert batch.coordinates == [("t", 0, 0)] * 2 and not built
    assert lines(batch) == b'{a=1}\ns\n'  # as Java prints a map and a string
    assert list(batch) == records and batch[1] is records[1] and built == [1]
    assert SinkBatch(records).encoded_values == [b'{"a":1}', b'"s"']
    assert SinkBatch(records).coordinates == batch.coordinates
    assert SinkBatch([record({"a": 1}, None)]).encoded_values is None


JSON_TEXT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=8).map(json.dumps).map(str.encode)
NEAR_JSON = st.one_of(
    JSON_TEXT,
    JSON_TEXT.map(lambda data: data[:-1]),
    JSON_TEXT.map(lambda data: b" " + data),
    st.sampled_from([b"[1", b"2]", b"3,4", b'{"a":1', b'"b":2}', b"1e999", b"NaN",
                     b'"\xff"', b"\xc3", b"\xa9", b'"\\ud800"', b"", b"{}", b"[]"]),
    st.binary(max_size=12))


@given(st.lists(NEAR_JSON, min_size=1, max_size=6))
def test_what_validates_as_a_batch_converts_item_by_item(items: list[bytes]) -> None:
    converter = build_codec({"value.converter": JSON,
                             "value.converter.schemas.enable": "false"}, {}).value
    validated = converter.validate_many(list(items))  # type: ignore[attr-defined]
    if validated is None:
        return
    converted = converter.to_connect_many(list(items))  # type: ignore[attr-defined]
    assert converted is not None and converted[2] is validated
    for item, value in zip(items, converted[1], strict=True):
        assert converter.to_connect("t", item).value == value


def test_halves_of_json_do_not_validate_as_a_batch() -> None:
    converter = build_codec({"value.converter": JSON,
                             "value.converter.schemas.enable": "false"}, {}).value
    assert converter.validate_many([b"[1", b"2]", b"3,4"]) is None  # type: ignore[attr-defined]
    assert converter.validate_many([b'{"a":1}', b"[2]"]) is True  # type: ignore[attr-defined]


def test_numbers_beyond_a_double_are_read_exactly_as_apache_does() -> None:
    converter = build_codec({"value.converter": JSON,
                             "value.converter.schemas.enable": "false"}, {}).value
    assert converter.to_connect("t", b'{"big": 1e999}').value == {"big": Decimal("1e999")}
    assert converter.to_connect("t", b"1" + b"0" * 400).value == 10 ** 400
    with pytest.raises(DataError, match="serialization error"):
        converter.to_connect("t", b'{"big": 1e999')
