"""The PostgreSQL side of change data capture: connections, checks, publication, slot.

The checks (``problems``) are shared by the connector's validate and the task's start, so
a mistake reads the same in both. Validation never creates a slot or a publication.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from psycopg2 import sql

from kanal_worker.api import ConfigError, RetriableError
from kanal_worker.connectors.postgres_cdc.events import CapturedTable, selected
from kanal_worker.connectors.postgres_cdc.settings import PostgresCdcSettings
from kanal_worker.connectors.postgres_cdc.values import SESSION_SETTINGS, Column

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10


def connect(settings: PostgresCdcSettings, replication: bool = False
            ) -> psycopg2.extensions.connection:
    """A session with the settings values are parsed under; raises ConfigError for
    credentials and names, RetriableError when the server cannot be reached."""
    try:
        connection = psycopg2.connect(
            host=settings.hostname, port=settings.port, user=settings.user,
            password=settings.password_text(), dbname=settings.dbname,
            sslmode=settings.sslmode, connect_timeout=CONNECT_TIMEOUT_S,
            application_name=application_name(settings), options=SESSION_SETTINGS,
            connection_factory=psycopg2.extras.LogicalReplicationConnection
            if replication else None)
    except psycopg2.OperationalError as exc:
        raise connection_error(settings, exc) from None
    if not replication:
        connection.autocommit = True
    return connection


def application_name(settings: PostgresCdcSettings) -> str:
    """How this connector's sessions introduce themselves: validation tells a slot held
    by the connector's own running task (a reconfiguration) from one held by others."""
    return f"kanal-cdc {settings.slot_name}"[:63]


def connection_error(settings: PostgresCdcSettings, exc: Exception) -> Exception:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = f"{settings.hostname}:{settings.port}/{settings.dbname}"
    if "password authentication failed" in text or "no password supplied" in text:
        return ConfigError("database.password", f"PostgreSQL at {where} refused user "
                           f"{settings.user!r}: {text}; check database.user and "
                           "database.password")
    if "does not exist" in text and "database" in text:
        return ConfigError("database.dbname", f"{text} on {where}; check database.dbname")
    if "replication" in text and ("permission" in text or "must be" in text
                                  or "pg_hba" in text):
        return ConfigError("database.user", f"{text}; grant it: ALTER ROLE "
                           f"{settings.user} WITH REPLICATION")
    return RetriableError(f"PostgreSQL at {where} is unreachable: {text}")


def read_as_text(connection: psycopg2.extensions.connection) -> None:
    """Make ``connection`` return every value as the text the type's output function
    prints, as the replication stream carries it (a ``::text`` cast would differ: it
    trims ``char(n)`` and spells booleans out)."""
    oids = tuple(oid for (oid,) in query(connection, "SELECT oid::int FROM pg_type"))
    psycopg2.extensions.register_type(
        psycopg2.extensions.new_type(oids, "KANAL_TEXT", lambda value, _: value), connection)


def query(connection: psycopg2.extensions.connection, statement: Any,
          parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(statement, parameters)
        return cursor.fetchall() if cursor.description is not None else []


def selected_tables(connection: psycopg2.extensions.connection,
                    settings: PostgresCdcSettings) -> list[tuple[str, str, int]]:
    """``(schema, table, oid)`` of the captured tables, in name order."""
    rows = query(connection, "SELECT n.nspname, c.relname, c.oid::bigint FROM pg_class c "
                 "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
                 "AND NOT c.relispartition ORDER BY 1, 2")
    return [(schema, table, oid) for schema, table, oid in rows
            if selected(settings, schema, table)]


def problems(connection: psycopg2.extensions.connection,
             settings: PostgresCdcSettings) -> dict[str, list[str]]:
    """What stops capture, by key, with the fix."""
    found: dict[str, list[str]] = {}
    (wal_level,) = query(connection, "SHOW wal_level")[0]
    if wal_level != "logical":
        found.setdefault("database.hostname", []).append(
            f"wal_level is {wal_level} on {settings.hostname}:{settings.port}; logical "
            "decoding needs wal_level=logical (set it in postgresql.conf and restart "
            "PostgreSQL)")
    (can_replicate,) = query(connection, "SELECT rolreplication OR rolsuper FROM pg_roles "
                                         "WHERE rolname = current_user")[0]
    if not can_replicate:
        found.setdefault("database.user", []).append(
            f"user {settings.user!r} lacks the REPLICATION attribute; grant it: ALTER ROLE "
            f"{settings.user} WITH REPLICATION")
    slot = query(connection, "SELECT s.plugin, s.database, s.active_pid, a.application_name "
                 "FROM pg_replication_slots s LEFT JOIN pg_stat_activity a ON "
                 "a.pid = s.active_pid WHERE s.slot_name = %s", (settings.slot_name,))
    if slot:
        plugin, database, active_pid, holder = slot[0]
        if plugin != "pgoutput" or database != settings.dbname:
            found.setdefault("slot.name", []).append(
                f"slot {settings.slot_name!r} exists for plugin {plugin} in database "
                f"{database}; choose another slot.name")
        elif active_pid is not None and holder != application_name(settings):
            found.setdefault("slot.name", []).append(
                f"slot {settings.slot_name!r} is in use by another client (server process "
                f"{active_pid}); stop that client or choose another slot.name")
    publication = query(connection, "SELECT 1 FROM pg_publication WHERE pubname = %s",
                        (settings.publication_name,))
    if not publication and settings.publication_autocreate_mode == "disabled":
        found.setdefault("publication.name", []).append(
            f"publication {settings.publication_name!r} does not exist and "
            "publication.autocreate.mode=disabled; create it (CREATE PUBLICATION "
            f"{settings.publication_name} FOR TABLE ...) or set publication.autocreate.mode "
            "to filtered or all_tables")
    tables = selected_tables(connection, settings)
    names = {f"{schema}.{table}" for schema, table, _ in tables}
    for pattern in settings.table_include_list:
        if not any(re.fullmatch(pattern, name) for name in names):
            found.setdefault("table.include.list", []).append(
                f"{pattern!r} matches no table of database {settings.dbname} (within "
                "schema.include.list); check the schema.table name, or create the table "
                "first")
    return found


def check(connection: psycopg2.extensions.connection, settings: PostgresCdcSettings) -> None:
    """Raise the first of ``problems`` as a ConfigError naming its key."""
    for key, messages in problems(connection, settings).items():
        raise ConfigError(key, messages[0])


def ensure_publication(connection: psycopg2.extensions.connection,
                       settings: PostgresCdcSettings) -> None:
    name = sql.Identifier(settings.publication_name)
    exists = query(connection, "SELECT 1 FROM pg_publication WHERE pubname = %s",
                   (settings.publication_name,))
    mode = settings.publication_autocreate_mode
    if mode == "disabled" or (exists and mode != "filtered"):
        return
    if mode == "all_tables":
        query(connection, sql.SQL("CREATE PUBLICATION {} FOR ALL TABLES").format(name))
        return
    if mode == "no_tables":
        query(connection, sql.SQL("CREATE PUBLICATION {}").format(name))
        return
    tables = sql.SQL(", ").join(sql.Identifier(schema, table) for schema, table, _ in
                                selected_tables(connection, settings))
    if exists:
        query(connection, sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(name, tables))
    else:
        query(connection, sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(name, tables))


def slot_exists(connection: psycopg2.extensions.connection, slot: str) -> bool:
    return bool(query(connection, "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
                      (slot,)))


def drop_slot(connection: psycopg2.extensions.connection, slot: str) -> None:
    query(connection, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                      "WHERE slot_name = %s AND active_pid IS NULL", (slot,))


def captured_table(connection: psycopg2.extensions.connection, settings: PostgresCdcSettings,
                   oid: int, columns_at: list[str] | None = None) -> CapturedTable:
    """The table of ``oid`` as the catalog describes it now; with ``columns_at``, only
    those columns in that order (the columns a Relation message names: the catalog may
    already hold a column added after the changes being read)."""
    rows = query(connection, """
        SELECT n.nspname, c.relname, a.attname, t.typname, a.atttypmod, a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid),
               coalesce(array_position(i.indkey::int2[], a.attnum)
                        - array_lower(i.indkey::int2[], 1) + 1, 0)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        JOIN pg_type t ON t.oid = CASE WHEN (SELECT typtype FROM pg_type WHERE oid = a.atttypid)
                                       = 'd' THEN (SELECT typbasetype FROM pg_type
                                                   WHERE oid = a.atttypid)
                                       ELSE a.atttypid END
        LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
        WHERE c.oid = %s ORDER BY a.attnum""", (oid,))
    if columns_at is not None:
        by_name = {row[2]: row for row in rows}
        rows = [by_name[name] for name in columns_at if name in by_name]
    if not rows:
        raise RetriableError(f"table {oid} is gone from the catalog")
    columns = [Column(name, type_name, modifier, not_null, default)
               for _, _, name, type_name, modifier, not_null, default, _ in rows]
    key = [row[2] for row in sorted((r for r in rows if r[7]), key=lambda r: int(r[7]))]
    return CapturedTable(settings, rows[0][0], rows[0][1], columns, key)


@contextmanager
def translated(settings: PostgresCdcSettings) -> Iterator[None]:
    """Database errors as the runtime understands them: a lost server is retried."""
    try:
        yield
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        raise connection_error(settings, exc) from None
