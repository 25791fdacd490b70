"""The JDBC source: database tables (or a query) → Kafka, with Confluent's keys, modes and
offsets.

Each table has a reader that queries it every ``poll.interval.ms`` and keeps its result
open across polls (``batch.max.rows`` rows per poll), as Confluent's table queriers do.
A lost connection is retriable: the reader drops its result, the runtime backs off and
the next query starts after the last row emitted, so nothing is missed or repeated.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kanal_worker.api import (
    ConfigError,
    ConnectError,
    RetriableError,
    SourceConnector,
    SourceRecord,
    SourceTask,
    SourceTaskContext,
    comma_list,
)
from kanal_worker.api.schema import Schema, struct
from kanal_worker.connectors.jdbc.database import (
    Database,
    connection_error,
    dialect_problems,
)
from kanal_worker.connectors.jdbc.source_plan import (
    EPOCH,
    QUERY_PARTITION,
    Criteria,
    Offset,
    TableId,
    missing_entries,
    owns,
    parse_share,
    select_tables,
    split_evenly,
)
from kanal_worker.connectors.jdbc.source_settings import JdbcSourceSettings
from kanal_worker.connectors.jdbc.types import ToConnect, connect_column, result_types

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, CursorResult

log = logging.getLogger(__name__)

VALIDATE_CONNECT_TIMEOUT_S = 10
UTC_NAMES = frozenset({"UTC", "Etc/UTC", "GMT", "Etc/GMT", "UCT", "Zulu"})
SYSTEM_SCHEMAS = re.compile(r"^(pg_catalog|information_schema|pg_toast.*|pg_temp.*)$")


@dataclass
class Columns:
    """A result's Connect schema and, per column, how a value becomes a Connect value."""

    names: tuple[str, ...]
    schema: Schema
    converters: list[ToConnect | None]
    timestamp_indexes: list[int]
    incrementing_index: int | None


@dataclass
class Reader:
    """One table (or the query) and where it was read up to."""

    table: TableId | None
    partition: dict[str, Any]
    topic: str
    offset: Offset
    criteria: Criteria
    """The mode's columns (the incrementing one found per table when left empty)."""
    sql: str = ""
    last_run: float = -1e18
    columns: Columns | None = None
    connection: Connection | None = None
    result: CursorResult[Any] | None = None

    @property
    def label(self) -> str:
        return f"table {self.table.qualified}" if self.table else "query"

    def close(self) -> None:
        result, connection = self.result, self.connection
        self.result = self.connection = None
        for closing in (result, connection):
            if closing is None:
                continue
            try:
                closing.close()
            except Exception as exc:  # the connection may be gone already
                log.debug("closing the %s reader: %s", self.label, exc)


class JdbcSourceTask(SourceTask[JdbcSourceSettings]):
    def __init__(self, settings: JdbcSourceSettings, context: SourceTaskContext) -> None:
        super().__init__(settings, context)
        self.db: Database | None = None
        self.readers: list[Reader] | None = None
        self.criteria = configured_criteria(settings)
        self.next_listing = 0.0
        self.current: Reader | None = None
        self.initial_timestamp: dt.datetime | None = None

    def start(self) -> None:
        config_problems = mode_problems(self.settings)
        if config_problems:
            key, messages = next(iter(config_problems.items()))
            raise ConfigError(key, messages[0])
        self.db = Database(self.settings,
                           quote_identifiers=self.settings.quote_identifiers == "ALWAYS")
        initial = self.settings.timestamp_initial
        if initial is not None:
            self.initial_timestamp = (dt.datetime.now(dt.UTC) if initial == -1 else
                                      EPOCH + dt.timedelta(milliseconds=initial))

    def poll(self) -> list[SourceRecord]:
        import sqlalchemy.exc as sa_exc

        assert self.db is not None
        try:
            return self._poll()
        except (sa_exc.DBAPIError, RetriableError) as exc:
            reader = self.current
            if reader is not None:
                reader.close()
                self.current = None
            if isinstance(exc, RetriableError):
                error: ConnectError = exc
            else:
                error = connection_error(exc, self.db.url)
                if not isinstance(error, RetriableError) and reader is not None:
                    self._explain(reader)
            where = reader.label if reader else "listing tables"
            raise type(error)(f"{where}: {error}") from None

    def _explain(self, reader: Reader) -> None:
        """Raise ConfigError naming the key when a failed query's table or mode columns
        are gone (dropped or renamed while the task ran)."""
        assert self.db is not None
        if reader.table is None:
            return
        with self.db.connect() as connection:
            if reader.table not in list_tables(connection, self.settings):
                raise ConfigError("table.whitelist", f"{reader.label} no longer exists; "
                                  "restore it or remove it from the configuration")
            columns = tuple(reflect_columns(connection, reader.table))
        problems = column_problems(reader.criteria, columns, reader.label)
        if problems:
            key, messages = next(iter(problems.items()))
            raise ConfigError(key, messages[0])

    def _poll(self) -> list[SourceRecord]:
        if self.readers is None or (not self.settings.query and not self.settings.tables
                                    and time.monotonic() >= self.next_listing):
            self.readers = self._readers(self.readers or [])
            self.next_listing = time.monotonic() + self.settings.table_poll_interval_ms / 1000
        reader = self.current or self._due()
        if reader is None:
            return []
        if reader.result is None:
            self.current = reader
            self._query(reader)
        assert reader.result is not None and reader.columns is not None
        rows = reader.result.fetchmany(self.settings.batch_max_rows)
        records = self._records(reader, rows)
        if len(rows) < self.settings.batch_max_rows:
            reader.close()  # a read-only transaction: its rollback ends it
            reader.last_run = time.monotonic()
            self.current = None
        return records

    def _due(self) -> Reader | None:
        """The reader whose next query is due soonest, once it is due (else wait a little,
        as Confluent's task does, so that stopping stays quick)."""
        assert self.readers is not None
        if not self.readers:
            time.sleep(0.1)
            return None
        reader = min(self.readers, key=lambda r: r.last_run)
        wait = reader.last_run + self.settings.poll_interval_ms / 1000 - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, 0.1))
            return None
        return reader

    def _readers(self, previous: list[Reader]) -> list[Reader]:
        """Readers of the task's tables (kept for tables read before)."""
        s = self.settings
        if s.query:
            return previous or [Reader(None, QUERY_PARTITION, s.topic_prefix,
                                       Offset.from_map(self.context.offset(QUERY_PARTITION)),
                                       self.criteria)]
        assert self.db is not None
        with self.db.connect() as connection:
            listed = list_tables(connection, s)
            if s.tables:
                missing = missing_entries(listed, s.tables)
                if missing:
                    raise ConfigError("table.whitelist", f"table(s) {', '.join(missing)} not "
                                      "found in the database; create them or correct the list")
                tables = select_tables(listed, s.tables, [])
            else:
                share = parse_share(s.table_share)
                tables = [t for t in select_tables(listed, [], s.table_blacklist)
                          if share is None or owns(t, share)]
            kept = {r.table: r for r in previous}
            if s.validate_non_null and self.criteria.mode != "bulk":
                for table in tables:
                    if table not in kept:
                        problems = nullability_problems(s, table,
                                                        reflect_columns(connection, table))
                        if problems:
                            key, messages = next(iter(problems.items()))
                            raise ConfigError(key, messages[0])
        readers = []
        for table in tables:
            reader = kept.get(table)
            if reader is None:
                stored = (self.context.offset(table.partition())
                          or self.context.offset(table.legacy_partition()))
                reader = Reader(table, table.partition(), s.topic_prefix + table.name,
                                Offset.from_map(stored), self.criteria)
            readers.append(reader)
        for gone in set(kept) - set(tables):
            log.info("Table %s is gone; no longer read", gone and gone.qualified)
            kept[gone].close()
        return readers

    def _query(self, reader: Reader) -> None:
        """Start the reader's query in a transaction of its own (its clock and snapshot)."""
        import sqlalchemy as sa

        assert self.db is not None
        s = self.settings
        connection = reader.connection = self.db.connect()
        dialect = connection.dialect
        if dialect.name == "postgresql":
            # naive bounds and timestamptz columns meet in db.timezone
            connection.exec_driver_sql(f"SET TIME ZONE '{s.db_timezone}'")
        elif dialect.name in ("mysql", "mariadb") and s.db_timezone in UTC_NAMES:
            # TIMESTAMP columns are read in the session's zone: make it db.timezone's
            connection.exec_driver_sql("SET time_zone = '+00:00'")
        if not reader.sql:
            reader.sql = self._sql(reader, connection)
        end = None
        if reader.criteria.uses_timestamps:
            end = database_now(connection) - dt.timedelta(milliseconds=s.timestamp_delay_ms)
        params = reader.criteria.parameters(reader.offset, self.initial_timestamp or EPOCH, end)
        params = {k: in_zone(v, s) if isinstance(v, dt.datetime) else v
                  for k, v in params.items()}
        reader.result = connection.execution_options(stream_results=True).execute(
            sa.text(reader.sql), params)
        names = tuple(reader.result.keys())
        if reader.columns is None or reader.columns.names != names:
            reader.columns = self._columns(reader, connection, names)

    def _sql(self, reader: Reader, connection: Connection) -> str:
        s = self.settings
        quote = (connection.dialect.identifier_preparer.quote_identifier
                 if s.quote_identifiers == "ALWAYS" else str)
        if reader.table is None:
            base = s.query
        else:
            parts = [p for p in (reader.table.catalog, reader.table.schema, reader.table.name)
                     if p]
            base = "SELECT * FROM " + ".".join(quote(p) for p in parts)
        criteria = reader.criteria
        if criteria.uses_incrementing and not criteria.incrementing:
            criteria = reader.criteria = dataclasses.replace(
                criteria, incrementing=auto_increment_column(connection, reader))
        sql = base + criteria.clause(quote)
        if s.query_suffix:
            sql += " " + s.query_suffix
        log.debug("%s reads with: %s", reader.label, sql)
        return sql

    def _columns(self, reader: Reader, connection: Connection,
                 names: tuple[str, ...]) -> Columns:
        """The result's schema: the table's column types and nullability, or for a query
        the types its result reports."""
        import sqlalchemy as sa

        assert reader.result is not None
        s = self.settings
        if reader.table is not None:
            assert self.db is not None
            # a connection of its own: MySQL's streamed result holds this one
            with self.db.connect() as other:
                reflected = reflect_columns(other, reader.table)
            types = [(reflected[n]["type"], reflected[n]["nullable"]) if n in reflected
                     else (sa.types.NullType(), True) for n in names]
        else:
            types = result_types(connection.dialect.name, reader.result.cursor.description)
        fields, converters = [], []
        for name, (column_type, nullable) in zip(names, types, strict=True):
            schema, convert = connect_column(column_type, nullable, s.numeric_mapping, s.zone)
            fields.append((name, schema))
            converters.append(convert)
        criteria = reader.criteria
        problems = column_problems(criteria, names, reader.label)
        if problems:
            key, messages = next(iter(problems.items()))
            raise ConfigError(key, messages[0])
        return Columns(
            names, struct(fields, name=reader.table.name if reader.table else None), converters,
            [names.index(c) for c in criteria.timestamps],
            names.index(criteria.incrementing) if criteria.incrementing else None)

    def _records(self, reader: Reader, rows: Sequence[Sequence[Any]]) -> list[SourceRecord]:
        columns = reader.columns
        assert columns is not None
        names = columns.names
        # only the columns whose driver values are not Connect values yet are converted
        converted = [(index, names[index], convert)
                     for index, convert in enumerate(columns.converters) if convert is not None]
        criteria = reader.criteria
        records = []
        offset = reader.offset
        for row in rows:
            value = dict(zip(names, row, strict=True))
            for index, name, convert in converted:
                item = row[index]
                if item is not None:
                    value[name] = convert(item)
            if criteria.mode != "bulk":
                offset = criteria.next_offset(offset, row_timestamp(value, columns),
                                              row_incrementing(value, columns, reader))
            records.append(SourceRecord(
                topic=reader.topic, value=value, value_schema=columns.schema,
                source_partition=reader.partition, source_offset=offset.to_map()))
        reader.offset = offset
        return records

    def stop(self) -> None:
        for reader in self.readers or []:
            reader.close()
        if self.db is not None:
            self.db.dispose()


def row_timestamp(value: dict[str, Any], columns: Columns) -> dt.datetime | None:
    for index in columns.timestamp_indexes:
        found = value[columns.names[index]]
        if found is not None:
            moment: dt.datetime = found
            return moment
    return None


def row_incrementing(value: dict[str, Any], columns: Columns, reader: Reader) -> int | None:
    if columns.incrementing_index is None:
        return None
    name = columns.names[columns.incrementing_index]
    found = value[name]
    if found is None:
        raise ConnectError(f"{reader.label}: incrementing column {name} is NULL in a row; "
                           "such rows cannot be ordered (make the column NOT NULL)")
    return int(found)


def in_zone(moment: dt.datetime, settings: JdbcSourceSettings) -> dt.datetime:
    """An aware instant as the naive date and time of ``db.timezone``."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    return aware.astimezone(settings.zone).replace(tzinfo=None)


def database_now(connection: Connection) -> dt.datetime:
    """The database's clock (the query's upper bound must not run ahead of the rows it
    stamps), as an aware UTC datetime."""
    name = connection.dialect.name
    if name == "postgresql":
        now = connection.exec_driver_sql("SELECT CURRENT_TIMESTAMP").scalar_one()
    elif name in ("mysql", "mariadb"):
        now = connection.exec_driver_sql("SELECT UTC_TIMESTAMP(6)").scalar_one()
    else:
        return dt.datetime.now(dt.UTC)  # SQLite runs in this process: same clock
    moment: dt.datetime = now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _like(pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(regex + r"\Z")


def list_tables(connection: Connection, settings: JdbcSourceSettings) -> list[TableId]:
    """The tables (and views, when asked) the connector may read, as the driver names
    them: PostgreSQL's by schema, MySQL's by database, SQLite's by name."""
    import sqlalchemy as sa

    inspector = sa.inspect(connection)
    dialect = connection.dialect.name

    def names(schema: str | None) -> list[str]:
        found = list(inspector.get_table_names(schema)) if "TABLE" in settings.table_types \
            else []
        if "VIEW" in settings.table_types:
            found += inspector.get_view_names(schema)
        return found

    if dialect == "postgresql":
        pattern = _like(settings.schema_pattern)
        schemas = [n for n in inspector.get_schema_names()
                   if (pattern.match(n) if pattern else not SYSTEM_SCHEMAS.match(n))]
        return [TableId(None, schema, name) for schema in schemas for name in names(schema)]
    if dialect in ("mysql", "mariadb"):
        pattern = _like(settings.catalog_pattern or settings.schema_pattern)
        databases = ([n for n in inspector.get_schema_names() if pattern.match(n)] if pattern
                     else [connection.engine.url.database or
                           connection.exec_driver_sql("SELECT DATABASE()").scalar_one()])
        return [TableId(db, None, name) for db in databases for name in names(db)]
    return [TableId(None, None, name) for name in names(None)]


def reflect_columns(connection: Connection, table: TableId) -> dict[str, dict[str, Any]]:
    import sqlalchemy as sa

    schema = table.catalog or table.schema
    return {c["name"]: dict(c) for c in sa.inspect(connection).get_columns(table.name, schema)}


def auto_increment_column(connection: Connection, reader: Reader) -> str:
    """The table's auto-increment column, for an empty incrementing.column.name."""
    if reader.table is not None:
        for name, column in reflect_columns(connection, reader.table).items():
            if column.get("autoincrement") is True or column.get("identity"):
                return name
    raise ConfigError("incrementing.column.name",
                      f"{reader.label} has no auto-increment column; name the incrementing "
                      "column")


def mode_problems(settings: JdbcSourceSettings) -> dict[str, list[str]]:
    """Errors of key combinations, found without the database."""
    problems: dict[str, list[str]] = {}
    if settings.mode in ("timestamp", "timestamp+incrementing") \
            and not settings.timestamp_columns:
        problems["timestamp.column.name"] = [
            f"mode {settings.mode} needs the timestamp column(s); set timestamp.column.name"]
    if settings.mode in ("incrementing", "timestamp+incrementing") and settings.query \
            and not settings.incrementing_column:
        problems["incrementing.column.name"] = [
            "query mode cannot find an auto-increment column; set incrementing.column.name"]
    if settings.table_whitelist and settings.table_blacklist:
        problems["table.blacklist"] = ["table.whitelist and table.blacklist exclude each "
                                       "other; set only one"]
    if settings.query and (settings.table_whitelist or settings.table_blacklist):
        problems["query"] = ["query reads its own rows; remove table.whitelist and "
                             "table.blacklist or the query"]
    return problems


def configured_criteria(settings: JdbcSourceSettings) -> Criteria:
    return Criteria(settings.mode, settings.incrementing_column or None,
                    tuple(settings.timestamp_columns))


def column_problems(criteria: Criteria, names: Sequence[str], label: str
                    ) -> dict[str, list[str]]:
    """Mode columns that the table or query lacks."""
    problems: dict[str, list[str]] = {}
    missing = [c for c in criteria.timestamps if c not in names]
    if criteria.uses_timestamps and missing:
        problems["timestamp.column.name"] = [
            f"{label} has no column {', '.join(missing)} (its columns: {', '.join(names)})"]
    if criteria.uses_incrementing and criteria.incrementing \
            and criteria.incrementing not in names:
        problems["incrementing.column.name"] = [
            f"{label} has no column {criteria.incrementing} (its columns: {', '.join(names)})"]
    return problems


def nullability_problems(settings: JdbcSourceSettings, table: TableId,
                         columns: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """validate.non.null: Confluent refuses mode columns that may be NULL."""
    problems: dict[str, list[str]] = {}
    criteria = configured_criteria(settings)
    inc = criteria.incrementing
    if criteria.uses_incrementing and inc and columns.get(inc, {}).get("nullable"):
        problems["incrementing.column.name"] = [
            f"Cannot make incremental queries using incrementing column {inc} on "
            f"{table.qualified} because this column is nullable; make it NOT NULL or set "
            "validate.non.null=false"]
    present = [c for c in criteria.timestamps if c in columns]
    if criteria.uses_timestamps and present and all(columns[c]["nullable"] for c in present):
        problems["timestamp.column.name"] = [
            f"Cannot make incremental queries using timestamp columns "
            f"{', '.join(criteria.timestamps)} on {table.qualified} because all of these "
            "columns are nullable; make one NOT NULL or set validate.non.null=false"]
    return problems


class JdbcSourceConnector(SourceConnector[JdbcSourceSettings]):
    """Spreads the whitelisted tables over the tasks; without a whitelist each task lists
    the tables itself and reads its share of them (a stable hash of each name)."""

    settings = JdbcSourceSettings
    task_class = JdbcSourceTask
    aliases = ("io.confluent.connect.jdbc.JdbcSourceConnector", "JdbcSource")

    def task_configs(self, config: Mapping[str, str], max_tasks: int) -> list[dict[str, str]]:
        if config.get("query", "").strip():
            return [dict(config)]
        whitelist = comma_list(config.get("table.whitelist"))
        if whitelist:
            return [{**config, "tables": ",".join(group)}
                    for group in split_evenly(whitelist, max_tasks)]
        return [{**config, "table.share": f"{index}/{max_tasks}"} for index in range(max_tasks)]

    def validate(self, settings: JdbcSourceSettings) -> dict[str, list[str]]:
        problems = mode_problems(settings)
        problems.update(dialect_problems(settings))
        if problems or "${" in settings.connection_url + str(settings.connection_user) \
                + (settings.connection_password.get_secret_value()
                   if settings.connection_password else ""):
            return problems  # placeholders are resolved where the tasks run
        return database_problems(settings)


def database_problems(settings: JdbcSourceSettings) -> dict[str, list[str]]:
    """What the database says about the configuration: the connection, the tables, the
    mode's columns."""
    import sqlalchemy.exc as sa_exc

    url = settings.connection_url
    if settings.database_url().dialect != "sqlite" and "connect_timeout" not in url:
        # validation answers a request: an unanswering host must not hold it for minutes
        url += f"{'&' if '?' in url else '?'}connect_timeout={VALIDATE_CONNECT_TIMEOUT_S}"
    db = Database(settings.model_copy(update={"connection_url": url}),
                  quote_identifiers=settings.quote_identifiers == "ALWAYS")
    try:
        with db.connect(attempts=1) as connection:
            if settings.query:
                return _query_problems(connection, settings)
            return _table_problems(connection, settings)
    except ConnectError as exc:
        key = "connection.password" if "log in" in str(exc) else "connection.url"
        return {key: [str(exc)]}
    except sa_exc.DBAPIError as exc:
        return {"connection.url": [str(connection_error(exc, db.url))]}
    finally:
        db.dispose()


def _query_problems(connection: Connection, settings: JdbcSourceSettings
                    ) -> dict[str, list[str]]:
    import sqlalchemy as sa
    import sqlalchemy.exc as sa_exc

    try:
        result = connection.execute(sa.text(f"SELECT * FROM ({settings.query}) q WHERE 1=0"))
    except sa_exc.DBAPIError as exc:
        return {"query": [f"the query fails: {str(exc.orig or exc).strip().splitlines()[0]}"]}
    names = tuple(result.keys())
    criteria = configured_criteria(settings)
    return column_problems(criteria, names, "the query")


def _table_problems(connection: Connection, settings: JdbcSourceSettings
                    ) -> dict[str, list[str]]:
    listed = list_tables(connection, settings)
    missing = missing_entries(listed, settings.table_whitelist)
    if missing:
        return {"table.whitelist": [f"table(s) {', '.join(missing)} not found in the database "
                                    "(as listed for table.types, schema.pattern and "
                                    "catalog.pattern); create them or correct the list"]}
    chosen = select_tables(listed, settings.table_whitelist, settings.table_blacklist)
    criteria = configured_criteria(settings)
    problems: dict[str, list[str]] = {}
    for table in chosen:
        columns = reflect_columns(connection, table)
        found = column_problems(criteria, tuple(columns), f"table {table.qualified}")
        if not found and settings.validate_non_null:
            found = nullability_problems(settings, table, columns)
        for key, messages in found.items():
            problems.setdefault(key, []).extend(messages)
    return problems
