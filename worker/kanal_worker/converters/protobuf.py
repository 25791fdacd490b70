"""Confluent's ProtobufConverter: Protobuf with schemas in a Confluent-compatible registry.

Wire format: a zero magic byte, the 4-byte big-endian schema id, the message-index array
(a zig-zag varint count, then zig-zag varint indexes locating the message in the schema's
file; a single ``0`` byte stands for the first message), then the message's bytes.
Connect schemas map to messages the way Confluent's ``ProtobufData`` maps them (int8/int16
as ``int32`` with a ``connect.type`` field option, Decimal as ``confluent.type.Decimal``,
Date/Time/Timestamp as ``google.type.Date``/``google.type.TimeOfDay``/
``google.protobuf.Timestamp``, arrays as ``repeated``, maps as repeated ``<Name>Entry``
messages, oneofs as ``io.confluent.connect.protobuf.Union.*`` structs, enums as strings
with ``io.confluent.connect.protobuf.Enum*`` parameters), so data written by either
converter reads back with the other.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from confluent_kafka.schema_registry.common.protobuf import (
    protobuf_to_decimal,
    set_decimal_message,
)
from confluent_kafka.schema_registry.confluent import meta_pb2
from google.protobuf import descriptor_pb2, message_factory, wrappers_pb2
from google.protobuf.message import DecodeError, EncodeError, Message
from pydantic import field_validator

from kanal_worker.api import DataError, Schema, SchemaAndValue, Settings, Type, setting
from kanal_worker.api.schema import (
    DATE,
    DECIMAL,
    DECIMAL_SCALE,
    EPOCH,
    TIME,
    TIMESTAMP,
    Field,
    time_millis,
    timestamp_millis,
)
from kanal_worker.converters.protobuf_schema import (
    MAIN_FILE,
    SCALAR_TYPES,
    FieldProto,
    ParsedSchema,
    builtin_files,
    parse_schema,
    proto_text,
)
from kanal_worker.converters.registry import (
    HEADER,
    Lru,
    RegistryConverter,
    RegistryConverterSettings,
    RegistrySchema,
    SchemaRegistry,
)

NAMESPACE = "io.confluent.connect.protobuf"
DEFAULT_SCHEMA_NAME = "ConnectDefault"
ENUM = f"{NAMESPACE}.Enum"
UNION_PREFIX = f"{NAMESPACE}.Union."
TAG = f"{NAMESPACE}.Tag"
PROTOBUF_TYPE = f"{NAMESPACE}.Type"
WRAPPER = f"{NAMESPACE}.Wrapper"
CONNECT_TYPE = "connect.type"
DECIMAL_PRECISION = "connect.decimal.precision"
MAP_ENTRY_SUFFIX = "Entry"
DECIMAL_TYPE = ".confluent.type.Decimal"
DATE_TYPE = ".google.type.Date"
TIME_TYPE = ".google.type.TimeOfDay"
TIMESTAMP_TYPE = ".google.protobuf.Timestamp"
LOGICAL_IMPORTS = {DECIMAL: (DECIMAL_TYPE, "confluent/type/decimal.proto"),
                   DATE: (DATE_TYPE, "google/type/date.proto"),
                   TIME: (TIME_TYPE, "google/type/timeofday.proto"),
                   TIMESTAMP: (TIMESTAMP_TYPE, "google/protobuf/timestamp.proto")}
WRAPPERS_FILE = "google/protobuf/wrappers.proto"
META_FILE = "confluent/meta.proto"
_WRAPPED = {".google.protobuf.DoubleValue": Type.FLOAT64,
            ".google.protobuf.FloatValue": Type.FLOAT32,
            ".google.protobuf.Int64Value": Type.INT64,
            ".google.protobuf.UInt64Value": Type.INT64,
            ".google.protobuf.Int32Value": Type.INT32,
            ".google.protobuf.UInt32Value": Type.INT64,
            ".google.protobuf.BoolValue": Type.BOOLEAN,
            ".google.protobuf.StringValue": Type.STRING,
            ".google.protobuf.BytesValue": Type.BYTES}
_WRAPPER_OF = {Type.INT8: "Int32Value", Type.INT16: "Int32Value", Type.INT32: "Int32Value",
               Type.INT64: "Int64Value", Type.FLOAT32: "FloatValue",
               Type.FLOAT64: "DoubleValue", Type.BOOLEAN: "BoolValue",
               Type.STRING: "StringValue", Type.BYTES: "BytesValue"}
_SCALAR_OF = {Type.INT8: "int32", Type.INT16: "int32", Type.INT32: "int32", Type.INT64: "int64",
              Type.FLOAT32: "float", Type.FLOAT64: "double", Type.BOOLEAN: "bool",
              Type.STRING: "string", Type.BYTES: "bytes"}
_TO_CONNECT = {
    FieldProto.TYPE_INT32: Type.INT32, FieldProto.TYPE_SINT32: Type.INT32,
    FieldProto.TYPE_SFIXED32: Type.INT32, FieldProto.TYPE_UINT32: Type.INT64,
    FieldProto.TYPE_FIXED32: Type.INT64, FieldProto.TYPE_INT64: Type.INT64,
    FieldProto.TYPE_UINT64: Type.INT64, FieldProto.TYPE_SINT64: Type.INT64,
    FieldProto.TYPE_FIXED64: Type.INT64, FieldProto.TYPE_SFIXED64: Type.INT64,
    FieldProto.TYPE_FLOAT: Type.FLOAT32, FieldProto.TYPE_DOUBLE: Type.FLOAT64,
    FieldProto.TYPE_BOOL: Type.BOOLEAN, FieldProto.TYPE_STRING: Type.STRING,
    FieldProto.TYPE_BYTES: Type.BYTES}
_NATURAL = {FieldProto.TYPE_INT32, FieldProto.TYPE_INT64}
"""Protobuf integer types a Connect schema names without ``io.confluent.connect.protobuf.Type``."""
REFERENCE_STRATEGY = "io.confluent.kafka.serializers.subject.DefaultReferenceSubjectNameStrategy"
_VALID_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class ProtobufDataSettings(Settings):
    """The keys of Confluent's ``ProtobufDataConfig``: how Connect schemas map to messages."""

    enhanced_protobuf_schema_support: bool = setting(
        False, key="enhanced.protobuf.schema.support",
        doc="Name Connect structs and enums by the message's full name (package included) "
            "instead of its simple name.")
    scrub_invalid_names: bool = setting(
        False, key="scrub.invalid.names",
        doc="Replace characters Protobuf names may not hold when writing Connect names.")
    int_for_enums: bool = setting(
        False, key="int.for.enums", doc="Read enums as int32 numbers instead of symbol names.")
    optional_for_nullables: bool = setting(
        False, key="optional.for.nullables",
        doc="Write optional Connect fields with proto3's optional keyword, and read only "
            "fields with that keyword as optional.")
    optional_for_proto2: bool = setting(
        True, key="optional.for.proto2",
        doc="Read proto2 optional fields that are not set as null.")
    wrapper_for_nullables: bool = setting(
        False, key="wrapper.for.nullables",
        doc="Write optional primitives as google.protobuf.*Value wrappers and read wrappers "
            "as optional primitives.")
    wrapper_for_raw_primitives: bool = setting(
        True, key="wrapper.for.raw.primitives",
        doc="Read a wrapper message at the root as its primitive value.")
    generate_struct_for_nulls: bool = setting(
        False, key="generate.struct.for.nulls",
        doc="Read a message field that is not set as a struct of defaults instead of null.")
    generate_index_for_unions: bool = setting(
        True, key="generate.index.for.unions",
        doc="Name the Connect field of a oneof <name>_<index> instead of <name>.")
    flatten_unions: bool = setting(
        False, key="flatten.unions",
        doc="Read a oneof's members as fields of the message instead of one union struct.")


@dataclass(frozen=True)
class ProtobufOptions:
    enhanced: bool = False
    scrub_names: bool = False
    int_for_enums: bool = False
    optional_for_nullables: bool = False
    optional_for_proto2: bool = True
    wrapper_for_nullables: bool = False
    wrapper_for_raw_primitives: bool = True
    struct_for_nulls: bool = False
    index_for_unions: bool = True
    flatten_unions: bool = False

    @staticmethod
    def of(settings: ProtobufDataSettings) -> ProtobufOptions:
        return ProtobufOptions(
            settings.enhanced_protobuf_schema_support, settings.scrub_invalid_names,
            settings.int_for_enums, settings.optional_for_nullables,
            settings.optional_for_proto2, settings.wrapper_for_nullables,
            settings.wrapper_for_raw_primitives, settings.generate_struct_for_nulls,
            settings.generate_index_for_unions, settings.flatten_unions)


# -- the wire format ----------------------------------------------------------------------


def encode_message_indexes(indexes: list[int]) -> bytes:
    """Confluent's message-index array: ``[0]`` is the single byte 0."""
    if indexes == [0]:
        return b"\x00"
    return b"".join(_varint(_zigzag(number)) for number in (len(indexes), *indexes))


def decode_message_indexes(data: bytes, position: int) -> tuple[list[int], int]:
    """The message-index array at ``position`` and the position after it."""
    count, position = _read_varint(data, position)
    count = _unzigzag(count)
    if count == 0:
        return [0], position
    if not 0 < count <= len(data) - position:
        raise DataError(f"Invalid Protobuf message-index array: {count} indexes")
    indexes = []
    for _ in range(count):
        number, position = _read_varint(data, position)
        indexes.append(_unzigzag(number))
    return indexes, position


def _zigzag(number: int) -> int:
    return (number << 1) ^ (number >> 63)


def _unzigzag(number: int) -> int:
    return (number >> 1) ^ -(number & 1)


def _varint(number: int) -> bytes:
    out = bytearray()
    number &= (1 << 64) - 1
    while number >= 0x80:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise DataError("Invalid Protobuf message-index array: truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, position


# -- schemas: Connect → Protobuf ----------------------------------------------------------


def scrub_name(name: str) -> str:
    """Confluent's ``scrub.invalid.names``: URL-encode, then replace what Protobuf names may
    not hold with ``_``; a name starting with a digit or ``_`` gets an ``x`` in front."""
    if _VALID_NAME.fullmatch(name):
        return name
    encoded = urllib.parse.quote_plus(name, safe="*-._")
    if encoded[:1].isdigit() or encoded[:1] == "_":
        encoded = "x" + encoded
    return re.sub(r"[^A-Za-z0-9_]", "_", encoded)


@dataclass
class WriterSchema:
    """The Protobuf file a Connect schema maps to, and the message its values are."""

    file: descriptor_pb2.FileDescriptorProto
    message: str
    """Full name with a leading dot."""


class _FromConnect:
    """One Connect schema mapped to one file (``ProtobufData.fromConnectSchema``)."""

    def __init__(self, options: ProtobufOptions) -> None:
        self.options = options
        self.default_names = 0
        self.file = descriptor_pb2.FileDescriptorProto(name=MAIN_FILE,
                                                       syntax="proto3")

    def name_or_default(self, name: str | None) -> str:
        if name:
            return name
        self.default_names += 1
        return f"{DEFAULT_SCHEMA_NAME}{self.default_names}"

    def scrub(self, name: str) -> str:
        return scrub_name(name) if self.options.scrub_names else name

    def unqualified(self, name: str | None) -> str:
        return self.scrub(self.name_or_default(name).rpartition(".")[2])

    def root(self, schema: Schema) -> WriterSchema:
        if schema.type != Type.STRUCT:
            if schema.type not in _WRAPPER_OF:
                raise DataError(f"Unsupported root schema of type {schema.type} for Protobuf; "
                                "only structs and primitives can be written")
            wrappers = descriptor_pb2.FileDescriptorProto.FromString(
                wrappers_pb2.DESCRIPTOR.serialized_pb)
            return WriterSchema(wrappers, f".google.protobuf.{_WRAPPER_OF[schema.type]}")
        parts = [self.scrub(p) for p in self.name_or_default(schema.name).split(".")]
        namespace, name = ".".join(parts[:-1]), parts[-1]
        if namespace:
            self.file.package = namespace
        message = self.file.message_type.add(name=name)
        scope = f".{namespace}.{name}" if namespace else f".{name}"
        self.message(message, schema, scope)
        return WriterSchema(self.file, scope)

    def message(self, message: descriptor_pb2.DescriptorProto, schema: Schema,
                scope: str) -> None:
        index = 1
        optionals: list[FieldProto] = []
        for item in schema.fields:
            tag_parameter = (item.schema.parameters or {}).get(TAG)
            if tag_parameter is not None:
                tag = int(tag_parameter)
            else:
                tag, index = index, index + 1
            created = self.field(message, item.schema, self.scrub(item.name), tag, scope, False)
            if created is not None and self.options.optional_for_nullables and \
                    item.schema.optional and item.schema.type not in (Type.ARRAY, Type.MAP):
                created.proto3_optional = True
                optionals.append(created)
        for created in optionals:  # synthetic oneofs follow the real ones, as protoc orders them
            created.oneof_index = len(message.oneof_decl)
            message.oneof_decl.add(name=f"_{created.name}")

    def field(self, message: descriptor_pb2.DescriptorProto, schema: Schema, name: str,
              tag: int, scope: str, oneof_member: bool) -> FieldProto | None:
        repeated = schema.type in (Type.ARRAY, Type.MAP)
        if schema.type == Type.ARRAY:
            assert schema.value_schema is not None
            schema = schema.value_schema
        if schema.type == Type.STRUCT and (schema.name or "").startswith(UNION_PREFIX):
            self.union(message, schema, scope)
            return None
        params: dict[str, str] = {}
        created = FieldProto(name=name, number=tag, label=FieldProto.LABEL_REPEATED if repeated
                             else FieldProto.LABEL_OPTIONAL)
        self.field_type(created, message, schema, name, params, scope, oneof_member)
        if params:
            self.add_import(META_FILE)
            created.options.Extensions[meta_pb2.field_meta].params.update(params)
        message.field.append(created)
        return message.field[-1]

    def union(self, message: descriptor_pb2.DescriptorProto, schema: Schema, scope: str) -> None:
        oneof_index = len(message.oneof_decl)
        message.oneof_decl.add(name=self.unqualified((schema.name or "")[len(UNION_PREFIX):]))
        for member in schema.fields:
            tag = int((member.schema.parameters or {}).get(TAG, "0"))
            created = self.field(message, member.schema, self.scrub(member.name), tag, scope,
                                 True)
            if created is not None:
                created.oneof_index = oneof_index

    def add_import(self, name: str) -> None:
        if name not in self.file.dependency:
            self.file.dependency.append(name)

    def field_type(self, created: FieldProto, message: descriptor_pb2.DescriptorProto,
                   schema: Schema, field_name: str, params: dict[str, str], scope: str,
                   oneof_member: bool) -> None:
        parameters = schema.parameters or {}
        if schema.name in LOGICAL_IMPORTS:
            type_name, location = LOGICAL_IMPORTS[schema.name]
            if schema.name == DECIMAL:
                if DECIMAL_PRECISION in parameters:
                    params["precision"] = parameters[DECIMAL_PRECISION]
                if DECIMAL_SCALE in parameters:
                    params["scale"] = parameters[DECIMAL_SCALE]
            self.add_import(location)
            created.type, created.type_name = FieldProto.TYPE_MESSAGE, type_name
            return
        if schema.type in (Type.INT8, Type.INT16):
            params[CONNECT_TYPE] = schema.type.value
        if ENUM in parameters and schema.type in (Type.STRING, Type.INT32):
            enum_name = self.unqualified(schema.name or parameters[ENUM])
            if not any(e.name == enum_name for e in message.enum_type):
                enum = message.enum_type.add(name=enum_name)
                prefix = ENUM + "."
                for key, value in parameters.items():
                    if key.startswith(prefix):
                        enum.value.add(name=key[len(prefix):], number=int(value))
            created.type, created.type_name = FieldProto.TYPE_ENUM, f"{scope}.{enum_name}"
            return
        if schema.type == Type.MAP:
            assert schema.key_schema is not None and schema.value_schema is not None
            entry_name = _map_entry_name(self.unqualified(schema.name))
            entry = message.nested_type.add(name=entry_name)
            entry_scope = f"{scope}.{entry_name}"
            self.field(entry, schema.key_schema, "key", 1, entry_scope, False)
            self.field(entry, schema.value_schema, "value", 2, entry_scope, False)
            created.type, created.type_name = FieldProto.TYPE_MESSAGE, entry_scope
            return
        if schema.type == Type.STRUCT:
            type_name = self.unqualified(schema.name)
            if type_name == field_name:  # a message type may not be named as its field
                type_name += "Message"
            if type_name != message.name and \
                    not any(n.name == type_name for n in message.nested_type):
                self.message(message.nested_type.add(name=type_name), schema,
                             f"{scope}.{type_name}")
            created.type, created.type_name = FieldProto.TYPE_MESSAGE, (
                scope if type_name == message.name else f"{scope}.{type_name}")
            return
        if self.options.wrapper_for_nullables and schema.optional and \
                (not oneof_member or parameters.get(WRAPPER) == "true"):
            wrapper = _WRAPPER_OF[schema.type]
            kind = parameters.get(PROTOBUF_TYPE)
            if kind in ("uint32", "fixed32"):
                wrapper = "UInt32Value"
            elif kind in ("uint64", "fixed64"):
                wrapper = "UInt64Value"
            self.add_import(WRAPPERS_FILE)
            created.type = FieldProto.TYPE_MESSAGE
            created.type_name = f".google.protobuf.{wrapper}"
            return
        scalar = _SCALAR_OF[schema.type]
        if schema.type in (Type.INT32, Type.INT64) and PROTOBUF_TYPE in parameters:
            scalar = parameters[PROTOBUF_TYPE]
        created.type = SCALAR_TYPES[scalar]


def _map_entry_name(name: str) -> str:
    """``ProtobufSchema.toMapEntry``: lower_underscore names become UpperCamel."""
    if "_" in name:
        name = "".join(part[:1].upper() + part[1:] for part in name.lower().split("_"))
    return name + MAP_ENTRY_SUFFIX


def _map_field_name(name: str) -> str:
    """``ProtobufSchema.toMapField``: ``TagsEntry`` → ``tags``."""
    head, dot, last = name.rpartition(".")
    if last.endswith(MAP_ENTRY_SUFFIX):
        last = re.sub(r"(?<!^)(?=[A-Z])", "_", last[:-len(MAP_ENTRY_SUFFIX)]).lower()
    return head + dot + last


def to_protobuf_schema(schema: Schema, options: ProtobufOptions) -> WriterSchema:
    """The Protobuf file and message a Connect schema is written as."""
    return _FromConnect(options).root(schema)


# -- schemas: Protobuf → Connect ----------------------------------------------------------


class _ToConnect:
    """``ProtobufData.toConnectSchema`` over the descriptors of one parsed schema."""

    def __init__(self, parsed: ParsedSchema, options: ProtobufOptions) -> None:
        self.parsed = parsed
        self.options = options
        self.building: set[str] = set()

    def root(self, full_name: str) -> Schema:
        if self.options.wrapper_for_raw_primitives and full_name in _WRAPPED:
            return Schema(_WRAPPED[full_name])
        return self.struct(full_name)

    def struct(self, full_name: str) -> Schema:
        if full_name in self.building:
            raise DataError(f"Protobuf message {full_name.lstrip('.')} contains itself; "
                            "recursive messages have no Connect schema")
        self.building.add(full_name)
        message, syntax = self.parsed.messages[full_name]
        fields: list[tuple[str, Schema]] = []
        for oneof_index, oneof in enumerate(message.oneof_decl):
            members = [f for f in message.field if f.HasField("oneof_index") and
                       f.oneof_index == oneof_index and not f.proto3_optional]
            if not members:
                continue
            if self.options.flatten_unions:
                fields.extend((m.name, self.field(m, syntax, True)) for m in members)
                continue
            union_name = f"{full_name.lstrip('.')}.{oneof.name}" if self.options.enhanced \
                else oneof.name
            union = Schema(Type.STRUCT, optional=True, name=UNION_PREFIX + union_name,
                           fields=tuple(Field(m.name, i, self.field(m, syntax, True))
                                        for i, m in enumerate(members)))
            fields.append((_union_field_name(oneof.name, oneof_index, self.options), union))
        fields.extend((f.name, self.field(f, syntax, False)) for f in message.field
                      if not _in_real_oneof(f))
        self.building.discard(full_name)
        name = full_name.lstrip(".") if self.options.enhanced else message.name
        return Schema(Type.STRUCT, name=name,
                      fields=tuple(Field(n, i, s) for i, (n, s) in enumerate(fields)))

    def field(self, item: FieldProto, syntax: str, oneof_member: bool) -> Schema:
        schema = self.field_type(item)
        repeated = item.label == FieldProto.LABEL_REPEATED
        if repeated and schema.type != Type.MAP:
            schema = Schema(Type.ARRAY, optional=True, value_schema=schema.with_(optional=True))
        parameters = dict(schema.parameters or {})
        optional = schema.optional
        if oneof_member:
            optional = True
            if self.options.wrapper_for_nullables and item.type_name in _WRAPPED:
                parameters[WRAPPER] = "true"
        elif self.options.optional_for_nullables:
            if item.proto3_optional or (self.options.optional_for_proto2 and
                                        syntax == "proto2" and not repeated and
                                        item.label == FieldProto.LABEL_OPTIONAL):
                optional = True
        elif not self.options.wrapper_for_nullables:
            optional = True
        parameters[TAG] = str(item.number)
        return schema.with_(optional=optional, parameters=parameters)

    def field_type(self, item: FieldProto) -> Schema:
        if item.type in _TO_CONNECT:
            meta = _field_params(item)
            if item.type in (FieldProto.TYPE_INT32, FieldProto.TYPE_SINT32,
                             FieldProto.TYPE_SFIXED32) and \
                    meta.get(CONNECT_TYPE) in ("int8", "int16"):
                return Schema(Type(meta[CONNECT_TYPE]))
            connect_type = _TO_CONNECT[item.type]
            named = connect_type in (Type.INT32, Type.INT64) and item.type not in _NATURAL
            return Schema(connect_type, parameters={
                PROTOBUF_TYPE: FieldProto.Type.Name(item.type)[5:].lower()} if named else None)
        if item.type == FieldProto.TYPE_ENUM:
            enum = self.parsed.enums[item.type_name]
            parameters = {ENUM: enum.name}
            parameters.update({f"{ENUM}.{v.name}": str(v.number) for v in enum.value})
            name = item.type_name.lstrip(".") if self.options.enhanced else enum.name
            return Schema(Type.INT32 if self.options.int_for_enums else Type.STRING,
                          optional=True, name=name, parameters=parameters)
        if item.type not in (FieldProto.TYPE_MESSAGE, FieldProto.TYPE_GROUP):
            raise DataError(f"Unsupported Protobuf field type {item.type} of {item.name}")
        type_name = item.type_name
        if type_name == DECIMAL_TYPE:
            meta = _field_params(item)
            parameters = {DECIMAL_SCALE: meta.get("scale", "0")}
            if "precision" in meta:
                parameters[DECIMAL_PRECISION] = meta["precision"]
            return Schema(Type.BYTES, optional=True, name=DECIMAL, version=1,
                          parameters=parameters)
        if type_name == DATE_TYPE:
            return Schema(Type.INT32, optional=True, name=DATE, version=1)
        if type_name == TIME_TYPE:
            return Schema(Type.INT32, optional=True, name=TIME, version=1)
        if type_name == TIMESTAMP_TYPE:
            return Schema(Type.INT64, optional=True, name=TIMESTAMP, version=1)
        if self.options.wrapper_for_nullables and type_name in _WRAPPED:
            return Schema(_WRAPPED[type_name], optional=True)
        message, _ = self.parsed.messages[type_name]
        if _is_map_entry(item, message):
            key, value = (self.field(part, "proto3", False) for part in message.field)
            name = type_name.lstrip(".") if self.options.enhanced else message.name
            return Schema(Type.MAP, optional=True, name=_map_field_name(name), key_schema=key,
                          value_schema=value)
        return self.struct(type_name).with_(optional=True)


def _union_field_name(name: str, index: int, options: ProtobufOptions) -> str:
    return f"{name}_{index}" if options.index_for_unions else name


def _in_real_oneof(item: FieldProto) -> bool:
    return item.HasField("oneof_index") and not item.proto3_optional


def _is_map_entry(item: FieldProto, message: descriptor_pb2.DescriptorProto) -> bool:
    return item.label == FieldProto.LABEL_REPEATED and \
        message.name.endswith(MAP_ENTRY_SUFFIX) and len(message.field) == 2 and \
        [f.name for f in message.field] == ["key", "value"] and \
        all(f.label != FieldProto.LABEL_REPEATED for f in message.field)


def _field_params(item: FieldProto) -> Mapping[str, str]:
    if not item.options.HasExtension(meta_pb2.field_meta):
        return {}
    params: Mapping[str, str] = item.options.Extensions[meta_pb2.field_meta].params
    return params


def to_connect_schema(parsed: ParsedSchema, full_name: str, options: ProtobufOptions) -> Schema:
    """The Connect schema of the message ``full_name`` (leading dot) of ``parsed``."""
    return _ToConnect(parsed, options).root(full_name)


# -- values --------------------------------------------------------------------------------


def to_connect_value(schema: Schema, message: Message, options: ProtobufOptions) -> Any:
    """The Connect value of a message read with the schema ``to_connect_schema`` gave."""
    return connect_reader(schema, message.DESCRIPTOR, options)(message)


Read = Callable[[Any], Any]


def connect_reader(schema: Schema, descriptor: Any, options: ProtobufOptions) -> Read:
    """What turns messages of ``descriptor`` into Connect values of ``schema``, planned once
    per schema (field lookups, enum symbols and presence rules decided here, not per
    record)."""
    if schema.type != Type.STRUCT:  # a wrapper at the root
        unwrap = _value_reader(schema, descriptor.fields_by_name["value"], options)
        return lambda message: unwrap(message.value)
    return _struct_reader(schema, descriptor, options)


def _struct_reader(schema: Schema, descriptor: Any, options: ProtobufOptions) -> Read:
    steps: list[tuple[str, Read]] = []
    for item in schema.fields:
        if (item.schema.name or "").startswith(UNION_PREFIX):
            steps.append((item.name, _union_reader(item.schema, descriptor, options)))
            continue
        field = descriptor.fields_by_name[item.name]
        read = _value_reader(item.schema, field, options)
        if field.is_repeated or (field.message_type is None and
                                 not _optional_keyword(field, options)) or \
                options.struct_for_nulls:
            steps.append((item.name, _always(item.name, read)))
        else:
            steps.append((item.name, _when_set(item.name, read)))

    def read_struct(message: Any) -> dict[str, Any]:
        return {name: step(message) for name, step in steps}
    return read_struct


def _always(name: str, read: Read) -> Read:
    return lambda message: read(getattr(message, name))


def _when_set(name: str, read: Read) -> Read:
    return lambda message: read(getattr(message, name)) if message.HasField(name) else None


def _optional_keyword(field: Any, options: ProtobufOptions) -> bool:
    """Whether a scalar field is read as null when not set: proto3 ``optional`` (a
    synthetic oneof) or proto2 ``optional`` with ``optional.for.proto2``."""
    return bool(field.has_presence) and (options.optional_for_proto2 or
                                         field.containing_oneof is not None)


def _union_reader(schema: Schema, descriptor: Any, options: ProtobufOptions) -> Read:
    members = {m.name: _value_reader(m.schema, descriptor.fields_by_name[m.name], options)
               for m in schema.fields}
    first = descriptor.fields_by_name[schema.fields[0].name] if schema.fields else None
    oneof = first.containing_oneof.name if first is not None else ""
    empty = dict.fromkeys(members)

    def read_union(message: Any) -> dict[str, Any] | None:
        chosen = message.WhichOneof(oneof)
        if chosen is None:
            return None
        return {**empty, chosen: members[chosen](getattr(message, chosen))}
    return read_union


def _value_reader(schema: Schema, field: Any, options: ProtobufOptions) -> Read:
    """What reads one value of ``field`` (one element of a repeated field) as ``schema``."""
    if schema.type == Type.ARRAY:
        assert schema.value_schema is not None
        element = _value_reader(schema.value_schema, field, options)
        return lambda values: [element(v) for v in values]
    if schema.type == Type.MAP:
        assert schema.key_schema is not None and schema.value_schema is not None
        entry = field.message_type
        key = _value_reader(schema.key_schema, entry.fields_by_name["key"], options)
        value = _value_reader(schema.value_schema, entry.fields_by_name["value"], options)
        if entry.GetOptions().map_entry:
            return lambda pairs: {key(k): value(v) for k, v in pairs.items()}
        return lambda entries: {key(e.key): value(e.value) for e in entries}
    logical = _LOGICAL_READERS.get(schema.name or "")
    if logical is not None:
        return logical
    if schema.type == Type.STRUCT:
        return _struct_reader(schema, field.message_type, options)
    if field.message_type is not None:  # a wrapper read as its primitive
        unwrap = _value_reader(schema, field.message_type.fields_by_name["value"], options)
        return lambda wrapper: unwrap(wrapper.value)
    if field.enum_type is not None and schema.type == Type.STRING:
        symbols = _enum_symbols(schema)
        return lambda number: symbols.get(number) or str(number)
    if schema.type == Type.BYTES:
        return bytes
    return _identity


def _identity(value: Any) -> Any:
    return value


def _enum_symbols(schema: Schema) -> dict[int, str]:
    prefix = ENUM + "."
    return {int(tag): key[len(prefix):] for key, tag in (schema.parameters or {}).items()
            if key.startswith(prefix)}


def _read_date(value: Any) -> dt.date:
    if value.year == 0 and value.month == 0 and value.day == 0:
        return dt.date(1970, 1, 1)
    return dt.date(value.year, value.month, value.day)


def _read_time(value: Any) -> dt.time:
    return dt.time(value.hours, value.minutes, value.seconds, value.nanos // 1_000_000 * 1000)


def _read_timestamp(value: Any) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=value.seconds * 1000 + value.nanos // 1_000_000)


_LOGICAL_READERS: dict[str, Read] = {DECIMAL: protobuf_to_decimal, DATE: _read_date,
                                     TIME: _read_time, TIMESTAMP: _read_timestamp}


def from_connect_value(schema: Schema, value: Any, message_class: type[Message]) -> Message:
    """A message of ``message_class`` holding the Connect value ``value``."""
    return protobuf_writer(schema, message_class)(value)


Fill = Callable[[Any, Any], None]
"""Sets a Connect value into a message (or a message field)."""


def protobuf_writer(schema: Schema, message_class: type[Message]) -> Callable[[Any], Message]:
    """What turns Connect values of ``schema`` into messages of ``message_class``, planned
    once per schema as ``connect_reader`` is."""
    descriptor = message_class.DESCRIPTOR
    if schema.type == Type.STRUCT:
        fill = _struct_filler(schema, descriptor)
    else:  # a wrapper at the root
        convert = _scalar_converter(schema, descriptor.fields_by_name["value"])

        def fill(message: Any, value: Any) -> None:
            message.value = convert(value)

    def write(value: Any) -> Message:
        message = message_class()
        try:
            fill(message, value)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise DataError(f"Cannot write {schema.type} value as Protobuf "
                            f"{descriptor.full_name}: {exc}") from exc
        return message
    return write


def _struct_filler(schema: Schema, descriptor: Any) -> Fill:
    steps: list[tuple[str, Any, Fill]] = []
    for item in schema.fields:
        if (item.schema.name or "").startswith(UNION_PREFIX):
            steps.append((item.name, None, _union_filler(item, descriptor)))
            continue
        field = descriptor.fields_by_name.get(item.name) or \
            descriptor.fields_by_name.get(scrub_name(item.name))  # scrub.invalid.names
        setter = _missing_field(descriptor, item.name) if field is None else \
            _field_setter(item.schema, field)
        steps.append((item.name, item.schema.default, setter))

    def fill(message: Any, value: Any) -> None:
        if not isinstance(value, Mapping):
            raise DataError(f"Expected a struct for {schema.name or 'a struct'} but got "
                            f"{type(value).__name__}")
        get = value.get
        for name, default, setter in steps:
            field_value = get(name)
            if field_value is None:
                field_value = default
            if field_value is not None:
                setter(message, field_value)
    return fill


def _missing_field(descriptor: Any, name: str) -> Fill:
    def fail(message: Any, value: Any) -> None:
        raise DataError(f"Protobuf message {descriptor.full_name} has no field {name}")
    return fail


def _union_filler(item: Field, descriptor: Any) -> Fill:
    members = [(m.name, _field_setter(m.schema, descriptor.fields_by_name[m.name]))
               for m in item.schema.fields]

    def fill(message: Any, union: Any) -> None:
        for name, setter in members:
            member_value = union.get(name)
            if member_value is not None:
                setter(message, member_value)
                return
        raise DataError(f"Union field {item.name} has no member set")
    return fill


def _field_setter(schema: Schema, field: Any) -> Fill:
    """What sets ``field`` of a message to a Connect value of ``schema``."""
    name = field.name
    if schema.type == Type.MAP:
        return _map_setter(schema, field)
    if field.is_repeated:
        assert schema.value_schema is not None
        if field.message_type is not None:
            fill_element = _value_filler(schema.value_schema, field)

            def add_messages(message: Any, values: Any) -> None:
                container = getattr(message, name)
                for item in values:
                    fill_element(container.add(), item)
            return add_messages
        convert_element = _scalar_converter(schema.value_schema, field)
        return lambda message, values: getattr(message, name).extend(
            map(convert_element, values))
    if field.message_type is not None:
        fill = _value_filler(schema, field)
        return lambda message, value: fill(getattr(message, name), value)
    convert = _scalar_converter(schema, field)
    return lambda message, value: setattr(message, name, convert(value))


def _map_setter(schema: Schema, field: Any) -> Fill:
    assert schema.key_schema is not None and schema.value_schema is not None
    name, entry = field.name, field.message_type
    key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
    if not entry.GetOptions().map_entry:  # repeated <Name>Entry messages, as Java writes maps
        set_key = _field_setter(schema.key_schema, key_field)
        set_value = _field_setter(schema.value_schema, value_field)

        def add_entries(message: Any, pairs: Any) -> None:
            container = getattr(message, name)
            for key, item in pairs.items():
                added = container.add()
                set_key(added, key)
                if item is not None:
                    set_value(added, item)
        return add_entries
    convert_key = _scalar_converter(schema.key_schema, key_field)
    if value_field.message_type is not None:
        fill_value = _value_filler(schema.value_schema, value_field)

        def put_messages(message: Any, pairs: Any) -> None:
            container = getattr(message, name)
            for key, item in pairs.items():
                fill_value(container[convert_key(key)], item)
        return put_messages
    convert_value = _scalar_converter(schema.value_schema, value_field)

    def put_values(message: Any, pairs: Any) -> None:
        container = getattr(message, name)
        for key, item in pairs.items():
            if item is not None:
                container[convert_key(key)] = convert_value(item)
    return put_values


def _value_filler(schema: Schema, field: Any) -> Fill:
    """What fills a message-typed value of ``field`` (already in its parent)."""
    logical = _LOGICAL_WRITERS.get(schema.name or "")
    if logical is not None:
        fill = logical
    elif schema.type == Type.STRUCT:
        fill = _struct_filler(schema, field.message_type)
    else:  # a wrapper
        convert = _scalar_converter(schema, field.message_type.fields_by_name["value"])

        def fill(target: Any, value: Any) -> None:
            target.value = convert(value)

    def present(target: Any, value: Any) -> None:
        target.SetInParent()  # set, even when every field holds its default
        if value is not None:
            fill(target, value)
    return present


def _scalar_converter(schema: Schema, field: Any) -> Read:
    if field.enum_type is not None:
        numbers: dict[str, int] = {value.name: value.number for value in field.enum_type.values}
        prefix = ENUM + "."
        numbers.update({key[len(prefix):]: int(tag) for key, tag in
                        (schema.parameters or {}).items() if key.startswith(prefix)})

        def enum_number(value: Any) -> int:
            if not isinstance(value, str):
                return int(value)
            if value not in numbers:
                raise DataError(f"{value!r} is not a symbol of enum {field.enum_type.full_name}")
            return numbers[value]
        return enum_number
    if schema.type == Type.BYTES:
        return bytes
    if schema.type in (Type.FLOAT32, Type.FLOAT64):
        return float
    return _identity


def _write_decimal(target: Any, value: Any) -> None:
    set_decimal_message(target, decimal.Decimal(value))


def _write_date(target: Any, value: Any) -> None:
    day = value if isinstance(value, dt.date) else dt.date(1970, 1, 1) + dt.timedelta(
        days=int(value))
    target.year, target.month, target.day = day.year, day.month, day.day


def _write_time(target: Any, value: Any) -> None:
    millis = time_millis(value) if isinstance(value, dt.time) else int(value)
    target.hours, target.minutes = millis // 3_600_000, millis // 60_000 % 60
    target.seconds, target.nanos = millis // 1000 % 60, millis % 1000 * 1_000_000


def _write_timestamp(target: Any, value: Any) -> None:
    millis = timestamp_millis(value) if isinstance(value, dt.datetime) else int(value)
    target.seconds, target.nanos = millis // 1000, millis % 1000 * 1_000_000


_LOGICAL_WRITERS: dict[str, Fill] = {DECIMAL: _write_decimal, DATE: _write_date,
                                     TIME: _write_time, TIMESTAMP: _write_timestamp}


# -- the converter ------------------------------------------------------------------------


class ProtobufConverterSettings(RegistryConverterSettings, ProtobufDataSettings):
    reference_subject_name_strategy: str = setting(
        REFERENCE_STRATEGY, key="reference.subject.name.strategy",
        doc="The subject of a schema's references: DefaultReferenceSubjectNameStrategy (the "
            "import path). Schemas Kanal writes import only well-known files, which are not "
            "registered; references of schemas it reads are followed as registered.")

    @field_validator("reference_subject_name_strategy")
    @classmethod
    def _reference_strategy(cls, value: str) -> str:
        if value.rpartition(".")[2] != "DefaultReferenceSubjectNameStrategy":
            raise ValueError(f"unknown reference subject name strategy {value}; use "
                             f"{REFERENCE_STRATEGY}")
        return value


@dataclass(frozen=True)
class _Writer:
    schema: Schema
    prefix: bytes
    """The header and message-index array every record of the schema starts with."""
    write: Callable[[Any], Message]


@dataclass(frozen=True)
class _Reader:
    schema: Schema
    message_class: type[Message]
    read: Callable[[Any], Any]


class ProtobufConverter(RegistryConverter):
    """``io.confluent.connect.protobuf.ProtobufConverter``, wire compatible with Confluent's."""

    settings: ClassVar[type[Settings]] = ProtobufConverterSettings
    schema_type = "PROTOBUF"
    aliases = ("io.confluent.connect.protobuf.ProtobufConverter",)

    def __init__(self, config: Mapping[str, str], is_key: bool,
                 registry: SchemaRegistry | None = None) -> None:
        super().__init__(config, is_key, registry)
        assert isinstance(self.options, ProtobufConverterSettings)
        self.proto_options = ProtobufOptions.of(self.options)
        size = self.options.schemas_cache_config
        self._writers: Lru[int, _Writer] = Lru(size)
        self._messages: Lru[tuple[int, ...], _Reader] = Lru(size)
        """Readers by schema id and message indexes (one schema may hold many messages)."""

    def from_connect(self, topic: str, schema: Schema | None, value: Any) -> bytes | None:
        if value is None:
            return None
        if schema is None:
            raise DataError(f"ProtobufConverter needs a schema to write the {self.side} of a "
                            f"record of topic {topic}; use a converter with schemas upstream")
        writer = self._writers.get(id(schema))
        if writer is None or writer.schema is not schema:
            writer = self._writer(topic, schema)
            self._writers.put(id(schema), writer)
        try:
            payload = writer.write(value).SerializeToString()
        except EncodeError as exc:
            raise DataError(f"Failed to serialize Protobuf data from topic {topic}: "
                            f"{exc}") from exc
        written: bytes = writer.prefix + payload
        return written

    def _writer(self, topic: str, schema: Schema) -> _Writer:
        written = to_protobuf_schema(schema, self.proto_options)
        registered = RegistrySchema(proto_text(written.file), self.schema_type, [])
        record_name = written.message.lstrip(".") if schema.type == Type.STRUCT else None
        schema_id, used = self.writer_schema(topic, registered, record_name)
        if used is registered:
            parsed = ParsedSchema(written.file, {**builtin_files(),
                                                 written.file.name: written.file})
        else:
            parsed = self._parse(used)
        name = written.message if written.message in parsed.messages \
            else parsed.message_name([0])
        prefix = self.header(schema_id) + encode_message_indexes(parsed.message_indexes(name))
        return _Writer(schema, prefix, protobuf_writer(schema, _message_class(parsed, name)))

    def to_connect(self, topic: str, data: bytes | None) -> SchemaAndValue:
        if data is None:
            return SchemaAndValue(None, None)
        schema_id = self.read_header(topic, data)
        indexes, position = decode_message_indexes(data, HEADER.size)
        reader = self._messages.get((schema_id, *indexes))
        if reader is None:
            parsed = self.reader(schema_id, self._parse)
            name = parsed.message_name(indexes)
            schema = to_connect_schema(parsed, name, self.proto_options)
            message_class = _message_class(parsed, name)
            reader = self._messages.put((schema_id, *indexes), _Reader(
                schema, message_class,
                connect_reader(schema, message_class.DESCRIPTOR, self.proto_options)))
        try:
            message = reader.message_class.FromString(data[position:])
        except DecodeError as exc:
            raise DataError(f"Failed to deserialize data for topic {topic} to Protobuf with "
                            f"schema id {schema_id}: {exc}") from exc
        return SchemaAndValue(reader.schema, reader.read(message))

    def _parse(self, registered: RegistrySchema) -> ParsedSchema:
        if registered.schema_type not in (None, self.schema_type):
            raise DataError(f"The registry holds a {registered.schema_type} schema where "
                            "ProtobufConverter expects a PROTOBUF one; use the converter of "
                            "that format")
        return parse_schema(registered.schema_str or "", self.registry.references(registered))


def _message_class(parsed: ParsedSchema, full_name: str) -> type[Message]:
    found: type[Message] = message_factory.GetMessageClass(
        parsed.pool.FindMessageTypeByName(full_name[1:]))
    return found
