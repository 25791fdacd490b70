"""Kafka Connect schemas and SQL column types, per dialect.

Connect → SQL (``sql_type``) is what the sink creates and adds columns with, close to
Confluent's choices: INT8..INT64 as SMALLINT/INTEGER/BIGINT (TINYINT for MySQL's
INT8), FLOAT32/FLOAT64 as REAL/DOUBLE, Decimal as NUMERIC (MySQL: DECIMAL(65, scale)),
Date, Time and Timestamp as DATE, TIME and TIMESTAMP (MySQL: TIME(3), DATETIME(3)),
BYTES as BYTEA/BLOB, STRING as TEXT (MySQL: VARCHAR(256) in a key, where TEXT cannot
be), arrays of primitives as PostgreSQL arrays; arrays elsewhere, maps and nested
structs as JSON.

SQL → Connect (``connect_column``, ``result_types``) is what the source reads with,
Confluent's rules: integers by width, NUMERIC/DECIMAL as Connect Decimal unless
``numeric.mapping`` asks for primitives, DATE/TIME/TIMESTAMP as Connect's logical types,
binary as bytes, everything else as a string.

Schemaless values (JSON without a schema) get a ``ValueKind`` from the value itself;
``widen`` is the one rule for a column that sees values of two kinds: a column only
grows (integer to double, anything to text), so every value it held still fits.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

import orjson

from kanal_worker.api.errors import ConnectError
from kanal_worker.api.schema import (
    BOOLEAN,
    BYTES,
    DATE,
    DECIMAL,
    DECIMAL_SCALE,
    FLOAT32,
    FLOAT64,
    INT8,
    INT16,
    INT32,
    INT64,
    STRING,
    TIME,
    TIMESTAMP,
    Schema,
    Type,
)

if TYPE_CHECKING:
    import sqlalchemy as sa

    from kanal_worker.connectors.jdbc.database import Dialect

MYSQL_KEY_TEXT_LENGTH = 256
MYSQL_KEY_BYTES_LENGTH = 1024
MYSQL_DECIMAL_PRECISION = 65


def sql_type(schema: Schema, dialect: Dialect, *, key: bool = False) -> sa.types.TypeEngine[Any]:
    """The column type for values of ``schema``; ``key`` for a primary-key column."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import mysql, postgresql

    if schema.name == DECIMAL:
        scale = int((schema.parameters or {}).get(DECIMAL_SCALE, "0"))
        if dialect == "mysql":
            return sa.Numeric(MYSQL_DECIMAL_PRECISION, scale, asdecimal=True)
        return sa.Numeric(asdecimal=True)
    if schema.name == DATE:
        return sa.Date()
    if schema.name == TIME:
        return mysql.TIME(fsp=3) if dialect == "mysql" else sa.Time()
    if schema.name == TIMESTAMP:
        return mysql.DATETIME(fsp=3) if dialect == "mysql" else sa.DateTime()
    match schema.type:
        case Type.INT8:
            return mysql.TINYINT() if dialect == "mysql" else sa.SmallInteger()
        case Type.INT16:
            return sa.SmallInteger()
        case Type.INT32:
            return sa.Integer()
        case Type.INT64:
            return sa.BigInteger()
        case Type.FLOAT32:
            return sa.REAL() if dialect != "mysql" else mysql.FLOAT()
        case Type.FLOAT64:
            return sa.Double()
        case Type.BOOLEAN:
            return sa.Boolean()
        case Type.STRING:
            if dialect == "mysql" and key:
                return sa.String(MYSQL_KEY_TEXT_LENGTH)
            return sa.Text()
        case Type.BYTES:
            if dialect == "mysql":
                return sa.VARBINARY(MYSQL_KEY_BYTES_LENGTH) if key else mysql.MEDIUMBLOB()
            return sa.LargeBinary()
        case Type.ARRAY if dialect == "postgresql":
            element = schema.value_schema
            assert element is not None
            if element.type.is_primitive:
                return postgresql.ARRAY(sql_type(element, dialect))
            return postgresql.JSONB()
        case _:
            return json_type(dialect)


def json_type(dialect: Dialect) -> sa.types.TypeEngine[Any]:
    """The type of a column holding JSON documents (nested values)."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql

    return postgresql.JSONB() if dialect == "postgresql" else sa.JSON()


class ValueKind(IntEnum):
    """What a schemaless value needs from its column; a larger kind holds every value
    of a smaller one that ``widen`` lets it replace."""

    BOOLEAN = 1
    INTEGER = 2
    DOUBLE = 3
    TEXT = 4
    JSON = 5


def value_kind(value: Any) -> ValueKind | None:
    """The kind of a JSON value; None for null (it fits any column)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return ValueKind.BOOLEAN
    if isinstance(value, int):
        return ValueKind.INTEGER
    if isinstance(value, float):
        return ValueKind.DOUBLE
    if isinstance(value, dict | list):
        return ValueKind.JSON
    return ValueKind.TEXT  # strings, and numbers too exact for a double (Decimal)


def widen(column: ValueKind, value: ValueKind) -> ValueKind:
    """The kind a column of kind ``column`` must become to hold a ``value`` too.

    Integers widen to doubles (a double holds integers exactly up to 2**53, the range
    JSON promises between systems); every other mix becomes text, which holds the text
    of any value. JSON documents stay JSON only among themselves.
    """
    if column == value:
        return column
    if {column, value} == {ValueKind.INTEGER, ValueKind.DOUBLE}:
        return ValueKind.DOUBLE
    return ValueKind.TEXT


def kind_type(kind: ValueKind, dialect: Dialect) -> sa.types.TypeEngine[Any]:
    """The column type created for values of ``kind``."""
    import sqlalchemy as sa

    match kind:
        case ValueKind.BOOLEAN:
            return sa.Boolean()
        case ValueKind.INTEGER:
            return sa.BigInteger()
        case ValueKind.DOUBLE:
            return sa.Double()
        case ValueKind.TEXT:
            return sa.Text()
        case ValueKind.JSON:
            return json_type(dialect)


def column_kind(column_type: sa.types.TypeEngine[Any]) -> ValueKind:
    """The kind of an existing column, as ``widen`` sees it."""
    import sqlalchemy as sa

    if isinstance(column_type, sa.Boolean):
        return ValueKind.BOOLEAN
    if isinstance(column_type, sa.Integer):
        # MySQL creates BOOLEAN columns as TINYINT(1)
        if getattr(column_type, "display_width", None) == 1:
            return ValueKind.BOOLEAN
        return ValueKind.INTEGER
    if isinstance(column_type, sa.Float | sa.Numeric):
        return ValueKind.DOUBLE
    if isinstance(column_type, sa.JSON):
        return ValueKind.JSON
    return ValueKind.TEXT


def mysql_key_type(column_type: sa.types.TypeEngine[Any]) -> sa.types.TypeEngine[Any]:
    """MySQL indexes no TEXT or BLOB column without a length: a key column takes a
    bounded type instead."""
    import sqlalchemy as sa

    if isinstance(column_type, sa.Text | sa.JSON):
        return sa.String(MYSQL_KEY_TEXT_LENGTH)
    if isinstance(column_type, sa.LargeBinary):
        return sa.VARBINARY(MYSQL_KEY_BYTES_LENGTH)
    return column_type


# -- SQL -> Connect: what the source reads --------------------------------------------

NumericMapping = Literal["none", "precision_only", "best_fit", "best_fit_eager_double"]
ToConnect = Callable[[Any], Any]
MAX_INTEGER_PRECISION = 18
"""Digits a NUMERIC may have to fit a Connect integer (Confluent's limit)."""


def decimal_schema(scale: int) -> Schema:
    return Schema(Type.BYTES, name=DECIMAL, version=1, parameters={DECIMAL_SCALE: str(scale)})


TIMESTAMP_SCHEMA = Schema(Type.INT64, name=TIMESTAMP, version=1)
DATE_SCHEMA = Schema(Type.INT32, name=DATE, version=1)
TIME_SCHEMA = Schema(Type.INT32, name=TIME, version=1)


def connect_column(column_type: sa.types.TypeEngine[Any], nullable: bool,
                   numeric_mapping: NumericMapping, zone: ZoneInfo
                   ) -> tuple[Schema, ToConnect | None]:
    """The Connect schema of a column and how its values become Connect values (None:
    the driver's value already is one)."""
    schema, convert = _connect_mapping(column_type, numeric_mapping, zone)
    return (schema.with_(optional=True) if nullable else schema), convert


def _connect_mapping(column_type: sa.types.TypeEngine[Any], numeric_mapping: NumericMapping,
                     zone: ZoneInfo) -> tuple[Schema, ToConnect | None]:
    import sqlalchemy as sa

    name = type(column_type).__name__.upper()
    if isinstance(column_type, sa.Boolean):
        return BOOLEAN, None
    if name == "YEAR":
        return INT16, _to_int
    if isinstance(column_type, sa.Integer):
        if name == "TINYINT":
            return INT8, None
        if isinstance(column_type, sa.SmallInteger):
            return INT16, None
        if isinstance(column_type, sa.BigInteger) or getattr(column_type, "unsigned",
                                                                   False):
            return INT64, None
        return INT32, None
    if isinstance(column_type, sa.Float):
        # drivers return floats for floating-point columns
        if name in ("REAL", "FLOAT") and not isinstance(column_type, sa.Double):
            return FLOAT32, None
        return FLOAT64, None
    if isinstance(column_type, sa.Numeric):
        return _numeric(column_type.precision, column_type.scale, numeric_mapping)
    if isinstance(column_type, sa.DateTime):
        return TIMESTAMP_SCHEMA, _timestamp_reader(zone)
    if isinstance(column_type, sa.Date):
        return DATE_SCHEMA, None
    if isinstance(column_type, sa.Time):
        return TIME_SCHEMA, _time
    if isinstance(column_type, sa.types._Binary) or name == "BIT":
        return BYTES, _to_bytes
    return STRING, _to_text


def _numeric(precision: int | None, scale: int | None,
             mapping: NumericMapping) -> tuple[Schema, ToConnect | None]:
    if precision is None or precision == 0:
        # an unconstrained NUMERIC has no fixed scale for a Connect Decimal: its exact
        # text unless primitives are asked for
        if mapping in ("best_fit", "best_fit_eager_double"):
            return FLOAT64, _to_float
        return STRING, _to_text
    scale = scale or 0
    if mapping == "best_fit_eager_double" and scale > 0:
        return FLOAT64, _to_float
    if mapping != "none" and scale <= 0 and precision <= MAX_INTEGER_PRECISION:
        return _integer_of_precision(precision), _to_int
    if mapping in ("best_fit", "best_fit_eager_double") and precision <= MAX_INTEGER_PRECISION:
        return FLOAT64, _to_float
    return decimal_schema(scale), _to_decimal(scale)


def _integer_of_precision(precision: int) -> Schema:
    if precision > 9:
        return INT64
    if precision > 4:
        return INT32
    if precision > 2:
        return INT16
    return INT8


def _to_float(value: Any) -> float:
    return float(value)


def _to_int(value: Any) -> int:
    return int(value)


def _to_decimal(scale: int) -> ToConnect:
    quantum = decimal.Decimal(1).scaleb(-scale)

    def convert(value: Any) -> decimal.Decimal:
        return decimal.Decimal(value).quantize(quantum)
    return convert


def _timestamp_reader(zone: ZoneInfo) -> ToConnect:
    """A column value as an aware UTC datetime: naive values are of ``db.timezone``."""
    def convert(value: Any) -> dt.datetime:
        moment: dt.datetime = dt.datetime.fromisoformat(value) if isinstance(value, str) \
            else value  # SQLite keeps timestamps as text
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        return moment.astimezone(dt.UTC)
    return convert


def _time(value: Any) -> dt.time:
    if isinstance(value, dt.timedelta):  # MySQL's TIME is a duration
        seconds = int(value.total_seconds()) % 86_400
        return dt.time(seconds // 3600, seconds // 60 % 60, seconds % 60, value.microseconds)
    result: dt.time = value.replace(tzinfo=None)
    return result


def _to_bytes(value: Any) -> bytes:
    return bytes(value)


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode()
    return str(value)


POSTGRES_TYPES = {
    "bool": "Boolean", "int2": "SmallInteger", "int4": "Integer", "int8": "BigInteger",
    "float4": "REAL", "float8": "Double", "date": "Date", "time": "Time", "timetz": "Time",
    "timestamp": "DateTime", "timestamptz": "DateTime", "bytea": "LargeBinary",
}
"""psycopg's type names → the SQLAlchemy types ``connect_column`` maps."""
MYSQL_TYPES = {
    1: "TINYINT", 2: "SmallInteger", 3: "Integer", 9: "Integer", 8: "BigInteger", 13: "YEAR",
    4: "REAL", 5: "Double", 10: "Date", 11: "Time", 7: "DateTime", 12: "DateTime", 16: "BIT",
}
"""PyMySQL's field type codes → the SQLAlchemy (or MySQL dialect) types."""
MYSQL_DECIMALS = (0, 246)
MYSQL_BINARY_CAPABLE = (249, 250, 251, 252, 253, 254)
"""Blob and string field types: binary data when their character set is ``binary``."""


def result_types(dialect: str, description: Any) -> list[tuple[sa.types.TypeEngine[Any], bool]]:
    """Column types and nullability of a query's result, from what the driver reports
    (query mode: no table to reflect). Unknown types read as strings."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import mysql

    def named(name: str) -> sa.types.TypeEngine[Any]:
        found_type: type[sa.types.TypeEngine[Any]] = getattr(mysql, name, None) or \
            getattr(sa, name)
        return found_type()

    found: list[tuple[sa.types.TypeEngine[Any], bool]] = []
    if dialect == "postgresql":
        from psycopg.postgres import types as pg_types

        for column in description:
            info = pg_types.get(column.type_code)
            name = info.name if info is not None else ""
            if name == "numeric":
                found.append((sa.Numeric(column.precision, column.scale), True))
            else:
                found.append((named(POSTGRES_TYPES.get(name, "String")), True))
        return found
    if dialect in ("mysql", "mariadb"):
        for _name, code, _display, size, precision, scale, null_ok in description:
            if code in MYSQL_DECIMALS:
                # pymysql reports the display length: digits, a sign and a point
                digits = (precision or size or 0) - (1 if scale else 0) - 1
                column_type: sa.types.TypeEngine[Any] = sa.Numeric(max(digits, 1), scale)
            elif code in MYSQL_BINARY_CAPABLE:
                column_type = sa.String()
            else:
                column_type = named(MYSQL_TYPES.get(code, "String"))
            found.append((column_type, bool(null_ok)))
        return found
    raise ConnectError("query mode reads PostgreSQL and MySQL/MariaDB; read SQLite tables "
                       "with table.whitelist instead")
