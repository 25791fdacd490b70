"""Cast: Java's conversions, errors and string forms, on structs and schemaless maps."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kanal_worker.api.errors import ConfigError, DataError
from kanal_worker.api.records import SinkRecord, SourceRecord
from kanal_worker.api.schema import DATE, DECIMAL, TIMESTAMP, Schema, Type, struct
from kanal_worker.transforms.cast import OUTPUT_TYPES, CastKey, CastValue, cast_value


def sink(value: object, schema: Schema | None = None) -> SinkRecord:
    return SinkRecord(topic="t", kafka_partition=0, kafka_offset=5, value=value,
                      value_schema=schema, key=value, key_schema=schema)


def test_fields_of_a_struct_get_new_schemas_cached_per_input_schema() -> None:
    schema = struct([("speed", Schema(Type.FLOAT64)), ("id", Schema(Type.INT64, optional=True)),
                     ("name", Schema(Type.STRING))], name="reading", version=3)
    cast = CastValue({"spec": "speed:int8, id:string"})
    first = cast.apply(sink({"speed": 130.7, "id": None, "name": "a"}, schema))
    second = cast.apply(sink({"speed": 1.0, "id": 7, "name": "b"}, schema))
    assert first.value == {"speed": -126, "id": None, "name": "a"}
    assert second.value == {"speed": 1, "id": "7", "name": "b"}
    assert first.value_schema is second.value_schema
    assert first.value_schema is not None
    assert [(f.name, f.schema.type, f.schema.optional) for f in first.value_schema.fields] == [
        ("speed", Type.INT8, False), ("id", Type.STRING, True), ("name", Type.STRING, False)]
    assert (first.value_schema.name, first.value_schema.version) == ("reading", 3)


def test_schemaless_map_fields_missing_ones_become_null() -> None:
    out = CastKey({"spec": "a:int32,b:boolean,c:float32"}).apply(sink({"a": "42", "b": "TRUE"}))
    assert out.key == {"a": 42, "b": True, "c": None}
    assert out.key_schema is None


@pytest.mark.parametrize(("value", "target", "expected"), [
    (300, Type.INT8, 44), (-129, Type.INT8, 127), (2**31, Type.INT32, -(2**31)),
    (1e300, Type.INT32, 2**31 - 1), (float("nan"), Type.INT64, 0), (-7.9, Type.INT16, -7),
    (True, Type.INT64, 1), (0.5, Type.BOOLEAN, False), (2, Type.BOOLEAN, True),
    ("yes", Type.BOOLEAN, False), (" 1.5 ", Type.FLOAT64, 1.5), ("1e3f", Type.FLOAT32, 1000.0),
    (1.5, Type.STRING, "1.5"), (1e7, Type.STRING, "1.0E7"), (0.0001, Type.STRING, "1.0E-4"),
    (100.0, Type.STRING, "100.0"), (12, Type.STRING, "12"), (False, Type.STRING, "false"),
    (b"\x00\x01", Type.STRING, "AAE="),
])
def test_java_conversions(value: object, target: Type, expected: object) -> None:
    assert cast_value(None, value, target) == expected


def test_decimals_print_like_big_decimal_and_narrow_like_it() -> None:
    schema = Schema(Type.BYTES, name=DECIMAL, parameters={"scale": "0"})
    assert cast_value(schema, decimal.Decimal("1E+3"), Type.STRING) == "1E+3"
    assert cast_value(schema, decimal.Decimal("300.9"), Type.INT8) == 44


def test_float32_strings_are_the_shortest_float_digits() -> None:
    assert cast_value(Schema(Type.FLOAT32), 0.10000000149011612, Type.STRING) == "0.1"


def test_logical_values_encode_or_format_like_values_date_format_for() -> None:
    stamp = dt.datetime(2024, 5, 1, 10, 15, 30, 123000, tzinfo=dt.UTC)
    timestamp = Schema(Type.INT64, name=TIMESTAMP, version=1)
    assert cast_value(timestamp, stamp, Type.STRING) == "2024-05-01T10:15:30.123Z"
    assert cast_value(timestamp, stamp, Type.INT64) == 1714558530123
    date = Schema(Type.INT32, name=DATE, version=1)
    assert cast_value(date, dt.date(2024, 5, 1), Type.STRING) == "2024-05-01"
    assert cast_value(date, dt.date(2024, 5, 1), Type.INT32) == 19844


@pytest.mark.parametrize(("value", "target", "message"), [
    ("abc", Type.INT64, "Value (abc) was out of range for requested data type"),
    ("32768", Type.INT16, "Value (32768) was out of range for requested data type"),
    ({"a": 1}, Type.INT32, "Cast transformation does not support casting from MAP; supported "
     "types are [INT8, INT16, INT32, INT64, FLOAT32, FLOAT64, BOOLEAN, STRING, BYTES]"),
    (b"x", Type.INT32, "Unexpected type in Cast transformation: class [B"),
    (dt.date(2024, 1, 1), Type.INT32, "Cast transformation was passed a value of type class "
     "java.util.Date which is not supported by Connect's data API"),
])
def test_errors_are_apaches(value: object, target: Type, message: str) -> None:
    with pytest.raises(DataError) as raised:
        cast_value(None, value, target)
    assert str(raised.value) == message


def test_whole_value_cast_keeps_name_and_optionality() -> None:
    schema = Schema(Type.STRING, optional=True, name="n")
    out = CastValue({"spec": "int32"}).apply(sink("12", schema))
    assert out.value == 12
    assert out.value_schema == Schema(Type.INT32, optional=True, name="n")


def test_null_values_pass_through() -> None:
    record = SourceRecord(topic="t", value=None)
    assert CastValue({"spec": "int8"}).apply(record) is record


@pytest.mark.parametrize(("spec", "message"), [
    ("", "Missing required configuration with no default value; set it."),
    ("a:bytes", "Cast transformation does not support casting to BYTES; supported types are "
     "[INT8, INT16, INT32, INT64, FLOAT32, FLOAT64, BOOLEAN, STRING]"),
    ("a:decimal", "Invalid type found in casting spec: decimal"),
    ("a:b:c", "Invalid rename mapping: a:b:c"),
    ("int8,a:int16", "Cast transformations that specify a type to cast the entire value to may "
     "only specify a single cast in their spec"),
])
def test_spec_validation(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        CastValue({"spec": spec} if spec else {})
    assert (raised.value.key, raised.value.message) == ("spec", message)


@given(st.one_of(st.integers(), st.floats(), st.text(max_size=5)),
       st.sampled_from([t for t in Type if t in OUTPUT_TYPES]))
def test_schemaless_casts_found_by_type_convert_as_with_the_inferred_schema(
        value: object, target: Type) -> None:
    """The one-lookup casts of schemaless values give what the general path gives."""
    inferred = Schema({int: Type.INT64, float: Type.FLOAT64, str: Type.STRING}[type(value)])
    try:
        expected: object = cast_value(inferred, value, target)
    except DataError as exc:
        expected = str(exc)
    try:
        cast: object = cast_value(None, value, target)
    except DataError as exc:
        cast = str(exc)
    assert cast == expected or (cast != cast and expected != expected)  # NaN
    assert type(cast) is type(expected)
