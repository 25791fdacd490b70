"""Records to rows: which table, which columns of which types, which primary key.

``RowBuilder.build`` turns one sink record into an ``Operation`` (an upsert-or-insert
of a row, or a delete by key) or raises DataError naming the record and what to fix.
Values with a Connect schema take their column types from it (``types.sql_type``);
schemaless values (JSON with ``schemas.enable=false``) from the values themselves
(``types.value_kind``). Connect's logical types become the Python values the drivers
bind: Timestamp a naive datetime in ``db.timezone``, Date a date, Time a time.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kanal_worker.api import DataError, Schema, SinkRecord, Type
from kanal_worker.api.schema import DATE, EPOCH, EPOCH_DATE, INT32, INT64, STRING, TIME, TIMESTAMP
from kanal_worker.connectors.jdbc.sink_settings import KAFKA_PK_FIELDS, JdbcSinkSettings
from kanal_worker.connectors.jdbc.types import (
    ValueKind,
    kind_type,
    mysql_key_type,
    sql_type,
    value_kind,
)

if TYPE_CHECKING:
    import sqlalchemy as sa

    from kanal_worker.connectors.jdbc.database import Dialect


@dataclass(frozen=True, slots=True, eq=False)
class ColumnSpec:
    """A column a row needs: the type to create it with, and for a schemaless value the
    kind of value it carries (what widening looks at). One object per distinct column
    (``RowBuilder`` keeps them), compared by identity: a batch's rows share a few."""

    name: str
    type: sa.types.TypeEngine[Any]
    nullable: bool
    key: bool
    kind: ValueKind | None = None
    inferred: bool = False
    """A schemaless value's column: its type comes from ``kind``, None for a null
    (which needs no column of its own: it is written only where the column exists)."""


@dataclass(slots=True)
class Operation:
    """One record's effect on its table: ``row`` written (``delete`` False) or the row
    with ``row``'s key values deleted."""

    record: SinkRecord
    table: str
    delete: bool
    row: dict[str, Any]
    key: tuple[Any, ...]
    columns: tuple[ColumnSpec, ...]


def where(record: SinkRecord) -> str:
    """A record's coordinates, as messages name it."""
    return f"record {record.topic}-{record.kafka_partition or 0} offset {record.kafka_offset}"


class RowBuilder:
    def __init__(self, settings: JdbcSinkSettings, dialect: Dialect) -> None:
        self.settings = settings
        self.dialect = dialect
        self.zone = zoneinfo.ZoneInfo(settings.db_timezone)
        self.whitelist = set(settings.fields_whitelist)
        self._inferred: dict[tuple[str, ValueKind | None, bool], ColumnSpec] = {}
        self._declared: dict[tuple[str, int, bool], tuple[Schema, ColumnSpec]] = {}

    def table_name(self, topic: str) -> str:
        return self.settings.table_name_format.replace("${topic}", topic)

    def build(self, record: SinkRecord) -> Operation | None:
        """The record's operation; None for a tombstone when deletes are off."""
        table = self.table_name(record.topic)
        keys = self._key_columns(record, table)
        if record.value is None:
            if not self.settings.delete_enabled:
                return None
            return Operation(record, table, True, {c.name: v for c, v in keys},
                             tuple(v for _, v in keys), tuple(c for c, _ in keys))
        values = self._value_columns(record, table, {c.name for c, _ in keys})
        columns = [c for c, _ in keys] + [c for c, _ in values]
        row = {c.name: v for c, v in keys}
        row.update((c.name, v) for c, v in values)
        return Operation(record, table, False, row, tuple(v for _, v in keys), tuple(columns))

    # -- keys ----------------------------------------------------------------------------
    def _key_columns(self, record: SinkRecord, table: str) -> list[tuple[ColumnSpec, Any]]:
        mode = self.settings.pk_mode
        if mode == "none":
            return []
        if mode == "kafka":
            names = self.settings.pk_fields or list(KAFKA_PK_FIELDS)
            return [(self._column(names[0], STRING, key=True), record.topic),
                    (self._column(names[1], INT32, key=True), record.kafka_partition or 0),
                    (self._column(names[2], INT64, key=True), record.kafka_offset)]
        if mode == "record_key":
            return self._fields_of(record, table, record.key, record.key_schema, "key")
        if record.value is None:
            raise DataError(f"{where(record)}: a tombstone has no value to take the primary "
                            f"key of table {table} from (pk.mode=record_value); use "
                            f"pk.mode=record_key for deletes.")
        return self._fields_of(record, table, record.value, record.value_schema, "value")

    def _fields_of(self, record: SinkRecord, table: str, data: Any, schema: Schema | None,
                   part: str) -> list[tuple[ColumnSpec, Any]]:
        """The primary-key columns ``pk.fields`` names in the record's key or value."""
        wanted = self.settings.pk_fields
        if data is None:
            raise DataError(f"{where(record)}: the record has no {part}, which "
                            f"pk.mode={self.settings.pk_mode} takes table {table}'s primary "
                            f"key from.")
        if not isinstance(data, Mapping):
            if len(wanted) != 1:
                raise DataError(f"{where(record)}: the {part} is a primitive "
                                f"({type(data).__name__}); pk.fields must name exactly one "
                                f"column for it in table {table}, got "
                                f"{','.join(wanted) or 'none'}.")
            return [(self._spec(wanted[0], schema, data, key=True),
                     self._convert(schema, data))]
        names = wanted or (
            [f.name for f in schema.fields] if schema is not None and schema.type == Type.STRUCT
            else list(data))
        found = []
        for name in names:
            field = schema.field(name) if schema is not None and schema.fields else None
            value = data.get(name)
            if value is None:
                raise DataError(f"{where(record)}: primary key field {name!r} (pk.fields) is "
                                f"missing or null in the record {part} for table {table}.")
            field_schema = field.schema if field is not None else None
            found.append((self._spec(name, field_schema, value, key=True),
                          self._convert(field_schema, value)))
        return found

    # -- values --------------------------------------------------------------------------
    def _value_columns(self, record: SinkRecord, table: str,
                       key_names: set[str]) -> list[tuple[ColumnSpec, Any]]:
        value, schema = record.value, record.value_schema
        if (schema is not None and schema.type != Type.STRUCT) or not isinstance(value, Mapping):
            raise DataError(f"{where(record)}: table {table} needs a struct or a JSON object "
                            f"as the record value, got "
                            f"{schema.type if schema is not None else type(value).__name__}.")
        whitelist = self.whitelist
        columns = []
        if schema is not None:
            for field in schema.fields:
                if field.name in key_names or (whitelist and field.name not in whitelist):
                    continue
                columns.append((self._column(field.name, field.schema),
                                self._convert(field.schema, value.get(field.name))))
            return columns
        for name, item in value.items():
            if name in key_names or (whitelist and name not in whitelist):
                continue
            columns.append((self._spec(name, None, item), item))
        return columns

    def _spec(self, name: str, schema: Schema | None, value: Any, *,
              key: bool = False) -> ColumnSpec:
        if schema is not None:
            return self._column(name, schema, key=key)
        kind = value_kind(value)
        cache_key = (name, kind, key)
        found = self._inferred.get(cache_key)
        if found is None:
            column_type = kind_type(kind or ValueKind.TEXT, self.dialect)
            if key and self.dialect == "mysql":
                column_type = mysql_key_type(column_type)
            found = ColumnSpec(name, column_type, not key, key, kind, inferred=True)
            self._inferred[cache_key] = found
        return found

    def _column(self, name: str, schema: Schema, *, key: bool = False) -> ColumnSpec:
        # schemas are immutable and shared by the records of a converter: one spec each
        cache_key = (name, id(schema), key)
        found = self._declared.get(cache_key)
        if found is None or found[0] is not schema:
            found = (schema, ColumnSpec(name, sql_type(schema, self.dialect, key=key),
                                        schema.optional and not key, key))
            self._declared[cache_key] = found
        return found[1]

    # -- logical types -------------------------------------------------------------------
    def _convert(self, schema: Schema | None, value: Any) -> Any:
        if value is None or schema is None or (schema.name is None and schema.type != Type.BYTES):
            return value
        if schema.name == TIMESTAMP:
            moment = value if isinstance(value, dt.datetime) else \
                EPOCH + dt.timedelta(milliseconds=int(value))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            return moment.astimezone(self.zone).replace(tzinfo=None)
        if schema.name == DATE:
            if isinstance(value, dt.datetime):
                return value.date()
            return value if isinstance(value, dt.date) else EPOCH_DATE + dt.timedelta(days=value)
        if schema.name == TIME:
            if isinstance(value, dt.time):
                return value
            return (dt.datetime.min + dt.timedelta(milliseconds=int(value))).time()
        if schema.type == Type.BYTES and isinstance(value, bytearray | memoryview):
            return bytes(value)
        return value
