"""Value schemas for files: inferred, checked, projected, and compared per file.

Avro and Parquet files carry one schema. A record with a Connect schema brings its
own; a schemaless record (plain JSON) gets one inferred from its value, so records of
the same shape share files. ``check`` rejects a value that does not fit its schema
*before* it reaches a file, so one bad record never corrupts a file and goes to error
handling alone. ``decide`` is Confluent's ``schema.compatibility``.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Mapping
from enum import Enum
from itertools import repeat
from operator import itemgetter
from typing import Any

from kanal_worker.api import DataError
from kanal_worker.api.schema import DATE, DECIMAL, TIME, TIMESTAMP, Schema, Type, struct

INT_RANGES = {Type.INT8: 1 << 7, Type.INT16: 1 << 15, Type.INT32: 1 << 31, Type.INT64: 1 << 63}
NUMERIC_ORDER = (Type.INT8, Type.INT16, Type.INT32, Type.INT64, Type.FLOAT32, Type.FLOAT64)
CACHE_LIMIT = 1024
"""Schemas seen per process before the caches below start over (schemas rarely change)."""


class Action(Enum):
    APPEND = "append"
    PROJECT = "project"
    NEW_FILE = "new file"


def decide(mode: str, file_schema: Schema | None, schema: Schema | None) -> Action:
    """What ``schema.compatibility=mode`` does with a record of ``schema`` arriving at a
    file of ``file_schema`` (Confluent's ``StorageSchemaCompatibility``)."""
    if file_schema is schema or file_schema == schema:
        return Action.APPEND
    if file_schema is None or schema is None:
        return Action.NEW_FILE  # switching between schema-based and schemaless values
    if mode == "NONE":
        return Action.NEW_FILE
    if schema.version is None or file_schema.version is None:
        raise DataError(f"Schema version required for {mode} compatibility")
    newer = schema.version > file_schema.version
    older = schema.version < file_schema.version
    if (mode == "FORWARD" and older) or (mode != "FORWARD" and newer):
        return Action.NEW_FILE
    return Action.PROJECT


def project(value: Any, source: Schema, target: Schema) -> Any:
    """``value`` of ``source`` rewritten for ``target`` (Kafka Connect's SchemaProjector):
    missing fields take the target's default or null, numbers widen."""
    if value is None:
        if target.default is not None:
            return target.default
        if target.optional:
            return None
        raise DataError("Schema projection failed: a required value is null")
    if source.name != target.name and (source.name or target.name) and \
            (source.type != target.type or source.name in (DECIMAL, DATE, TIME, TIMESTAMP)):
        raise DataError(f"Schema projection failed: {source.name} cannot become {target.name}")
    if source.type != target.type:
        if source.type in NUMERIC_ORDER and target.type in NUMERIC_ORDER and \
                NUMERIC_ORDER.index(source.type) <= NUMERIC_ORDER.index(target.type):
            return float(value) if target.type in (Type.FLOAT32, Type.FLOAT64) else value
        raise DataError(f"Schema projection failed: {source.type} cannot become {target.type}")
    match target.type:
        case Type.STRUCT:
            out = {}
            for field in target.fields:
                origin = source.field(field.name)
                if origin is None:
                    if field.schema.default is None and not field.schema.optional:
                        raise DataError(f"Schema projection failed: required field "
                                        f"{field.name} is missing from the record's schema")
                    out[field.name] = field.schema.default
                else:
                    out[field.name] = project(value.get(field.name), origin.schema, field.schema)
            return out
        case Type.ARRAY:
            assert source.value_schema is not None and target.value_schema is not None
            return [project(v, source.value_schema, target.value_schema) for v in value]
        case Type.MAP:
            assert source.value_schema is not None and target.value_schema is not None
            assert source.key_schema is not None and target.key_schema is not None
            return {project(k, source.key_schema, target.key_schema):
                    project(v, source.value_schema, target.value_schema)
                    for k, v in value.items()}
    return value


# -- inference of schemaless values ----------------------------------------------------

_inferred: dict[Any, Schema] = {}
OPTIONAL_PRIMITIVES = {
    bool: Schema(Type.BOOLEAN, optional=True), int: Schema(Type.INT64, optional=True),
    float: Schema(Type.FLOAT64, optional=True), str: Schema(Type.STRING, optional=True),
    bytes: Schema(Type.BYTES, optional=True),
}
UNKNOWN = Schema(Type.STRING, optional=True)
"""The schema of a null whose type cannot be seen: an optional string."""
_LEAF_KINDS = frozenset([*OPTIONAL_PRIMITIVES, type(None), bytearray])


def infer(value: Any) -> Schema:
    """A schema for a schemaless value: maps become structs whose fields are all
    optional, in key order; numbers are int64 or float64; null is an optional string.
    The value fits the schema by construction: no ``check`` needed."""
    shape = _shape(value)
    schema = _inferred.get(shape)
    if schema is None:
        if len(_inferred) >= CACHE_LIMIT:
            _inferred.clear()
        schema = _inferred[shape] = _schema_of(shape)
    return schema


def infer_columns(run: list[Any]) -> tuple[Schema, list[tuple[Any, ...]]] | None:
    """The schema ``infer`` gives every value of ``run`` and the run's columns (a tuple
    of values per field, in field order), when the values are maps of one shape (a JSON
    object per record): the same keys in the same order, each field of one type
    throughout (a null, or an int among floats, is another shape), and each field
    holding maps or lists of one shape. None otherwise: the values are then inferred
    one by one. Raises DataError as ``infer`` does for a list mixing element types.

    Checked a field at a time over the whole run, primitive fields by their types
    alone, it costs about half of inferring every value, and the columns come with it."""
    first = run[0]
    if not first or set(map(type, run)) != {dict}:
        return None
    keys = tuple(first)
    if list(map(tuple, run)).count(keys) != len(run):
        return None
    columns = (list(zip(*map(itemgetter(*keys), run), strict=True)) if len(keys) > 1 else
               [tuple(map(itemgetter(keys[0]), run))])
    for column in columns:
        kinds = set(map(type, column))
        if len(kinds) != 1 or not (_FLAT_KINDS.issuperset(kinds) or (
                _NESTED_KINDS.issuperset(kinds) and len(set(map(_shape, column))) == 1)):
            return None
    return infer(first), columns


_FLAT_KINDS = frozenset([*OPTIONAL_PRIMITIVES, type(None)])
"""The types of a map's fields that ``infer`` maps to a primitive schema."""
_NESTED_KINDS = frozenset([dict, list])


def _shape(value: Any) -> Any:
    """A hashable description of ``value``'s type tree (cheaper than a Schema)."""
    kind = type(value)
    if isinstance(value, dict):  # transforms' maps may be subclasses (Java's map kinds)
        kinds = tuple(map(type, value.values()))
        if not _LEAF_KINDS.issuperset(kinds):
            kinds = tuple([_shape(v) for v in value.values()])
        return ("struct", tuple(value), kinds)
    if kind is list:
        shapes = {_shape(v) for v in value if v is not None}
        if len(shapes) > 1:
            raise DataError("Cannot infer a schema: an array mixes element types "
                            f"({', '.join(sorted(str(s) for s in shapes))})")
        return ("array", shapes.pop() if shapes else None)
    if value is None or kind in OPTIONAL_PRIMITIVES or kind is bytearray:
        return kind
    raise DataError(f"Cannot infer a schema for a value of type {kind.__name__}")


def _schema_of(shape: Any) -> Schema:
    if isinstance(shape, tuple) and shape[0] == "struct":
        for name in shape[1]:
            if not isinstance(name, str):
                raise DataError(f"Cannot infer a schema: map key {name!r} is not a string")
        return struct([(name, _schema_of(sub)) for name, sub in zip(shape[1], shape[2],
                                                                     strict=True)],
                      optional=True)
    if isinstance(shape, tuple) and shape[0] == "array":
        item = UNKNOWN if shape[1] is None else _schema_of(shape[1])
        return Schema(Type.ARRAY, optional=True, value_schema=item)
    if shape is type(None):
        return UNKNOWN
    if shape not in OPTIONAL_PRIMITIVES and shape is not bytearray:
        raise DataError(f"Cannot infer a schema for a value of type {shape.__name__}")
    return OPTIONAL_PRIMITIVES[bytes if shape is bytearray else shape]


# -- checking values against schemas ---------------------------------------------------

Checker = Callable[[Any, str], None]
_checkers: dict[int, tuple[Schema, Checker]] = {}


def fit(value: Any, schema: Schema | None) -> Schema:
    """The schema a file holding ``value`` is keyed on: the record's own once the value is
    checked against it, or one inferred from a schemaless value."""
    if schema is None:
        return infer(value)
    check(value, schema)
    return schema


def check(value: Any, schema: Schema) -> None:
    """Raise DataError naming the path of the first part of ``value`` that ``schema``
    does not allow (compiled once per schema)."""
    cached = _checkers.get(id(schema))
    if cached is None or cached[0] is not schema:
        if len(_checkers) >= CACHE_LIMIT:
            _checkers.clear()
        cached = (schema, _checker(schema))
        _checkers[id(schema)] = cached
    cached[1](value, "value")


def fits_by_columns(run: list[Any], schema: Schema) -> bool:
    """Whether every value of ``run`` fits ``schema``, checked a field at a time: True
    only when the schema is a struct of primitive fields and every value a map whose
    fields have the types and ranges ``check`` allows. False says nothing: ``check``
    then checks each value (and names the first that does not fit)."""
    if schema.type != Type.STRUCT or (schema.name or "") in _LOGICAL or \
            set(map(type, run)) != {dict}:
        return False
    for field in schema.fields:
        allowed = _COLUMN_KINDS.get(field.schema.type)
        if allowed is None or (field.schema.name or "") in _LOGICAL:
            return False
        column: list[Any] = list(map(dict.get, run, repeat(field.name)))
        kinds = set(map(type, column))
        if type(None) in kinds:
            if not field.schema.optional and field.schema.default is None:
                return False
            kinds.discard(type(None))
            column = [value for value in column if value is not None]
        if not allowed.issuperset(kinds):
            return False
        bound = INT_RANGES.get(field.schema.type)
        if bound is not None and column and not -bound <= min(column) <= max(column) < bound:
            return False
    return True


_COLUMN_KINDS: dict[Type, frozenset[type]] = {
    **dict.fromkeys(INT_RANGES, frozenset([int])),
    Type.FLOAT32: frozenset([int, float]), Type.FLOAT64: frozenset([int, float]),
    Type.BOOLEAN: frozenset([bool]), Type.STRING: frozenset([str]),
    Type.BYTES: frozenset([bytes, bytearray])}
"""The exact types ``check`` accepts for a primitive field (subclasses aside)."""


def _checker(schema: Schema) -> Checker:
    inner = _type_checker(schema)

    def nullable(value: Any, path: str) -> None:
        if value is None:
            if schema.optional or schema.default is not None:
                return
            raise DataError(f"{path} is null but its schema ({schema.type}) is required")
        inner(value, path)
    return nullable


def _type_checker(schema: Schema) -> Checker:
    expected = _LOGICAL.get(schema.name or "")
    if expected is not None:
        return _instance(expected, schema.name or "")
    kind = schema.type
    if kind in INT_RANGES:
        bound = INT_RANGES[kind]

        def integer(value: Any, path: str) -> None:
            if type(value) is not int or not -bound <= value < bound:
                raise DataError(f"{path} = {value!r} is not an {kind}")
        return integer
    if kind in (Type.FLOAT32, Type.FLOAT64):
        def number(value: Any, path: str) -> None:
            if type(value) not in (int, float):
                raise DataError(f"{path} = {value!r} is not a {kind}")
        return number
    if kind == Type.STRUCT:
        fields = [(f.name, _checker(f.schema)) for f in schema.fields]

        def record(value: Any, path: str) -> None:
            if not isinstance(value, Mapping):
                raise DataError(f"{path} is a {type(value).__name__}, not a struct")
            for name, field_check in fields:
                field_check(value.get(name), f"{path}.{name}")
        return record
    if kind == Type.ARRAY:
        assert schema.value_schema is not None
        item = _checker(schema.value_schema)

        def array(value: Any, path: str) -> None:
            if not isinstance(value, list | tuple):
                raise DataError(f"{path} is a {type(value).__name__}, not an array")
            for i, element in enumerate(value):
                item(element, f"{path}[{i}]")
        return array
    if kind == Type.MAP:
        assert schema.key_schema is not None and schema.value_schema is not None
        key_check, value_check = _checker(schema.key_schema), _checker(schema.value_schema)

        def mapping(value: Any, path: str) -> None:
            if not isinstance(value, Mapping):
                raise DataError(f"{path} is a {type(value).__name__}, not a map")
            for k, v in value.items():
                key_check(k, f"{path} key")
                value_check(v, f"{path}[{k!r}]")
        return mapping
    return _instance(_PRIMITIVES[kind], str(kind))


def _instance(expected: type | tuple[type, ...], name: str) -> Checker:
    def instance(value: Any, path: str) -> None:
        if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise DataError(f"{path} = {value!r} is not a {name}")
    return instance


_PRIMITIVES: dict[Type, type | tuple[type, ...]] = {
    Type.BOOLEAN: bool, Type.STRING: str, Type.BYTES: (bytes, bytearray)}
_LOGICAL: dict[str, type | tuple[type, ...]] = {
    DECIMAL: decimal.Decimal, DATE: dt.date, TIME: dt.time, TIMESTAMP: dt.datetime}
