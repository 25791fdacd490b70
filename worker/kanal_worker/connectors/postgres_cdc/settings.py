"""The PostgreSQL CDC source's configuration, under Debezium's keys and with its defaults.

A Debezium ``PostgresConnector`` configuration parses unchanged; keys Debezium has and
this connector does not act on are accepted and ignored (docs/postgres-cdc.md lists them).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, SecretStr, field_validator

from kanal_worker.api import CommaList, Settings, setting
from kanal_worker.connectors.postgres_cdc.values import DecimalMode, TimeMode

CONNECTION, CAPTURE, STREAMING = "Connection", "Connector", "Advanced"


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


SnapshotMode = Literal["initial", "never", "no_data", "initial_only", "when_needed",
                       "always"]
AutocreateMode = Literal["all_tables", "disabled", "filtered", "no_tables"]


class PostgresCdcSettings(Settings):
    hostname: str = setting(
        key="database.hostname", importance="HIGH", group=CONNECTION,
        doc="The PostgreSQL server's host name or address.")
    port: int = setting(
        5432, key="database.port", importance="HIGH", group=CONNECTION, ge=1, le=65535,
        doc="The PostgreSQL server's port.")
    user: str = setting(
        key="database.user", importance="HIGH", group=CONNECTION,
        doc="The user: it needs the REPLICATION attribute, SELECT on the captured tables "
            "and, to create the publication, ownership of them (or superuser).")
    password: SecretStr | None = setting(
        None, key="database.password", importance="HIGH", group=CONNECTION,
        doc="The user's password.")
    dbname: str = setting(
        key="database.dbname", importance="HIGH", group=CONNECTION,
        doc="The database whose changes are captured.")
    sslmode: str = setting(
        "prefer", key="database.sslmode", importance="MEDIUM", group=CONNECTION,
        doc="libpq's sslmode: disable, allow, prefer, require, verify-ca or verify-full.")
    topic_prefix: str = setting(
        key="topic.prefix", importance="HIGH", group=CAPTURE,
        doc="The logical name of the server: topics are <topic.prefix>.<schema>.<table>, "
            "and the prefix names the Connect schemas and source.name.")
    plugin_name: Annotated[Literal["pgoutput"], BeforeValidator(_lower)] = setting(
        "pgoutput", key="plugin.name", importance="MEDIUM", group=CAPTURE,
        doc="The logical decoding plugin; Kanal reads pgoutput, PostgreSQL's built-in "
            "plugin (decoderbufs needs a server extension and is not supported).")
    slot_name: str = setting(
        "debezium", key="slot.name", importance="MEDIUM", group=CAPTURE,
        doc="The logical replication slot: created at the first start, it keeps the WAL "
            "not yet confirmed. One slot per connector.")
    slot_drop_on_stop: bool = setting(
        False, key="slot.drop.on.stop", importance="LOW", group=CAPTURE,
        doc="Drop the slot when the task stops for good (tests, throw-away pipelines). A "
            "connector started again then snapshots anew; changes in between are lost.")
    publication_name: str = setting(
        "dbz_publication", key="publication.name", importance="LOW", group=CAPTURE,
        doc="The publication naming the captured tables.")
    publication_autocreate_mode: Annotated[AutocreateMode, BeforeValidator(_lower)] = setting(
        "all_tables", key="publication.autocreate.mode", importance="LOW", group=CAPTURE,
        doc="all_tables: create the publication FOR ALL TABLES if it is missing. filtered: "
            "create it (or set its tables) for the tables the include/exclude lists select. "
            "no_tables: create it empty. disabled: it must exist.")
    snapshot_mode: Annotated[SnapshotMode, BeforeValidator(_lower)] = setting(
        "initial", key="snapshot.mode", importance="LOW", group=CAPTURE,
        doc="initial: read the tables once, then stream. never / no_data: stream only. "
            "initial_only: read the tables and stop there. when_needed: snapshot when there "
            "is no stored position or the slot is gone. always: snapshot at every start.")
    schema_include_list: CommaList = setting(
        [], key="schema.include.list", importance="HIGH", group=CAPTURE,
        doc="Regular expressions of the schemas to capture (whole names); empty: all but "
            "the system schemas.")
    schema_exclude_list: CommaList = setting(
        [], key="schema.exclude.list", importance="MEDIUM", group=CAPTURE,
        doc="Regular expressions of the schemas not to capture.")
    table_include_list: CommaList = setting(
        [], key="table.include.list", importance="HIGH", group=CAPTURE,
        doc="Regular expressions of the tables to capture, as schema.table.")
    table_exclude_list: CommaList = setting(
        [], key="table.exclude.list", importance="MEDIUM", group=CAPTURE,
        doc="Regular expressions of the tables not to capture, as schema.table.")
    column_exclude_list: CommaList = setting(
        [], key="column.exclude.list", importance="MEDIUM", group=CAPTURE,
        doc="Regular expressions of columns left out of the records, as schema.table.column.")
    tombstones_on_delete: bool = setting(
        True, key="tombstones.on.delete", importance="MEDIUM", group=CAPTURE,
        doc="After each delete event, a record with the same key and a null value, so a "
            "compacted topic forgets the row.")
    skipped_operations: CommaList = setting(
        ["t"], key="skipped.operations", importance="LOW", group=CAPTURE,
        doc="Operations not written: c (insert), u (update), d (delete), t (truncate), or "
            "none to write all.")
    decimal_handling_mode: Annotated[DecimalMode, BeforeValidator(_lower)] = setting(
        "precise", key="decimal.handling.mode", importance="MEDIUM", group=CAPTURE,
        doc="NUMERIC columns as precise (Connect Decimal; io.debezium.data."
            "VariableScaleDecimal without a declared scale), double or string.")
    time_precision_mode: Annotated[TimeMode, BeforeValidator(_lower)] = setting(
        "adaptive", key="time.precision.mode", importance="MEDIUM", group=CAPTURE,
        doc="adaptive: io.debezium.time types in ms or µs by the column's precision. "
            "adaptive_time_microseconds: TIME always as MicroTime. connect: Kafka Connect's "
            "Date, Time and Timestamp (milliseconds).")
    heartbeat_interval_ms: int = setting(
        0, key="heartbeat.interval.ms", importance="MEDIUM", group=STREAMING, ge=0,
        doc="How often a heartbeat record goes to __debezium-heartbeat.<topic.prefix>, "
            "carrying the server's current position: once Kafka has it the slot is "
            "confirmed up to there, so an idle slot does not hold WAL. 0 disables.")
    heartbeat_action_query: str = setting(
        "", key="heartbeat.action.query", importance="LOW", group=STREAMING,
        doc="SQL run at each heartbeat, e.g. an UPDATE of a heartbeat table, so a database "
            "with idle captured tables still produces changes.")
    heartbeat_topics_prefix: str = setting(
        "__debezium-heartbeat", key="topic.heartbeat.prefix", importance="LOW",
        group=STREAMING, doc="The heartbeat topic's prefix.")
    max_batch_size: int = setting(
        2048, key="max.batch.size", importance="LOW", group=STREAMING, ge=1,
        doc="The most records one poll returns.")
    poll_interval_ms: int = setting(
        500, key="poll.interval.ms", importance="LOW", group=STREAMING, ge=1,
        doc="How long a poll waits for changes when there are none.")
    status_update_interval_ms: int = setting(
        10000, key="status.update.interval.ms", importance="LOW", group=STREAMING, ge=1,
        doc="How often the task tells the server its position (replication feedback).")

    @field_validator("schema_include_list", "schema_exclude_list", "table_include_list",
                     "table_exclude_list", "column_exclude_list")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return value

    @field_validator("slot_name")
    @classmethod
    def _slot(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9_]{1,63}", value):
            raise ValueError(f"Slot name {value!r} is invalid: PostgreSQL allows lower-case "
                             "letters, digits and underscores, at most 63")
        return value

    @field_validator("skipped_operations")
    @classmethod
    def _operations(cls, value: list[str]) -> list[str]:
        unknown = [op for op in value if op not in ("c", "u", "d", "t", "none")]
        if unknown:
            raise ValueError(f"Unknown operations {','.join(unknown)}; use c, u, d, t or none")
        return [op for op in value if op != "none"]

    def password_text(self) -> str | None:
        return self.password.get_secret_value() if self.password is not None else None
