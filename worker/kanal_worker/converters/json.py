"""Kafka Connect's JsonConverter, wire compatible with Apache's, and Kanal's one mapping
of Connect data to JSON: every component that writes Connect data as JSON (file formats,
dead-letter context) goes through ``JsonConverter.to_json_value`` and ``dumps``.

With ``schemas.enable=true`` (Apache's default) every message is an envelope
``{"schema": ..., "payload": ...}``; without it values are plain JSON and the bytes
can pass through to JSON sinks untouched.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from itertools import repeat
from operator import attrgetter
from typing import Any, Literal, cast

import msgspec
import orjson

from kanal_worker.api import DataError, Schema, SchemaAndValue, Settings, Type, setting
from kanal_worker.api.plugins import Converter
from kanal_worker.api.records import ConvertedBatch
from kanal_worker.api.schema import (
    DATE,
    DECIMAL,
    DECIMAL_SCALE,
    EPOCH,
    EPOCH_DATE,
    TIME,
    TIMESTAMP,
    Field,
    date_days,
    time_millis,
    timestamp_millis,
)

ENVELOPE_ERROR = (
    'JsonConverter with schemas.enable requires "schema" and "payload" fields and may not '
    "contain additional fields. If you are trying to deserialize plain JSON data, set "
    "schemas.enable=false in your converter configuration."
)
TYPE_JSON_NAMES = {Type.FLOAT32: "float", Type.FLOAT64: "double"}
"""Apache's JSON schema spells the float types ``float`` and ``double``."""
JSON_TYPE_NAMES = {name: kind.value for kind, name in TYPE_JSON_NAMES.items()}


class JsonConverterSettings(Settings):
    schemas_enable: bool = setting(
        True, key="schemas.enable", importance="HIGH",
        doc="Include schemas within each of the serialized values and keys.")
    decimal_format: Literal["BASE64", "NUMERIC"] = setting(
        "BASE64", key="decimal.format",
        doc="How Decimal values are written: BASE64 bytes or NUMERIC numbers.")
    replace_null_with_default: bool = setting(
        True, key="replace.null.with.default",
        doc="Replace null fields that have a default with the default when serializing.")
    schemas_cache_size: int = setting(
        1000, key="schemas.cache.size", doc="Accepted for compatibility; schemas are cached.")


class JsonConverter(Converter):
    settings = JsonConverterSettings
    aliases = ("org.apache.kafka.connect.json.JsonConverter",)

    def __init__(self, config: Mapping[str, str], is_key: bool) -> None:
        super().__init__(config, is_key)
        parsed: JsonConverterSettings = JsonConverterSettings.parse(config)
        self.schemas_enable = parsed.schemas_enable
        self.numeric_decimals = parsed.decimal_format == "NUMERIC"
        self.replace_null_with_default = parsed.replace_null_with_default
        self._schema_cache: dict[bytes, tuple[Schema, bool]] = {}
        self._schemas_by_text: dict[bytes, tuple[Schema, bool]] = {}
        self._plain_schemas: dict[int, tuple[Schema, bool]] = {}
        self._readers: dict[int, tuple[Schema, Callable[[Any], Any]]] = {}
        self._schema_json: dict[int, tuple[Schema, bytes]] = {}
        """Envelope schema JSON by schema: sources reuse one schema object for many
        records (a change event's schema is ~3 KB of JSON, most of a record's cost)."""

    def to_connect(self, topic: str, data: bytes | None) -> SchemaAndValue:
        if data is None:
            return SchemaAndValue(None, None)
        if self.schemas_enable:
            converted = self._envelope_by_schema_text(data)
            if converted is not None:
                return converted
        try:
            decoded = loads(data)
        except ValueError as exc:  # Apache's message ends here too; the cause is chained
            raise DataError("Converting byte[] to Kafka Connect data failed due to "
                            "serialization error: ") from exc
        if not self.schemas_enable:
            return SchemaAndValue(None, decoded, plain_json=True)
        if not isinstance(decoded, dict) or decoded.keys() != {"schema", "payload"}:
            raise DataError(ENVELOPE_ERROR)
        if decoded["schema"] is None:
            return SchemaAndValue(None, decoded["payload"])
        schema, has_decimals = self._schema(decoded["schema"])
        payload = decoded["payload"]
        if has_decimals:  # a NUMERIC decimal may hold more digits than a double
            payload = json.loads(data, parse_float=decimal.Decimal)["payload"]
        return SchemaAndValue(schema, self._reader(schema)(payload))

    def to_connect_batch(self, topic: str, data: list[bytes | None]) -> ConvertedBatch:
        """Schemaless JSON a batch at once. When the items are known to decode (checked
        as one JSON array of raw values, without building a single one), the values are
        decoded only if read: a sink copying the JSON it received never builds them."""
        if self.schemas_enable:
            return self._envelopes(topic, data)
        schemas: list[Schema | None] = [None] * len(data)
        joined = _decodes(data)
        if joined is not None:
            return ConvertedBatch(schemas, partial(_decode_all, joined, cast(list[bytes], data)),
                                  plain_json=True)
        return ConvertedBatch(schemas, [None if item is None else loads(item) for item in data],
                              plain_json=True)

    def _envelope_by_schema_text(self, data: bytes) -> SchemaAndValue | None:
        """An envelope whose schema was seen before as the same JSON text: the schema is
        looked up by that text (it repeats in every record) and only the payload is
        decoded. None when that does not apply (not an envelope, no schema, decimals,
        what does not decode): ``to_connect`` then reads the whole envelope, and says
        what is wrong."""
        parts = _envelope_parts(data)
        if parts is None:
            return None
        try:
            schema = self._schema_by_text(bytes(parts.schema))
            if schema is None:
                return None
            payload = loads(bytes(parts.payload))
        except (ValueError, DataError):
            return None
        return SchemaAndValue(schema, self._reader(schema)(payload))

    def _schema_by_text(self, schema_text: bytes) -> Schema | None:
        """The schema of an envelope's schema JSON text, cached by that text; None for a
        null schema and for one holding a Decimal (a NUMERIC decimal may hold more digits
        than a double: the whole envelope is read exactly). Raises ValueError or
        DataError for a schema that does not read."""
        known = self._schemas_by_text.get(schema_text)
        if known is None:
            document = loads(schema_text)
            if document is None:
                return None
            if len(self._schemas_by_text) >= SCHEMA_JSON_CACHE:
                self._schemas_by_text.clear()
            known = self._schemas_by_text[schema_text] = self._schema(document)
        schema, has_decimals = known
        return None if has_decimals else schema

    def _envelopes(self, topic: str, data: list[bytes | None]) -> ConvertedBatch:
        """Envelopes a poll at once: each split into its schema and payload texts, the
        payloads of one schema text decoded together and read a field at a time. An item
        that does not go this way (a tombstone, not an envelope, a null schema, Decimals,
        what does not decode or read) is converted by ``to_connect``, which raises as it
        always did."""
        count = len(data)
        written = _written_with_one_schema(data)
        if written is not None:
            read = self._payloads(*written, count)
            if read is not None:
                return ConvertedBatch([read[0]] * count, read[1])
        try:  # every item an envelope: split in one call
            envelopes: list[_EnvelopeParts | None] = list(map(_ENVELOPE.decode,
                                                              cast(list[bytes], data)))
        except (msgspec.DecodeError, TypeError):  # TypeError: a tombstone
            envelopes = list(map(_envelope_parts, data))
        schemas: list[Schema | None] = [None] * count
        values: list[Any] = [None] * count
        by_item: list[int] = []
        for schema_text, rows in self._by_schema_text(envelopes, by_item).items():
            payloads = b",".join(map(_PAYLOAD_TEXT, map(envelopes.__getitem__, rows)))
            read = self._payloads(schema_text, b"[" + payloads + b"]", len(rows))
            if read is None:
                by_item.extend(rows)
            elif len(rows) == count:
                return ConvertedBatch([read[0]] * count, read[1])
            else:
                for row, value in zip(rows, read[1], strict=True):
                    schemas[row], values[row] = read[0], value
        for row in sorted(by_item):
            converted = self.to_connect(topic, data[row])
            schemas[row], values[row] = converted.schema, converted.value
        return ConvertedBatch(schemas, values)

    @staticmethod
    def _by_schema_text(envelopes: list[_EnvelopeParts | None],
                        by_item: list[int]) -> dict[bytes, Sequence[int]]:
        """The rows of the envelopes by their schema text; the rows of what is not an
        envelope are added to ``by_item``."""
        if envelopes and None not in envelopes:
            schema_texts = list(map(_SCHEMA_TEXT, envelopes))
            if schema_texts.count(schema_texts[0]) == len(envelopes):
                return {bytes(schema_texts[0]): range(len(envelopes))}
        by_schema_text: dict[bytes, list[int]] = {}
        rows = by_item
        previous_text: msgspec.Raw | None = None
        for row, envelope in enumerate(envelopes):
            if envelope is None:
                by_item.append(row)
                continue
            if envelope.schema != previous_text:  # runs of one schema are the rule
                previous_text = envelope.schema
                rows = by_schema_text.setdefault(bytes(envelope.schema), [])
            rows.append(row)
        return cast(dict[bytes, Sequence[int]], by_schema_text)

    def _payloads(self, schema_text: bytes, payloads: bytes,
                  count: int) -> tuple[Schema, list[Any]] | None:
        """The schema and values of ``count`` envelopes with this schema text and these
        payload texts (one JSON array of them), as ``_envelope_by_schema_text`` reads
        each; None when one of them would not be read that way."""
        try:
            schema = self._schema_by_text(schema_text)
            if schema is None:
                return None
            decoded = orjson.loads(payloads)
            if len(decoded) != count:
                return None
            reader = self._reader(schema)
            return schema, (reader.column(decoded) if isinstance(reader, StructReader)
                            else list(map(reader, decoded)))
        except Exception:  # ``to_connect`` raises it again, for its own item
            return None

    def _schema(self, document: Any) -> tuple[Schema, bool]:
        """The schema of an envelope, and whether it holds a Decimal anywhere."""
        cache_key = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        cached = self._schema_cache.get(cache_key)
        if cached is None:
            cached = self._schema_cache[cache_key] = (schema_from_json(document),
                                                      DECIMAL.encode() in cache_key)
        return cached

    def _reader(self, schema: Schema) -> Callable[[Any], Any]:
        """``to_connect_value`` for ``schema``, made once per schema object."""
        cached = self._readers.get(id(schema))
        if cached is None or cached[0] is not schema:
            if len(self._readers) >= SCHEMA_JSON_CACHE:
                self._readers.clear()
            cached = (schema, struct_reader(schema) if schema.type == Type.STRUCT
                      else partial(to_connect_value, schema))
            self._readers[id(schema)] = cached
        return cached[1]

    def from_connect(self, topic: str, schema: Schema | None, value: Any) -> bytes | None:
        if value is None and schema is None:
            return None
        if schema is None:
            payload = _schemaless_json(value)
        elif not self.schemas_enable and self.is_plain(schema):
            payload = value
        else:
            payload = self.to_json_value(schema, value)
        if self.schemas_enable:
            return b'{"schema":%b,"payload":%b}' % (self.schema_json(schema), dumps(payload))
        return dumps(payload)

    def schema_json(self, schema: Schema | None) -> bytes:
        """``schema_to_json`` of ``schema`` as bytes, cached by schema object."""
        if schema is None:
            return b"null"
        cached = self._schema_json.get(id(schema))
        if cached is None or cached[0] is not schema:
            if len(self._schema_json) >= SCHEMA_JSON_CACHE:
                self._schema_json.clear()
            cached = (schema, dumps(schema_to_json(schema)))
            self._schema_json[id(schema)] = cached
        return cached[1]

    def is_plain(self, schema: Schema) -> bool:
        """Whether values of ``schema`` are already their own JSON (the fast path)."""
        cached = self._plain_schemas.get(id(schema))
        if cached is None or cached[0] is not schema:
            cached = (schema, _plain(schema))
            self._plain_schemas[id(schema)] = cached
        return cached[1]

    def to_json_value(self, schema: Schema, value: Any) -> Any:
        """Connect data → the JSON-able value JsonConverter writes for it."""
        if value is None:
            if self.replace_null_with_default and schema.default is not None:
                value = schema.default
            elif schema.optional:
                return None
            else:
                raise DataError(f"Conversion error: null value for field that is required "
                                f"and has no default value (schema {schema.type})")
            if value is None:
                return None
        if schema.name == DECIMAL:
            scale = int((schema.parameters or {}).get(DECIMAL_SCALE, "0"))
            unscaled = int(decimal.Decimal(value).scaleb(scale, EXACT))
            if self.numeric_decimals:
                return decimal.Decimal(unscaled).scaleb(-scale, EXACT)  # dumps writes it exactly
            size = max(1, (unscaled.bit_length() + 8) // 8)
            return base64.b64encode(unscaled.to_bytes(size, "big", signed=True)).decode()
        if schema.name == TIMESTAMP and isinstance(value, dt.datetime):
            return timestamp_millis(value)
        if schema.name == DATE and isinstance(value, dt.date):
            return date_days(value)
        if schema.name == TIME and isinstance(value, dt.time):
            return time_millis(value)
        match schema.type:
            case Type.BYTES:
                return base64.b64encode(bytes(value)).decode()
            case Type.STRUCT:
                return {f.name: self.to_json_value(f.schema, value.get(f.name))
                        for f in schema.fields}
            case Type.ARRAY:
                assert schema.value_schema is not None
                return [self.to_json_value(schema.value_schema, v) for v in value]
            case Type.MAP:
                assert schema.key_schema is not None and schema.value_schema is not None
                if schema.key_schema.type == Type.STRING:
                    return {k: self.to_json_value(schema.value_schema, v)
                            for k, v in value.items()}
                return [[self.to_json_value(schema.key_schema, k),
                         self.to_json_value(schema.value_schema, v)] for k, v in value.items()]
            case _:
                return value


_RAW_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])
EXACT = decimal.Context(prec=decimal.MAX_PREC)
"""Rescaling a Decimal never rounds it (the default context keeps 28 digits)."""


class _EnvelopeParts(msgspec.Struct, forbid_unknown_fields=True):
    """An envelope's two members as their JSON texts (a repeated member: the last one,
    as JSON decoders read it)."""

    schema: msgspec.Raw
    payload: msgspec.Raw


_ENVELOPE = msgspec.json.Decoder(_EnvelopeParts)
_SCHEMA_TEXT = attrgetter("schema")
_PAYLOAD_TEXT = attrgetter("payload")


def _written_with_one_schema(data: list[bytes | None]) -> tuple[bytes, bytes] | None:
    """When every item is an envelope as JsonConverter writes it (no spaces, the schema
    first) with the first item's schema text: that text and the payloads as one JSON
    array, each payload checked to be one JSON value (``_decodes``), so that each item is
    that envelope. None otherwise."""
    if not data or None in data:
        return None
    first = _envelope_parts(data[0])
    if first is None:
        return None
    schema_text = bytes(first.schema)
    head = b'{"schema":' + schema_text + b',"payload":'
    items = cast(list[bytes], data)
    if not (all(map(bytes.startswith, items, repeat(head)))
            and all(map(bytes.endswith, items, repeat(b"}")))):
        return None
    payloads = _decodes(list(map(bytes.__getitem__, items, repeat(slice(len(head), -1)))))
    return None if payloads is None else (schema_text, payloads)


def _envelope_parts(data: bytes | None) -> _EnvelopeParts | None:
    """The parts of an envelope; None for what is not one (a tombstone, what does not
    decode, an object without exactly those two members)."""
    if data is None:
        return None
    try:
        return _ENVELOPE.decode(data)
    except msgspec.DecodeError:
        return None


def _decodes(data: list[bytes | None]) -> bytes | None:
    """The items as one JSON array when every item is one JSON document in UTF-8 (no
    tombstone), else None; checked as an array of raw values: each must span exactly
    its own bytes, so no two bad halves make a good pair."""
    if None in data:
        return None
    joined = b"[" + b",".join(data) + b"]"  # type: ignore[arg-type]
    try:
        spans = _RAW_ARRAY.decode(joined)
    except msgspec.DecodeError:
        return None
    if list(map(len, spans)) != list(map(len, data)):  # type: ignore[arg-type]
        return None
    if not joined.isascii():
        try:
            joined.decode()
        except UnicodeDecodeError:
            return None
    return joined


def _decode_all(joined: bytes, data: list[bytes]) -> list[Any]:
    """The items ``_decodes`` joined, decoded in one call."""
    try:
        values: list[Any] = orjson.loads(joined)
        return values
    except orjson.JSONDecodeError:  # what only ``loads`` reads (numbers beyond a double)
        return list(map(loads, data))


def loads(data: bytes) -> Any:
    """JSON bytes → Python values: orjson, or for numbers beyond a double, which orjson
    rejects and Apache's converter reads as BigDecimal or BigInteger, the standard
    library with exact numbers. Raises ValueError for what is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "number" not in str(exc):
            raise
        try:
            return json.loads(data.decode(), parse_float=_exact_float,
                              parse_constant=_no_constant)
        except ValueError:
            raise exc from None


def _exact_float(text: str) -> float | decimal.Decimal:
    number = float(text)
    return number if math.isfinite(number) else decimal.Decimal(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _plain(schema: Schema) -> bool:
    if schema.name in (DECIMAL, DATE, TIME, TIMESTAMP) or schema.type == Type.BYTES:
        return False
    if schema.default is not None or (schema.optional and schema.type == Type.STRUCT):
        return False
    if schema.type == Type.STRUCT:
        return all(_plain(f.schema) and f.schema.default is None for f in schema.fields)
    if schema.type == Type.MAP:
        assert schema.key_schema is not None and schema.value_schema is not None
        return schema.key_schema.type == Type.STRING and _plain(schema.value_schema)
    if schema.type == Type.ARRAY:
        assert schema.value_schema is not None
        return _plain(schema.value_schema)
    return True


def dumps(value: Any, option: int = 0) -> bytes:
    """JSON bytes of ``value`` (orjson ``option`` flags added); values JSON has no type
    for are written as ``json_default`` says, and any other raises DataError."""
    try:
        return orjson.dumps(value, default=json_default,
                            option=option | orjson.OPT_PASSTHROUGH_DATETIME)
    except TypeError as exc:
        raise DataError(f"Conversion error: {exc}") from exc


def json_default(value: Any) -> Any:
    """The JSON of a value without a JSON type: bytes as base64, a Timestamp, Date or
    Time as Kafka Connect's numbers, and a Decimal as an exact number written as Java's
    ``BigDecimal.toString`` writes it (``decimal.format=NUMERIC``, and Jackson in
    Confluent's storage formats)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode()
    if isinstance(value, dt.datetime):
        return timestamp_millis(value)
    if isinstance(value, dt.date):
        return date_days(value)
    if isinstance(value, dt.time):
        return time_millis(value)
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return orjson.Fragment(str(value))  # the same scientific notation rules as Java's
    # like Apache: a value without a Connect type cannot be written
    raise TypeError(f"{type(value).__name__} does not have a corresponding schema type")


def _schemaless_json(value: Any) -> Any:
    """Schemaless data as Apache writes it: a map with a key that is not a string as an
    array of ``[key, value]`` pairs; a Decimal, Date or Time, which only a schema gives a
    Connect type, is refused (a timestamp is written as its milliseconds)."""
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {key: _schemaless_json(item) for key, item in value.items()}
        return [[_schemaless_json(key), _schemaless_json(item)] for key, item in value.items()]
    if isinstance(value, list | tuple):
        return [_schemaless_json(item) for item in value]
    if isinstance(value, decimal.Decimal | dt.date | dt.time) and \
            not isinstance(value, dt.datetime):
        raise DataError(f"Conversion error: {type(value).__name__} does not have a "
                        "corresponding schema type")
    return value


def to_connect_value(schema: Schema, value: Any) -> Any:
    """JSON payload → Connect data for ``schema`` (as Apache's JsonConverter reads it)."""
    if value is None:
        if schema.default is not None:
            return schema.default
        if schema.optional:
            return None
        raise DataError(f"Invalid null value for required {schema.type} field")
    if schema.name == DECIMAL:
        scale = int((schema.parameters or {}).get(DECIMAL_SCALE, "0"))
        if isinstance(value, str):
            unscaled = int.from_bytes(base64.b64decode(value), "big", signed=True)
            return decimal.Decimal(unscaled).scaleb(-scale, EXACT)
        return decimal.Decimal(str(value))
    if schema.name == TIMESTAMP:
        return EPOCH + dt.timedelta(milliseconds=int(value))
    if schema.name == DATE:
        return EPOCH_DATE + dt.timedelta(days=int(value))
    if schema.name == TIME:
        ms = int(value)
        return dt.time(ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60, ms % 1000 * 1000)
    match schema.type:
        case Type.INT8 | Type.INT16 | Type.INT32 | Type.INT64:
            if isinstance(value, bool) or not isinstance(value, int):
                raise DataError(f"Expected {schema.type} but got {type(value).__name__}")
            return value
        case Type.FLOAT32 | Type.FLOAT64:
            if isinstance(value, bool) or not isinstance(value, int | float | decimal.Decimal):
                raise DataError(f"Expected {schema.type} but got {type(value).__name__}")
            return float(value)
        case Type.BOOLEAN:
            if not isinstance(value, bool):
                raise DataError(f"Expected boolean but got {type(value).__name__}")
            return value
        case Type.STRING:
            if not isinstance(value, str):
                raise DataError(f"Expected string but got {type(value).__name__}")
            return value
        case Type.BYTES:
            return base64.b64decode(value)
        case Type.ARRAY:
            assert schema.value_schema is not None
            return [to_connect_value(schema.value_schema, v) for v in value]
        case Type.MAP:
            assert schema.key_schema is not None and schema.value_schema is not None
            if isinstance(value, dict):
                return {k: to_connect_value(schema.value_schema, v) for k, v in value.items()}
            return {to_connect_value(schema.key_schema, k): to_connect_value(schema.value_schema, v)
                    for k, v in value}
        case Type.STRUCT:
            if not isinstance(value, dict):
                raise DataError("Structs should be encoded as JSON objects")
            return {f.name: to_connect_value(f.schema, value.get(f.name)) for f in schema.fields}
    raise DataError(f"Unknown schema type {schema.type}")


_EXACT_TYPES: dict[Type, type] = {
    Type.INT8: int, Type.INT16: int, Type.INT32: int, Type.INT64: int, Type.FLOAT32: float,
    Type.FLOAT64: float, Type.BOOLEAN: bool, Type.STRING: str}
"""The JSON type a field of a plain schema type holds, which ``to_connect_value`` returns
unchanged."""


class StructReader:
    """``to_connect_value`` for a struct ``schema``: a field whose item has the exact
    JSON type its plain schema type reads unchanged is copied, any other goes through
    ``to_connect_value`` (defaults, logical types, errors: all as before)."""

    __slots__ = ("_names", "_plan", "schema")

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self._plan = [(f.name, _EXACT_TYPES.get(f.schema.type) if f.schema.name is None
                       else None, f.schema) for f in schema.fields]
        self._names = tuple(f.name for f in schema.fields)

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, dict):  # a null, or not a struct: as it always did
            return to_connect_value(self.schema, value)
        get = value.get
        return {name: item if type(item := get(name)) is exact
                else to_connect_value(field_schema, item)
                for name, exact, field_schema in self._plan}

    def column(self, values: list[Any]) -> list[Any]:
        """Each of ``values`` (decoded JSON nobody else holds) read as ``self(value)``
        reads it, a field of all at a time: a field whose items all have its exact type is
        copied as a whole, and objects that hold just the fields, in order, each of its
        exact type, are already what they read as and are returned as they are."""
        if set(map(type, values)) != {dict}:
            return list(map(self, values))
        if set(map(tuple, values)) == {self._names}:
            fields = zip(*map(dict.values, values), strict=True) if self._names else ()
            if all(exact is not None and set(map(type, items)) == {exact}
                   for (_, exact, _), items in zip(self._plan, fields, strict=True)):
                return values
        columns = []
        for name, exact, field_schema in self._plan:
            items = list(map(dict.get, values, repeat(name)))
            if exact is None or set(map(type, items)) != {exact}:
                items = [item if type(item) is exact else to_connect_value(field_schema, item)
                         for item in items]
            columns.append(items)
        if not columns:
            return [{} for _ in values]
        return list(map(dict, map(zip, repeat(self._names), zip(*columns, strict=True))))


def struct_reader(schema: Schema) -> StructReader:
    """The reader of a struct ``schema``'s values (see ``StructReader``)."""
    return StructReader(schema)


def schema_from_json(document: Any) -> Schema:
    """JsonConverter's schema JSON → Schema."""
    if not isinstance(document, dict) or "type" not in document:
        raise DataError('Schema must contain "type" field')
    try:
        name = str(document["type"])
        kind = Type(JSON_TYPE_NAMES.get(name, name))
    except ValueError:
        raise DataError(f"Unknown schema type: {document['type']}") from None
    fields: tuple[Field, ...] = ()
    key_schema = value_schema = None
    if kind == Type.STRUCT:
        fields = tuple(Field(f["field"], i, schema_from_json(f))
                       for i, f in enumerate(document.get("fields", [])))
    elif kind == Type.ARRAY:
        value_schema = schema_from_json(document.get("items"))
    elif kind == Type.MAP:
        key_schema = schema_from_json(document.get("keys"))
        value_schema = schema_from_json(document.get("values"))
    schema = Schema(
        kind,
        optional=bool(document.get("optional", False)),
        name=document.get("name"),
        version=document.get("version"),
        doc=document.get("doc"),
        parameters=document.get("parameters"),
        fields=fields,
        key_schema=key_schema,
        value_schema=value_schema,
    )
    if document.get("default") is not None:
        schema = schema.with_(default=to_connect_value(schema, document["default"]))
    return schema


SCHEMA_JSON_CACHE = 1000
"""Schemas whose JSON a converter keeps (more are rare: one per table and key/value)."""


def schema_to_json(schema: Schema) -> dict[str, Any]:
    """Schema → the JSON JsonConverter writes in envelopes (Apache's key order)."""
    out: dict[str, Any] = {"type": TYPE_JSON_NAMES.get(schema.type, schema.type.value)}
    if schema.type == Type.STRUCT:
        out["fields"] = [{**schema_to_json(f.schema), "field": f.name} for f in schema.fields]
    elif schema.type == Type.ARRAY:
        assert schema.value_schema is not None
        out["items"] = schema_to_json(schema.value_schema)
    elif schema.type == Type.MAP:
        assert schema.key_schema is not None and schema.value_schema is not None
        out["keys"] = schema_to_json(schema.key_schema)
        out["values"] = schema_to_json(schema.value_schema)
    out["optional"] = schema.optional
    out.update(schema.metadata())
    if schema.default is not None:
        out["default"] = JsonConverter({"schemas.enable": "false"}, False).to_json_value(
            schema.with_(default=None), schema.default)
    return out
