"""Captured tables and the change events Debezium writes for them.

A ``CapturedTable`` holds a table's key and value schemas (named
``<prefix>.<schema>.<table>.Key`` / ``.Value`` / ``.Envelope`` as Debezium names them) and
turns rows in text form into records: ``before``, ``after``, ``source``, ``op``,
``ts_ms``, and a tombstone after a delete.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kanal_worker.api import Header, SourceRecord
from kanal_worker.api.schema import (
    INT64,
    OPTIONAL_INT64,
    OPTIONAL_STRING,
    STRING,
    Field,
    Schema,
    optional,
    struct,
)
from kanal_worker.connectors.postgres_cdc.pgoutput import UNCHANGED_TOAST
from kanal_worker.connectors.postgres_cdc.settings import PostgresCdcSettings
from kanal_worker.connectors.postgres_cdc.values import (
    Column,
    Parse,
    column_type,
    literal_default,
    placeholder,
)

DEBEZIUM_VERSION = "3.6.1.Final"
"""The Debezium release whose records these are (``source.version``)."""

SNAPSHOT_MARKERS = "true,first,first_in_data_collection,last_in_data_collection,last,false," \
    "incremental"
SOURCE_SCHEMA = struct([
    ("version", STRING), ("connector", STRING), ("name", STRING), ("ts_ms", INT64),
    ("snapshot", OPTIONAL_STRING.with_(name="io.debezium.data.Enum", version=1,
                                       parameters={"allowed": SNAPSHOT_MARKERS},
                                       default="false")),
    ("db", STRING), ("sequence", OPTIONAL_STRING), ("ts_us", OPTIONAL_INT64),
    ("ts_ns", OPTIONAL_INT64), ("schema", STRING), ("table", STRING),
    ("txId", OPTIONAL_INT64), ("lsn", OPTIONAL_INT64), ("xmin", OPTIONAL_INT64),
    ("origin", OPTIONAL_STRING), ("origin_lsn", OPTIONAL_INT64),
], name="io.debezium.connector.postgresql.Source", version=1)
TRANSACTION_SCHEMA = struct([("id", STRING), ("total_order", INT64),
                             ("data_collection_order", INT64)],
                            name="event.block", version=1, optional=True)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a change is: its transaction, commit and own LSN, and commit time."""

    txid: int
    lsn: int
    last_commit_lsn: int | None
    commit_micros: int
    snapshot: str = "false"


def table_id(schema: str, table: str) -> str:
    return f"{schema}.{table}"


def selected(settings: PostgresCdcSettings, schema: str, table: str) -> bool:
    """Whether the include and exclude lists capture ``schema.table`` (whole-name
    regular expressions, as Debezium matches them)."""
    full = table_id(schema, table)

    def any_match(patterns: Sequence[str], name: str) -> bool:
        return any(re.fullmatch(p, name) for p in patterns)
    if schema in ("pg_catalog", "information_schema") or schema.startswith("pg_toast"):
        return False
    if settings.schema_include_list and not any_match(settings.schema_include_list, schema):
        return False
    if any_match(settings.schema_exclude_list, schema):
        return False
    if settings.table_include_list and not any_match(settings.table_include_list, full):
        return False
    return not any_match(settings.table_exclude_list, full)


class CapturedTable:
    """One table's schemas and the records of its changes."""

    def __init__(self, settings: PostgresCdcSettings, schema: str, name: str,
                 columns: Sequence[Column], key_columns: Sequence[str]) -> None:
        self.settings = settings
        self.schema, self.name = schema, name
        prefix = f"{settings.topic_prefix}.{schema}.{name}"
        self.topic = prefix
        excluded = [p for p in settings.column_exclude_list]
        kept = [c for c in columns
                if not any(re.fullmatch(p, f"{schema}.{name}.{c.name}") for p in excluded)]
        self.column_names = [c.name for c in columns]
        """Every column in table order: rows arrive with all of them."""
        self.kept = [self.column_names.index(c.name) for c in kept]
        types = [column_type(c.type_name, c.type_modifier, settings.decimal_handling_mode,
                             settings.time_precision_mode) for c in kept]
        self.parsers: list[Parse] = [t.parse for t in types]
        fields: list[tuple[str, Schema]] = []
        for column, kind in zip(kept, types, strict=True):
            schema_of = kind.schema if column.not_null else optional(kind.schema)
            default = literal_default(column.default, kind)
            if default is not None:
                schema_of = schema_of.with_(default=default)
            fields.append((column.name, schema_of))
        self.value_schema = struct(fields, name=f"{prefix}.Value", optional=True)
        keys = [self.column_names.index(k) for k in key_columns]
        self.key_positions = [self.kept.index(k) for k in keys if k in self.kept]
        self.key_schema: Schema | None = struct(
            [(fields[i][0], fields[i][1].with_(optional=False, default=None))
             for i in self.key_positions], name=f"{prefix}.Key") if self.key_positions else None
        self.envelope_schema = struct([
            ("before", self.value_schema), ("after", self.value_schema),
            ("source", SOURCE_SCHEMA), ("transaction", TRANSACTION_SCHEMA),
            ("op", STRING), ("ts_ms", OPTIONAL_INT64), ("ts_us", OPTIONAL_INT64),
            ("ts_ns", OPTIONAL_INT64)], name=f"{prefix}.Envelope", version=2)

    def row(self, texts: Sequence[object], previous: dict[str, Any] | None = None
            ) -> dict[str, Any]:
        """The value struct of a row in text form. A missing column (an old row that
        carried only the key, or a TOASTed value the change left alone) takes
        ``previous``'s value if there is one, else its type's placeholder."""
        values: dict[str, Any] = {}
        fields: tuple[Field, ...] = self.value_schema.fields
        for field, position, parse in zip(fields, self.kept, self.parsers, strict=True):
            text = texts[position] if position < len(texts) else UNCHANGED_TOAST
            if text is None:
                values[field.name] = None
            elif text is UNCHANGED_TOAST:
                values[field.name] = previous.get(field.name) if previous is not None \
                    else placeholder(field.schema)
            else:
                values[field.name] = parse(str(text))
        return values

    def key_only_row(self, texts: Sequence[object]) -> dict[str, Any]:
        """``before`` of a change whose old row holds only the key columns: the other
        columns null, or their type's placeholder when the schema requires them."""
        values = self.row(texts)
        key_names = {self.value_schema.fields[i].name for i in self.key_positions}
        for field in self.value_schema.fields:
            if field.name not in key_names and values[field.name] is None:
                values[field.name] = placeholder(field.schema)
        return values

    def key(self, value: dict[str, Any]) -> dict[str, Any] | None:
        if self.key_schema is None:
            return None
        return {field.name: value[field.name] for field in self.key_schema.fields}

    def truncate(self, position: Position, database: str, partition: dict[str, Any],
                 offset: dict[str, Any], headers: list[Header]) -> list[SourceRecord]:
        """A TRUNCATE: an ``op`` t event without key, ``before`` or ``after``."""
        event = self.records("t", None, None, position, database, partition, offset,
                             headers)[0]
        return [event.replace(key=None, key_schema=None)]

    def records(self, op: str, before: dict[str, Any] | None, after: dict[str, Any] | None,
                position: Position, database: str, partition: dict[str, Any],
                offset: dict[str, Any], headers: list[Header]) -> list[SourceRecord]:
        """The change event of ``op`` and, for a delete with tombstones on, its tombstone."""
        now_ns = time.time_ns()
        commit_ms = position.commit_micros // 1000
        sequence = f'["{position.last_commit_lsn}","{position.lsn}"]' \
            if position.last_commit_lsn is not None else f'[null,"{position.lsn}"]'
        source = {
            "version": DEBEZIUM_VERSION, "connector": "postgresql",
            "name": self.settings.topic_prefix, "ts_ms": commit_ms,
            "snapshot": position.snapshot, "db": database, "sequence": sequence,
            "ts_us": position.commit_micros, "ts_ns": position.commit_micros * 1000,
            "schema": self.schema, "table": self.name, "txId": position.txid,
            "lsn": position.lsn, "xmin": None, "origin": None, "origin_lsn": None}
        value = {"before": before, "after": after, "source": source, "transaction": None,
                 "op": op, "ts_ms": now_ns // 1_000_000, "ts_us": now_ns // 1000,
                 "ts_ns": now_ns}
        row = after if after is not None else before
        key = self.key(row) if row is not None else None
        event = SourceRecord(topic=self.topic, key=key, key_schema=self.key_schema,
                             value=value, value_schema=self.envelope_schema,
                             timestamp=now_ns // 1_000_000, headers=list(headers),
                             source_partition=partition, source_offset=offset)
        if op != "d" or not self.settings.tombstones_on_delete:
            return [event]
        tombstone = SourceRecord(topic=self.topic, key=key, key_schema=self.key_schema,
                                 value=None, value_schema=None, timestamp=event.timestamp,
                                 headers=list(headers), source_partition=partition,
                                 source_offset=offset)
        return [event, tombstone]


def snapshot_marker(first: bool, last: bool, first_in_table: bool, last_in_table: bool) -> str:
    """``source.snapshot`` of a snapshot record, as Debezium marks the ends."""
    if first:
        return "first"
    if last:
        return "last"
    if last_in_table:
        return "last_in_data_collection"
    if first_in_table:
        return "first_in_data_collection"
    return "true"


HEARTBEAT_KEY_SCHEMA = struct([("serverName", STRING)],
                              name="io.debezium.connector.common.ServerNameKey")
HEARTBEAT_VALUE_SCHEMA = struct([("ts_ms", INT64)],
                                name="io.debezium.connector.common.Heartbeat")
