"""connection.url parsing and the schemaless widening rule of the JDBC connectors."""

from __future__ import annotations

from pathlib import Path

import pytest

from kanal_worker.api import ConfigError, ConnectError, RetriableError
from kanal_worker.connectors.jdbc.database import Database, JdbcConnectionSettings, parse_url
from kanal_worker.connectors.jdbc.types import ValueKind, value_kind, widen


@pytest.mark.parametrize(("url", "dialect", "host", "port", "database"), [
    ("jdbc:postgresql://db.example:5432/fleet", "postgresql", "db.example", 5432, "fleet"),
    ("jdbc:mysql://127.0.0.1:3306/fleet?useSSL=false", "mysql", "127.0.0.1", 3306, "fleet"),
    ("jdbc:mariadb://127.0.0.1/fleet", "mysql", "127.0.0.1", None, "fleet"),
    ("postgresql://u:p@h:1/d", "postgresql", "h", 1, "d"),
    ("mysql+pymysql://h/d", "mysql", "h", None, "d"),
    ("jdbc:sqlite:/var/data/fleet.db", "sqlite", None, None, "/var/data/fleet.db"),
    ("jdbc:sqlite:fleet.db", "sqlite", None, None, "fleet.db"),
    ("sqlite:////var/data/fleet.db", "sqlite", None, None, "/var/data/fleet.db"),
    ("sqlite:///fleet.db", "sqlite", None, None, "fleet.db"),
    ("jdbc:sqlite::memory:", "sqlite", None, None, None),
])
def test_url_forms(url: str, dialect: str, host: str | None, port: int | None,
                   database: str | None) -> None:
    parsed = parse_url(url)
    assert (parsed.dialect, parsed.host, parsed.port, parsed.database) == \
        (dialect, host, port, database)


def test_credentials_from_query_and_keys_take_precedence() -> None:
    parsed = parse_url("jdbc:postgresql://h/d?user=alice&password=s%40cret&sslmode=require")
    assert (parsed.user, parsed.password, parsed.options) == ("alice", "s@cret",
                                                              (("sslmode", "require"),))
    assert parse_url("postgresql://alice:one@h/d", "bob", "two").user == "bob"
    assert parse_url("postgresql://alice:one@h/d", "bob", "two").password == "two"
    assert "one" not in parse_url("postgresql://alice:one@h/d").display


def test_unknown_url_names_the_key_and_hides_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_url("jdbc:oracle://scott:tiger@h:1521/x")
    assert caught.value.key == "connection.url"
    assert "tiger" not in str(caught.value)
    errors = JdbcConnectionSettings.config_errors({"connection.url": "jdbc:sqlserver://h"})
    assert list(errors) == ["connection.url"]
    assert "jdbc:postgresql://" in errors["connection.url"][0]


def test_password_is_hidden_in_the_model() -> None:
    settings = JdbcConnectionSettings.parse({"connection.url": "jdbc:postgresql://h/d",
                                             "connection.password": "hunter2"})
    assert "hunter2" not in repr(settings)
    assert settings.database_url().password == "hunter2"


def test_widening_only_grows() -> None:
    assert value_kind(True) == ValueKind.BOOLEAN
    assert value_kind(3) == ValueKind.INTEGER
    assert value_kind(3.5) == ValueKind.DOUBLE
    assert value_kind({"a": 1}) == ValueKind.JSON
    assert value_kind(None) is None
    assert widen(ValueKind.INTEGER, ValueKind.DOUBLE) == ValueKind.DOUBLE
    assert widen(ValueKind.DOUBLE, ValueKind.INTEGER) == ValueKind.DOUBLE
    assert widen(ValueKind.INTEGER, ValueKind.TEXT) == ValueKind.TEXT
    assert widen(ValueKind.BOOLEAN, ValueKind.INTEGER) == ValueKind.TEXT
    assert widen(ValueKind.JSON, ValueKind.JSON) == ValueKind.JSON


def test_a_sqlite_file_that_cannot_be_opened_is_not_retried(tmp_path: Path) -> None:
    settings = JdbcConnectionSettings.parse(
        {"connection.url": f"jdbc:sqlite:{tmp_path}/missing/dir/x.db"})
    database = Database(settings)
    with pytest.raises(ConnectError) as caught:
        database.connect()
    assert not isinstance(caught.value, RetriableError)
    assert "unable to open database file" in str(caught.value)
    database.dispose()
