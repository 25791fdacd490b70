"""The sink's batch conversion gives exactly what its record-by-record fallback gives,
one offset rule covers every consumed record, a batch's columns are decoded and its
records built only when read, and the file sink's joined lines are exactly its
per-record lines."""

from __future__ import annotations

import json
from decimal import Decimal
from itertools import groupby
from typing import Any

import pytest
from confluent_kafka import Consumer, Message
from hypothesis import given
from hypothesis import strategies as st

from kanal_worker import native
from kanal_worker.api import DataError, RetriableError, Settings, SinkTask
from kanal_worker.api.java_text import JavaHashMap
from kanal_worker.api.records import (
    ConvertedBatch,
    Header,
    RecordLists,
    SinkBatch,
    SinkColumns,
    SinkRecord,
    TopicPartition,
)
from kanal_worker.api.schema import OPTIONAL_STRING, Schema, Type
from kanal_worker.connectors.file import FileStreamSinkConnector, line, lines
from kanal_worker.converters.json import _decodes
from kanal_worker.native import _maps  # type: ignore[attr-defined]
from kanal_worker.runtime.codec import build_codec
from kanal_worker.runtime.errors import ErrorHandler
from kanal_worker.runtime.fetch import Fetch, Fetched
from kanal_worker.runtime.sink import SinkTaskRunner
from kanal_worker.runtime.status import TargetState
from kanal_worker.runtime.task import TaskId
from kanal_worker.runtime.transforms import build_chain

STRING = "org.apache.kafka.connect.storage.StringConverter"
JSON = "org.apache.kafka.connect.json.JsonConverter"
BYTES = "org.apache.kafka.connect.converters.ByteArrayConverter"


def message(topic: str, partition: int, offset: int, key: bytes | None,
            value: bytes | None, headers: list[tuple[str, bytes | None]] | None = None,
            timestamp: tuple[int, int] = (1, 1_700_000_000_000)) -> Message:
    return Message(topic=topic, partition=partition, offset=offset, key=key, value=value,
                   headers=headers, timestamp=timestamp)


class Collecting(SinkTask[Settings]):
    def __init__(self) -> None:
        self.batches: list[SinkBatch] = []

    def write(self, batch: SinkBatch) -> None:
        self.batches.append(batch)


def runner(config: dict[str, str]) -> SinkTaskRunner:
    worker: dict[str, str] = {}
    task = SinkTaskRunner(TaskId("c", 0), config, worker, "w", TargetState.STARTED,
                          lambda _: None, FileStreamSinkConnector)
    task.codec = build_codec(config, worker)
    task.chain = []
    task.errors = ErrorHandler(tolerance="all", retry_timeout_ms=0, retry_delay_max_ms=0,
                               log_enable=False, log_messages=False, task="c-0", dlq=None)
    task.task = Collecting()
    task.assignment = {TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)}
    task.fetch = Fetch(Consumer({"group.id": "unit"}))  # never connects: no bootstrap servers
    return task


def convert(task: SinkTaskRunner, messages: list[Message]) -> tuple[SinkBatch, Fetched]:
    return task._convert(Fetched.of_messages(messages))


def offsets(fetched: Fetched) -> list[int]:
    return [row.offset() for row in fetched.rows()]


def message_offsets(messages: list[Message]) -> list[int]:
    return [m.offset() for m in messages]


MESSAGES = [
    message("a", 0, 5, b"k1", b'{"x": 1, "y": [true, null]}'),
    message("a", 0, 6, None, None),  # tombstone
    message("a", 1, 7, b"k2", b'"just a string"', headers=[("h", b"42"), ("n", None)]),
    message("b", 0, 9, b"\xc3\xa9", b"3.5", timestamp=(2, 123)),
    message("b", 0, 10, b"k", b"[1,\n2]", timestamp=(0, -1)),
]
JSON_VALUES = {"key.converter": STRING, "value.converter": JSON,
               "value.converter.schemas.enable": "false"}


@pytest.mark.parametrize("converters", [
    JSON_VALUES,
    {"key.converter": STRING, "value.converter": STRING},
    {"key.converter": BYTES, "value.converter": BYTES},
])
def test_batch_conversion_equals_record_by_record(converters: dict[str, str]) -> None:
    task = runner(converters)
    batch, kept = convert(task, MESSAGES)
    one_by_one, kept_one_by_one = task._one_by_one(Fetched.of_messages(MESSAGES))
    assert offsets(kept) == offsets(kept_one_by_one) == message_offsets(MESSAGES)
    assert batch.values == one_by_one.values
    assert batch.encoded_values == one_by_one.encoded_values
    assert batch.coordinates == one_by_one.coordinates
    assert list(batch) == list(one_by_one)
    assert [type(r) for r in batch] == [SinkRecord] * len(MESSAGES)


def test_records_built_from_columns_have_every_field() -> None:
    batch, _ = convert(runner(JSON_VALUES), MESSAGES[2:3])
    assert batch[0] == SinkRecord(
        topic="a", kafka_partition=1, kafka_offset=7, key="k2", key_schema=OPTIONAL_STRING,
        value="just a string", value_schema=None, timestamp=1_700_000_000_000,
        timestamp_type="CreateTime", headers=[Header("h", 42, Schema(Type.INT32)),
                                              Header("n", None, None)],
        encoded_value=b'"just a string"')


def test_the_next_offset_follows_every_consumed_record_written_or_failed() -> None:
    task = runner(JSON_VALUES)
    bad = message("a", 1, 8, b"k", b"{not json")
    task._process(Fetched.of_messages([*MESSAGES, bad]))
    assert task.consumed == {TopicPartition("a", 0): 7, TopicPartition("a", 1): 9,
                             TopicPartition("b", 0): 11}
    assert {type(tp) for tp in task.consumed} == {TopicPartition}
    assert len(task.task.batches[0]) == len(MESSAGES)  # type: ignore[attr-defined]
    assert task.errors.failed == 1


def test_a_record_that_fails_sends_the_poll_record_by_record() -> None:
    task = runner(JSON_VALUES)
    bad = [*MESSAGES, message("a", 0, 11, b"k", b"{not json")]
    batch, kept = convert(task, bad)
    assert len(batch) == len(MESSAGES) and task.errors.failed == 1
    assert offsets(kept) == message_offsets(MESSAGES)


def test_envelopes_convert_a_poll_at_once() -> None:
    task = runner({"key.converter": STRING, "value.converter": JSON})
    envelope = b'{"schema": {"type": "int32", "optional": false}, "payload": 7}'
    batch, _ = convert(task, [message("a", 0, 1, b"k", envelope)])
    assert batch.values == [7] and batch[0].value_schema == Schema(Type.INT32)
    assert batch.encoded_values == [None]  # not plain JSON of the value


def test_an_envelope_that_fails_in_a_poll_is_reported_alone() -> None:
    task = runner({"key.converter": STRING, "value.converter": JSON})
    schema = b'{"type":"struct","optional":false,"fields":[{"field":"x","type":"int32"}]}'
    values = [b'{"schema":%b,"payload":{"x":%b}}' % (schema, x)
              for x in (b"1", b'"not a number"', b"3")] + [None]
    messages = [message("a", 0, i, b"k", value) for i, value in enumerate(values)]
    batch, kept = convert(task, messages)
    one_by_one, kept_one_by_one = task._one_by_one(Fetched.of_messages(messages))
    assert task.errors.failed == 2  # the batch gave way to record by record, then the check
    assert offsets(kept) == offsets(kept_one_by_one) == [0, 2, 3]
    assert batch.values == one_by_one.values == [{"x": 1}, {"x": 3}, None]


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
    assert lines(SinkBatch(batch)) == b"".join(line(r.value, r.value_schema) for r in batch)


def test_columns_are_decoded_and_records_built_only_when_read() -> None:
    decoded: list[int] = []
    raw: list[bytes | None] = [b'{"a":1}', b'"s"']

    def decode() -> list[Any]:
        decoded.append(1)
        return [{"a": 1}, "s"]
    columns = SinkColumns(
        origin=RecordLists(topics=["t", "t"], partitions=[0, 0], offsets=[3, 4],
                           timestamps=[(0, -1)] * 2),
        headers=[None, None], keys=ConvertedBatch([None, None], [None, None]),
        values=ConvertedBatch([None, None], decode, plain_json=True), encoded=raw,
        texts=[None, None])
    batch = SinkBatch.of_columns(columns)
    assert len(batch) == 2 and batch.encoded_values == raw
    assert batch.coordinates == [("t", 0, 3), ("t", 0, 4)] and not decoded
    assert lines(batch) == b"{a=1}\ns\n"  # as Java prints a map and a string
    assert decoded == [1] and repr(batch) == "SinkBatch(2 records, columns)"
    records = list(batch)
    assert batch[1] is records[1] and decoded == [1]
    assert [r.value for r in records] == [{"a": 1}, "s"]
    assert SinkBatch(records).encoded_values == raw
    assert SinkBatch(records).coordinates == batch.coordinates


@given(st.lists(st.tuples(st.sampled_from(["t", "u"]), st.integers(0, 2)), max_size=30))
def test_partition_runs_group_the_coordinates_of_consecutive_records(
        where: list[tuple[str, int]]) -> None:
    size = len(where)
    nothing: list[Any] = [None] * size
    batch = SinkBatch.of_columns(SinkColumns(
        origin=RecordLists(topics=[topic for topic, _ in where],
                           partitions=[partition for _, partition in where],
                           offsets=list(range(100, 100 + size)), timestamps=[(0, -1)] * size),
        headers=nothing,
        keys=ConvertedBatch(nothing, nothing), values=ConvertedBatch(nothing, nothing),
        encoded=nothing, texts=nothing))
    expected = [(topic, partition, [offset for _, _, offset in run])
                for (topic, partition), run in groupby(batch.coordinates,
                                                       key=lambda c: (c[0], c[1]))]
    assert batch.partition_runs() == expected
    assert SinkBatch(list(batch)).partition_runs() == expected


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
def test_a_batch_converts_exactly_as_item_by_item_or_not_at_all(items: list[bytes]) -> None:
    converter = build_codec({"value.converter": JSON,
                             "value.converter.schemas.enable": "false"}, {}).value
    try:
        batch = converter.to_connect_batch("t", list(items))
    except Exception:
        assert not _decodes(list(items))  # what checks as a batch always converts
        with pytest.raises(DataError):
            for item in items:
                converter.to_connect("t", item)
        return
    assert batch.plain_json
    assert batch.values == [converter.to_connect("t", item).value for item in items]


def test_halves_of_json_do_not_check_as_a_batch() -> None:
    assert _decodes([b"[1", b"2]", b"3,4"]) is None
    assert _decodes([b'{"a":1}', b"[2]"]) == b'[{"a":1},[2]]'


def test_numbers_beyond_a_double_are_read_exactly_as_apache_does() -> None:
    converter = build_codec({"value.converter": JSON,
                             "value.converter.schemas.enable": "false"}, {}).value
    assert converter.to_connect("t", b'{"big": 1e999}').value == {"big": Decimal("1e999")}
    assert converter.to_connect("t", b"1" + b"0" * 400).value == 10 ** 400
    with pytest.raises(DataError, match="serialization error"):
        converter.to_connect("t", b'{"big": 1e999')


class RevokedWhileRetrying(SinkTask[Settings]):
    """Fails its first write; meanwhile partition a-1 is revoked (as the rebalance
    callback would while the consumer polls during the retry)."""

    def __init__(self, runner: SinkTaskRunner) -> None:
        self.runner = runner
        self.batches: list[list[tuple[str, int, int]]] = []

    def write(self, batch: SinkBatch) -> None:
        self.batches.append(batch.coordinates)
        if len(self.batches) == 1:
            self.runner._forget({TopicPartition("a", 1)})
            raise RetriableError("storage away")


def test_records_of_a_partition_revoked_during_a_retry_are_not_written_again() -> None:
    task = runner(JSON_VALUES)
    task.task = RevokedWhileRetrying(task)
    task.polling = True  # no consumer here: the retry waits without polling
    task._process(Fetched.of_messages(MESSAGES))
    first, second = task.task.batches  # type: ignore[attr-defined]
    assert ("a", 1, 7) in first and all(tp != ("a", 1) for *tp, _ in second)
    assert len(second) == len(MESSAGES) - 1
    assert task.consumed == {TopicPartition("a", 0): 7, TopicPartition("b", 0): 11}


CHAIN = {
    "transforms": "tag,drop,cast,flat",
    "transforms.tag.type": "org.apache.kafka.connect.transforms.InsertField$Value",
    "transforms.tag.static.field": "pipeline",
    "transforms.tag.static.value": "p",
    "transforms.tag.offset.field": "at",
    "transforms.tag.timestamp.field": "ts",
    "transforms.drop.type": "org.apache.kafka.connect.transforms.ReplaceField$Value",
    "transforms.drop.exclude": "y",
    "transforms.drop.renames": "x:ex",
    "transforms.cast.type": "org.apache.kafka.connect.transforms.Cast$Value",
    "transforms.cast.spec": "ex:string",
    "transforms.flat.type": "org.apache.kafka.connect.transforms.Flatten$Value",
}
ENVELOPE = (b'{"schema": {"type": "struct", "optional": false, "fields": ['
            b'{"field": "x", "type": "int64", "optional": false},'
            b'{"field": "y", "type": "double", "optional": true},'
            b'{"field": "n", "type": "struct", "optional": true, "fields": ['
            b'{"field": "z", "type": "string", "optional": true}]}]},'
            b' "payload": {"x": %d, "y": 1.5, "n": {"z": "zz"}}}')


@pytest.mark.parametrize(("converters", "values"), [
    (JSON_VALUES, [b'{"x": %d, "y": 2.5, "n": {"z": "a"}}' % i for i in range(5)]
     + [None, b'"not a map"', b'{"x": 1e300, "y": null}']),
    ({"key.converter": STRING, "value.converter": JSON},
     [ENVELOPE % i for i in range(5)]),
])
def test_transforms_on_columns_give_the_records_of_record_by_record(
        converters: dict[str, str], values: list[bytes | None]) -> None:
    """Columns while every step can take them; a step that fails on one record of a poll
    runs record by record, so that record alone is reported (tolerated here)."""
    task = runner(converters)
    task.chain = build_chain(CHAIN)
    messages = [message("a", 0, i, b"k", value, timestamp=(1, 1000 + i))
                for i, value in enumerate(values)]
    batch, kept = convert(task, messages)
    expected = [task.errors.transform(task.chain, record, message=m)
                for record, m in zip(convert(task, messages)[0], kept.rows(), strict=True)]
    failed_before = task.errors.failed
    transformed, survivors = task._transform_all(batch, kept)
    assert list(transformed) == [r for r in expected if r is not None]
    assert offsets(survivors) == [
        m.offset() for m, r in zip(kept.rows(), expected, strict=True) if r is not None]
    assert task.errors.failed - failed_before == expected.count(None)
    assert expected.count(None) == (1 if converters is JSON_VALUES else 0)  # "not a map"
    assert lines(transformed) == b"".join(line(r.value, r.value_schema) for r in transformed)


def test_a_poll_without_failures_stays_columns_through_the_chain() -> None:
    task = runner(JSON_VALUES)
    task.chain = build_chain(CHAIN)
    messages = [message("a", 0, i, b"k", b'{"x": %d, "y": 2.5}' % i) for i in range(3)]
    batch, kept = convert(task, messages)
    transformed, _ = task._transform_all(batch, kept)
    assert transformed.columns is not None and transformed.encoded_values == [None] * 3
    assert transformed.values[0] == {"ex": "0", "at": 0, "ts": 1_700_000_000_000,
                                     "pipeline": "p"}


@pytest.mark.parametrize("converters", [
    {"key.converter": STRING, "value.converter": STRING},
    {"key.converter": BYTES, "value.converter": BYTES},
    {"key.converter": STRING, "value.converter": STRING,
     "value.converter.converter.encoding": "ISO-8859-1"},
])
@pytest.mark.parametrize("values", [
    [b"plain", b"with\nbreak", "\u00e9t\u00e9 \u2603".encode(), b""],
    [b"a", None, b"b"],
])
def test_text_values_are_copied_as_the_lines_java_prints(
        converters: dict[str, str], values: list[bytes | None]) -> None:
    task = runner(converters)
    batch, _ = convert(task, [message("a", 0, i, b"k", v) for i, v in enumerate(values)])
    assert lines(batch) == b"".join(line(v, s) for v, s in zip(
        batch.values, batch.value_schemas, strict=True))


MAP_CHAIN = {
    "transforms": "tag,drop,cast,retag,recast",
    "transforms.tag.type": "org.apache.kafka.connect.transforms.InsertField$Value",
    "transforms.tag.static.field": "pipeline",
    "transforms.tag.static.value": "p",
    "transforms.drop.type": "org.apache.kafka.connect.transforms.ReplaceField$Value",
    "transforms.drop.exclude": "y",
    "transforms.cast.type": "org.apache.kafka.connect.transforms.Cast$Value",
    "transforms.cast.spec": "x:int32,b:string",
    "transforms.retag.type": "org.apache.kafka.connect.transforms.InsertField$Value",
    "transforms.retag.offset.field": "at",
    "transforms.recast.type": "org.apache.kafka.connect.transforms.Cast$Value",
    "transforms.recast.spec": "x:string",
}
FIELD_NAMES = st.sampled_from(["x", "y", "b", "a", "c", "ts", "name", "value", "id", "k9",
                               "pipeline", "at", "zz", "Aa", "BB"])
FIELD_VALUES = st.one_of(st.integers(-2**31, 2**31 - 1), st.booleans(), st.none(),
                         st.text(max_size=4), st.floats(allow_nan=False, width=32))


def items_in_order(value: Any) -> Any:
    """A value with its maps' items in insertion order and their Java table: what decides
    how Java prints a map and in which order JSON writes it."""
    if isinstance(value, dict):
        return (type(value).__name__, getattr(value, "table", None),
                [(key, items_in_order(item)) for key, item in value.items()])
    return value


@given(st.lists(st.dictionaries(FIELD_NAMES, FIELD_VALUES, max_size=12), min_size=1,
                max_size=6),
       st.sampled_from([None, b'"not a map"', b'{"x": "not a number"}']))
def test_a_chain_changing_its_own_maps_gives_the_record_by_record_maps(
        maps: list[dict[str, Any]], odd: bytes | None) -> None:
    """Steps after the first change the maps the chain made instead of copying them:
    the same items, in the same order, with the same table as record by record; a step
    that fails on one record of the poll sends the whole poll record by record from the
    converted values, which no step has changed."""
    task, batch, kept, expected = through_chain(MAP_CHAIN, maps, odd)
    transformed, survivors = task._transform_all(batch, kept)
    assert [items_in_order(r.value) for r in transformed] == [
        items_in_order(r.value) for r in expected if r is not None]
    assert offsets(survivors) == [
        m.offset() for m, r in zip(kept.rows(), expected, strict=True) if r is not None]
    assert lines(transformed) == b"".join(
        line(r.value, r.value_schema) for r in expected if r is not None)


def through_chain(chain: dict[str, str], maps: list[dict[str, Any]], odd: bytes | None
                  ) -> tuple[Any, SinkBatch, Fetched, list[Any]]:
    """A JSON task with ``chain``, the poll of ``maps`` and ``odd`` converted, and each of
    its records through the chain record by record (None: failed, tolerated)."""
    task = runner(JSON_VALUES)
    task.chain = build_chain(chain)
    values = [json.dumps(value).encode() for value in maps] + [odd]
    messages = [message("a", 0, i, b"k", value) for i, value in enumerate(values)]
    batch, kept = convert(task, messages)
    expected = [task.errors.transform(task.chain, record, message=m)
                for record, m in zip(convert(task, messages)[0], kept.rows(), strict=True)]
    return task, batch, kept, expected


@st.composite
def map_steps(draw: st.DrawFn) -> dict[str, str]:
    """A chain of InsertField (static), ReplaceField and Cast steps on values, in a drawn
    order and configuration, casts included that fail on some items."""
    names = st.sampled_from(["x", "y", "b", "a", "pipeline", "zz"])
    config = {"transforms": ""}
    aliases = []
    for at in range(draw(st.integers(1, 5))):
        alias, prefix = f"s{at}", f"transforms.s{at}."
        kind = draw(st.sampled_from(["InsertField", "ReplaceField", "Cast"]))
        config[prefix + "type"] = f"org.apache.kafka.connect.transforms.{kind}$Value"
        if kind == "InsertField":
            config[prefix + "static.field"] = draw(names)
            config[prefix + "static.value"] = draw(st.sampled_from(["p", "7", ""]))
        elif kind == "ReplaceField":
            config[prefix + draw(st.sampled_from(["exclude", "include"]))] = ",".join(
                draw(st.lists(names, min_size=1, max_size=3)))
            config[prefix + "renames"] = ",".join(
                f"{old}:{new}" for old, new in draw(st.lists(st.tuples(names, names),
                                                             max_size=2)))
        else:
            config[prefix + "spec"] = ",".join(f"{field}:{target}" for field, target in draw(
                st.lists(st.tuples(names, st.sampled_from(
                    ["int8", "int32", "float32", "string", "boolean"])), min_size=1,
                    max_size=3)))
        aliases.append(alias)
    config["transforms"] = ",".join(aliases)
    return config


@given(map_steps(), st.lists(st.dictionaries(FIELD_NAMES, FIELD_VALUES, max_size=8),
                             min_size=1, max_size=6),
       st.sampled_from([None, b'"not a map"', b'{"x": "not a number"}', b'{"a": [1]}']))
def test_runs_of_drawn_map_steps_give_the_record_by_record_records(
        chain: dict[str, str], maps: list[dict[str, Any]], odd: bytes | None) -> None:
    """Drawn chains whose runs go in one pass: the records, the failures (tolerated) and
    the lines of each record through the chain record by record."""
    task, batch, kept, expected = through_chain(chain, maps, odd)
    failed_before = task.errors.failed
    transformed, survivors = task._transform_all(batch, kept)
    assert [items_in_order(r.value) for r in transformed] == [
        items_in_order(r.value) for r in expected if r is not None]
    assert offsets(survivors) == [
        m.offset() for m, r in zip(kept.rows(), expected, strict=True) if r is not None]
    assert task.errors.failed - failed_before == expected.count(None)
    assert lines(transformed) == b"".join(
        line(r.value, r.value_schema) for r in expected if r is not None)


def test_runs_of_map_steps_go_at_once_unless_the_native_rebuild_is_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """MAP_CHAIN's first three steps rebuild their maps in one pass (the tests above go
    through it); without the native rebuild, or with a predicate, each step goes alone."""
    monkeypatch.setattr(native, "map_rebuilder", lambda: _maps.rebuild)
    task = runner(JSON_VALUES)
    task.chain = build_chain(MAP_CHAIN)
    assert {at: [type(s).__name__ for s in chain.steps]
            for at, chain in task._map_plan_chains().items()} == {
        0: ["InsertFieldValue", "ReplaceFieldValue", "CastValue"]}
    task.chain = build_chain(MAP_CHAIN | {
        "transforms.drop.predicate": "always", "predicates": "always",
        "predicates.always.type":
            "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
        "predicates.always.pattern": ".*"})
    assert task._map_plan_chains() == {}
    monkeypatch.setattr(native, "map_rebuilder", lambda: None)
    task.chain = build_chain(MAP_CHAIN)
    assert task._map_plan_chains() == {}


@given(st.lists(FIELD_NAMES, unique=True, max_size=14), st.sampled_from([8, 16, 32, 64]))
def test_an_owned_map_is_reused_only_when_it_equals_its_copy(
        keys: list[str], table: int) -> None:
    original = JavaHashMap.filled(((key, i) for i, key in enumerate(keys)), table)
    before = items_in_order(original)
    copied = JavaHashMap.copy_of(original)
    assert JavaHashMap.copy_or_reuse(original, owned=False) is not original
    assert items_in_order(original) == before
    reused = JavaHashMap.copy_or_reuse(original, owned=True)
    assert items_in_order(reused) == items_in_order(copied)
    assert (reused is original) == (list(copied) == keys)
    plain = dict(copied)  # a converter's map: never reused
    assert JavaHashMap.copy_or_reuse(plain, owned=True) is not plain


def test_a_step_failing_on_owned_maps_sends_the_converted_poll_record_by_record() -> None:
    """Cast gives the first map the chain owns a larger table before it fails on the
    second record: record by record from the converted values, the first map comes out
    exactly as it would have without the column path."""
    task = runner(JSON_VALUES)
    task.chain = build_chain(MAP_CHAIN | {"transforms": "tag,drop,cast"})
    wide = {f"field{i}": i for i in range(12)} | {"x": 1}
    values = [json.dumps(wide).encode(), b'{"x": "not a number"}']
    messages = [message("a", 0, i, b"k", value) for i, value in enumerate(values)]
    batch, kept = convert(task, messages)
    expected = task.errors.transform(task.chain, next(iter(convert(task, messages)[0])),
                                     message=kept.row(0))
    transformed, survivors = task._transform_all(batch, kept)
    assert [items_in_order(r.value) for r in transformed] == [items_in_order(expected.value)]
    assert offsets(survivors) == [0]
