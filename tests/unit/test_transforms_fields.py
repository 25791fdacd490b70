"""ExtractField, HoistField, Flatten, InsertField, MaskField, ReplaceField, SetSchemaMetadata
and ValueToKey on structs (new, cached schemas) and on schemaless maps."""

from __future__ import annotations

import datetime as dt

import pytest

from kanal_worker.api.errors import ConfigError, DataError
from kanal_worker.api.records import SinkRecord, SourceRecord
from kanal_worker.api.schema import TIMESTAMP, Schema, Type, struct
from kanal_worker.transforms.extract import ExtractFieldKey, ExtractFieldValue, HoistFieldValue
from kanal_worker.transforms.flatten import FlattenValue
from kanal_worker.transforms.insert import InsertFieldValue
from kanal_worker.transforms.mask import MaskFieldValue
from kanal_worker.transforms.replace import ReplaceFieldValue
from kanal_worker.transforms.schema_metadata import SetSchemaMetadataValue
from kanal_worker.transforms.value_to_key import ValueToKey

INNER = struct([("a", Schema(Type.INT32)), ("b", Schema(Type.STRING, optional=True))],
               name="inner")
OUTER = struct([("id", Schema(Type.INT64)), ("inner", INNER),
                ("tags", Schema(Type.ARRAY, value_schema=Schema(Type.STRING)))],
               name="outer", version=2)
VALUE = {"id": 7, "inner": {"a": 1, "b": None}, "tags": ["x"]}


def sink(value: object, schema: Schema | None = OUTER) -> SinkRecord:
    return SinkRecord(topic="vehicle.speeding", kafka_partition=3, kafka_offset=42, value=value,
                      value_schema=schema, timestamp=1714558530123)


def test_extract_field_v1_and_nested_v2() -> None:
    assert ExtractFieldValue({"field": "id"}).apply(sink(VALUE)).value == 7
    nested = ExtractFieldValue({"field": "inner.a", "field.syntax.version": "v2"})
    out = nested.apply(sink(VALUE))
    assert (out.value, out.value_schema) == (1, Schema(Type.INT32))
    schemaless = nested.apply(sink({"inner": {"a": 5}}, None))
    assert (schemaless.value, schemaless.value_schema) == (5, None)


def test_extract_field_backticks_name_fields_holding_dots() -> None:
    extract = ExtractFieldKey({"field": "`a.b`.c", "field.syntax.version": "V2"})
    record = SinkRecord(topic="t", kafka_offset=0, key={"a.b": {"c": 3}})
    assert extract.apply(record).key == 3


def test_extract_field_errors() -> None:
    with pytest.raises(DataError, match=r"^Unknown field: nope\Z"):
        ExtractFieldValue({"field": "nope"}).apply(sink(VALUE))
    with pytest.raises(DataError, match=r"Only Map objects supported in absence of schema for "
                                        r"\[field extraction\], found: java.lang.String"):
        ExtractFieldValue({"field": "a"}).apply(sink("text", None))
    with pytest.raises(ConfigError, match="Incomplete backtick pair in path"):
        ExtractFieldValue({"field": "`a.b", "field.syntax.version": "V2"})


def test_hoist_field_wraps_and_caches_the_schema() -> None:
    hoist = HoistFieldValue({"field": "wrapped"})
    first, second = hoist.apply(sink(VALUE)), hoist.apply(sink(VALUE))
    assert first.value == {"wrapped": VALUE}
    assert first.value_schema is second.value_schema
    assert first.value_schema == struct([("wrapped", OUTER)])
    assert hoist.apply(sink(None, None)).value == {"wrapped": None}
    with pytest.raises(DataError, match='null used for required field: "wrapped"'):
        hoist.apply(sink(None, Schema(Type.STRING)))


def test_flatten_struct_propagates_optionality_and_keeps_arrays() -> None:
    optional_inner = INNER.with_(optional=True)
    schema = struct([("id", Schema(Type.INT64)), ("inner", optional_inner)])
    out = FlattenValue({"delimiter": "_"}).apply(sink({"id": 1, "inner": None}, schema))
    assert out.value == {"id": 1, "inner_a": None, "inner_b": None}
    assert out.value_schema is not None
    assert [(f.name, f.schema.optional) for f in out.value_schema.fields] == [
        ("id", False), ("inner_a", True), ("inner_b", True)]
    flat = FlattenValue({}).apply(sink(VALUE))
    assert flat.value == {"id": 7, "inner.a": 1, "inner.b": None, "tags": ["x"]}


def test_flatten_schemaless_and_errors() -> None:
    out = FlattenValue({}).apply(sink({"a": {"b": {"c": 1}}, "d": [1]}, None))
    assert out.value == {"a.b.c": 1, "d": [1]}
    with_map = struct([("m", Schema(Type.MAP, key_schema=Schema(Type.STRING),
                                    value_schema=Schema(Type.STRING)))])
    with pytest.raises(DataError, match=r"does not support MAP for record with schemas \(for "
                                        r"field m\)"):
        FlattenValue({}).apply(sink({"m": {}}, with_map))
    clash = struct([("a.b", Schema(Type.INT32)), ("a", struct([("b", Schema(Type.INT32))]))])
    with pytest.raises(DataError, match=r"field name duplication a\.b"):
        FlattenValue({}).apply(sink({"a.b": 1, "a": {"b": 2}}, clash))


def test_insert_field_struct_and_schemaless() -> None:
    insert = InsertFieldValue({"topic.field": "topic!", "partition.field": "p",
                               "offset.field": "o", "timestamp.field": "ts",
                               "static.field": "s", "static.value": "v"})
    out = insert.apply(sink(VALUE))
    assert out.value == {**VALUE, "topic": "vehicle.speeding", "p": 3, "o": 42,
                         "ts": dt.datetime(2024, 5, 1, 10, 15, 30, 123000, tzinfo=dt.UTC),
                         "s": "v"}
    assert out.value_schema is not None
    inserted = {f.name: f.schema for f in out.value_schema.fields}
    assert inserted["topic"] == Schema(Type.STRING)
    assert inserted["ts"] == Schema(Type.INT64, optional=True, name=TIMESTAMP, version=1)
    schemaless = insert.apply(sink({"a": 1}, None))
    assert schemaless.value == {"a": 1, "topic": "vehicle.speeding", "p": 3, "o": 42,
                                "ts": 1714558530123, "s": "v"}


def test_insert_field_offset_needs_a_sink_record() -> None:
    with pytest.raises(DataError, match=r"Only SinkRecord supported for \[field insertion\], "
                                        "found: org.apache.kafka.connect.source.SourceRecord"):
        InsertFieldValue({"offset.field": "o"}).apply(SourceRecord(topic="t", value={}))


@pytest.mark.parametrize(("config", "key", "message"), [
    ({}, "static.field", "No field insertion configured"),
    ({"static.field": "s!"}, "static.value", "No value specified for static field: s"),
])
def test_insert_field_configuration(config: dict[str, str], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        InsertFieldValue(config)
    assert (raised.value.key, raised.value.message) == (key, message)


def test_mask_field_empty_values_and_replacements() -> None:
    schema = struct([("n", Schema(Type.INT32)), ("s", Schema(Type.STRING)),
                     ("f", Schema(Type.FLOAT32)), ("l", Schema(Type.ARRAY,
                                                               value_schema=Schema(Type.INT8)))])
    value = {"n": 5, "s": "secret", "f": 1.5, "l": [1]}
    masked = MaskFieldValue({"fields": "n,s,f,l"}).apply(sink(value, schema))
    assert masked.value == {"n": 0, "s": "", "f": 0.0, "l": []}
    assert masked.value_schema is schema
    replaced = MaskFieldValue({"fields": "n,s", "replacement": "12"}).apply(sink(value, schema))
    assert replaced.value == {**value, "n": 12, "s": "12"}
    with pytest.raises(DataError, match=r"Cannot mask value of type class java\.util\.ArrayList "
                                        "with custom replacement"):
        MaskFieldValue({"fields": "l", "replacement": "x"}).apply(sink(value, schema))
    with pytest.raises(DataError, match=r"Unable to convert x \(class java.lang.String\)"):
        MaskFieldValue({"fields": "n", "replacement": "x"}).apply(sink(value, schema))
    with pytest.raises(DataError, match=r"Cannot mask value of type: class "
                                        r"org\.apache\.kafka\.connect\.data\.Struct"):
        MaskFieldValue({"fields": "inner"}).apply(sink(VALUE))


def test_replace_field_filters_renames_and_caches() -> None:
    replace = ReplaceFieldValue({"exclude": "tags", "renames": "id:vehicle_id"})
    out = replace.apply(sink(VALUE))
    assert out.value == {"vehicle_id": 7, "inner": {"a": 1, "b": None}}
    assert out.value_schema is replace.apply(sink(VALUE)).value_schema
    assert out.value_schema is not None and out.value_schema.name == "outer"
    include = ReplaceFieldValue({"include": "id,missing"}).apply(sink({"id": 1, "x": 2}, None))
    assert include.value == {"id": 1}
    with pytest.raises(ConfigError, match="Invalid rename mapping: a"):
        ReplaceFieldValue({"renames": "a"})


def test_set_schema_metadata_renames_struct_schemas_only() -> None:
    out = SetSchemaMetadataValue({"schema.name": "n", "schema.version": "9"}).apply(sink(VALUE))
    assert out.value_schema is not None
    assert (out.value_schema.name, out.value_schema.version) == ("n", 9)
    assert out.value == VALUE
    with pytest.raises(DataError, match="Cannot list fields on non-struct type"):
        SetSchemaMetadataValue({"schema.name": "n"}).apply(sink("x", Schema(Type.STRING)))
    with pytest.raises(DataError, match=r"Schema required for \[updating schema metadata\]"):
        SetSchemaMetadataValue({"schema.name": "n"}).apply(sink("x", None))
    with pytest.raises(ConfigError, match="Neither schema name nor version configured"):
        SetSchemaMetadataValue({})


def test_value_to_key() -> None:
    v2k = ValueToKey({"fields": "id,tags"})
    out = v2k.apply(sink(VALUE))
    assert out.key == {"id": 7, "tags": ["x"]}
    assert out.key_schema == struct([("id", OUTER.fields[0].schema),
                                     ("tags", OUTER.fields[2].schema)])
    assert v2k.apply(sink({"id": 1}, None)).key == {"id": 1, "tags": None}
    with pytest.raises(DataError, match="Field does not exist: nope"):
        ValueToKey({"fields": "nope"}).apply(sink(VALUE))
    with pytest.raises(ConfigError, match="Missing required configuration"):
        ValueToKey({"fields": ""})
