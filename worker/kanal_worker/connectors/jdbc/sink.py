"""JdbcSinkConnector: Kafka topics into PostgreSQL, MySQL/MariaDB and SQLite tables.

Confluent's connector, rebuilt: the same keys, defaults and class name
(``io.confluent.connect.jdbc.JdbcSinkConnector``). Beyond it, schemaless JSON values are
written too, with column types inferred from the values and widened safely.

Guarantees
----------
Each poll's records are written in one transaction; ``write`` returns only after it
committed, so the runtime commits offsets only for rows the database holds. A replay
after a crash writes the same rows again: with ``insert.mode=upsert`` (or ``update``)
the table ends up the same, exactly the last value of every key. A record the database
refuses (a value that does not fit its column, a missing key field) is found by writing
the batch again record by record, each in a savepoint: the good records commit
together, the refused ones go to error handling (the dead-letter queue with
``errors.tolerance=all``) and no record is ever half written. A database that cannot be
reached raises RetriableError: the runtime backs off, the status says "retrying write",
and the same batch is written once the database is back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal
from itertools import groupby
from typing import TYPE_CHECKING, Any

from kanal_worker.api import (
    ConfigError,
    DataError,
    RecordWriteError,
    RetriableError,
    SinkBatch,
    SinkConnector,
    SinkTask,
    SinkTaskContext,
    TopicPartition,
)
from kanal_worker.connectors.jdbc.database import Database, is_transient
from kanal_worker.connectors.jdbc.rows import Operation, RowBuilder, where
from kanal_worker.connectors.jdbc.sink_settings import JdbcSinkSettings, sink_problems
from kanal_worker.connectors.jdbc.tables import TableKeeper, find_column, shapes
from kanal_worker.connectors.jdbc.types import ValueKind, column_kind, value_kind, widen
from kanal_worker.converters.json import dumps

if TYPE_CHECKING:
    import sqlalchemy as sa

log = logging.getLogger(__name__)
KEY_PARAM, VALUE_PARAM = "k_", "v_"


class JdbcSinkTask(SinkTask[JdbcSinkSettings]):
    def __init__(self, settings: JdbcSinkSettings, context: SinkTaskContext) -> None:
        super().__init__(settings, context)
        for key, messages in sink_problems(settings).items():
            raise ConfigError(key, messages[0])
        self.db = Database(settings, quote_identifiers=settings.quote_sql_identifiers == "ALWAYS")
        self.rows = RowBuilder(settings, self.db.dialect)
        self.tables = TableKeeper(self.db, settings)
        self._statements: dict[tuple[Any, ...], sa.Executable] = {}
        self._copies = self.db.dialect == "postgresql" and settings.insert_mode == "insert"
        log.info("Task %s writes to %s (insert.mode=%s, pk.mode=%s)", context.task_id,
                 self.db.url.display, settings.insert_mode, settings.pk_mode)

    def open(self, partitions: list[TopicPartition]) -> None:
        """Fail early on credentials that cannot work; an unreachable database is only
        logged here (writes retry until it is back)."""
        try:
            self.db.connect(attempts=1).close()
        except RetriableError as exc:
            log.warning("Task %s: %s; writes will retry", self.context.task_id, exc)

    def write(self, batch: SinkBatch) -> None:
        failures: list[tuple[object, BaseException]] = []
        by_table: dict[str, list[Operation]] = {}
        for record in batch:
            try:
                op = self.rows.build(record)
            except DataError as exc:
                failures.append((record, exc))
                continue
            if op is not None:
                by_table.setdefault(op.table, []).append(op)
        ready: list[tuple[sa.Table, list[Operation]]] = []
        for name, ops in by_table.items():
            table, refused = self.tables.prepare(name, ops)
            failures.extend((op.record, error) for op, error in refused)
            if table is not None:
                gone = {id(op) for op, _ in refused}
                ready.append((table, [op for op in ops if id(op) not in gone]))
        if ready:
            failures.extend((op.record, error) for op, error in self._write_tables(ready))
        if failures:
            raise RecordWriteError(failures)

    def stop(self) -> None:
        self.db.dispose()

    # -- the transaction -----------------------------------------------------------------
    def _write_tables(self, ready: list[tuple[sa.Table, list[Operation]]]
                      ) -> list[tuple[Operation, BaseException]]:
        """Write every operation in one transaction; when the database refuses one, write
        them again one savepoint each and return the refused ones."""
        import sqlalchemy.exc as sa_exc

        try:
            with self.db.transaction() as connection:
                for table, ops in ready:
                    for run in self._runs(table, ops):
                        self._execute(connection, table, run)
            return []
        except sa_exc.DBAPIError as exc:
            log.info("Task %s: the database refused a row (%s); writing record by record to "
                     "find it", self.context.task_id, str(exc.orig).strip().splitlines()[0])
            for table, _ in ready:  # it may have changed under us: read it again next time
                self.db.forget_table(table.fullname)
        refused: list[tuple[Operation, BaseException]] = []
        with self.db.transaction() as connection:
            for table, ops in ready:
                for op in ops:
                    try:
                        with connection.begin_nested():
                            self._execute(connection, table, self._conformed(table, [op]))
                    except sa_exc.DBAPIError as exc:
                        if is_transient(exc):
                            raise RetriableError(f"Database {self.db.url.display}: "
                                                 f"{exc.orig}") from exc
                        refused.append((op, DataError(_refusal(table, op, exc))))
        return refused

    def _runs(self, table: sa.Table, ops: list[Operation]) -> Iterator[list[Operation]]:
        """Consecutive operations of one statement shape, in chunks of batch.size; an
        upsert run keeps the last row of each key (a statement may not touch a row twice)."""
        size = self.settings.batch_size
        for _, group in groupby(self._conformed(table, ops),
                                key=lambda op: (op.delete, tuple(op.row))):
            run = list(group)
            if self.settings.insert_mode == "upsert" and not run[0].delete:
                run = list({op.key: op for op in run}.values())
            for start in range(0, len(run), size):
                yield run[start:start + size]

    def _conformed(self, table: sa.Table, ops: list[Operation]) -> list[Operation]:
        """Values made to fit their columns as the table has them: schemaless values as
        widened (an integer for a double column, text for a text column), documents as
        JSON text where the column is text (MariaDB's JSON is LONGTEXT); nulls of
        schemaless fields the table has no column for are dropped."""
        import sqlalchemy as sa

        for shape, shaped in shapes(ops).items():
            dropped, fitted, encoded = [], [], []
            for spec in shape:
                column = find_column(table, spec.name)
                if not spec.inferred:
                    if column is not None and isinstance(spec.type, sa.JSON) and \
                            not isinstance(column.type, sa.JSON):
                        encoded.append(spec.name)
                elif column is None:
                    dropped.append(spec.name)
                elif spec.kind is not None and column_kind(column.type) != spec.kind:
                    fitted.append((spec.name, spec.kind, column_kind(column.type)))
            for op in shaped if dropped or fitted or encoded else ():
                row = op.row
                for name in dropped:
                    row.pop(name, None)
                for name, kind, target in fitted:
                    row[name] = _fit(row[name], kind, target)
                for name in encoded:
                    if row[name] is not None:
                        row[name] = _json_text(row[name])
        return ops

    def _execute(self, connection: sa.Connection, table: sa.Table, run: list[Operation]) -> None:
        if not run:
            return
        first = run[0]
        names = [find_column(table, name) for name in first.row]
        keys = [spec.name for spec in first.columns if spec.key]
        columns = {name: column.name for name, column in zip(first.row, names, strict=True)
                   if column is not None}
        if self._copies and not first.delete and len(run) > 1:
            self._copy(connection, table, columns, run)
            return
        statement = self._statement(table, first.delete, tuple(columns.values()),
                                    tuple(columns[k] for k in keys))
        if statement is None:
            return
        if first.delete or self.settings.insert_mode == "update":
            params = [{(KEY_PARAM if name in keys else VALUE_PARAM) + columns[name]: value
                       for name, value in op.row.items() if name in columns} for op in run]
        else:
            params = [{columns[name]: value for name, value in op.row.items()
                       if name in columns} for op in run]
        connection.execute(statement, params)

    def _copy(self, connection: sa.Connection, table: sa.Table, columns: dict[str, str],
              run: list[Operation]) -> None:
        """Plain inserts into PostgreSQL by COPY, in the batch's transaction: several
        times the rows per second of INSERT batches. A row COPY refuses fails the whole
        COPY, and the record-by-record retry (INSERTs in savepoints) finds it."""
        import psycopg
        import sqlalchemy as sa
        import sqlalchemy.exc as sa_exc
        from psycopg.types.json import Jsonb

        preparer = connection.dialect.identifier_preparer
        names = list(columns)
        documents = [isinstance(table.c[columns[name]].type, sa.JSON) for name in names]
        command = (f"COPY {preparer.format_table(table)} "
                   f"({', '.join(preparer.quote(columns[name]) for name in names)}) FROM STDIN")
        driver = connection.connection.driver_connection
        assert driver is not None
        try:
            with driver.cursor() as cursor, cursor.copy(command) as copy:
                for op in run:
                    row = op.row
                    copy.write_row([
                        Jsonb(row.get(name), _json_text) if document and row.get(name) is not None
                        else row.get(name) for name, document in zip(names, documents,
                                                                      strict=True)])
        except psycopg.Error as exc:
            raise sa_exc.DBAPIError.instance(command, None, exc, psycopg.Error) from exc

    def _statement(self, table: sa.Table, delete: bool, columns: tuple[str, ...],
                   keys: tuple[str, ...]) -> sa.Executable | None:
        cache_key = (table.fullname, id(table), delete, columns, keys)
        found = self._statements.get(cache_key)
        if found is None:
            found = self._build_statement(table, delete, columns, keys)
            if found is not None:
                self._statements[cache_key] = found
        return found

    def _build_statement(self, table: sa.Table, delete: bool, columns: tuple[str, ...],
                         keys: tuple[str, ...]) -> sa.Executable | None:
        import sqlalchemy as sa

        def by_key() -> sa.ColumnElement[bool]:
            return sa.and_(*(table.c[k] == sa.bindparam(KEY_PARAM + k) for k in keys))

        if delete:
            return table.delete().where(by_key())
        others = [c for c in columns if c not in keys]
        mode = self.settings.insert_mode
        if mode == "update":
            if not others:
                return None
            return table.update().where(by_key()).values(
                {c: sa.bindparam(VALUE_PARAM + c) for c in others})
        if mode == "insert":
            return table.insert()
        return self._upsert(table, others, keys)

    def _upsert(self, table: sa.Table, others: list[str], keys: tuple[str, ...]) -> sa.Executable:
        if self.db.dialect == "mysql":
            from sqlalchemy.dialects.mysql import insert as mysql_insert

            mysql = mysql_insert(table)
            updated = others or list(keys[:1])
            return mysql.on_duplicate_key_update({c: mysql.inserted[c] for c in updated})
        if self.db.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as postgresql_insert

            postgresql = postgresql_insert(table)
            if not others:
                return postgresql.on_conflict_do_nothing(index_elements=list(keys))
            return postgresql.on_conflict_do_update(
                index_elements=list(keys), set_={c: postgresql.excluded[c] for c in others})
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        sqlite = sqlite_insert(table)
        if not others:
            return sqlite.on_conflict_do_nothing(index_elements=list(keys))
        return sqlite.on_conflict_do_update(
            index_elements=list(keys), set_={c: sqlite.excluded[c] for c in others})


def _fit(value: Any, kind: ValueKind, column: ValueKind) -> Any:
    """A schemaless value as a column of kind ``column`` takes it, when that column is
    a widening of the value's kind; else unchanged (the database judges it)."""
    if value is None or kind == column or widen(column, kind) != column:
        return value
    if column == ValueKind.DOUBLE:
        return float(value)
    if column == ValueKind.TEXT:
        return value if isinstance(value, str) else dumps(value).decode()
    return value


def _json_text(value: Any) -> str:
    return dumps(value).decode()


def _refusal(table: sa.Table, op: Operation, exc: Any) -> str:
    """Why the database refused ``op``'s row, naming the record, the table and the
    columns whose values do not match their type."""
    import sqlalchemy as sa

    reason = str(exc.orig).strip().splitlines()[0]
    suspects = []
    for name, value in op.row.items():
        column = find_column(table, name)
        kind = value_kind(value)
        if isinstance(value, Decimal) and column is not None and \
                isinstance(column.type, sa.Numeric):
            continue  # a Decimal for a NUMERIC column is no mismatch, whatever went wrong
        if column is not None and kind is not None and \
                widen(column_kind(column.type), kind) != column_kind(column.type):
            suspects.append(f"column {column.name} is {column.type} but the value is "
                            f"{value!r:.60}")
    hint = f" ({'; '.join(suspects)})" if suspects else ""
    return f"{where(op.record)}: table {table.fullname} refused the row: {reason}{hint}"


class JdbcSinkConnector(SinkConnector[JdbcSinkSettings]):
    settings = JdbcSinkSettings
    task_class = JdbcSinkTask
    aliases = ("io.confluent.connect.jdbc.JdbcSinkConnector",)

    def validate(self, settings: JdbcSinkSettings) -> dict[str, list[str]]:
        return sink_problems(settings)
