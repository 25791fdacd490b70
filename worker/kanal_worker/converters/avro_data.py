"""Confluent's AvroData: Connect schemas and values as Avro and back.

Kanal's one Avro mapping: the AvroConverter and the storage formats (Avro, Parquet) use
it. Connect schemas map to Avro the way Confluent's ``AvroData`` maps them (int8/int16 as
``int`` with ``connect.type``, logical Decimal/Date/Time/Timestamp as Avro logical types,
optional as a union with null, maps with non-string keys as arrays of ``MapEntry``
records, ``connect.*`` properties for names, versions, docs and parameters, Avro enums as
strings with ``io.confluent.connect.avro.Enum`` parameters, other unions as
``io.confluent.connect.avro.Union`` structs), so data written by either reads back with
the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import fastavro

from kanal_worker.api import DataError, Schema, Type
from kanal_worker.api.schema import DATE, DECIMAL, DECIMAL_SCALE, TIME, TIMESTAMP, Field

AVRO_NAMESPACE = "io.confluent.connect.avro"
DEFAULT_RECORD_NAME = "ConnectDefault"
DECIMAL_PRECISION = "connect.decimal.precision"
DEFAULT_DECIMAL_PRECISION = 64
ENUM = f"{AVRO_NAMESPACE}.Enum"
"""The parameter naming the Avro enum a string came from; ``ENUM.<symbol>`` lists symbols."""
UNION = f"{AVRO_NAMESPACE}.Union"
"""The name of the struct an Avro union (other than [null, T]) reads as: one field a branch."""

_PRIMITIVES = {Type.INT32: "int", Type.INT64: "long", Type.FLOAT32: "float",
               Type.FLOAT64: "double", Type.BOOLEAN: "boolean", Type.STRING: "string",
               Type.BYTES: "bytes"}
_FROM_AVRO = {"int": Type.INT32, "long": Type.INT64, "float": Type.FLOAT32,
              "double": Type.FLOAT64, "boolean": Type.BOOLEAN, "string": Type.STRING,
              "bytes": Type.BYTES}


# -- schemas: Connect → Avro -------------------------------------------------------------


def to_avro_schema(schema: Schema, metadata: bool = True, enhanced: bool = False) -> Any:
    """The Avro schema of a Connect schema, as Confluent's AvroData maps it; optional is a
    union with null. ``metadata`` adds the ``connect.*`` properties (``connect.meta.data``),
    ``enhanced`` writes strings read from Avro enums as those enums
    (``enhanced.avro.schema.support``)."""
    return _field_schema(schema, metadata, _Names(enhanced))


class _Names:
    """The records of one Avro schema. An equal Connect schema seen again refers to the
    record already defined, as AvroData does; a different one under a name already taken
    is numbered (``ConnectDefault``, ``ConnectDefault2``, ...) so the schema stays valid."""

    def __init__(self, enhanced: bool) -> None:
        self.enhanced = enhanced
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
    if names.enhanced and schema.type == Type.STRING and ENUM in (schema.parameters or {}):
        return _avro_enum(schema, names, props)
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
        case Type.STRUCT if schema.name == UNION:
            return [_avro_schema(f.schema, metadata, names) for f in schema.fields]
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


def _avro_enum(schema: Schema, names: _Names, props: dict[str, Any]) -> Any:
    parameters = schema.parameters or {}
    reference = names.reference(schema)
    if reference is not None:
        return reference
    namespace, _, name = parameters[ENUM].rpartition(".")
    symbols = [key[len(ENUM) + 1:] for key in parameters if key.startswith(ENUM + ".")]
    enum: dict[str, Any] = {"type": "enum", "name": names.define(schema, name, namespace),
                            "symbols": symbols}
    if namespace:
        enum["namespace"] = namespace
    return {**enum, **props}


def _field_schema(schema: Schema, metadata: bool, names: _Names) -> Any:
    avro = _avro_schema(schema, metadata, names)
    if isinstance(avro, list):  # a union: null is one more branch
        return ["null", *avro] if schema.optional else avro
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


def to_connect_schema(avro: Any, enhanced: bool = False,
                      named: Mapping[str, Any] | None = None) -> Schema:
    """The Connect schema of an Avro schema; a record used again by name (as AvroData
    writes a reused one) reads as the record it names, and so does one of ``named`` (the
    parsed named types of referenced schemas). ``enhanced`` names the fields of union
    structs after the full names of records and enums (``enhanced.avro.schema.support``)."""
    try:
        # expand_schema without its parse hints, and with the referenced named types
        expanded = fastavro.parse_schema(avro, dict(named or {}), expand=True,
                                         _write_hint=False)
    except (fastavro.schema.SchemaParseException, fastavro.schema.UnknownType) as exc:
        raise DataError(f"Unsupported Avro schema: {exc}") from None
    return _connect_schema(expanded, enhanced)


def _connect_schema(avro: Any, enhanced: bool = False) -> Schema:
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) == 1:
            return _connect_schema(branches[0], enhanced).with_(optional=len(avro) > 1)
        fields = tuple(Field(_branch_name(b, enhanced), i,
                             _connect_schema(b, enhanced).with_(optional=True))
                       for i, b in enumerate(branches))
        if len({f.name for f in fields}) < len(fields):
            raise DataError("Multiple union schemas map to the Connect union field name")
        return Schema(Type.STRUCT, name=UNION, optional=len(branches) < len(avro),
                      fields=fields)
    if isinstance(avro, str):
        if avro not in _FROM_AVRO:
            raise DataError(f"Unsupported Avro type {avro}")
        return Schema(_FROM_AVRO[avro])
    kind = avro["type"]
    if isinstance(kind, list | dict):
        return _connect_schema(kind, enhanced)
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
        fields = tuple(Field(f["name"], i, _connect_field(f, enhanced)) for i, f in
                       enumerate(avro["fields"]))
        return Schema(Type.STRUCT, name=name, version=version, doc=doc, parameters=parameters,
                      fields=fields)
    if kind == "array":
        items = avro["items"]
        if isinstance(items, dict) and items.get("type") == "record" and \
                str(items.get("name", "")).rpartition(".")[2].startswith("MapEntry") and \
                [f["name"] for f in items["fields"]] == ["key", "value"]:
            key, value = (_connect_field(f, enhanced) for f in items["fields"])
            return Schema(Type.MAP, name=name, version=version, doc=doc,
                          parameters=parameters, key_schema=key, value_schema=value)
        return Schema(Type.ARRAY, name=name, version=version, doc=doc, parameters=parameters,
                      value_schema=_connect_schema(items, enhanced))
    if kind == "map":
        return Schema(Type.MAP, name=name, version=version, doc=doc, parameters=parameters,
                      key_schema=Schema(Type.STRING),
                      value_schema=_connect_schema(avro["values"], enhanced))
    if kind == "enum":
        symbols = {f"{ENUM}.{symbol}": symbol for symbol in avro["symbols"]}
        return Schema(Type.STRING, name=name or avro.get("name"), version=version, doc=doc,
                      parameters={**(parameters or {}), ENUM: avro["name"], **symbols})
    if kind == "fixed":
        return Schema(Type.BYTES, name=name, version=version, doc=doc, parameters=parameters)
    connect_type = avro.get("connect.type")
    type_ = Type(connect_type) if connect_type in ("int8", "int16") else _FROM_AVRO.get(kind)
    if type_ is None:
        raise DataError(f"Unsupported Avro type {kind}")
    return Schema(type_, name=name, version=version, doc=doc, parameters=parameters)


def _branch_name(avro: Any, enhanced: bool) -> str:
    """The union struct's field of an Avro union branch, as AvroData names it."""
    if isinstance(avro, str):
        return avro
    if avro["type"] in ("record", "enum", "fixed"):
        full: str = avro["name"]
        return full if enhanced else full.rpartition(".")[2]
    return _branch_name(avro["type"], enhanced)


def _connect_field(field: Mapping[str, Any], enhanced: bool = False) -> Schema:
    schema = _connect_schema(field["type"], enhanced)
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
    if schema.default is not None or schema.name == UNION:
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
        case Type.STRUCT if schema.name == UNION:
            return _avro_branch(schema, value)
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


def _avro_branch(schema: Schema, value: Any) -> Any:
    """The set field of a union struct as fastavro writes a union branch: a (type name,
    value) pair where the name picks the branch (a record's or a primitive's)."""
    if not isinstance(value, dict):
        raise DataError(f"Expected a union struct but got {type(value).__name__}")
    for field in schema.fields:
        branch = value.get(field.name)
        if branch is None:
            continue
        datum = to_avro_value(field.schema, branch)
        if field.schema.type == Type.STRUCT and field.schema.name:
            return field.schema.name, datum
        if field.schema.name is None and field.schema.type in _PRIMITIVES:
            return _PRIMITIVES[field.schema.type], datum
        return datum
    if not schema.optional:
        names = ", ".join(f.name for f in schema.fields)
        raise DataError(f"Conversion error: no field of the union struct ({names}) is set, "
                        "and the union has no null")
    return None


_PYTHON_TYPES: dict[Type, tuple[type, ...]] = {
    Type.STRING: (str,), Type.BOOLEAN: (bool,), Type.INT32: (int,), Type.INT64: (int,),
    Type.INT8: (int,), Type.INT16: (int,), Type.FLOAT32: (float,), Type.FLOAT64: (float,),
    Type.BYTES: (bytes, bytearray), Type.ARRAY: (list,), Type.MAP: (dict, list),
    Type.STRUCT: (dict,)}


def _connect_branch(schema: Schema, value: Any) -> dict[str, Any]:
    """The union struct of a union's value as fastavro reads it: a (name, value) pair
    for records, enums and fixed of unions with several named types, else the value,
    whose branch is the first of its Python type."""
    if isinstance(value, tuple):
        name, value = value
        chosen = next(f for f in schema.fields
                      if f.name in (name, name.rpartition(".")[2]))
    else:
        chosen = next((f for f in schema.fields if _holds(f.schema, value)), schema.fields[0])
    return {f.name: to_connect_value(f.schema, value) if f is chosen else None
            for f in schema.fields}


def _holds(schema: Schema, value: Any) -> bool:
    if schema.name in (DECIMAL, DATE, TIME, TIMESTAMP):
        return not isinstance(value, str | int | float | bytes | dict | list)
    if isinstance(value, bool):
        return schema.type == Type.BOOLEAN
    return isinstance(value, _PYTHON_TYPES[schema.type])


def to_connect_value(schema: Schema, value: Any) -> Any:
    if value is None:
        return schema.default
    if schema.name in (DECIMAL, DATE, TIME, TIMESTAMP):
        return value
    match schema.type:
        case Type.STRUCT if schema.name == UNION:
            return _connect_branch(schema, value)
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
