"""A poll of JsonConverter envelopes converted at once gives exactly what converting each
envelope gives (or fails as the first envelope that fails), and InsertField on a column
of structs of one schema gives exactly what it gives record by record."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kanal_worker.api import DataError
from kanal_worker.api.records import ConvertedBatch, RecordLists, SinkColumns, SinkRecord
from kanal_worker.api.schema import Schema
from kanal_worker.converters.json import JsonConverter
from kanal_worker.transforms.insert import InsertFieldValue

DECIMAL = "org.apache.kafka.connect.data.Decimal"
FIELD_TYPES: list[dict[str, Any]] = [
    {"type": "int64", "optional": False},
    {"type": "int32", "optional": True},
    {"type": "double", "optional": True},
    {"type": "float", "optional": False},
    {"type": "boolean", "optional": True},
    {"type": "string", "optional": False},
    {"type": "string", "optional": True, "default": "fallback"},
    {"type": "int32", "optional": False, "default": 5},
    {"type": "bytes", "optional": True},
    {"type": "int64", "optional": True, "name": "org.apache.kafka.connect.data.Timestamp",
     "version": 1},
    {"type": "int32", "optional": True, "name": "org.apache.kafka.connect.data.Date",
     "version": 1},
    {"type": "int32", "optional": True, "name": "org.apache.kafka.connect.data.Time",
     "version": 1},
    {"type": "bytes", "optional": True, "name": DECIMAL, "version": 1,
     "parameters": {"scale": "2"}},
    {"type": "array", "optional": True, "items": {"type": "int32", "optional": False}},
    {"type": "map", "optional": True, "keys": {"type": "string", "optional": False},
     "values": {"type": "int64", "optional": True}},
    {"type": "struct", "optional": True,
     "fields": [{"field": "z", "type": "string", "optional": True}]},
]
GOOD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "int64": st.integers(-2**63, 2**63 - 1), "int32": st.integers(-2**31, 2**31 - 1),
    "double": st.floats(allow_nan=False, allow_infinity=False),
    "float": st.floats(allow_nan=False, allow_infinity=False, width=32),
    "boolean": st.booleans(), "string": st.text(max_size=4),
    "bytes": st.sampled_from(["AQI=", "", "/w=="]),
    "array": st.lists(st.integers(0, 9), max_size=3),
    "map": st.dictionaries(st.sampled_from(["k", "l"]), st.integers(0, 9) | st.none()),
    "struct": st.fixed_dictionaries({"z": st.text(max_size=2)}),
}
ANY_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-9, 9), st.just(2**70),
                      st.floats(-9, 9), st.text(max_size=2), st.just([1]), st.just({"z": 1}))
FIELD_NAMES = ["a", "b", "c", "d"]


@st.composite
def struct_schemas(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(FIELD_NAMES), unique=True, max_size=4))
    return {"type": "struct", "optional": draw(st.booleans()),
            "fields": [{"field": name, **draw(st.sampled_from(FIELD_TYPES))}
                       for name in names]}


SCHEMAS = st.one_of(struct_schemas(), struct_schemas(), st.sampled_from(
    [{"type": "int32", "optional": True}, {"type": "string", "optional": False}, None]))


@st.composite
def payloads(draw: st.DrawFn, schema: dict[str, Any] | None) -> Any:
    """Mostly what the schema reads, sometimes a null, a missing field or another type."""
    if schema is None or schema["type"] != "struct":
        return draw(ANY_VALUE)
    if draw(st.integers(0, 9)) == 0:
        return draw(ANY_VALUE)
    payload = {}
    for field in schema["fields"]:
        kind = draw(st.integers(0, 9))
        if kind == 0:
            continue
        payload[field["field"]] = draw(ANY_VALUE if kind == 1 else
                                       GOOD_VALUES[field["type"]])
    if draw(st.booleans()):  # not in the schema's order, or holding another member
        payload = dict(reversed(payload.items()))
    if draw(st.integers(0, 4)) == 0:
        payload["extra"] = 1
    return payload


FORMS = ["written", "written", "written", "spaced", "payload first", "extra member",
         "tombstone", "not json", "big number", "half"]


def compact(value: Any) -> bytes:
    """JSON as JsonConverter writes it (no spaces)."""
    return json.dumps(value, separators=(",", ":")).encode()


@st.composite
def envelopes(draw: st.DrawFn, schemas: list[dict[str, Any] | None]) -> bytes | None:
    schema = draw(st.sampled_from(schemas))
    payload = draw(payloads(schema))
    form = draw(st.sampled_from(FORMS))
    schema_text, payload_text = compact(schema), compact(payload)
    match form:
        case "tombstone":
            return None
        case "not json":
            return b'{"schema": ' + schema_text + b', "payload": '
        case "half":
            return b'{"schema":' + schema_text + b',"payload":[1'
        case "big number":
            return b'{"schema":' + schema_text + b',"payload":' + b"1" * 30 + b"}"
        case "spaced":
            return json.dumps({"schema": schema, "payload": payload}).encode()
        case "payload first":
            return b'{"payload":' + payload_text + b',"schema":' + schema_text + b"}"
        case "extra member":
            return b'{"schema":' + schema_text + b',"payload":' + payload_text + b',"x":1}'
    return b'{"schema":' + schema_text + b',"payload":' + payload_text + b"}"


@st.composite
def polls(draw: st.DrawFn) -> list[bytes | None]:
    schemas = draw(st.lists(SCHEMAS, min_size=1, max_size=3))
    return draw(st.lists(envelopes(schemas), min_size=1, max_size=8))


def converted_or_error(convert: Any) -> Any:
    try:
        return convert()
    except Exception as exc:  # the same failure either way, whatever it is
        return (type(exc), str(exc))


@settings(max_examples=400, deadline=None)
@given(polls())
def test_a_poll_of_envelopes_converts_as_each_envelope_does(
        poll: list[bytes | None]) -> None:
    """The poll at once: the same schema objects, and values of the same types in the
    same order (``repr``), or the error of the first envelope that fails."""
    converter = JsonConverter({"schemas.enable": "true"}, is_key=False)
    batch = converted_or_error(lambda: converter.to_connect_batch("t", poll))
    each = [converted_or_error(lambda item=item: converter.to_connect("t", item))
            for item in poll]
    failures = [item for item in each if isinstance(item, tuple)]
    if failures:
        assert batch == failures[0]
        return
    assert isinstance(batch, ConvertedBatch)
    assert all(schema is item.schema for schema, item in zip(batch.schemas, each, strict=True))
    assert repr(batch.values) == repr([item.value for item in each])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b'{"schema":{"type":"int32","optional":true},"payload":1}',
                                 b'{"schema":{"type":"int32","optional":true},"payload":1,'
                                 b'"payload":2}', b'{"schema":null,"payload":[1]}',
                                 b'{"schema":{"type":"int32","optional":true},'
                                 b'"payload":"s","schema":{"type":"string","optional":true}}'
                                 ]),
                min_size=1, max_size=5))
def test_repeated_members_convert_as_each_envelope_does(poll: list[bytes]) -> None:
    converter = JsonConverter({"schemas.enable": "true"}, is_key=False)
    batch = converter.to_connect_batch("t", list(poll))
    each = [converter.to_connect("t", item) for item in poll]
    assert batch.schemas == [item.schema for item in each]
    assert repr(batch.values) == repr([item.value for item in each])


INSERTIONS = [
    {"static.field": "tag", "static.value": "v"},
    {"static.field": "tag!", "static.value": "v", "topic.field": "topic",
     "partition.field": "partition", "offset.field": "offset!", "timestamp.field": "at"},
    {"timestamp.field": "at", "replace.null.with.default": "false"},
    {"static.field": "a", "static.value": "clash"},
]


def columns(values: list[Any], schemas: list[Schema | None],
            timestamps: list[tuple[int, int]]) -> SinkColumns:
    size = len(values)
    return SinkColumns(
        origin=RecordLists(topics=["t"] * size, partitions=[i % 3 for i in range(size)],
                           offsets=list(range(size)), timestamps=timestamps), headers=[None] * size,
        keys=ConvertedBatch([None] * size, [None] * size),
        values=ConvertedBatch(schemas, values), encoded=[None] * size, texts=[None] * size)


@st.composite
def struct_polls(draw: st.DrawFn) -> tuple[list[Any], list[Schema | None]]:
    """Structs as the converter reads them, or reshaped: one schema, or now and then a
    null value or another schema."""
    converter = JsonConverter({"schemas.enable": "true"}, is_key=False)
    schema_jsons = draw(st.lists(struct_schemas(), min_size=1, max_size=2))
    values: list[Any] = []
    schemas: list[Schema | None] = []
    for _ in range(draw(st.integers(1, 6))):
        schema_json = draw(st.sampled_from(schema_jsons))
        payload = draw(payloads(schema_json))
        try:
            converted = converter.to_connect("t", compact(
                {"schema": schema_json, "payload": payload}))
        except Exception:  # not a struct to transform, whatever the error
            continue
        schemas.append(converted.schema)
        values.append(reshaped(converted.value, draw(st.sampled_from(RESHAPES))))
    return values, schemas


RESHAPES = ["as read", "as read", "reversed", "first field left out", "nulls", "extra"]


def reshaped(struct: Any, how: str) -> Any:
    """A struct as another transform or a source task may hold it."""
    if not isinstance(struct, dict) or how == "as read":
        return struct
    match how:
        case "reversed":
            return dict(reversed(struct.items()))
        case "first field left out":
            return dict(list(struct.items())[1:])
        case "nulls":
            return dict.fromkeys(struct)
    return struct | {"extra": 1}


@settings(max_examples=400, deadline=None)
@given(struct_polls(), st.sampled_from(INSERTIONS),
       st.lists(st.sampled_from([(0, -1), (1, 1_700_000_000_000), (2, 5)]), min_size=6,
                max_size=6))
def test_insert_field_on_a_column_of_structs_gives_the_record_by_record_values(
        poll: tuple[list[Any], list[Schema | None]], insertion: dict[str, str],
        timestamps: list[tuple[int, int]]) -> None:
    values, schemas = poll
    transform: InsertFieldValue[SinkRecord] = InsertFieldValue(insertion)
    poll_columns = columns(values, schemas, timestamps[:len(values)])
    at_once = converted_or_error(lambda: transform.apply_columns(poll_columns).values)
    records = [SinkRecord(topic="t", kafka_partition=partition, kafka_offset=offset,
                          value=value, value_schema=schema,
                          timestamp=timestamp if kind else None)
               for value, schema, partition, offset, (kind, timestamp) in zip(
                   values, schemas, poll_columns.partitions, poll_columns.offsets,
                   poll_columns.timestamps, strict=True)]
    each = [converted_or_error(lambda record=record: transform.apply(record))
            for record in records]
    failures = [item for item in each if isinstance(item, tuple)]
    if failures:
        assert at_once == failures[0]
        return
    assert not isinstance(at_once, tuple)
    assert repr(at_once.values) == repr([record.value for record in each])
    assert at_once.schemas == [record.value_schema for record in each]


def test_a_column_of_one_schema_shares_its_updated_schema_and_makes_new_structs() -> None:
    converter = JsonConverter({"schemas.enable": "true"}, is_key=False)
    schema = b'{"type":"struct","optional":false,"fields":[{"field":"a","type":"int32",' \
             b'"optional":true,"default":7}]}'
    poll = [b'{"schema":%b,"payload":{"a":%b}}' % (schema, a) for a in (b"1", b"null")]
    converted = converter.to_connect_batch("t", list(poll))
    transform: InsertFieldValue[SinkRecord] = InsertFieldValue(
        {"static.field": "tag", "static.value": "v"})
    transformed = transform.apply_columns(columns(converted.values, converted.schemas,
                                                  [(0, -1)] * 2)).values
    assert transformed.values == [{"a": 1, "tag": "v"}, {"a": 7, "tag": "v"}]
    assert transformed.schemas[0] is transformed.schemas[1]
    assert transformed.chain_owned
    assert converted.values == [{"a": 1}, {"a": 7}]  # the converter's structs unchanged


def test_a_clashing_insertion_fails_on_a_column_as_on_each_record() -> None:
    converter = JsonConverter({"schemas.enable": "true"}, is_key=False)
    converted = converter.to_connect_batch("t", [
        b'{"schema":{"type":"struct","optional":false,"fields":[{"field":"a",'
        b'"type":"int32","optional":true}]},"payload":{"a":1}}'])
    transform: InsertFieldValue[SinkRecord] = InsertFieldValue(
        {"static.field": "a", "static.value": "v"})
    with pytest.raises(DataError, match="field name duplication a"):
        transform.apply_columns(columns(converted.values, converted.schemas, [(0, -1)]))
