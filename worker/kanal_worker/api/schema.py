"""Kafka Connect's data model: schemas that describe keys, values and headers.

Struct values are plain ``dict`` objects in field order; the schema says which fields
exist. Logical types (Decimal, Date, Time, Timestamp) keep Kafka Connect's names so
that converters and transforms agree with Apache Kafka Connect on the wire.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Type(StrEnum):
    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    BOOLEAN = "boolean"
    STRING = "string"
    BYTES = "bytes"
    ARRAY = "array"
    MAP = "map"
    STRUCT = "struct"

    @property
    def is_primitive(self) -> bool:
        return self not in (Type.ARRAY, Type.MAP, Type.STRUCT)


DECIMAL = "org.apache.kafka.connect.data.Decimal"
DATE = "org.apache.kafka.connect.data.Date"
TIME = "org.apache.kafka.connect.data.Time"
TIMESTAMP = "org.apache.kafka.connect.data.Timestamp"
DECIMAL_SCALE = "scale"

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
EPOCH_DATE = dt.date(1970, 1, 1)


def timestamp_millis(value: dt.datetime) -> int:
    """A Timestamp as Kafka Connect encodes it: milliseconds since the epoch (naive = UTC)."""
    moment = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def time_millis(value: dt.time) -> int:
    """A Time as Kafka Connect encodes it: milliseconds since midnight."""
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1000 + \
        value.microsecond // 1000


def date_days(value: dt.date) -> int:
    """A Date as Kafka Connect encodes it: days since the epoch."""
    return (value - EPOCH_DATE).days


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    index: int
    schema: Schema


@dataclass(frozen=True, slots=True)
class Schema:
    type: Type
    optional: bool = False
    default: Any = None
    name: str | None = None
    version: int | None = None
    doc: str | None = None
    parameters: dict[str, str] | None = None
    fields: tuple[Field, ...] = ()
    key_schema: Schema | None = None
    value_schema: Schema | None = None
    _by_name: dict[str, Field] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({f.name: f for f in self.fields})

    def field(self, name: str) -> Field | None:
        return self._by_name.get(name)

    def metadata(self) -> dict[str, Any]:
        """The name, version, doc and parameters that are set, in that order (what
        converters carry along with the type)."""
        found = {"name": self.name, "version": self.version, "doc": self.doc,
                 "parameters": dict(self.parameters) if self.parameters else None}
        return {key: value for key, value in found.items() if value is not None}

    def with_(self, **changes: Any) -> Schema:
        """A copy with some attributes changed (schemas are immutable and shared)."""
        values = {
            "type": self.type,
            "optional": self.optional,
            "default": self.default,
            "name": self.name,
            "version": self.version,
            "doc": self.doc,
            "parameters": self.parameters,
            "fields": self.fields,
            "key_schema": self.key_schema,
            "value_schema": self.value_schema,
        }
        values.update(changes)
        return Schema(**values)


def struct(fields: list[tuple[str, Schema]], *, name: str | None = None,
           optional: bool = False, version: int | None = None,
           doc: str | None = None) -> Schema:
    """Build a struct schema from ``(field name, schema)`` pairs in order."""
    return Schema(
        Type.STRUCT,
        optional=optional,
        name=name,
        version=version,
        doc=doc,
        fields=tuple(Field(n, i, s) for i, (n, s) in enumerate(fields)),
    )


def optional(schema: Schema) -> Schema:
    return schema if schema.optional else schema.with_(optional=True)


INT8 = Schema(Type.INT8)
INT16 = Schema(Type.INT16)
INT32 = Schema(Type.INT32)
INT64 = Schema(Type.INT64)
FLOAT32 = Schema(Type.FLOAT32)
FLOAT64 = Schema(Type.FLOAT64)
BOOLEAN = Schema(Type.BOOLEAN)
STRING = Schema(Type.STRING)
BYTES = Schema(Type.BYTES)
OPTIONAL_STRING = Schema(Type.STRING, optional=True)
OPTIONAL_BYTES = Schema(Type.BYTES, optional=True)
OPTIONAL_INT64 = Schema(Type.INT64, optional=True)
