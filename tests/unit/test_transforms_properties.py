"""Property tests: whatever records arrive, transforms and converters either work or raise
the errors error handling expects (DataError), never a crash of another kind."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kanal_worker.api.errors import DataError
from kanal_worker.api.records import Header, SinkRecord
from kanal_worker.api.schema import DATE, DECIMAL, TIME, TIMESTAMP, Field, Schema, Type
from kanal_worker.converters.json import JsonConverter
from kanal_worker.runtime.transforms import apply_chain, build_chain

NAMES = st.sampled_from(["a", "b", "c"])
T = "org.apache.kafka.connect.transforms."

TRANSFORMS: list[dict[str, str]] = [
    {"type": T + "Cast$Value", "spec": "a:int8,b:string"},
    {"type": T + "Cast$Value", "spec": "float32"},
    {"type": T + "Cast$Key", "spec": "a:boolean"},
    {"type": T + "DropHeaders", "headers": "h"},
    {"type": T + "ExtractField$Value", "field": "a"},
    {"type": T + "ExtractField$Value", "field": "a.b", "field.syntax.version": "V2"},
    {"type": T + "Filter"},
    {"type": T + "Flatten$Value", "delimiter": "_"},
    {"type": T + "HeaderFrom$Value", "fields": "a", "headers": "ha", "operation": "move"},
    {"type": T + "HoistField$Value", "field": "wrapped"},
    {"type": T + "InsertField$Value", "topic.field": "t", "offset.field": "o!",
     "timestamp.field": "ts", "static.field": "s", "static.value": "v"},
    {"type": T + "InsertHeader", "header": "h", "value.literal": "42"},
    {"type": T + "MaskField$Value", "fields": "a,b"},
    {"type": T + "MaskField$Value", "fields": "a", "replacement": "7"},
    {"type": T + "RegexRouter", "regex": "(.*)", "replacement": "$1-x"},
    {"type": T + "ReplaceField$Value", "exclude": "a", "renames": "b:c"},
    {"type": T + "SetSchemaMetadata$Value", "schema.name": "n", "schema.version": "2"},
    {"type": T + "TimestampConverter$Value", "field": "a", "target.type": "string",
     "format": "yyyy-MM-dd HH:mm"},
    {"type": T + "TimestampConverter$Value", "target.type": "Timestamp",
     "format": "yyyy-MM-dd"},
    {"type": T + "TimestampConverter$Value", "field": "b", "target.type": "unix",
     "unix.precision": "nanoseconds"},
    {"type": T + "TimestampRouter"},
    {"type": T + "ValueToKey", "fields": "a,c"},
]


def primitive_schemas() -> st.SearchStrategy[Schema]:
    kinds = [Schema(t) for t in (Type.INT8, Type.INT16, Type.INT32, Type.INT64, Type.FLOAT32,
                                 Type.FLOAT64, Type.BOOLEAN, Type.STRING, Type.BYTES)]
    kinds += [Schema(Type.INT64, name=TIMESTAMP, version=1),
              Schema(Type.INT32, name=DATE, version=1), Schema(Type.INT32, name=TIME, version=1),
              Schema(Type.BYTES, name=DECIMAL, version=1, parameters={"scale": "2"})]
    return st.sampled_from(kinds)


def schemas() -> st.SearchStrategy[Schema]:
    def extend(children: st.SearchStrategy[Schema]) -> st.SearchStrategy[Schema]:
        fields = st.lists(st.tuples(NAMES, children), max_size=3,
                          unique_by=lambda pair: pair[0])
        return st.one_of(
            fields.map(lambda pairs: Schema(Type.STRUCT, fields=tuple(
                Field(n, i, s) for i, (n, s) in enumerate(pairs)))),
            children.map(lambda s: Schema(Type.ARRAY, value_schema=s)),
            children.map(lambda s: Schema(Type.MAP, key_schema=Schema(Type.STRING),
                                          value_schema=s)),
        )
    base = st.recursive(primitive_schemas(), extend, max_leaves=6)
    return st.tuples(base, st.booleans()).map(
        lambda pair: pair[0].with_(optional=pair[1]))


def values(schema: Schema) -> st.SearchStrategy[Any]:
    strategy = _present(schema)
    return st.one_of(st.none(), strategy) if schema.optional else strategy


def _present(schema: Schema) -> st.SearchStrategy[Any]:
    if schema.name == TIMESTAMP:
        return st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1),
                            timezones=st.just(dt.UTC)).map(
            lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
    if schema.name == DATE:
        return st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2200, 1, 1))
    if schema.name == TIME:
        return st.times().map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))
    if schema.name == DECIMAL:
        return st.decimals(allow_nan=False, allow_infinity=False, places=2,
                           min_value=-10**9, max_value=10**9).map(decimal.Decimal)
    bits = {Type.INT8: 8, Type.INT16: 16, Type.INT32: 32, Type.INT64: 64}
    if schema.type in bits:
        half = 1 << (bits[schema.type] - 1)
        return st.integers(-half, half - 1)
    match schema.type:
        case Type.FLOAT32 | Type.FLOAT64:
            return st.floats(allow_nan=False, allow_infinity=False, width=32
                             if schema.type == Type.FLOAT32 else 64)
        case Type.BOOLEAN:
            return st.booleans()
        case Type.STRING:
            return st.text(max_size=8)
        case Type.BYTES:
            return st.binary(max_size=8)
        case Type.ARRAY:
            assert schema.value_schema is not None
            return st.lists(values(schema.value_schema), max_size=3)
        case Type.MAP:
            assert schema.value_schema is not None
            return st.dictionaries(st.text(max_size=3), values(schema.value_schema), max_size=3)
    return st.fixed_dictionaries({f.name: values(f.schema) for f in schema.fields})


@st.composite
def records(draw: st.DrawFn) -> SinkRecord:
    schema = draw(schemas())
    value = draw(values(schema))
    with_schema = draw(st.booleans())
    if not with_schema and isinstance(value, dict) and schema.type == Type.STRUCT:
        value = {k: v for k, v in value.items()}
    return SinkRecord(topic="vehicle.speeding", kafka_partition=0, kafka_offset=1,
                      key=draw(st.one_of(st.none(), st.text(max_size=3))), value=value,
                      value_schema=schema if with_schema else None,
                      timestamp=draw(st.one_of(st.none(), st.integers(0, 2**41))),
                      headers=[Header("h", "1")])


CHAINS = {f"{i}-{c['type'].rsplit('.', 1)[-1]}": build_chain(
    {"transforms": "x", **{f"transforms.x.{k}": v for k, v in c.items()}})
    for i, c in enumerate(TRANSFORMS)}


@pytest.mark.parametrize("name", list(CHAINS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record=records())
def test_transforms_raise_only_data_errors(name: str, record: SinkRecord) -> None:
    with contextlib.suppress(DataError):
        apply_chain(CHAINS[name], record)


@settings(max_examples=200, deadline=None)
@given(record=records())
def test_json_converter_round_trips_what_transforms_see(record: SinkRecord) -> None:
    converter = JsonConverter({"schemas.enable": "true"}, False)
    if record.value_schema is None:
        return  # schemaless: see test_json_converter_rejects_unsupported_schemaless_values
    try:
        data = converter.from_connect("t", record.value_schema, record.value)
    except DataError:
        return
    back = converter.to_connect("t", data)
    again = converter.from_connect("t", back.schema, back.value)
    assert again == data


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_json_converter_rejects_garbage_with_data_errors(data: bytes) -> None:
    for schemas_enable in ("true", "false"):
        with contextlib.suppress(DataError):
            JsonConverter({"schemas.enable": schemas_enable}, False).to_connect("t", data)


def test_json_converter_rejects_unsupported_schemaless_values() -> None:
    with pytest.raises(DataError):
        JsonConverter({"schemas.enable": "true"}, False).from_connect(
            "t", None, {"a": decimal.Decimal("1.5")})
