"""PostgreSQL column types as Debezium maps them to Kafka Connect schemas and values.

Both the snapshot and the replication stream read values in PostgreSQL's text form (the
sessions run with ``TimeZone=UTC``, ``DateStyle=ISO`` and ``IntervalStyle=iso_8601``), so
one function per type turns text into the Connect value Debezium writes for it, under
``decimal.handling.mode`` and ``time.precision.mode``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from kanal_worker.api.schema import (
    BOOLEAN,
    BYTES,
    DATE,
    DECIMAL,
    FLOAT32,
    FLOAT64,
    INT16,
    INT32,
    INT64,
    STRING,
    TIME,
    TIMESTAMP,
    Schema,
    Type,
    struct,
)

DecimalMode = Literal["precise", "double", "string"]
TimeMode = Literal["adaptive", "adaptive_time_microseconds", "connect"]

DAYS_PER_MONTH = 365.25 / 12
"""Debezium's MicroDuration counts a month as the average Gregorian month."""
MICROS_PER_DAY = 86_400_000_000
SESSION_SETTINGS = "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=iso_8601 " \
    "-c extra_float_digits=3"
"""Server settings for every session the connector reads values in: the text forms this
module parses."""

Parse = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class Column:
    """A column as the catalog describes it."""

    name: str
    type_name: str
    type_modifier: int
    not_null: bool
    default: str | None
    """The default expression, as ``pg_get_expr`` prints it."""


@dataclass(frozen=True, slots=True)
class ColumnType:
    schema: Schema
    parse: Parse


def _named(base: Schema, name: str, parameters: dict[str, str] | None = None,
           doc: str | None = None) -> Schema:
    return base.with_(name=name, version=1, parameters=parameters, doc=doc)


VARIABLE_SCALE_DECIMAL = struct([("scale", INT32), ("value", BYTES)],
                                name="io.debezium.data.VariableScaleDecimal", version=1,
                                doc="Variable scaled decimal")


def unscaled_bytes(unscaled: int) -> bytes:
    """``BigInteger.toByteArray``: the shortest two's complement, big-endian."""
    length = (unscaled + (unscaled < 0)).bit_length() // 8 + 1
    return unscaled.to_bytes(length, "big", signed=True)


def _variable_decimal(text: str) -> dict[str, Any]:
    number = decimal.Decimal(text)
    exponent = int(number.as_tuple().exponent)
    scale = max(0, -exponent)
    return {"scale": scale, "value": unscaled_bytes(int(number.scaleb(scale)))}


def _bytea(text: str) -> bytes:
    return bytes.fromhex(text[2:])


def _date_days(text: str) -> int:
    return (dt.date.fromisoformat(text) - dt.date(1970, 1, 1)).days


def _time_micros(text: str) -> int:
    if text.startswith("24:00:00"):
        return MICROS_PER_DAY
    moment = dt.time.fromisoformat(text)
    return ((moment.hour * 60 + moment.minute) * 60 + moment.second) * 1_000_000 + \
        moment.microsecond


def _timestamp_micros(text: str) -> int:
    moment = dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _zoned_timestamp(fraction_digits: int) -> Parse:
    def parse(text: str) -> str:
        moment = dt.datetime.fromisoformat(text).astimezone(dt.UTC)
        base = moment.strftime("%Y-%m-%dT%H:%M:%S")
        if fraction_digits:
            base += "." + f"{moment.microsecond:06d}"[:fraction_digits].ljust(
                fraction_digits, "0")
        return base + "Z"
    return parse


def _zoned_time(text: str) -> str:
    moment = dt.datetime.combine(dt.date(2000, 1, 3), dt.time.fromisoformat(text))
    utc = moment.astimezone(dt.UTC)
    printed = utc.strftime("%H:%M:%S")
    if utc.microsecond:
        printed += "." + f"{utc.microsecond:06d}".rstrip("0")
    return printed + "Z"


_ISO_INTERVAL = re.compile(
    r"P(?:(?P<years>-?\d+)Y)?(?:(?P<months>-?\d+)M)?(?:(?P<days>-?\d+)D)?"
    r"(?:T(?:(?P<hours>-?\d+)H)?(?:(?P<minutes>-?\d+)M)?(?:(?P<seconds>-?[\d.]+)S)?)?")


def _interval_micros(text: str) -> int:
    """``io.debezium.time.MicroDuration``: months at their average length, as Debezium."""
    found = _ISO_INTERVAL.fullmatch(text)
    if found is None:
        raise ValueError(f"unexpected interval {text!r}")
    part = {name: float(value) if value else 0.0 for name, value in found.groupdict().items()}
    days = (part["years"] * 12 + part["months"]) * DAYS_PER_MONTH + part["days"]
    seconds = ((days * 24 + part["hours"]) * 60 + part["minutes"]) * 60 + part["seconds"]
    return int(seconds * 1e6)


def _json_float(text: str) -> float:
    return float(text)


def _bool(text: str) -> bool:
    return text == "t"


def _decimal_type(modifier: int, mode: DecimalMode) -> ColumnType:
    if mode == "double":
        return ColumnType(FLOAT64, _json_float)
    if mode == "string":
        return ColumnType(STRING, lambda text: str(decimal.Decimal(text)))
    if modifier < 0:
        return ColumnType(VARIABLE_SCALE_DECIMAL, _variable_decimal)
    precision, scale = (modifier - 4) >> 16, (modifier - 4) & 0xFFFF
    schema = _named(BYTES, DECIMAL, {"scale": str(scale),
                                     "connect.decimal.precision": str(precision)})
    return ColumnType(schema, decimal.Decimal)


def _time_precision(modifier: int) -> int:
    return 6 if modifier < 0 else modifier


def _time_type(modifier: int, mode: TimeMode) -> ColumnType:
    if mode == "connect":
        return ColumnType(_named(INT32, TIME), lambda t: _connect_time(_time_micros(t)))
    if mode == "adaptive" and _time_precision(modifier) <= 3:
        return ColumnType(_named(INT32, "io.debezium.time.Time"),
                          lambda text: _time_micros(text) // 1000)
    return ColumnType(_named(INT64, "io.debezium.time.MicroTime"), _time_micros)


def _connect_time(micros: int) -> dt.time:
    seconds, micro = divmod(micros % MICROS_PER_DAY, 1_000_000)
    return dt.time(seconds // 3600, seconds // 60 % 60, seconds % 60, micro // 1000 * 1000)


def _timestamp_type(modifier: int, mode: TimeMode) -> ColumnType:
    if mode == "connect":
        return ColumnType(_named(INT64, TIMESTAMP),
                          lambda text: dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC))
    if _time_precision(modifier) <= 3:
        return ColumnType(_named(INT64, "io.debezium.time.Timestamp"),
                          lambda text: _timestamp_micros(text) // 1000)
    return ColumnType(_named(INT64, "io.debezium.time.MicroTimestamp"), _timestamp_micros)


def _date_type(mode: TimeMode) -> ColumnType:
    if mode == "connect":
        return ColumnType(_named(INT32, DATE), dt.date.fromisoformat)
    return ColumnType(_named(INT32, "io.debezium.time.Date"), _date_days)


_FIXED: dict[str, ColumnType] = {
    "bool": ColumnType(BOOLEAN, _bool),
    "int2": ColumnType(INT16, int),
    "int4": ColumnType(INT32, int),
    "int8": ColumnType(INT64, int),
    "oid": ColumnType(INT64, int),
    "float4": ColumnType(FLOAT32, _json_float),
    "float8": ColumnType(FLOAT64, _json_float),
    "bytea": ColumnType(BYTES, _bytea),
    "uuid": ColumnType(_named(STRING, "io.debezium.data.Uuid"), str),
    "json": ColumnType(_named(STRING, "io.debezium.data.Json"), str),
    "jsonb": ColumnType(_named(STRING, "io.debezium.data.Json"), str),
    "xml": ColumnType(_named(STRING, "io.debezium.data.Xml"), str),
    "timetz": ColumnType(_named(STRING, "io.debezium.time.ZonedTime"), _zoned_time),
    "interval": ColumnType(_named(INT64, "io.debezium.time.MicroDuration"), _interval_micros),
}


def column_type(type_name: str, modifier: int, decimal_mode: DecimalMode,
                time_mode: TimeMode) -> ColumnType:
    """The Connect schema (required; ``column_schema`` makes it optional) and parser of a
    column of ``type_name`` (``pg_type.typname``) with ``modifier`` (``atttypmod``).
    Types Debezium has no mapping for here (arrays, enums, geometry, ranges, ...) are
    written as their text."""
    fixed = _FIXED.get(type_name)
    if fixed is not None:
        return fixed
    if type_name == "numeric":
        return _decimal_type(modifier, decimal_mode)
    if type_name == "date":
        return _date_type(time_mode)
    if type_name == "time":
        return _time_type(modifier, time_mode)
    if type_name == "timestamp":
        return _timestamp_type(modifier, time_mode)
    if type_name == "timestamptz":
        return ColumnType(_named(STRING, "io.debezium.time.ZonedTimestamp"),
                          _zoned_timestamp(_time_precision(modifier)))
    return ColumnType(STRING, str)


_LITERAL_DEFAULT = re.compile(r"^'((?:[^']|'')*)'::[\w .\"]+$|^(-?\d+(?:\.\d+)?)$|^(true|false)$")


def literal_default(expression: str | None, column: ColumnType) -> Any:
    """A column's default as the schema's default value, when it is a constant Debezium
    evaluates (a literal number, string or boolean); else None (no default)."""
    if expression is None:
        return None
    found = _LITERAL_DEFAULT.match(expression)
    if found is None:
        return None
    text = found.group(1)
    if text is not None:
        text = text.replace("''", "'")
    elif found.group(2) is not None:
        text = found.group(2)
    else:
        text = "t" if found.group(3) == "true" else "f"
    try:
        return column.parse(text)
    except (ValueError, ArithmeticError):
        return None


def placeholder(schema: Schema) -> Any:
    """What Debezium puts in a required column the old row did not carry (a delete's
    ``before`` under REPLICA IDENTITY DEFAULT): the type's zero value."""
    if schema.default is not None:
        return schema.default
    if schema.optional:
        return None
    zero: dict[Type, Any] = {Type.STRING: "", Type.BOOLEAN: False, Type.BYTES: b"",
                             Type.FLOAT32: 0.0, Type.FLOAT64: 0.0}
    if schema.name == DECIMAL:
        return decimal.Decimal(0)
    return zero.get(schema.type, 0)
