"""Confluent's AvroConverter: Avro with schemas in a Confluent-compatible schema registry.

Wire format: a zero magic byte, the 4-byte big-endian schema id, then the Avro binary
encoding of the value. Connect schemas map to Avro the way Confluent's ``AvroData`` maps
them (int8/int16 as ``int`` with ``connect.type``, logical Decimal/Date/Time/Timestamp as
Avro logical types, optional as a union with null, maps with non-string keys as arrays of
``MapEntry`` records, ``connect.*`` properties for names, versions, docs and parameters),
so data written by either converter reads back with the other.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Literal, Protocol

import fastavro
from pydantic import SecretStr

from kanal_worker.api import (
    ConfigError,
    DataError,
    RetriableError,
    Schema,
    SchemaAndValue,
    Settings,
    Type,
    setting,
)
from kanal_worker.api.plugins import Converter
from kanal_worker.api.schema import DATE, DECIMAL, DECIMAL_SCALE, TIME, TIMESTAMP, Field

MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")
AVRO_NAMESPACE = "io.confluent.connect.avro"
DEFAULT_RECORD_NAME = "ConnectDefault"
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
DECIMAL_PRECISION = "connect.decimal.precision"
DEFAULT_DECIMAL_PRECISION = 64
STRATEGY_PACKAGE = "io.confluent.kafka.serializers.subject."

_PRIMITIVES = {Type.INT32: "int", Type.INT64: "long", Type.FLOAT32: "float",
               Type.FLOAT64: "double", Type.BOOLEAN: "boolean", Type.STRING: "string",
               Type.BYTES: "bytes"}
_FROM_AVRO = {"int": Type.INT32, "long": Type.INT64, "float": Type.FLOAT32,
              "double": Type.FLOAT64, "boolean": Type.BOOLEAN, "string": Type.STRING,
              "bytes": Type.BYTES}


class AvroConverterSettings(Settings):
    schema_registry_url: str = setting(
        key="schema.registry.url", importance="HIGH",
        doc="Comma-separated URLs of the schema registry; the first is used.")
    auto_register_schemas: bool = setting(
        True, key="auto.register.schemas",
        doc="Register the schema of each written value under its subject when it is new.")
    use_latest_version: bool = setting(
        False, key="use.latest.version",
        doc="Write with the subject's latest registered schema instead of registering one "
            "(only with auto.register.schemas=false).")
    subject_name_strategy: str = setting(
        f"{STRATEGY_PACKAGE}TopicNameStrategy", key="subject.name.strategy",
        doc="How subjects are named: TopicNameStrategy (<topic>-key / <topic>-value), "
            "RecordNameStrategy (<record name>) or TopicRecordNameStrategy "
            "(<topic>-<record name>). key./value.subject.name.strategy are accepted too.")
    basic_auth_credentials_source: Literal["URL", "USER_INFO"] = setting(
        "URL", key="basic.auth.credentials.source",
        doc="Where registry credentials come from: the URL's user info or basic.auth.user.info.")
    basic_auth_user_info: SecretStr = setting(
        SecretStr(""), key="basic.auth.user.info",
        doc="<user>:<password> for the registry when the source is USER_INFO.")
    connect_meta_data: bool = setting(
        True, key="connect.meta.data",
        doc="Keep Connect schema names, versions, docs and parameters as connect.* properties.")
    schemas_cache_size: int = setting(1000, key="schemas.cache.size", ge=1,
                                      doc="How many schemas are cached in each direction.")


class SchemaRegistry(Protocol):
    """The three calls the converter makes of a Confluent-compatible registry."""

    def register(self, subject: str, schema: str) -> int: ...

    def lookup(self, subject: str, schema: str) -> int: ...

    def latest(self, subject: str) -> tuple[int, str]: ...

    def schema(self, schema_id: int) -> str: ...


class HttpSchemaRegistry:
    """Confluent's REST API over HTTP; network failures are retriable, refusals are not."""

    def __init__(self, url: str, user_info: str | None, timeout: float = 30) -> None:
        parsed = urllib.parse.urlsplit(url.split(",")[0].strip())
        if parsed.username is not None and user_info is None:
            user_info = f"{urllib.parse.unquote(parsed.username)}:" \
                        f"{urllib.parse.unquote(parsed.password or '')}"
        host = parsed.hostname or ""
        netloc = f"{host}:{parsed.port}" if parsed.port else host
        self.base = urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path.rstrip("/"),
                                             "", ""))
        self.auth = ("Basic " + base64.b64encode(user_info.encode()).decode()
                     if user_info else None)
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self.base + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE,
                     **({"Authorization": self.auth} if self.auth else {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            if exc.code >= 500 or exc.code == 429:
                raise RetriableError(f"schema registry {self.base}{path}: HTTP {exc.code} "
                                     f"{detail}") from None
            raise DataError(f"schema registry {self.base}{path} refused the request: HTTP "
                            f"{exc.code} {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise RetriableError(f"schema registry {self.base} unreachable: {exc}") from None

    def register(self, subject: str, schema: str) -> int:
        answer = self._call("POST", f"/subjects/{_quote(subject)}/versions", {"schema": schema})
        return int(answer["id"])

    def lookup(self, subject: str, schema: str) -> int:
        answer = self._call("POST", f"/subjects/{_quote(subject)}", {"schema": schema})
        return int(answer["id"])

    def latest(self, subject: str) -> tuple[int, str]:
        answer = self._call("GET", f"/subjects/{_quote(subject)}/versions/latest")
        return int(answer["id"]), str(answer["schema"])

    def schema(self, schema_id: int) -> str:
        return str(self._call("GET", f"/schemas/ids/{schema_id}")["schema"])


def _quote(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")


class _Lru(OrderedDict[Any, Any]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)


class AvroConverter(Converter):
    """``io.confluent.connect.avro.AvroConverter``, wire compatible with Confluent's."""

    settings = AvroConverterSettings
    aliases = ("io.confluent.connect.avro.AvroConverter",)

    def __init__(self, config: Mapping[str, str], is_key: bool,
                 registry: SchemaRegistry | None = None) -> None:
        super().__init__(config, is_key)
        parsed: AvroConverterSettings = AvroConverterSettings.parse(config)
        side = "key" if is_key else "value"
        self.strategy = (config.get(f"{side}.subject.name.strategy")
                         or parsed.subject_name_strategy).rsplit(".", 1)[-1]
        if self.strategy not in ("TopicNameStrategy", "RecordNameStrategy",
                                 "TopicRecordNameStrategy"):
            raise ConfigError(f"{side}.subject.name.strategy",
                              f"unknown subject name strategy {self.strategy}; use "
                              "TopicNameStrategy, RecordNameStrategy or TopicRecordNameStrategy")
        self.auto_register = parsed.auto_register_schemas
        self.use_latest = parsed.use_latest_version
        self.metadata = parsed.connect_meta_data
        user_info = (parsed.basic_auth_user_info.get_secret_value()
                     if parsed.basic_auth_credentials_source == "USER_INFO" else None)
        self.registry = registry or HttpSchemaRegistry(parsed.schema_registry_url, user_info)
        self._by_id = _Lru(parsed.schemas_cache_size)
        self._by_schema = _Lru(parsed.schemas_cache_size)

    # -- writing -----------------------------------------------------------------------

    def from_connect(self, topic: str, schema: Schema | None, value: Any) -> bytes | None:
        if value is None and (schema is None or schema.optional):
            return None
        if schema is None:
            schema = _infer_schema(value)
        schema_id, parsed, datum = self._writer_schema(topic, schema)
        buffer = io.BytesIO()
        buffer.write(HEADER.pack(MAGIC_BYTE, schema_id))
        try:
            fastavro.schemaless_writer(buffer, parsed, datum(value))
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise DataError(f"Failed to serialize Avro data from topic {topic}: {exc}") from exc
        return buffer.getvalue()

    def _writer_schema(self, topic: str, schema: Schema
                       ) -> tuple[int, Any, Callable[[Any], Any]]:
        cached = self._by_schema.get(id(schema))
        if cached is not None and cached[0] is schema:
            return cached[1], cached[2], cached[3]
        avro = to_avro_schema(schema, self.metadata)
        text = json.dumps(avro, separators=(",", ":"))
        subject = self._subject(topic, avro)
        if self.auto_register:
            schema_id = self.registry.register(subject, text)
        elif self.use_latest:
            schema_id, text = self.registry.latest(subject)
            avro = json.loads(text)
        else:
            schema_id = self.registry.lookup(subject, text)
        parsed = fastavro.parse_schema(avro)
        datum = avro_datum(schema)
        self._by_schema.put(id(schema), (schema, schema_id, parsed, datum))
        return schema_id, parsed, datum

    def _subject(self, topic: str, avro: Any) -> str:
        side = "key" if self.is_key else "value"
        if self.strategy == "TopicNameStrategy":
            return f"{topic}-{side}"
        if not isinstance(avro, dict) or avro.get("type") != "record":
            raise DataError(f"{self.strategy} needs a record schema; use TopicNameStrategy "
                            "for primitive keys and values")
        name = ".".join(p for p in (avro.get("namespace"), avro["name"]) if p)
        return name if self.strategy == "RecordNameStrategy" else f"{topic}-{name}"

    # -- reading -----------------------------------------------------------------------

    def to_connect(self, topic: str, data: bytes | None) -> SchemaAndValue:
        if data is None:
            return SchemaAndValue(None, None)
        if len(data) < HEADER.size:
            raise DataError(f"Failed to deserialize Avro data from topic {topic}: "
                            f"{len(data)} bytes is too short for the schema id header")
        magic, schema_id = HEADER.unpack_from(data)
        if magic != MAGIC_BYTE:
            raise DataError(f"Failed to deserialize Avro data from topic {topic}: Unknown "
                            "magic byte!")
        cached = self._by_id.get(schema_id)
        if cached is None:
            avro = json.loads(self.registry.schema(schema_id))
            cached = (fastavro.parse_schema(avro), to_connect_schema(avro))
            self._by_id.put(schema_id, cached)
        parsed, schema = cached
        try:
            datum = fastavro.schemaless_reader(io.BytesIO(data[HEADER.size:]), parsed, None)
        except (ValueError, EOFError, IndexError, UnicodeDecodeError, TypeError) as exc:
            raise DataError(f"Failed to deserialize Avro data from topic {topic} with schema "
                            f"id {schema_id}: {exc}") from exc
        return SchemaAndValue(schema, to_connect_value(schema, datum))


# -- schemas: Connect → Avro -------------------------------------------------------------


def to_avro_schema(schema: Schema, metadata: bool = True) -> Any:
    """The Avro schema of a Connect schema, as Confluent's AvroData maps it (Kanal's one
    mapping: the converter and the storage formats use it); optional is a union with null.
    ``metadata`` adds the ``connect.*`` properties (``connect.meta.data``)."""
    return _field_schema(schema, metadata, _Names())


class _Names:
    """The records of one Avro schema. An equal Connect schema seen again refers to the
    record already defined, as AvroData does; a different one under a name already taken
    is numbered (``ConnectDefault``, ``ConnectDefault2``, ...) so the schema stays valid."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.defined: list[tuple[Schema, str]] = []

    def reference(self, schema: Schema) -> str | None:
        """The full name of the record defined for an equal schema, if there is one."""
        return next((full for seen, full in self.defined if seen == schema), None)

    def define(self, schema: Schema, name: str, namespace: str) -> str:
        """A name for the record of ``schema`` that no other record in the schema has."""
        self.counts[name] = self.counts.get(name, 0) + 1
        unique = name if self.counts[name] == 1 else f"{name}{self.counts[name]}"
        self.defined.append((schema, f"{namespace}.{unique}" if namespace else unique))
        return unique


def _avro_schema(schema: Schema, metadata: bool, names: _Names) -> Any:
    props = ({f"connect.{key}": value for key, value in schema.metadata().items()}
             if metadata else {})
    if schema.name == DECIMAL:
        parameters = schema.parameters or {}
        return {"type": "bytes", "logicalType": "decimal",
                "precision": int(parameters.get(DECIMAL_PRECISION, DEFAULT_DECIMAL_PRECISION)),
                "scale": int(parameters.get(DECIMAL_SCALE, "0")), **props}
    if schema.name == DATE:
        return {"type": "int", "logicalType": "date", **props}
    if schema.name == TIME:
        return {"type": "int", "logicalType": "time-millis", **props}
    if schema.name == TIMESTAMP:
        return {"type": "long", "logicalType": "timestamp-millis", **props}
    match schema.type:
        case Type.INT8 | Type.INT16:
            return {"type": "int", "connect.type": schema.type.value, **props}
        case Type.ARRAY:
            assert schema.value_schema is not None
            return {"type": "array", "items": _field_schema(schema.value_schema, metadata, names),
                    **props}
        case Type.MAP:
            assert schema.key_schema is not None and schema.value_schema is not None
            if schema.key_schema.type == Type.STRING and not schema.key_schema.optional:
                return {"type": "map",
                        "values": _field_schema(schema.value_schema, metadata, names), **props}
            reference = names.reference(schema)
            if reference is not None:
                return {"type": "array", "items": reference, **props}
            entry = {"type": "record", "name": names.define(schema, "MapEntry", AVRO_NAMESPACE),
                     "namespace": AVRO_NAMESPACE,
                     "fields": [{"name": "key", "type": _field_schema(schema.key_schema,
                                                                      metadata, names)},
                                {"name": "value", "type": _field_schema(schema.value_schema,
                                                                        metadata, names)}]}
            return {"type": "array", "items": entry, **props}
        case Type.STRUCT:
            reference = names.reference(schema)
            if reference is not None:
                return reference
            full = schema.name or DEFAULT_RECORD_NAME
            namespace, _, name = full.rpartition(".")
            if not schema.name:
                namespace = AVRO_NAMESPACE
            record: dict[str, Any] = {"type": "record",
                                      "name": names.define(schema, name, namespace)}
            if namespace:
                record["namespace"] = namespace
            if schema.doc is not None:
                record["doc"] = schema.doc
            record["fields"] = [_avro_field(f, metadata, names) for f in schema.fields]
            return {**record, **props}
    primitive = _PRIMITIVES[schema.type]
    return {"type": primitive, **props} if props else primitive


def _field_schema(schema: Schema, metadata: bool, names: _Names) -> Any:
    avro = _avro_schema(schema, metadata, names)
    return ["null", avro] if schema.optional else avro


def _avro_field(field: Field, metadata: bool, names: _Names) -> dict[str, Any]:
    avro: dict[str, Any] = {"name": field.name,
                            "type": _field_schema(field.schema, metadata, names)}
    if field.schema.optional and field.schema.default is None:
        avro["default"] = None
    elif field.schema.default is not None and field.schema.type.is_primitive and \
            field.schema.name is None and field.schema.type != Type.BYTES:
        avro["default"] = field.schema.default
    return avro


# -- schemas: Avro → Connect -------------------------------------------------------------


def to_connect_schema(avro: Any) -> Schema:
    """The Connect schema of an Avro schema; a record used again by name (as AvroData
    writes a reused one) reads as the record it names."""
    try:
        expanded = fastavro.schema.expand_schema(avro)
    except (fastavro.schema.SchemaParseException, fastavro.schema.UnknownType) as exc:
        raise DataError(f"Unsupported Avro schema: {exc}") from None
    return _connect_schema(expanded)


def _connect_schema(avro: Any) -> Schema:
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) != 1:
            raise DataError("Avro unions other than [null, T] have no Connect schema")
        return _connect_schema(branches[0]).with_(optional=len(avro) > 1)
    if isinstance(avro, str):
        if avro not in _FROM_AVRO:
            raise DataError(f"Unsupported Avro type {avro}")
        return Schema(_FROM_AVRO[avro])
    kind = avro["type"]
    if isinstance(kind, list | dict):
        return _connect_schema(kind)
    name = avro.get("connect.name")
    version = avro.get("connect.version")
    doc = avro.get("connect.doc", avro.get("doc") if kind == "record" else None)
    parameters = avro.get("connect.parameters")
    logical = avro.get("logicalType")
    if logical == "decimal":
        parameters = {**(parameters or {}), DECIMAL_SCALE: str(avro.get("scale", 0))}
        return Schema(Type.BYTES, name=DECIMAL, version=1, parameters=parameters)
    if logical == "date":
        return Schema(Type.INT32, name=DATE, version=1)
    if logical in ("time-millis", "time-micros"):
        return Schema(Type.INT32, name=TIME, version=1)
    if logical in ("timestamp-millis", "timestamp-micros"):
        return Schema(Type.INT64, name=TIMESTAMP, version=1)
    if kind == "record":
        full = ".".join(p for p in (avro.get("namespace"), avro["name"]) if p)
        if name is None and full.rpartition(".")[0] != AVRO_NAMESPACE:
            name = full
        fields = tuple(Field(f["name"], i, _connect_field(f)) for i, f in
                       enumerate(avro["fields"]))
        return Schema(Type.STRUCT, name=name, version=version, doc=doc, parameters=parameters,
                      fields=fields)
    if kind == "array":
        items = avro["items"]
        if isinstance(items, dict) and items.get("type") == "record" and \
                str(items.get("name", "")).rpartition(".")[2].startswith("MapEntry") and \
                [f["name"] for f in items["fields"]] == ["key", "value"]:
            key, value = (_connect_field(f) for f in items["fields"])
            return Schema(Type.MAP, name=name, version=version, doc=doc,
                          parameters=parameters, key_schema=key, value_schema=value)
        return Schema(Type.ARRAY, name=name, version=version, doc=doc, parameters=parameters,
                      value_schema=_connect_schema(items))
    if kind == "map":
        return Schema(Type.MAP, name=name, version=version, doc=doc, parameters=parameters,
                      key_schema=Schema(Type.STRING),
                      value_schema=_connect_schema(avro["values"]))
    if kind == "enum":
        return Schema(Type.STRING, name=name or avro.get("name"), version=version, doc=doc,
                      parameters=parameters)
    if kind == "fixed":
        return Schema(Type.BYTES, name=name, version=version, doc=doc, parameters=parameters)
    connect_type = avro.get("connect.type")
    type_ = Type(connect_type) if connect_type in ("int8", "int16") else _FROM_AVRO.get(kind)
    if type_ is None:
        raise DataError(f"Unsupported Avro type {kind}")
    return Schema(type_, name=name, version=version, doc=doc, parameters=parameters)


def _connect_field(field: Mapping[str, Any]) -> Schema:
    schema = _connect_schema(field["type"])
    default = field.get("default")
    if default is not None and schema.type.is_primitive and schema.name is None and \
            schema.type != Type.BYTES:
        schema = schema.with_(default=default)
    return schema


# -- values ------------------------------------------------------------------------------


def avro_datum(schema: Schema) -> Callable[[Any], Any]:
    """What turns values of ``schema`` into the data fastavro writes: ``to_avro_value``,
    or the value itself when the schema has no default to fill in and no map written as
    ``MapEntry`` records (most schemas: no walk through every value)."""
    return partial(to_avro_value, schema) if _rewritten(schema) else _as_is


def _as_is(value: Any) -> Any:
    return value


def _rewritten(schema: Schema) -> bool:
    if schema.default is not None:
        return True
    if schema.type == Type.MAP:
        assert schema.key_schema is not None and schema.value_schema is not None
        return schema.key_schema.type != Type.STRING or schema.key_schema.optional or \
            _rewritten(schema.key_schema) or _rewritten(schema.value_schema)
    if schema.type == Type.ARRAY:
        assert schema.value_schema is not None
        return _rewritten(schema.value_schema)
    return any(_rewritten(f.schema) for f in schema.fields)


def to_avro_value(schema: Schema, value: Any) -> Any:
    if value is None:
        if schema.default is not None:
            return to_avro_value(schema, schema.default)
        if not schema.optional:
            raise DataError(f"Conversion error: null value for field that is required and has "
                            f"no default value (schema {schema.type})")
        return None
    if schema.name in (DECIMAL, DATE, TIME, TIMESTAMP):
        return value
    match schema.type:
        case Type.STRUCT:
            if not isinstance(value, dict):
                raise DataError(f"Expected a struct but got {type(value).__name__}")
            return {f.name: to_avro_value(f.schema, value.get(f.name)) for f in schema.fields}
        case Type.ARRAY:
            assert schema.value_schema is not None
            return [to_avro_value(schema.value_schema, v) for v in value]
        case Type.MAP:
            assert schema.key_schema is not None and schema.value_schema is not None
            if schema.key_schema.type == Type.STRING and not schema.key_schema.optional:
                return {k: to_avro_value(schema.value_schema, v) for k, v in value.items()}
            return [{"key": to_avro_value(schema.key_schema, k),
                     "value": to_avro_value(schema.value_schema, v)} for k, v in value.items()]
        case Type.BYTES:
            return bytes(value)
    return value


def to_connect_value(schema: Schema, value: Any) -> Any:
    if value is None:
        return schema.default
    if schema.name in (DECIMAL, DATE, TIME, TIMESTAMP):
        return value
    match schema.type:
        case Type.STRUCT:
            return {f.name: to_connect_value(f.schema, value.get(f.name)) for f in schema.fields}
        case Type.ARRAY:
            assert schema.value_schema is not None
            return [to_connect_value(schema.value_schema, v) for v in value]
        case Type.MAP:
            assert schema.key_schema is not None and schema.value_schema is not None
            if isinstance(value, list):
                return {to_connect_value(schema.key_schema, e["key"]):
                        to_connect_value(schema.value_schema, e["value"]) for e in value}
            return {k: to_connect_value(schema.value_schema, v) for k, v in value.items()}
    return value


def _infer_schema(value: Any) -> Schema:
    """A schema for schemaless data, as far as Avro can carry it (Confluent's converter
    requires schemas; Kanal writes primitives and maps of them)."""
    if isinstance(value, bool):
        return Schema(Type.BOOLEAN, optional=True)
    if isinstance(value, int):
        return Schema(Type.INT64, optional=True)
    if isinstance(value, float):
        return Schema(Type.FLOAT64, optional=True)
    if isinstance(value, str):
        return Schema(Type.STRING, optional=True)
    if isinstance(value, bytes | bytearray):
        return Schema(Type.BYTES, optional=True)
    raise DataError(f"AvroConverter needs a schema for {type(value).__name__} values; use a "
                    "converter with schemas upstream or JsonConverter")
