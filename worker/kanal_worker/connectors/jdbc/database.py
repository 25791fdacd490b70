"""The one database layer of the JDBC connectors: settings, URLs, connections, errors.

Both the sink and the source reach PostgreSQL (psycopg 3), MySQL and MariaDB (PyMySQL)
and SQLite (the standard library) through SQLAlchemy Core, configured by Confluent's
``connection.*`` keys. ``connection.url`` takes the JDBC URLs existing configurations
carry (``jdbc:postgresql://host:5432/db``, ``jdbc:mysql://``, ``jdbc:mariadb://``,
``jdbc:sqlite:/path``) as well as SQLAlchemy URLs (``postgresql://user:pw@host/db``).

Public names (the sink and the source build on them): ``JdbcConnectionSettings``,
``DatabaseUrl`` and ``parse_url``, ``Database`` (``connect``, ``transaction``,
``table``, ``forget_table``, ``identifier``, ``split_name``, ``dispose``),
``Dialect``, ``connection_error``, ``is_transient``, ``dialect_problems``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from pydantic import SecretStr, field_validator

from kanal_worker.api import ConfigError, ConnectError, RetriableError, Settings, setting
from kanal_worker.api.backoff import exponential_backoff
from kanal_worker.converters.json import dumps

if TYPE_CHECKING:
    import sqlalchemy as sa

log = logging.getLogger(__name__)

Dialect = Literal["postgresql", "mysql", "sqlite"]
CONNECTION = "Connection"
BACKOFF_DOUBLINGS = 4
"""``connection.backoff.ms`` doubles up to 16 times itself between connection attempts."""

DRIVERS: dict[Dialect, str] = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql",
                               "sqlite": "sqlite"}
SCHEMES: dict[str, Dialect] = {"postgresql": "postgresql", "postgres": "postgresql",
                               "mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite"}

# URL options a driver understands as they are; JDBC-only options (useSSL,
# serverTimezone, loggerLevel, ...) have no meaning here and are dropped with a log line.
PASSED_OPTIONS: dict[Dialect, frozenset[str]] = {
    "postgresql": frozenset({"sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword",
                             "application_name", "connect_timeout", "options",
                             "target_session_attrs", "keepalives", "keepalives_idle"}),
    "mysql": frozenset({"charset", "ssl_ca", "ssl_cert", "ssl_key", "ssl_verify_cert",
                        "connect_timeout", "read_timeout", "write_timeout"}),
    "sqlite": frozenset({"timeout", "uri"}),
}


class JdbcConnectionSettings(Settings):
    """``connection.*``: where the database is and how hard to try reaching it."""

    connection_url: str = setting(
        key="connection.url", importance="HIGH", group=CONNECTION, display="JDBC URL",
        doc="The database: a JDBC URL (jdbc:postgresql://host:5432/db, jdbc:mysql://host:3306/db, "
            "jdbc:mariadb://host:3306/db, jdbc:sqlite:/path/file.db) or a SQLAlchemy URL "
            "(postgresql://host/db, mysql://host/db, sqlite:////path/file.db). Credentials may "
            "be in the URL (user:password@host, or ?user=...&password=... as JDBC allows); "
            "connection.user and connection.password take precedence.")
    connection_user: str | None = setting(
        None, key="connection.user", importance="HIGH", group=CONNECTION,
        display="JDBC User", doc="The database user.")
    connection_password: SecretStr | None = setting(
        None, key="connection.password", importance="HIGH", group=CONNECTION,
        display="JDBC Password", doc="The database user's password.")
    connection_attempts: int = setting(
        3, key="connection.attempts", importance="LOW", group=CONNECTION, ge=1,
        display="JDBC connection attempts",
        doc="How many times to try connecting before the task gives up this round (the "
            "runtime then backs off and retries the batch, and the status says so).")
    connection_backoff_ms: int = setting(
        10000, key="connection.backoff.ms", importance="LOW", group=CONNECTION, ge=0,
        display="JDBC connection backoff (ms)",
        doc="Wait before the second connection attempt, in milliseconds; doubles with each "
            "further attempt, up to 16 times this value.")
    dialect_name: str = setting(
        "", key="dialect.name", importance="LOW", group=CONNECTION, display="Database Dialect",
        doc="Confluent's dialect override. Kanal takes the dialect from connection.url; a "
            "value here must agree with it (PostgreSqlDatabaseDialect, MySqlDatabaseDialect, "
            "SqliteDatabaseDialect).")

    @field_validator("connection_url")
    @classmethod
    def _known_url(cls, value: str) -> str:
        try:
            parse_url(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return value

    def database_url(self) -> DatabaseUrl:
        password = self.connection_password.get_secret_value() \
            if self.connection_password is not None else None
        return parse_url(self.connection_url, self.connection_user, password)


DIALECT_NAMES: dict[str, Dialect] = {
    "PostgreSqlDatabaseDialect": "postgresql", "MySqlDatabaseDialect": "mysql",
    "SqliteDatabaseDialect": "sqlite"}


def dialect_problems(settings: JdbcConnectionSettings) -> dict[str, list[str]]:
    """``dialect.name`` that contradicts ``connection.url`` (checks needing both keys)."""
    name = settings.dialect_name
    if not name:
        return {}
    dialect = DIALECT_NAMES.get(name.rsplit(".", 1)[-1])
    actual = settings.database_url().dialect
    if dialect is None:
        return {"dialect.name": [f"Unknown dialect {name!r}; use one of "
                                 f"{', '.join(DIALECT_NAMES)} or leave it empty."]}
    if dialect != actual:
        return {"dialect.name": [f"{name} does not match connection.url, which names a "
                                 f"{actual} database; leave dialect.name empty."]}
    return {}


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed ``connection.url``: the SQLAlchemy URL parts, credentials kept apart so
    that ``display`` can name the database without them."""

    dialect: Dialect
    host: str | None
    port: int | None
    database: str | None
    user: str | None
    password: str | None = field(repr=False)
    options: tuple[tuple[str, str], ...] = ()

    def sqlalchemy_url(self) -> sa.URL:
        import sqlalchemy as sa

        return sa.URL.create(DRIVERS[self.dialect], username=self.user, password=self.password,
                             host=self.host, port=self.port, database=self.database,
                             query=dict(self.options))

    @property
    def display(self) -> str:
        """The URL without credentials, for messages and logs."""
        if self.dialect == "sqlite":
            return f"sqlite:{self.database or ':memory:'}"
        where = f"{self.host or 'localhost'}" + (f":{self.port}" if self.port else "")
        return f"{self.dialect}://{where}/{self.database or ''}"


def parse_url(url: str, user: str | None = None, password: str | None = None) -> DatabaseUrl:
    """``connection.url`` (JDBC or SQLAlchemy form) with ``user``/``password`` overriding
    the credentials it carries; ConfigError naming the key when it is not one we serve."""
    text = url.strip()
    jdbc = text.startswith("jdbc:")
    if jdbc:
        text = text[len("jdbc:"):]
    scheme, sep, rest = text.partition(":")
    dialect = SCHEMES.get(scheme.split("+", 1)[0].lower()) if sep else None
    if dialect is None:
        raise ConfigError("connection.url", f"{_redact(url)!r} is not a PostgreSQL, MySQL, "
                          "MariaDB or SQLite URL; use jdbc:postgresql://host:5432/db, "
                          "jdbc:mysql://host:3306/db, jdbc:mariadb://host:3306/db or "
                          "jdbc:sqlite:/path/file.db (or the SQLAlchemy forms).")
    if dialect == "sqlite":
        return _sqlite_url(rest, jdbc)
    parts = urlsplit(f"x:{rest}")
    if not parts.netloc:
        raise ConfigError("connection.url", f"{_redact(url)!r} names no host; write "
                          f"{'jdbc:' if jdbc else ''}{scheme}://host:port/database.")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("connection.url", f"{_redact(url)!r} has a port that is not a "
                          "number.") from None
    query = parse_qsl(parts.query, keep_blank_values=True)
    url_user = unquote(parts.username) if parts.username else None
    url_password = unquote(parts.password) if parts.password is not None else None
    options: list[tuple[str, str]] = []
    dropped: list[str] = []
    for key, value in query:
        if key == "user":
            url_user = value
        elif key == "password":
            url_password = value
        elif dialect == "postgresql" and key == "ssl":
            options.append(("sslmode", "require" if value.lower() != "false" else "disable"))
        elif dialect == "postgresql" and key == "currentSchema":
            options.append(("options", f"-csearch_path={value}"))
        elif key in PASSED_OPTIONS[dialect]:
            options.append((key, value))
        else:
            dropped.append(key)
    if dropped:
        log.info("connection.url options %s are JDBC driver options without meaning here; "
                 "ignored", ", ".join(dropped))
    database = parts.path.lstrip("/") or None
    return DatabaseUrl(dialect, parts.hostname, port, unquote(database) if database else None,
                       user if user else url_user,
                       password if password is not None else url_password, tuple(options))


def _sqlite_url(rest: str, jdbc: bool) -> DatabaseUrl:
    """jdbc:sqlite:/abs/path, jdbc:sqlite:relative.db, jdbc:sqlite::memory:, and the
    SQLAlchemy forms sqlite:///relative.db, sqlite:////abs/path, sqlite://."""
    path = rest
    if not jdbc or path.startswith("//"):
        path = path.removeprefix("//")
        path = path[1:] if path.startswith("/") else path  # sqlite:///x is x, ////x is /x
    path, _, query = path.partition("?")
    options = tuple((k, v) for k, v in parse_qsl(query) if k in PASSED_OPTIONS["sqlite"])
    database = None if path in ("", ":memory:") else unquote(path)
    return DatabaseUrl("sqlite", None, None, database, None, None, options)


def _redact(url: str) -> str:
    """``url`` without a password, wherever it was written."""
    parts = urlsplit(url.removeprefix("jdbc:"))
    text = url
    if parts.password:
        text = text.replace(f":{parts.password}@", ":[hidden]@")
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "password" and value:
            text = text.replace(f"password={value}", "password=[hidden]")
            text = text.replace(f"password={quote(value)}", "password=[hidden]")
    return text


AUTH_MARKERS = ("password authentication failed", "access denied for user",
                "no password supplied", "authentication failed", "unknown database")
"""Failures of a connection attempt that retrying does not fix (PostgreSQL's and
MySQL's wording): wrong user, password or database name."""
MISSING_DATABASE_SQLSTATES = frozenset({"3D000", "28000", "28P01"})
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57"})
"""Connection exceptions, rolled-back transactions (deadlock, serialization), lack of
resources, operator intervention (shutdown): the server may take the work again."""
MYSQL_TRANSIENT_CODES = frozenset({1040, 1053, 1205, 1213, 1927})
"""Too many connections, shutdown, lock wait timeout, deadlock, connection killed;
codes from 2000 on are the client's (cannot connect, server gone away, lost)."""


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same work later may succeed."""
    import sqlalchemy.exc as sa_exc

    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    orig = getattr(exc, "orig", None) or exc
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES and sqlstate != "57014"
    code = orig.args[0] if getattr(orig, "args", None) else None
    if isinstance(code, int):
        return code in MYSQL_TRANSIENT_CODES or code >= 2000
    if "database is locked" in str(orig):
        return True
    if "unable to open database file" in str(orig):
        return False  # SQLite: a path whose directory is missing or not writable
    return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | OSError)


def connection_error(exc: BaseException, url: DatabaseUrl) -> ConnectError:
    """The error the runtime should see for a database failure: RetriableError when the
    server may come back (connection refused, lost, server shutting down), ConnectError
    naming the keys to fix when the credentials or the database name are wrong."""
    message = _first_line(exc)
    orig = getattr(exc, "orig", None) or exc
    if getattr(orig, "sqlstate", None) in MISSING_DATABASE_SQLSTATES or \
            any(marker in message.lower() for marker in AUTH_MARKERS):
        return ConnectError(f"Cannot log in to {url.display} as {url.user or '(no user)'}: "
                            f"{message}. Check connection.user, connection.password and the "
                            f"database named in connection.url.")
    if is_transient(exc):
        return RetriableError(f"Database {url.display} unreachable: {message}")
    return ConnectError(f"Database {url.display}: {message}")


def _json_text(value: object) -> str:
    """JSON columns get Kafka Connect's JSON of a value (the one JSON mapping: Decimal,
    bytes, dates and times as JsonConverter writes them)."""
    return dumps(value).decode()


def _sqlite_transactions(engine: sa.Engine) -> None:
    """Let SQLAlchemy, not the sqlite3 module, begin transactions, so that SAVEPOINT
    and transactional DDL work (SQLAlchemy's documented recipe for pysqlite)."""
    import sqlalchemy as sa

    @sa.event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN")


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Database:
    """An engine for ``connection.url`` plus what the connectors need around it:
    connecting with ``connection.attempts`` and backoff, transactions, reflected tables
    and identifier quoting."""

    def __init__(self, settings: JdbcConnectionSettings, *, quote_identifiers: bool = True) -> None:
        import sqlalchemy as sa

        self.settings = settings
        self.url = settings.database_url()
        self.dialect: Dialect = self.url.dialect
        self.quote_identifiers = quote_identifiers
        options: dict[str, object] = {"pool_pre_ping": True, "json_serializer": _json_text}
        if self.dialect != "sqlite":
            options.update(pool_size=2, max_overflow=2, pool_recycle=1800)
        self.engine = sa.create_engine(self.url.sqlalchemy_url(), **options)
        if self.dialect == "sqlite":
            _sqlite_transactions(self.engine)
        self._tables: dict[tuple[str | None, str], sa.Table] = {}

    def connect(self, attempts: int | None = None) -> sa.Connection:
        """A connection, after up to ``attempts`` (``connection.attempts``) tries;
        RetriableError when the database stays unreachable, ConnectError when it refuses
        our credentials."""
        attempts = attempts or self.settings.connection_attempts
        first = self.settings.connection_backoff_ms / 1000
        for attempt in range(attempts):
            try:
                return self.engine.connect()
            except Exception as exc:  # every driver failure is classified
                error = connection_error(exc, self.url)
                if not isinstance(error, RetriableError) or attempt + 1 == attempts:
                    raise error from exc
                delay = exponential_backoff(attempt, first, first * 2 ** BACKOFF_DOUBLINGS)
                log.warning("Connecting to %s failed (attempt %d of %d): %s; retrying in %.1fs",
                            self.url.display, attempt + 1, attempts, error, delay)
                time.sleep(delay)
        raise AssertionError("unreachable: connection.attempts is at least 1")

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A connection inside one transaction: committed when the block ends, rolled
        back when it raises. Failures to reach the database become RetriableError."""
        import sqlalchemy.exc as sa_exc

        with self.connect() as connection:
            try:
                with connection.begin():
                    yield connection
            except sa_exc.DBAPIError as exc:
                if is_transient(exc):
                    raise RetriableError(f"Database {self.url.display}: "
                                         f"{_first_line(exc)}") from exc
                raise

    def identifier(self, name: str) -> str:
        """``name`` as the database should see it (``quote.sql.identifiers``)."""
        from sqlalchemy.sql.elements import quoted_name

        return cast(str, quoted_name(name, self.quote_identifiers))

    def split_name(self, name: str) -> tuple[str | None, str]:
        """``schema.table`` → (schema, table); SQLite has no schemas."""
        if "." in name and self.dialect != "sqlite":
            schema, table = name.rsplit(".", 1)
            return schema, table
        return None, name

    def table(self, connection: sa.Connection, name: str) -> sa.Table | None:
        """The table ``name`` (``schema.table`` allowed) as the database has it, or None
        when it does not exist. Reflected once, until ``forget_table``."""
        import sqlalchemy as sa

        schema, table = self.split_name(name)
        key = (schema, table)
        found = self._tables.get(key)
        if found is not None:
            return found
        if not sa.inspect(connection).has_table(self.identifier(table), schema=schema):
            return None
        metadata = sa.MetaData()
        found = sa.Table(self.identifier(table), metadata, schema=schema,
                         autoload_with=connection)
        self._tables[key] = found
        return found

    def forget_table(self, name: str) -> None:
        """Reflect ``name`` again next time (after it was created or altered)."""
        self._tables.pop(self.split_name(name), None)

    def dispose(self) -> None:
        self.engine.dispose()
