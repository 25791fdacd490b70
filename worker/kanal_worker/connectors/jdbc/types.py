"""Kafka Connect schemas and SQL column types, per dialect.

Connect → SQL (``sql_type``) is what the sink creates and adds columns with, close to
Confluent's choices: INT8..INT64 as SMALLINT/INTEGER/BIGINT (TINYINT for MySQL's
INT8), FLOAT32/FLOAT64 as REAL/DOUBLE, Decimal as NUMERIC (MySQL: DECIMAL(65, scale)),
Date, Time and Timestamp as DATE, TIME and TIMESTAMP (MySQL: TIME(3), DATETIME(3)),
BYTES as BYTEA/BLOB, STRING as TEXT (MySQL: VARCHAR(256) in a key, where TEXT cannot
be), arrays of primitives as PostgreSQL arrays; arrays elsewhere, maps and nested
structs as JSON.

Schemaless values (JSON without a schema) get a ``ValueKind`` from the value itself;
``widen`` is the one rule for a column that sees values of two kinds: a column only
grows (integer to double, anything to text), so every value it held still fits.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, Any

from kanal_worker.api.schema import DATE, DECIMAL, DECIMAL_SCALE, TIME, TIMESTAMP, Schema, Type

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
