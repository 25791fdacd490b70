"""The JDBC source's keys: Confluent kafka-connect-jdbc's names, defaults and meanings."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import field_validator

from kanal_worker.api import CommaList, setting
from kanal_worker.connectors.jdbc.database import JdbcConnectionSettings
from kanal_worker.connectors.jdbc.source_plan import Mode
from kanal_worker.connectors.jdbc.types import NumericMapping

MODE_GROUP = "Mode"
DATABASE_GROUP = "Database"
CONNECTOR_GROUP = "Connector"


class JdbcSourceSettings(JdbcConnectionSettings):
    mode: Mode = setting(
        key="mode", importance="HIGH", group=MODE_GROUP,
        doc="How each poll finds rows: bulk (the whole table every poll), incrementing "
            "(rows whose incrementing column is above the last one seen: new rows), "
            "timestamp (rows whose timestamp is newer: new and updated rows), "
            "timestamp+incrementing (both: new and updated rows, each exactly once).")
    incrementing_column: str = setting(
        "", key="incrementing.column.name", group=MODE_GROUP,
        doc="The strictly increasing column of the incrementing modes; empty uses the "
            "table's auto-increment column.")
    timestamp_columns: CommaList = setting(
        [], key="timestamp.column.name", group=MODE_GROUP,
        doc="Timestamp column(s) of the timestamp modes; with several, the first non-null "
            "of them (COALESCE) is the row's timestamp.")
    timestamp_initial: int | None = setting(
        None, key="timestamp.initial", group=MODE_GROUP,
        doc="Epoch milliseconds the timestamp modes start from when no offset is stored; "
            "-1 starts at the current time; unset reads from the beginning.")
    validate_non_null: bool = setting(
        True, key="validate.non.null", group=MODE_GROUP,
        doc="Refuse incrementing and timestamp columns that may be NULL (their rows would "
            "never be read).")
    query: str = setting(
        "", key="query", group=MODE_GROUP,
        doc="Read the rows of this query instead of tables; the mode's WHERE clause is "
            "appended to it (wrap a query that has its own WHERE as a subquery).")
    query_suffix: str = setting(
        "", key="query.suffix", group=MODE_GROUP, importance="LOW",
        doc="Text appended to the generated query, e.g. a locking hint.")
    table_whitelist: CommaList = setting(
        [], key="table.whitelist", group=DATABASE_GROUP,
        doc="Tables to read (name, or schema/database-qualified name); empty reads every "
            "table not in table.blacklist.")
    table_blacklist: CommaList = setting(
        [], key="table.blacklist", group=DATABASE_GROUP,
        doc="Tables not to read when table.whitelist is empty.")
    schema_pattern: str | None = setting(
        None, key="schema.pattern", group=DATABASE_GROUP,
        doc="SQL LIKE pattern of the schemas whose tables are read (PostgreSQL); unset: "
            "every schema but the system ones.")
    catalog_pattern: str | None = setting(
        None, key="catalog.pattern", group=DATABASE_GROUP,
        doc="SQL LIKE pattern of the databases whose tables are read (MySQL/MariaDB); "
            "unset: the database of connection.url.")
    table_types: CommaList = setting(
        ["TABLE"], key="table.types", group=DATABASE_GROUP,
        doc="Kinds of tables read: TABLE, VIEW.")
    numeric_mapping: NumericMapping = setting(
        "none", key="numeric.mapping", group=DATABASE_GROUP,
        doc="NUMERIC/DECIMAL columns as Connect Decimal (none), as integers when the "
            "scale is 0 (precision_only), also as float64 when they fit (best_fit), or "
            "as float64 whenever the scale is above 0 (best_fit_eager_double).")
    quote_identifiers: Literal["ALWAYS", "NEVER"] = setting(
        "ALWAYS", key="quote.sql.identifiers", group=DATABASE_GROUP,
        doc="Quote table and column names in the generated SQL.")
    db_timezone: str = setting(
        "UTC", key="db.timezone", group=DATABASE_GROUP,
        doc="Time zone of timestamp columns without one (and of the query's bounds).")
    topic_prefix: str = setting(
        key="topic.prefix", importance="HIGH", group=CONNECTOR_GROUP,
        doc="Records of a table go to the topic of this prefix and the table's name; in "
            "query mode, to the topic named by the prefix.")
    poll_interval_ms: int = setting(
        5000, key="poll.interval.ms", ge=1, group=CONNECTOR_GROUP,
        doc="Milliseconds between two queries of the same table.")
    batch_max_rows: int = setting(
        100, key="batch.max.rows", ge=1, group=CONNECTOR_GROUP,
        doc="Rows returned per poll (the query continues at the next poll).")
    table_poll_interval_ms: int = setting(
        60000, key="table.poll.interval.ms", ge=1, group=CONNECTOR_GROUP,
        doc="Milliseconds between two listings of the database's tables (new tables are "
            "read once listed).")
    timestamp_delay_ms: int = setting(
        0, key="timestamp.delay.interval.ms", ge=0, group=CONNECTOR_GROUP,
        doc="Read a timestamp only once the database's clock is this far past it, so rows "
            "of transactions that commit late (stamped before they commit) are not "
            "skipped; set it above the longest such transaction.")
    tables: CommaList = setting(
        [], key="tables", importance="LOW", group=CONNECTOR_GROUP,
        doc="Set by the connector for its tasks: the table.whitelist entries a task reads.")
    table_share: str = setting(
        "", key="table.share", importance="LOW", group=CONNECTOR_GROUP,
        pattern=r"^$|^\d+/\d+$",
        doc="Set by the connector for its tasks when they list the tables themselves: "
            "task k of n (k/n) reads the tables whose name hashes to k.")

    @field_validator("db_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use a name such as UTC or "
                             "Europe/Berlin") from None
        return value

    @field_validator("table_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        kinds = [v.upper() for v in value]
        unknown = [k for k in kinds if k not in ("TABLE", "VIEW")]
        if unknown:
            raise ValueError(f"unsupported table types {unknown}; use TABLE and/or VIEW")
        return kinds

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.db_timezone)
