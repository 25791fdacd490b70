"""Confluent's JsonSchemaConverter: JSON with its JSON Schema in a schema registry.

Wire format: a zero magic byte, the 4-byte big-endian schema id, then the value as UTF-8
JSON. Connect schemas map to JSON Schema as Confluent's ``JsonSchemaData`` maps them:
integers and numbers carry ``connect.type`` (int8 ... float64, bytes, map), struct
fields ``connect.index`` (their order), names are ``title``, docs ``description``,
optional is a ``oneOf`` with ``{"type": "null"}``, maps with keys that are not strings
are arrays of ``{"key", "value"}`` objects, and other unions read as
``io.confluent.connect.json.OneOf`` structs. Schemas written by others (Python, Java,
hand-written) read too: ``$ref`` to local definitions and to registry references,
``enum``/``const``, ``allOf`` objects, type lists.

Values are JsonConverter's (``converters/json``): bytes and decimals as base64, dates,
times and timestamps as numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import orjson

from kanal_worker.api import DataError, Schema, SchemaAndValue, Type, setting
from kanal_worker.api.schema import DECIMAL, Field
from kanal_worker.converters.json import JsonConverter, dumps, loads
from kanal_worker.converters.json import to_connect_value as json_to_connect_value
from kanal_worker.converters.registry import (
    HEADER,
    Lru,
    RegistryConverter,
    RegistryConverterSettings,
    RegistrySchema,
    SchemaRegistry,
)

NAMESPACE = "io.confluent.connect.json"
ENUM = f"{NAMESPACE}.Enum"
"""The parameter marking a string read from a JSON Schema ``enum``; ``ENUM.<value>``
lists the values."""
ONE_OF = f"{NAMESPACE}.OneOf"
"""The name of the struct a ``oneOf`` / ``anyOf`` (other than with null) reads as."""
NULL_MARKER = "<NULL>"
_CONNECT_TYPES = {Type.INT8: ("integer", "int8"), Type.INT16: ("integer", "int16"),
                  Type.INT32: ("integer", "int32"), Type.INT64: ("integer", "int64"),
                  Type.FLOAT32: ("number", "float32"), Type.FLOAT64: ("number", "float64")}
_FROM_CONNECT_TYPE = {connect: kind for kind, (_, connect) in _CONNECT_TYPES.items()}
_JSON_TYPES = {"integer": Type.INT64, "number": Type.FLOAT64, "boolean": Type.BOOLEAN,
               "string": Type.STRING}


class JsonSchemaConverterSettings(RegistryConverterSettings):
    decimal_format: Literal["BASE64", "NUMERIC"] = setting(
        "BASE64", key="decimal.format",
        doc="How Decimal values are written: BASE64 bytes (a JSON string) or NUMERIC "
            "numbers.")
    use_optional_for_nonrequired: bool = setting(
        False, key="use.optional.for.nonrequired",
        doc="Read properties an object schema does not list as required as optional "
            "fields (a record may leave them out).")


class JsonSchemaConverter(RegistryConverter):
    """``io.confluent.connect.json.JsonSchemaConverter``, wire compatible with Confluent's."""

    settings = JsonSchemaConverterSettings
    aliases = ("io.confluent.connect.json.JsonSchemaConverter",)
    schema_type = "JSON"

    def __init__(self, config: Mapping[str, str], is_key: bool,
                 registry: SchemaRegistry | None = None) -> None:
        super().__init__(config, is_key, registry)
        options: JsonSchemaConverterSettings = self.options  # type: ignore[assignment]
        self.numeric_decimals = options.decimal_format == "NUMERIC"
        self.optional_unless_required = options.use_optional_for_nonrequired
        self.values = JsonConverter({"schemas.enable": "false",
                                     "decimal.format": options.decimal_format}, is_key)
        self._writers: Lru[tuple[str, int], tuple[Schema, bytes]] = Lru(
            self.options.schemas_cache_config)

    # -- writing -----------------------------------------------------------------------

    def from_connect(self, topic: str, schema: Schema | None, value: Any) -> bytes | None:
        if value is None and (schema is None or schema.optional):
            return None
        if schema is None:
            raise DataError("JsonSchemaConverter needs a schema to write a value; use "
                            "JsonConverter for schemaless data")
        header = self._header(topic, schema)
        return header + dumps(self._json_value(schema, value))

    def _header(self, topic: str, schema: Schema) -> bytes:
        key = (topic, id(schema))
        cached = self._writers.get(key)
        if cached is None or cached[0] is not schema:
            document = to_json_schema(schema, self.numeric_decimals)
            text = json.dumps(document, separators=(",", ":"))
            schema_id, _ = self.writer_schema(topic, RegistrySchema(text, "JSON"),
                                              schema.name if schema.type == Type.STRUCT
                                              else None)
            cached = self._writers.put(key, (schema, self.header(schema_id)))
        return cached[1]

    def _json_value(self, schema: Schema, value: Any) -> Any:
        """Connect data → JSON: JsonConverter's values, but maps with keys that are not
        strings as ``{"key", "value"}`` objects and union structs as their set field."""
        if value is None or schema.type not in (Type.STRUCT, Type.ARRAY, Type.MAP):
            return self.values.to_json_value(schema, value)
        match schema.type:
            case Type.STRUCT if schema.name == ONE_OF:
                chosen = next((f for f in schema.fields if value.get(f.name) is not None), None)
                return None if chosen is None else \
                    self._json_value(chosen.schema, value[chosen.name])
            case Type.STRUCT:
                if not isinstance(value, dict):
                    raise DataError(f"Expected a struct but got {type(value).__name__}")
                return {f.name: self._json_value(f.schema, value.get(f.name))
                        for f in schema.fields}
            case Type.ARRAY:
                assert schema.value_schema is not None
                return [self._json_value(schema.value_schema, v) for v in value]
        assert schema.key_schema is not None and schema.value_schema is not None
        if _string_keys(schema):
            return {k: self._json_value(schema.value_schema, v) for k, v in value.items()}
        return [{"key": self._json_value(schema.key_schema, k),
                 "value": self._json_value(schema.value_schema, v)} for k, v in value.items()]

    # -- reading -----------------------------------------------------------------------

    def to_connect(self, topic: str, data: bytes | None) -> SchemaAndValue:
        if data is None:
            return SchemaAndValue(None, None)
        schema_id = self.read_header(topic, data)
        schema = self.reader(schema_id, self._connect_schema)
        try:
            document = loads(data[HEADER.size:])
        except ValueError as exc:
            raise DataError(f"Failed to deserialize JSON of topic {topic} (schema id "
                            f"{schema_id}): {exc}") from exc
        return SchemaAndValue(schema, self._connect_value(schema, document))

    def _connect_schema(self, registered: RegistrySchema) -> Schema:
        if registered.schema_type != "JSON":
            raise DataError(f"The record's schema is {registered.schema_type or 'AVRO'}, not "
                            f"JSON Schema; use the converter of that format as "
                            f"{self.side}.converter")
        references = {name: orjson.loads(text) for name, text in
                      self.registry.references(registered).items()}
        return to_connect_schema(orjson.loads(registered.schema_str), references,
                                 self.optional_unless_required)

    def _connect_value(self, schema: Schema, value: Any) -> Any:
        if value is None or schema.type not in (Type.STRUCT, Type.ARRAY, Type.MAP):
            return json_to_connect_value(schema, value)
        match schema.type:
            case Type.STRUCT if schema.name == ONE_OF:
                chosen = _branch(schema, value)
                return {f.name: self._connect_value(f.schema, value) if f is chosen else None
                        for f in schema.fields}
            case Type.STRUCT:
                if not isinstance(value, dict):
                    raise DataError("Structs should be encoded as JSON objects, but found "
                                    f"{type(value).__name__}")
                return {f.name: self._field_value(schema, f, value.get(f.name))
                        for f in schema.fields}
            case Type.ARRAY:
                assert schema.value_schema is not None
                return [self._connect_value(schema.value_schema, v) for v in value]
        assert schema.key_schema is not None and schema.value_schema is not None
        if isinstance(value, dict):
            return {k: self._connect_value(schema.value_schema, v) for k, v in value.items()}
        return {self._connect_value(schema.key_schema, e.get("key")):
                self._connect_value(schema.value_schema, e.get("value")) for e in value}

    def _field_value(self, struct: Schema, field: Field, value: Any) -> Any:
        if value is None and not field.schema.optional and field.schema.default is None:
            raise DataError(
                f"Field {field.name} of {struct.name or 'a struct'} is required and the record "
                "has no value for it; if the JSON Schema does not list it as required, set "
                "use.optional.for.nonrequired=true, or make it a oneOf with null")
        return self._connect_value(field.schema, value)


def _string_keys(schema: Schema) -> bool:
    return schema.key_schema is not None and schema.key_schema.type == Type.STRING and \
        not schema.key_schema.optional


def _branch(schema: Schema, value: Any) -> Field:
    """The field of a union struct ``value`` belongs to, as JsonSchemaData picks it: the
    first of the value's JSON type, else the struct sharing most property names."""
    for field in schema.fields:
        if _is_instance(field.schema, value):
            return field
    structs = [(len({g.name for g in f.schema.fields} & set(value)), f) for f in schema.fields
               if f.schema.type == Type.STRUCT and isinstance(value, dict)]
    best = max(structs, key=lambda pair: pair[0], default=(0, None))
    if best[1] is None or best[0] == 0:
        raise DataError(f"Did not find matching oneof field for data: a "
                        f"{type(value).__name__} matches none of "
                        f"{', '.join(str(f.schema.type) for f in schema.fields)}")
    return best[1]


def _is_instance(schema: Schema, value: Any) -> bool:
    if isinstance(value, bool):
        return schema.type == Type.BOOLEAN
    match schema.type:
        case Type.INT8 | Type.INT16 | Type.INT32 | Type.INT64:
            return isinstance(value, int)
        case Type.FLOAT32 | Type.FLOAT64:
            return isinstance(value, int | float)
        case Type.STRING:
            return isinstance(value, str)
        case Type.BYTES:
            return schema.name == DECIMAL and isinstance(value, int | float)
        case Type.ARRAY:
            return isinstance(value, list)
        case Type.MAP:
            return isinstance(value, dict | list)
    return False


# -- schemas: Connect → JSON Schema ----------------------------------------------------


def to_json_schema(schema: Schema, numeric_decimals: bool = False,
                   index: int | None = None, in_union: bool = False) -> dict[str, Any]:
    """The JSON Schema of a Connect schema, as Confluent's JsonSchemaData writes it.
    ``index`` is the field's position (``connect.index``); a union's branches are never
    optional themselves (``in_union``)."""
    document: dict[str, Any]
    if schema.type == Type.STRUCT and schema.name == ONE_OF:
        branches = [to_json_schema(f.schema.with_(optional=False), numeric_decimals, f.index,
                                   in_union=True) for f in schema.fields]
        document = {"oneOf": [{"type": "null"}, *branches] if schema.optional else branches}
        return document if index is None else {**document, "connect.index": index}
    document = _json_type(schema, numeric_decimals)
    if schema.name is not None:
        document["title"] = schema.name
    if schema.version is not None:
        document["connect.version"] = schema.version
    if schema.doc is not None:
        document["description"] = schema.doc
    parameters = {k: v for k, v in (schema.parameters or {}).items()
                  if not k.startswith(NAMESPACE)}
    if parameters:
        document["connect.parameters"] = parameters
    if schema.default is not None:
        document["default"] = JsonConverter({"schemas.enable": "false"}, False) \
            .to_json_value(schema, schema.default)
    if schema.optional and not in_union:
        document = {"oneOf": [{"type": "null"}, document]}
    return document if index is None else {**document, "connect.index": index}


def _json_type(schema: Schema, numeric_decimals: bool) -> dict[str, Any]:
    if schema.type in _CONNECT_TYPES:
        kind, connect_type = _CONNECT_TYPES[schema.type]
        return {"type": kind, "connect.type": connect_type}
    match schema.type:
        case Type.BOOLEAN:
            return {"type": "boolean"}
        case Type.STRING if ENUM in (schema.parameters or {}):
            return {"enum": [None if key == f"{ENUM}.{NULL_MARKER}" else key[len(ENUM) + 1:]
                             for key in (schema.parameters or {})
                             if key.startswith(ENUM + ".")]}
        case Type.STRING:
            return {"type": "string"}
        case Type.BYTES:
            numeric = numeric_decimals and schema.name == DECIMAL
            return {"type": "number" if numeric else "string", "connect.type": "bytes"}
        case Type.ARRAY:
            assert schema.value_schema is not None
            return {"type": "array", "items": to_json_schema(schema.value_schema,
                                                             numeric_decimals)}
        case Type.MAP:
            assert schema.key_schema is not None and schema.value_schema is not None
            values = to_json_schema(schema.value_schema, numeric_decimals)
            if _string_keys(schema):
                return {"type": "object", "additionalProperties": values,
                        "connect.type": "map"}
            entry = {"type": "object", "properties": {
                "key": to_json_schema(schema.key_schema, numeric_decimals, 0),
                "value": to_json_schema(schema.value_schema, numeric_decimals, 1)}}
            return {"type": "array", "items": entry, "connect.type": "map"}
    return {"type": "object", "properties": {
        f.name: to_json_schema(f.schema, numeric_decimals, f.index) for f in schema.fields}}


# -- schemas: JSON Schema → Connect ----------------------------------------------------


def to_connect_schema(document: Any, references: Mapping[str, Any] | None = None,
                      optional_unless_required: bool = False) -> Schema:
    """The Connect schema of a JSON Schema, as Confluent's JsonSchemaData reads it.
    ``references`` are the documents ``$ref`` may name (registry references, by name);
    ``optional_unless_required`` is ``use.optional.for.nonrequired``."""
    return _Reader(document, references or {}, optional_unless_required).schema(document)


class _Reader:
    """One schema document read to a Connect schema, resolving ``$ref`` as it goes."""

    def __init__(self, root: Any, references: Mapping[str, Any], optional: bool) -> None:
        self.root = root
        self.references = references
        self.optional_unless_required = optional
        self.resolving: list[str] = []

    def schema(self, node: Any, force_optional: bool = False, base: Any = None) -> Schema:
        base = self.root if base is None else base
        if node is True or node == {}:
            raise DataError("JSON Schemas that allow any value have no Connect schema; give "
                            "the property a type")
        if not isinstance(node, dict):
            raise DataError(f"Unsupported JSON Schema {node!r}")
        if "$ref" in node:
            return self._reference(node["$ref"], force_optional, base)
        result = self._of(node, base)
        if force_optional and not result.optional:
            result = result.with_(optional=True)
        return result

    def _reference(self, ref: str, force_optional: bool, base: Any) -> Schema:
        if ref in self.resolving:
            raise DataError(f"JSON Schema $ref {ref} refers to itself; recursive schemas "
                            "have no Connect schema")
        document, _, pointer = ref.partition("#")
        if document:
            if document not in self.references:
                raise DataError(f"JSON Schema $ref {ref} names no reference of the schema "
                                f"(references: {', '.join(self.references) or 'none'})")
            base = self.references[document]
        target = base
        for part in filter(None, pointer.split("/")):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise DataError(f"JSON Schema $ref {ref} points at nothing")
            target = target[part]
        self.resolving.append(ref)
        try:
            return self.schema(target, force_optional, base)
        finally:
            self.resolving.pop()

    def _of(self, node: dict[str, Any], base: Any) -> Schema:
        for combinator in ("oneOf", "anyOf"):
            if combinator in node:
                return self._with_metadata(self._union(node[combinator], base), node)
        if "allOf" in node:
            return self._with_metadata(self._all_of(node["allOf"], base), node)
        if "enum" in node or "const" in node:
            symbols = node["enum"] if "enum" in node else [node["const"]]
            parameters = {ENUM: "", **{f"{ENUM}.{NULL_MARKER if s is None else s}":
                                       NULL_MARKER if s is None else str(s) for s in symbols}}
            return self._with_metadata(Schema(Type.STRING, parameters=parameters), node)
        kind = node.get("type", "object" if "properties" in node else None)
        if isinstance(kind, list):
            branches = [{**node, "type": k} for k in kind]
            return self._with_metadata(self._union(branches, base), {})
        connect_type = node.get("connect.type")
        if kind in ("integer", "number") and connect_type in _FROM_CONNECT_TYPE:
            schema = Schema(_FROM_CONNECT_TYPE[connect_type])
        elif connect_type == "bytes":
            schema = Schema(Type.BYTES)
        elif kind in _JSON_TYPES:
            schema = Schema(_JSON_TYPES[kind])
        elif kind == "array":
            schema = self._array(node, base)
        elif kind == "object" and connect_type == "map":
            values = node.get("additionalProperties")
            schema = Schema(Type.MAP, key_schema=Schema(Type.STRING),
                            value_schema=self.schema(values, base=base))
        elif kind == "object":
            schema = self._struct(node.get("properties", {}), node.get("required", []), base)
        else:
            raise DataError(f"Unsupported JSON Schema type {kind!r}")
        return self._with_metadata(schema, node)

    def _array(self, node: dict[str, Any], base: Any) -> Schema:
        items = node.get("items")
        if items is None:
            raise DataError("Array schema did not specify the items type")
        if node.get("connect.type") == "map" and isinstance(items, dict) and \
                "properties" in items:
            properties = items["properties"]
            return Schema(Type.MAP, key_schema=self.schema(properties["key"], base=base),
                          value_schema=self.schema(properties["value"], base=base))
        return Schema(Type.ARRAY, value_schema=self.schema(items, base=base))

    def _struct(self, properties: Mapping[str, Any], required: list[str],
                base: Any) -> Schema:
        ordered = sorted(enumerate(properties.items()),
                         key=lambda item: (_index(item[1][1], item[0]), item[0]))
        fields = tuple(Field(name, i, self.schema(
            node, self.optional_unless_required and name not in required, base))
            for i, (_, (name, node)) in enumerate(ordered))
        return Schema(Type.STRUCT, fields=fields)

    def _union(self, branches: list[Any], base: Any) -> Schema:
        nullable = any(_is_null(b) for b in branches)
        others = [b for b in branches if not _is_null(b)]
        if len(others) == 1:
            return self.schema(others[0], nullable, base)
        fields = tuple(Field(f"{ONE_OF}.field.{i}", i, self.schema(b, True, base))
                       for i, b in enumerate(others))
        return Schema(Type.STRUCT, name=ONE_OF, optional=nullable, fields=fields)

    def _all_of(self, parts: list[Any], base: Any) -> Schema:
        """allOf: the properties of its object parts together, else its one part that
        says what the value is (a string with a format, a number, an enum, ...)."""
        properties: dict[str, Any] = {}
        required: list[str] = []
        for part in parts:
            resolved = self._resolve(part, base)
            properties.update(resolved.get("properties", {}))
            required.extend(resolved.get("required", []))
        if properties:
            return self._struct(properties, required, base)
        typed = [p for p in parts if isinstance(p, dict) and
                 {"type", "enum", "const", "$ref", "oneOf", "anyOf"} & p.keys()]
        if not typed:
            raise DataError("Unsupported allOf: none of its parts gives a type")
        return self.schema(typed[0], base=base)

    def _resolve(self, node: Any, base: Any) -> dict[str, Any]:
        while isinstance(node, dict) and "$ref" in node:
            document, _, pointer = node["$ref"].partition("#")
            node = self.references.get(document, base) if document else base
            for part in filter(None, pointer.split("/")):
                node = node.get(part, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}

    @staticmethod
    def _with_metadata(schema: Schema, node: Mapping[str, Any]) -> Schema:
        name = node.get("title")
        if name is not None and schema.name is None:
            schema = schema.with_(name=name)
        changes: dict[str, Any] = {}
        if "connect.version" in node:
            changes["version"] = int(node["connect.version"])
        if "description" in node:
            changes["doc"] = node["description"]
        if "connect.parameters" in node:
            changes["parameters"] = {**(schema.parameters or {}), **node["connect.parameters"]}
        schema = schema.with_(**changes) if changes else schema
        if node.get("default") is not None:
            schema = schema.with_(default=json_to_connect_value(schema, node["default"]))
        return schema


def _is_null(node: Any) -> bool:
    return isinstance(node, dict) and node.get("type") == "null"


def _index(node: Any, position: int) -> int:
    """A property's place among the struct's fields: its ``connect.index``, else its
    position in the schema."""
    if isinstance(node, dict) and isinstance(node.get("connect.index"), int):
        return int(node["connect.index"])
    return position
