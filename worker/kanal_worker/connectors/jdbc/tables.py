"""Tables that fit the rows: auto.create, auto.evolve and schemaless widening.

Before a batch is written, ``TableKeeper.prepare`` makes each of its tables hold every
column its rows need: it creates a missing table (``auto.create``), adds missing
columns as nullable (``auto.evolve``) and, for schemaless values, widens a column
whose new values no longer fit (``types.widen``). DDL runs in its own transactions
before the rows' transaction, since MySQL commits DDL implicitly. Records whose table
or column cannot be had are returned as failures, each with the key that would fix it.
Several tasks may change one table at once: a DDL statement that fails is judged
again against the table as the database then has it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from kanal_worker.api import DataError, RetriableError
from kanal_worker.connectors.jdbc.database import Database, Dialect, is_transient
from kanal_worker.connectors.jdbc.rows import ColumnSpec, Operation, where
from kanal_worker.connectors.jdbc.sink_settings import JdbcSinkSettings
from kanal_worker.connectors.jdbc.types import ValueKind, column_kind, kind_type, widen

if TYPE_CHECKING:
    import sqlalchemy as sa

log = logging.getLogger(__name__)

Failures = list[tuple[Operation, BaseException]]


def find_column(table: sa.Table, name: str) -> sa.Column[Any] | None:
    """``name``'s column; case-insensitively when no exact match (PostgreSQL folds
    unquoted names, MySQL compares them without case)."""
    if name in table.c:
        return table.c[name]
    lowered = name.lower()
    return next((c for c in table.c if c.name.lower() == lowered), None)


class TableKeeper:
    def __init__(self, database: Database, settings: JdbcSinkSettings) -> None:
        self.db = database
        self.settings = settings

    def prepare(self, name: str, ops: list[Operation]) -> tuple[sa.Table | None, Failures]:
        """Table ``name`` with the columns ``ops`` need, and the operations that cannot
        be written to it (they are not written at all)."""
        import sqlalchemy.exc as sa_exc

        try:
            with self.db.connect() as connection:
                table = self.db.table(connection, name)
                if table is None:
                    ops = [op for op in ops if not op.delete]  # no table: nothing to delete
                    if not ops:
                        return None, []
                    if not self.settings.auto_create:
                        return None, [(op, DataError(
                            f"{where(op.record)}: table {name} does not exist and "
                            f"auto.create=false; create the table or set auto.create=true."))
                            for op in ops]
                    table = self._create(connection, name, ops)
                return self._evolve(connection, table, name, ops)
        except sa_exc.DBAPIError as exc:
            if is_transient(exc):
                raise RetriableError(f"Database {self.db.url.display}: preparing table "
                                     f"{name}: {exc.orig}") from exc
            raise

    def _create(self, connection: sa.Connection, name: str, ops: list[Operation]) -> sa.Table:
        import sqlalchemy as sa

        specs = needed_columns(ops, self.db.dialect)
        schema, table_name = self.db.split_name(name)
        columns = [sa.Column(self.db.identifier(spec.name), spec.type, primary_key=spec.key,
                             nullable=spec.nullable, autoincrement=False)
                   for spec in specs.values()]
        table = sa.Table(self.db.identifier(table_name), sa.MetaData(), *columns, schema=schema)
        log.info("Creating table %s with columns %s", name, ", ".join(specs))
        self._ddl(connection, name, lambda: table.create(connection, checkfirst=True))
        created = self.db.table(connection, name)
        if created is None:
            raise DataError(f"table {name} was created but cannot be found; check "
                            f"table.name.format and quote.sql.identifiers.")
        return created

    def _evolve(self, connection: sa.Connection, table: sa.Table, name: str,
                ops: list[Operation]) -> tuple[sa.Table, Failures]:
        specs = needed_columns((op for op in ops if not op.delete), self.db.dialect)
        missing = [spec for spec in specs.values() if find_column(table, spec.name) is None]
        if missing:  # another writer may have added them since the table was read
            self.db.forget_table(name)
            table = again if (again := self.db.table(connection, name)) is not None else table
            missing = [spec for spec in missing if find_column(table, spec.name) is None]
        narrow = [(spec, kind) for spec in specs.values() if spec.kind is not None and not spec.key
                  and (column := find_column(table, spec.name)) is not None
                  and (kind := widen(column_kind(column.type), spec.kind))
                  != column_kind(column.type)]
        if not self.settings.auto_evolve or not (missing or narrow):
            return table, _missing_column_failures(table, name, ops)
        for spec in missing:
            log.info("Adding column %s to table %s", spec.name, name)
            self._ddl(connection, name, lambda spec=spec: self._add_column(connection, table,
                                                                           spec))
        for spec, kind in narrow:
            if self.db.dialect == "sqlite":
                continue  # SQLite columns hold values of any type already
            log.info("Widening column %s of table %s to %s", spec.name, name, kind.name)
            self._ddl(connection, name, lambda spec=spec, kind=kind: self._widen_column(
                connection, table, spec.name, kind))
        self.db.forget_table(name)
        evolved = self.db.table(connection, name)
        assert evolved is not None
        return evolved, _missing_column_failures(evolved, name, ops)

    def _ddl(self, connection: sa.Connection, name: str, run: Any) -> None:
        """Run a DDL step in a transaction of its own; when it fails because another
        task got there first, the table is reflected again and judged by what it is."""
        import sqlalchemy.exc as sa_exc

        if connection.in_transaction():
            connection.rollback()  # the reflection's implicit transaction: it only read
        try:
            with connection.begin():
                run()
        except sa_exc.DBAPIError as exc:
            if is_transient(exc):
                raise
            log.info("DDL on table %s failed (%s); reading the table again", name,
                     str(exc.orig).strip().splitlines()[0])
        self.db.forget_table(name)

    def _add_column(self, connection: sa.Connection, table: sa.Table, spec: ColumnSpec) -> None:
        dialect = connection.dialect
        column = dialect.identifier_preparer.quote(self.db.identifier(spec.name))
        type_sql = spec.type.compile(dialect=dialect)
        connection.exec_driver_sql(f"ALTER TABLE {_table_sql(connection, table)} "
                                   f"ADD COLUMN {column} {type_sql} NULL")

    def _widen_column(self, connection: sa.Connection, table: sa.Table, name: str,
                      kind: ValueKind) -> None:
        dialect = connection.dialect
        existing = find_column(table, name)
        assert existing is not None
        column = dialect.identifier_preparer.quote(existing.name)
        type_sql = kind_type(kind, self.db.dialect).compile(dialect=dialect)
        target = _table_sql(connection, table)
        if self.db.dialect == "postgresql":
            connection.exec_driver_sql(f"ALTER TABLE {target} ALTER COLUMN {column} TYPE "
                                       f"{type_sql} USING {column}::{type_sql}")
        else:
            connection.exec_driver_sql(f"ALTER TABLE {target} MODIFY COLUMN {column} "
                                       f"{type_sql} NULL")


def shapes(ops: Iterable[Operation]) -> dict[tuple[ColumnSpec, ...], list[Operation]]:
    """``ops`` by the columns they write: what is true of a shape is true of its rows."""
    found: dict[tuple[ColumnSpec, ...], list[Operation]] = {}
    for op in ops:
        found.setdefault(op.columns, []).append(op)
    return found


def needed_columns(ops: Iterable[Operation], dialect: Dialect) -> dict[str, ColumnSpec]:
    """Every column ``ops`` write, by name, in first-seen order; a schemaless column's
    kind widened over all its values (a null says nothing about the type)."""
    specs: dict[str, ColumnSpec] = {}
    for shape in shapes(ops):
        for spec in shape:
            if spec.inferred and spec.kind is None:
                continue
            known = specs.get(spec.name)
            if known is None:
                specs[spec.name] = spec
            elif known.kind is not None and spec.kind is not None and known.kind != spec.kind:
                kind = widen(known.kind, spec.kind)
                specs[spec.name] = replace(known, kind=kind, type=kind_type(kind, dialect))
    return specs


def _table_sql(connection: sa.Connection, table: sa.Table) -> str:
    return connection.dialect.identifier_preparer.format_table(table)


def _missing_column_failures(table: sa.Table, name: str, ops: list[Operation]) -> Failures:
    failures: Failures = []
    for shape, shaped in shapes(ops).items():
        absent = [spec.name for spec in shape if find_column(table, spec.name) is None
                  and not (spec.inferred and spec.kind is None)]
        if absent:
            failures.extend((op, DataError(
                f"{where(op.record)}: table {name} has no column {', '.join(absent)}; add it "
                f"or set auto.evolve=true.")) for op in shaped)
    return failures
