"""ProtobufConverter's pure parts: the message-index array (checked against confluent-kafka's
own encoder and decoder), the Connect ↔ Protobuf schema mapping under Confluent's options,
``.proto`` text printed and compiled back, and values both ways."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import io
from typing import Any

import pytest
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.schema_registry.serde import SchemaId
from google.protobuf import descriptor_pb2, message_factory

from kanal_worker.api import ConfigError, DataError, Schema, Type
from kanal_worker.api.schema import (
    DATE,
    DECIMAL,
    INT8,
    INT32,
    INT64,
    STRING,
    TIMESTAMP,
    optional,
    struct,
)
from kanal_worker.converters.protobuf import (
    ProtobufConverter,
    ProtobufOptions,
    decode_message_indexes,
    encode_message_indexes,
    from_connect_value,
    scrub_name,
    to_connect_schema,
    to_connect_value,
    to_protobuf_schema,
)
from kanal_worker.converters.protobuf_schema import ParsedSchema, parse_schema, proto_text

Field = descriptor_pb2.FieldDescriptorProto


@pytest.mark.parametrize("indexes", [[0], [1], [0, 2], [3, 0, 1], [200, 70000]])
def test_message_indexes_are_written_and_read_as_confluent_kafka_does(indexes: list[int]
                                                                      ) -> None:
    theirs = io.BytesIO()
    ProtobufSerializer._encode_varints(theirs, indexes, zigzag=True)
    ours = encode_message_indexes(indexes)
    assert ours == theirs.getvalue()
    assert decode_message_indexes(ours + b"rest", 0) == (indexes, len(ours))
    read = SchemaId("PROTOBUF")
    read.from_bytes(io.BytesIO(b"\x00\x00\x00\x00\x01" + ours))
    assert read.message_indexes == indexes


def test_a_truncated_index_array_is_a_data_error() -> None:
    with pytest.raises(DataError, match="message-index"):
        decode_message_indexes(b"\x04\x80", 0)


@pytest.mark.parametrize(("name", "scrubbed"), [
    ("valid_Name1", "valid_Name1"), ("with space", "with_space"), ("1st", "x1st"),
    ("_under", "x_under"), ("a-b.c", "a_b_c"), ("ümlaut", "_C3_BCmlaut")])
def test_invalid_names_are_scrubbed_as_protobuf_data_does(name: str, scrubbed: str) -> None:
    assert scrub_name(name) == scrubbed


def compiled(schema: Schema, options: ProtobufOptions) -> tuple[ParsedSchema, str, str]:
    """``schema`` written as Kanal registers it (``.proto`` text), compiled back by protoc."""
    written = to_protobuf_schema(schema, options)
    text = proto_text(written.file)
    return parse_schema(text, {}), written.message, text


NESTED = struct([
    ("id", INT64), ("tiny", INT8), ("note", optional(STRING)),
    ("when", Schema(Type.INT64, name=TIMESTAMP, version=1, optional=True)),
    ("labels", Schema(Type.MAP, key_schema=STRING, value_schema=INT32, optional=True)),
    ("inner", struct([("inner", STRING)], name="inner", optional=True)),
    ("status", Schema(Type.STRING, name="Status", optional=True, parameters={
        "io.confluent.connect.protobuf.Enum": "Status",
        "io.confluent.connect.protobuf.Enum.ON": "0",
        "io.confluent.connect.protobuf.Enum.OFF": "1"})),
], name="pkg.Thing")


def test_a_connect_struct_becomes_a_proto3_message_as_java_writes_it() -> None:
    parsed, name, text = compiled(NESTED, ProtobufOptions())
    assert name == ".pkg.Thing"
    assert 'package pkg;' in text and 'import "google/protobuf/timestamp.proto";' in text
    assert '[(confluent.field_meta) = { params: [{ key: "connect.type", value: "int8" }] }]' \
        in text
    message, syntax = parsed.messages[".pkg.Thing"]
    assert syntax == "proto3"
    fields = {f.name: f for f in message.field}
    assert fields["labels"].label == Field.LABEL_REPEATED
    assert fields["labels"].type_name == ".pkg.Thing.ConnectDefault1Entry"  # toMapEntry
    assert fields["inner"].type_name == ".pkg.Thing.innerMessage"  # named as its field
    assert fields["status"].type == Field.TYPE_ENUM
    assert [f.number for f in message.field] == list(range(1, 8))
    assert not fields["note"].proto3_optional


def test_the_message_reads_back_as_the_connect_schema_protobuf_data_makes() -> None:
    parsed, name, _ = compiled(NESTED, ProtobufOptions())
    schema = to_connect_schema(parsed, name, ProtobufOptions())
    assert schema.name == "Thing" and not schema.optional
    fields = {f.name: f.schema for f in schema.fields}
    assert fields["tiny"].type == Type.INT8 and fields["id"].optional  # all optional by default
    assert fields["labels"].type == Type.MAP and fields["labels"].name == "connect_default1"
    assert fields["when"].name == TIMESTAMP
    assert fields["status"].parameters == {
        "io.confluent.connect.protobuf.Enum": "Status",
        "io.confluent.connect.protobuf.Enum.ON": "0",
        "io.confluent.connect.protobuf.Enum.OFF": "1",
        "io.confluent.connect.protobuf.Tag": "7"}
    enhanced = to_connect_schema(parsed, name, ProtobufOptions(enhanced=True))
    assert enhanced.name == "pkg.Thing"
    assert enhanced.field("status").schema.name == "pkg.Thing.Status"  # type: ignore[union-attr]
    as_int = to_connect_schema(parsed, name, ProtobufOptions(int_for_enums=True))
    assert as_int.field("status").schema.type == Type.INT32  # type: ignore[union-attr]


def test_optional_for_nullables_writes_the_optional_keyword_and_reads_only_it_as_optional(
        ) -> None:
    options = ProtobufOptions(optional_for_nullables=True)
    parsed, name, text = compiled(NESTED, options)
    assert "optional string note = 3;" in text
    message, _ = parsed.messages[name]
    note = next(f for f in message.field if f.name == "note")
    assert note.proto3_optional and message.oneof_decl[note.oneof_index].name == "_note"
    schema = to_connect_schema(parsed, name, options)
    assert schema.field("note").schema.optional  # type: ignore[union-attr]
    assert not schema.field("id").schema.optional  # type: ignore[union-attr]


def test_wrapper_for_nullables_writes_wrappers_and_reads_them_as_optional_primitives() -> None:
    options = ProtobufOptions(wrapper_for_nullables=True)
    parsed, name, text = compiled(NESTED, options)
    assert ".google.protobuf.StringValue note = 3;" in text
    schema = to_connect_schema(parsed, name, options)
    note = schema.field("note").schema  # type: ignore[union-attr]
    assert note.type == Type.STRING and note.optional
    assert not schema.field("id").schema.optional  # type: ignore[union-attr]
    message_class = message_factory.GetMessageClass(parsed.pool.FindMessageTypeByName(
        "pkg.Thing"))
    written = from_connect_value(NESTED, {"id": 1, "tiny": 2, "note": "n"}, message_class)
    assert written.note.value == "n"  # type: ignore[attr-defined]
    read = to_connect_value(schema, message_class.FromString(written.SerializeToString()),
                            options)
    assert read["note"] == "n" and read["inner"] is None and read["when"] is None


def test_unions_are_named_by_generate_index_for_unions_or_flattened() -> None:
    text = ('syntax = "proto3";\npackage u;\nmessage Pay { string id = 1;\n'
            "  oneof method { string card = 2; int64 voucher = 3; } }\n")
    parsed = parse_schema(text, {})
    indexed = to_connect_schema(parsed, ".u.Pay", ProtobufOptions())
    assert [f.name for f in indexed.fields] == ["method_0", "id"]
    union = indexed.fields[0].schema
    assert union.name == "io.confluent.connect.protobuf.Union.method" and union.optional
    plain = to_connect_schema(parsed, ".u.Pay", ProtobufOptions(index_for_unions=False))
    assert plain.fields[0].name == "method"
    flat = to_connect_schema(parsed, ".u.Pay", ProtobufOptions(flatten_unions=True))
    assert [f.name for f in flat.fields] == ["card", "voucher", "id"]
    # the union struct writes back to the same oneof (tags from the Tag parameters)
    written = to_protobuf_schema(indexed, ProtobufOptions())
    message = written.file.message_type[0]
    assert [d.name for d in message.oneof_decl] == ["method"]
    assert {f.name: f.number for f in message.field} == {"card": 2, "voucher": 3, "id": 1}


def test_values_round_trip_through_the_compiled_message() -> None:
    schema = struct([
        ("amount", Schema(Type.BYTES, name=DECIMAL, version=1, optional=True,
                          parameters={"scale": "3"})),
        ("day", Schema(Type.INT32, name=DATE, version=1, optional=True)),
        ("tags", Schema(Type.ARRAY, value_schema=STRING, optional=True)),
        ("nested", Schema(Type.ARRAY, optional=True, value_schema=struct(
            [("k", STRING)], name="Item", optional=True))),
    ], name="Values")
    options = ProtobufOptions()
    parsed, name, _ = compiled(schema, options)
    message_class = message_factory.GetMessageClass(parsed.pool.FindMessageTypeByName(
        "Values"))
    value = {"amount": decimal.Decimal("-0.125"), "day": dt.date(1969, 12, 31),
             "tags": ["a", ""], "nested": [{"k": "x"}]}
    message = from_connect_value(schema, value, message_class)
    read_schema = to_connect_schema(parsed, name, options)
    assert to_connect_value(read_schema, message_class.FromString(
        message.SerializeToString()), options) == value


def test_a_primitive_root_is_a_wrapper_message() -> None:
    written = to_protobuf_schema(INT32, ProtobufOptions())
    assert written.file.name == "google/protobuf/wrappers.proto"
    assert written.message == ".google.protobuf.Int32Value"
    parsed = parse_schema(proto_text(written.file), {})
    assert to_connect_schema(parsed, written.message, ProtobufOptions()) == INT32
    with pytest.raises(DataError, match="Unsupported root schema of type array"):
        to_protobuf_schema(Schema(Type.ARRAY, value_schema=INT32), ProtobufOptions())


def test_descriptors_registered_in_base64_read_like_proto_text() -> None:
    parsed, name, _ = compiled(NESTED, ProtobufOptions())
    encoded = base64.b64encode(parsed.main.SerializeToString()).decode()
    again = parse_schema(encoded, {})
    assert to_connect_schema(again, name, ProtobufOptions()) == \
        to_connect_schema(parsed, name, ProtobufOptions())


def test_schemas_that_do_not_compile_or_recurse_are_clear_data_errors() -> None:
    with pytest.raises(DataError, match=r"Invalid Protobuf schema in the registry: .*Missing"):
        parse_schema('syntax = "proto3";\nmessage A { Missing m = 1; }\n', {})
    with pytest.raises(DataError, match=r"other\.proto: File not found"):
        parse_schema('syntax = "proto3";\nimport "other.proto";\nmessage A { int32 a = 1; }\n',
                     {})
    recursive = parse_schema('syntax = "proto3";\nmessage Node { Node next = 1; }\n', {})
    with pytest.raises(DataError, match="recursive"):
        to_connect_schema(recursive, ".Node", ProtobufOptions())
    with pytest.raises(DataError, match="out of range"):
        recursive.message_name([3])


ENUM = "io.confluent.connect.protobuf.Enum"
TAG = "io.confluent.connect.protobuf.Tag"
STATUS = {ENUM: "Status", f"{ENUM}.ACTIVE": "0", f"{ENUM}.INACTIVE": "1"}


def test_confluents_enum_union_test_proto_reads_as_protobuf_data_test_expects() -> None:
    """EnumUnion.proto of Confluent's serializer tests and the Connect schema
    ProtobufDataTest expects of it (getEnumUnionSchemaBuilder)."""
    nested = ('syntax = "proto3";\npackage io.confluent.kafka.serializers.protobuf.test;\n'
              "enum Status { ACTIVE = 0; INACTIVE = 1; }\n")
    text = ('syntax = "proto3";\n\nimport "NestedTestProto.proto";\n\n'
            "package io.confluent.kafka.serializers.protobuf.test;\n\n"
            'option java_package = "io.confluent.kafka.serializers.protobuf.test";\n'
            'option java_outer_classname = "EnumUnionOuter";\n'
            "option java_multiple_files = false;\n\n"
            "message EnumUnion {\n    oneof some_val {\n        string one_id = 1;\n"
            "        int32 other_id = 2;\n        Status some_status = 3;\n    }\n"
            "    Status status = 4;\n}")
    parsed = parse_schema(text, {"NestedTestProto.proto": nested})
    schema = to_connect_schema(parsed, parsed.message_name([0]), ProtobufOptions())
    some_val = Schema(Type.STRUCT, optional=True,
                      name="io.confluent.connect.protobuf.Union.some_val", fields=struct([
                          ("one_id", Schema(Type.STRING, optional=True, parameters={TAG: "1"})),
                          ("other_id", Schema(Type.INT32, optional=True, parameters={TAG: "2"})),
                          ("some_status", Schema(Type.STRING, optional=True, name="Status",
                                                 parameters={**STATUS, TAG: "3"}))]).fields)
    assert schema == Schema(Type.STRUCT, name="EnumUnion", fields=struct([
        ("some_val_0", some_val),
        ("status", Schema(Type.STRING, optional=True, name="Status",
                          parameters={**STATUS, TAG: "4"}))]).fields)


def test_confluents_int16_value_test_proto_keeps_its_connect_type() -> None:
    text = ('syntax = "proto3";\n\nimport "confluent/meta.proto";\n\n'
            'option java_package = "io.confluent.kafka.serializers.protobuf.test";\n\n'
            "// Wrapper message for `Int16`.\nmessage Int16Value {\n"
            '  int32 value = 1 [(confluent.field_meta) = { params: [\n'
            '    { key: "connect.type", value: "int16" }\n  ]}];\n}\n')
    parsed = parse_schema(text, {})
    schema = to_connect_schema(parsed, ".Int16Value", ProtobufOptions())
    assert schema.fields[0].schema == Schema(Type.INT16, optional=True, parameters={TAG: "1"})


ONEOF_WRAPPER_SCHEMA = (
    'syntax = "proto3";\npackage io.confluent.test;\nimport "google/protobuf/wrappers.proto";\n'
    "message OneofWrapFixed {\n  int32 id = 1;\n  string name = 2;\n"
    "  google.protobuf.StringValue nickname = 3;\n  google.protobuf.Int32Value priority = 4;\n"
    "  google.protobuf.BoolValue verified = 5;\n"
    "  oneof payload {\n    string text_payload = 6;\n    int64 number_payload = 7;\n  }\n}\n")


@pytest.mark.parametrize("options", [
    ProtobufOptions(wrapper_for_nullables=True, index_for_unions=False),
    ProtobufOptions(optional_for_nullables=True, index_for_unions=False)],
    ids=["wrapper.for.nullables", "optional.for.nullables"])
@pytest.mark.parametrize(("member", "value"), [("text_payload", "hello"),
                                               ("number_payload", 7)])
def test_oneof_members_stay_optional_scalars_and_write_back_byte_for_byte(
        options: ProtobufOptions, member: str, value: object) -> None:
    """ProtobufDataTest.testOneofWith{WrapperFor,OptionalFor}Nullables."""
    parsed = parse_schema(ONEOF_WRAPPER_SCHEMA, {})
    message_class = message_factory.GetMessageClass(parsed.pool.FindMessageTypeByName(
        "io.confluent.test.OneofWrapFixed"))
    original = message_class(id=42, name="alice", **{member: value}).SerializeToString()
    schema = to_connect_schema(parsed, ".io.confluent.test.OneofWrapFixed", options)
    payload = schema.field("payload").schema  # type: ignore[union-attr]
    assert all(f.schema.optional for f in payload.fields)
    read = to_connect_value(schema, message_class.FromString(original), options)
    assert read["payload"][member] == value and read["nickname"] is None

    written = to_protobuf_schema(schema, options)
    back = parse_schema(proto_text(written.file), {})
    regenerated = back.messages[written.message][0]
    assert {f.name: f.type for f in regenerated.field}[member] == \
        {f.name: f.type for f in parsed.messages[".io.confluent.test.OneofWrapFixed"][0]
         .field}[member]
    back_class = message_factory.GetMessageClass(back.pool.FindMessageTypeByName(
        written.message[1:]))
    assert from_connect_value(schema, read, back_class).SerializeToString() == original


@pytest.mark.parametrize(("key", "value", "message"), [
    ("wrapper.for.nullables", "maybe", "valid boolean"),
    ("reference.subject.name.strategy", "Foo", "unknown reference subject name strategy Foo"),
    ("value.subject.name.strategy", "Bar", "unknown subject name strategy Bar")])
def test_bad_settings_name_the_key(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        ProtobufConverter({"schema.registry.url": "http://127.0.0.1:1", key: value}, False)
    assert raised.value.key == key


def test_map_fields_and_enums_of_a_registered_schema_are_written_through_its_descriptor(
        ) -> None:
    """use.latest.version writes with a registered schema: ``map<>`` fields (map entries,
    not Java's repeated entry messages) and enums by symbol."""
    parsed = parse_schema('syntax = "proto3";\npackage m;\nmessage Holder {\n'
                          "  map<string, Item> items = 1;\n  map<int32, string> names = 2;\n"
                          "  Kind kind = 3;\n  message Item { int64 n = 1; }\n"
                          "  enum Kind { PLAIN = 0; FANCY = 1; }\n}\n", {})
    options = ProtobufOptions()
    schema = to_connect_schema(parsed, ".m.Holder", options)
    holder = message_factory.GetMessageClass(parsed.pool.FindMessageTypeByName("m.Holder"))
    value = {"items": {"a": {"n": 5}, "b": {"n": 0}}, "names": {7: "seven"}, "kind": "FANCY"}
    message: Any = from_connect_value(schema, value, holder)
    assert message.items["a"].n == 5 and "b" in message.items and message.names[7] == "seven"
    assert message.kind == 1
    assert to_connect_value(schema, holder.FromString(message.SerializeToString()),
                            options) == value
    with pytest.raises(DataError, match=r"'ODD' is not a symbol of enum m\.Holder\.Kind"):
        from_connect_value(schema, {"kind": "ODD"}, holder)
