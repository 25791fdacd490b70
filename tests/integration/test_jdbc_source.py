"""The JDBC source against real PostgreSQL and MariaDB (started by ``dev/stack``) and the
real broker: each mode, rows inserted and updated while it runs arrive once, a restart
resumes without repeats, ``timestamp.delay.interval.ms`` keeps a late-committing
transaction's rows, a database restart is retried, bad input is named."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
import yaml

from dev.stack_env import STACK
from kanal_worker.config.properties import load_properties
from kanal_worker.connectors.jdbc.database import parse_url
from kanal_worker.connectors.jdbc.source import JdbcSourceConnector, JdbcSourceTask
from kanal_worker.converters.avro import AvroConverter
from kanal_worker.runtime.herder import InvalidConfigError
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.standalone import StandaloneHerder
from kanal_worker.runtime.validation import errors_of, validate
from tests.integration.standalone import (
    Standalone,
    wait_for,
    worker_properties,
    write_properties,
)
from tests.kafka_helpers import consume_all
from tests.schema_registry import TestRegistry

pytestmark = pytest.mark.integration


@dataclass
class Db:
    """A database under test: an engine for the test's own SQL and the connector keys."""

    name: str
    engine: sa.Engine
    jdbc_url: str
    user: str
    password: str
    serial: str
    timestamp: str
    now: str

    def execute(self, *statements: str, **params: Any) -> None:
        with self.engine.begin() as connection:
            for statement in statements:
                connection.execute(sa.text(statement), params)

    def vehicles(self, table: str) -> None:
        """The example's table: one row per vehicle, stamped when last changed."""
        self.execute(f"CREATE TABLE {table} (id {self.serial} PRIMARY KEY, "
                     "vehicle_id VARCHAR(16) NOT NULL, model VARCHAR(40), "
                     "fuel_level NUMERIC(5,2), "
                     f"updated_at {self.timestamp} NOT NULL DEFAULT {self.now})")

    def insert(self, table: str, *vehicles: str) -> None:
        for vehicle in vehicles:
            self.execute(f"INSERT INTO {table} (vehicle_id, model, fuel_level, updated_at) "
                         f"VALUES (:v, 'Model S', 55.5, {self.now})", v=vehicle)


def _database(name: str, url_text: str) -> Db:
    url = parse_url(url_text)
    if name == "postgres":
        return Db(name, sa.create_engine(url.sqlalchemy_url()),
                  f"jdbc:postgresql://{url.host}:{url.port}/{url.database}", url.user or "",
                  url.password or "", "SERIAL", "TIMESTAMP(3)", "CLOCK_TIMESTAMP()")
    return Db(name, sa.create_engine(url.sqlalchemy_url()),
              f"jdbc:mariadb://{url.host}:{url.port}/{url.database}", url.user or "",
              url.password or "", "INTEGER AUTO_INCREMENT", "DATETIME(3)", "NOW(3)")


@pytest.fixture(scope="session", params=["postgres", "mariadb"])
def db(request: pytest.FixtureRequest) -> Iterator[Db]:
    """Each database of the catalogue (the ``postgres`` and ``mariadb`` fixtures' URLs)."""
    database = _database(request.param, request.getfixturevalue(request.param))
    yield database
    database.engine.dispose()


@pytest.fixture(scope="session")
def postgres_db(postgres: str) -> Iterator[Db]:
    database = _database("postgres", postgres)
    yield database
    database.engine.dispose()


@pytest.fixture
def herder(kafka: str) -> Iterator[StandaloneHerder]:
    """A worker in the test's process writing JSON with schemas (the table's types)."""
    worker = StandaloneHerder({"bootstrap.servers": kafka,
                               "key.converter": "StringConverter",
                               "value.converter": "JsonConverter",
                               "value.converter.schemas.enable": "true",
                               "offset.flush.interval.ms": "500",
                               "config.providers": "env",
                               "config.providers.env.class":
                                   "org.apache.kafka.common.config.provider.EnvVarConfigProvider"},
                              "test:8083", MemoryOffsetStore())
    try:
        yield worker
    finally:
        worker.stop_all()


def source_config(db: Db, table: str, mode: str, **extra: str) -> dict[str, str]:
    config = {
        "connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector",
        "connection.url": db.jdbc_url, "connection.user": db.user,
        "connection.password": db.password, "mode": mode, "table.whitelist": table,
        "topic.prefix": "jdbc-", "poll.interval.ms": "200", "batch.max.rows": "50",
    }
    if mode in ("incrementing", "timestamp+incrementing"):
        config["incrementing.column.name"] = "id"
    if mode in ("timestamp", "timestamp+incrementing"):
        config["timestamp.column.name"] = "updated_at"
    config.update({k.replace("_", "."): v for k, v in extra.items()})
    return config


def payloads(kafka: str, topic: str, expected: int, timeout: float = 30) -> list[dict[str, Any]]:
    """The values on ``topic`` (JSON envelopes), once ``expected`` arrived or the time is up."""
    return [orjson.loads(m.value()) for m in consume_all(kafka, topic, expected, timeout)]


def rows(kafka: str, topic: str, expected: int, timeout: float = 30) -> list[tuple[int, str]]:
    """(id, vehicle_id) of each record."""
    return [(p["payload"]["id"], p["payload"]["vehicle_id"])
            for p in payloads(kafka, topic, expected, timeout)]


def wait_rows(kafka: str, topic: str, count: int, timeout: float = 60) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []

    def enough() -> bool:
        found[:] = rows(kafka, topic, count, timeout=5)
        return len(found) >= count
    wait_for(enough, timeout, f"{count} records on {topic}")
    return found


def table_name() -> str:
    return f"vehicles_{uuid.uuid4().hex[:8]}"


def task_detail(herder: StandaloneHerder, name: str) -> str:
    status = herder.connector_status(name)["tasks"][0]
    return str(status.get("detail", "")) + str(status.get("trace", ""))


@pytest.mark.parametrize("mode", ["incrementing", "timestamp", "timestamp+incrementing"])
def test_incremental_modes_read_each_change_once_and_resume_after_a_restart(
        db: Db, herder: StandaloneHerder, kafka: str, mode: str) -> None:
    table = table_name()
    topic = f"jdbc-{table}"
    db.vehicles(table)
    db.insert(table, "VH-1", "VH-2", "VH-3")
    name = f"src-{table}"
    herder.put_connector(name, source_config(db, table, mode))
    assert sorted(wait_rows(kafka, topic, 3)) == [(1, "VH-1"), (2, "VH-2"), (3, "VH-3")]

    db.insert(table, "VH-4")
    time.sleep(0.01)  # the update's timestamp must differ from the insert's
    db.execute(f"UPDATE {table} SET vehicle_id = 'VH-2b', updated_at = {db.now} WHERE id = 2")
    sees_updates = mode != "incrementing"
    expected = [(1, "VH-1"), (2, "VH-2"), (3, "VH-3"), (4, "VH-4")] + \
        ([(2, "VH-2b")] if sees_updates else [])
    wait_rows(kafka, topic, len(expected))

    herder.restart(name, include_tasks=True, only_failed=False)
    db.insert(table, "VH-5")
    expected.append((5, "VH-5"))
    wait_rows(kafka, topic, len(expected))
    # reading on for many more polls: nothing may come twice
    found = rows(kafka, topic, len(expected) + 1, timeout=2.5)
    assert sorted(found) == sorted(expected)

    offsets = {orjson.dumps(o.partition): o.offset for o in herder.connector_offsets(name)}
    schema = "public." if db.name == "postgres" else "kanal."
    stored = offsets[orjson.dumps({"protocol": "1", "table": schema + table})]
    assert stored is not None
    assert set(stored) == {"incrementing": {"incrementing"},
                           "timestamp": {"timestamp", "timestamp_nanos"},
                           "timestamp+incrementing": {"incrementing", "timestamp",
                                                      "timestamp_nanos"}}[mode]


def test_records_carry_the_tables_types(db: Db, herder: StandaloneHerder, kafka: str) -> None:
    table = table_name()
    db.vehicles(table)
    db.insert(table, "VH-1")
    herder.put_connector(f"src-{table}", source_config(db, table, "timestamp+incrementing"))
    [envelope] = payloads(kafka, f"jdbc-{table}", 1)
    schema = envelope["schema"]
    assert schema["name"] == table
    fields = {f["field"]: f for f in schema["fields"]}
    assert fields["id"]["type"] == "int32" and not fields["id"]["optional"]
    assert fields["vehicle_id"]["type"] == "string" and not fields["vehicle_id"]["optional"]
    assert fields["model"]["optional"]
    assert fields["fuel_level"]["name"] == "org.apache.kafka.connect.data.Decimal"
    assert fields["fuel_level"]["parameters"] == {"scale": "2"}
    assert fields["updated_at"]["name"] == "org.apache.kafka.connect.data.Timestamp"
    payload = envelope["payload"]
    assert int.from_bytes(base64.b64decode(payload["fuel_level"]), "big") == 5550
    assert abs(payload["updated_at"] / 1000 - time.time()) < 120


def test_bulk_mode_reads_the_whole_table_every_poll(db: Db, herder: StandaloneHerder,
                                                    kafka: str) -> None:
    table = table_name()
    db.vehicles(table)
    db.insert(table, "VH-1", "VH-2")
    herder.put_connector(f"src-{table}", source_config(db, table, "bulk",
                                                       poll_interval_ms="300"))
    found = Counter(wait_rows(kafka, f"jdbc-{table}", 6))
    assert set(found) == {(1, "VH-1"), (2, "VH-2")}
    assert min(found.values()) >= 2


def test_query_mode_and_large_tables_in_batches(
        db: Db, herder: StandaloneHerder, kafka: str) -> None:
    table = table_name()
    db.vehicles(table)
    db.execute(f"INSERT INTO {table} (vehicle_id) VALUES " +
               ",".join(f"('VH-{n}')" for n in range(1000)))
    prefix = f"jdbc-query-{table}"
    query = f"SELECT id, vehicle_id, fuel_level FROM {table}"
    herder.put_connector(f"src-{table}", {
        **source_config(db, table, "incrementing", batch_max_rows="64"),
        "table.whitelist": "", "query": query, "topic.prefix": prefix})
    found = wait_rows(kafka, prefix, 1000)
    assert sorted(i for i, _ in found) == list(range(1, 1001))
    [first] = payloads(kafka, prefix, 1, timeout=5)[:1]
    assert [f["field"] for f in first["schema"]["fields"]] == ["id", "vehicle_id", "fuel_level"]


def test_timestamp_delay_keeps_rows_of_a_transaction_that_commits_late(
        db: Db, herder: StandaloneHerder, kafka: str) -> None:
    """A transaction stamps its row, newer rows commit first, then it commits. Without
    a delay the source has moved past its timestamp (Confluent's most reported loss);
    with the delay longer than the transaction the row is read."""
    delayed, undelayed = table_name(), table_name()
    for table, delay in ((delayed, "4000"), (undelayed, "0")):
        db.vehicles(table)
        herder.put_connector(f"src-{table}", source_config(
            db, table, "timestamp+incrementing", timestamp_delay_interval_ms=delay))
    late = {}
    with db.engine.connect() as slow:
        for table in (delayed, undelayed):
            slow.execute(sa.text(f"INSERT INTO {table} (vehicle_id, updated_at) "
                                 f"VALUES ('LATE', {db.now})"))
        time.sleep(0.05)
        for table in (delayed, undelayed):
            db.insert(table, "VH-1", "VH-2")
        # the undelayed source reads the newer rows while the transaction is open
        wait_rows(kafka, f"jdbc-{undelayed}", 2)
        slow.commit()
    late[delayed] = wait_rows(kafka, f"jdbc-{delayed}", 3)
    # many polls of the undelayed source after the commit
    late[undelayed] = rows(kafka, f"jdbc-{undelayed}", 3, timeout=3)
    assert sorted(v for _, v in late[delayed]) == ["LATE", "VH-1", "VH-2"]
    assert sorted(v for _, v in late[undelayed]) == ["VH-1", "VH-2"], \
        "without the delay the late row is skipped: the test would not show the delay works"


def test_bad_input_is_named_in_validate_and_in_the_task_status(
        db: Db, herder: StandaloneHerder) -> None:
    table = table_name()
    db.vehicles(table)

    def errors(**changes: str) -> dict[str, list[str]]:
        config = {**source_config(db, table, "timestamp+incrementing"), "name": "v", **changes}
        return errors_of(validate(config))

    assert errors() == {}
    wrong_password = errors(**{"connection.password": "wrong"})
    assert list(wrong_password) == ["connection.password"]
    assert "connection.password" in wrong_password["connection.password"][0]
    assert "wrong" not in str(wrong_password)
    unreachable = errors(**{"connection.url": db.jdbc_url.replace(
        db.jdbc_url.rsplit(":", 1)[1].split("/")[0], "1")})
    assert list(unreachable) == ["connection.url"]
    missing = errors(**{"table.whitelist": f"{table},no_such_table"})
    assert "no_such_table" in missing["table.whitelist"][0]
    bad_column = errors(**{"timestamp.column.name": "changed_at"})
    assert "changed_at" in bad_column["timestamp.column.name"][0]
    assert table in bad_column["timestamp.column.name"][0]
    nullable = errors(**{"timestamp.column.name": "model", "mode": "timestamp"})
    assert "nullable" in nullable["timestamp.column.name"][0]
    assert errors(mode="timestamp", **{"timestamp.column.name": ""}) == {
        "timestamp.column.name": ["mode timestamp needs the timestamp column(s); set "
                                  "timestamp.column.name"]}

    # in the task: a column renamed while it runs, a password only the worker resolves
    name = f"src-{table}"
    herder.put_connector(name, source_config(db, table, "timestamp+incrementing"))
    wait_for(lambda: herder.connector_status(name)["tasks"][0]["state"] == "RUNNING", 30,
             "the task to run")
    db.execute(f"ALTER TABLE {table} RENAME COLUMN updated_at TO changed_at")
    wait_for(lambda: herder.connector_status(name)["tasks"][0]["state"] == "FAILED", 30,
             "the task to fail")
    trace = task_detail(herder, name)
    assert "timestamp.column.name" in trace and "updated_at" in trace and table in trace
    wrong = f"src-wrong-{table}"
    resolved_later = {**source_config(db, table, "bulk"),
                      "connection.password": "${env:KANAL_JDBC_TEST_PASSWORD}"}
    os.environ["KANAL_JDBC_TEST_PASSWORD"] = "wrong-secret"
    with pytest.raises(InvalidConfigError, match=r"connection\.password") as refused:
        herder.put_connector(wrong, resolved_later)  # validation resolves it, as Apache's
    assert "wrong-secret" not in str(refused.value)
    os.environ["KANAL_JDBC_TEST_PASSWORD"] = db.password
    herder.put_connector(wrong, resolved_later)
    wait_for(lambda: herder.connector_status(wrong)["tasks"][0]["state"] == "RUNNING", 30,
             "the task to run")
    os.environ["KANAL_JDBC_TEST_PASSWORD"] = "wrong-secret"  # rotated under a running task
    herder.restart_task(wrong, 0)
    wait_for(lambda: herder.connector_status(wrong)["tasks"][0]["state"] == "FAILED", 60,
             "the task with a wrong password to fail")
    trace = task_detail(herder, wrong)
    assert "connection.password" in trace and "wrong-secret" not in trace


def test_tables_are_found_and_spread_over_the_tasks(postgres_db: Db, herder: StandaloneHerder,
                                                    kafka: str) -> None:
    schema = f"fleet_{uuid.uuid4().hex[:8]}"
    postgres_db.execute(f"CREATE SCHEMA {schema}")
    tables = [f"{schema}.t{n}" for n in range(6)]
    for n, table in enumerate(tables):
        postgres_db.vehicles(table)
        postgres_db.insert(table, f"VH-{n}")
    name = f"src-{schema}"
    config = source_config(postgres_db, "", "incrementing", schema_pattern=schema,
                           topic_prefix=f"{schema}-", tasks_max="3")
    config["table.whitelist"] = ""
    herder.put_connector(name, config)
    assert len(herder.task_configs(name)) == 3
    for n in range(6):
        assert rows(kafka, f"{schema}-t{n}", 1) == [(1, f"VH-{n}")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ThrowawayPostgres:
    """A PostgreSQL cluster of the test's own (``dev/stack run postgres server``, the
    cached binaries), so that restarting it disturbs no one else."""

    def __init__(self, root: Path) -> None:
        self.data = root / "data"
        self.port = free_port()
        self.log = root / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True)

    def start(self) -> None:
        handle = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [str(STACK), "run", "postgres", "server", str(self.data), str(self.port)],
            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        engine = sa.create_engine(self.url)
        try:
            def accepts() -> bool:
                try:
                    with engine.connect():
                        return True
                except sa.exc.OperationalError:
                    return False
            wait_for(accepts, 90, "the throw-away PostgreSQL to accept connections")
        finally:
            engine.dispose()

    def stop(self) -> None:
        if self.process is not None:
            # SIGINT: PostgreSQL's fast shutdown, clients are disconnected
            os.killpg(self.process.pid, signal.SIGINT)
            self.process.wait(60)
            self.process = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://kanal:kanal@127.0.0.1:{self.port}/kanal"


@pytest.fixture
def throwaway(tmp_path: Path, postgres_db: Db) -> Iterator[ThrowawayPostgres]:
    server = ThrowawayPostgres(tmp_path / "pg")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data, ignore_errors=True)


def test_database_restart_is_retried_with_backoff_and_loses_nothing(
        throwaway: ThrowawayPostgres, herder: StandaloneHerder, kafka: str) -> None:
    engine = sa.create_engine(throwaway.url)
    db = Db("postgres", engine, f"jdbc:postgresql://127.0.0.1:{throwaway.port}/kanal",
            "kanal", "kanal", "SERIAL", "TIMESTAMP(3)", "CLOCK_TIMESTAMP()")
    table = table_name()
    db.vehicles(table)
    db.execute(f"INSERT INTO {table} (vehicle_id) VALUES " +
               ",".join(f"('VH-{n}')" for n in range(500)))
    name = f"src-{table}"
    herder.put_connector(name, source_config(db, table, "timestamp+incrementing",
                                             connection_attempts="2",
                                             connection_backoff_ms="100"))
    wait_rows(kafka, f"jdbc-{table}", 500)
    engine.dispose()
    throwaway.stop()
    wait_for(lambda: "retrying poll" in task_detail(herder, name), 60,
             "the status to say the task retries")
    assert herder.connector_status(name)["tasks"][0]["state"] == "RUNNING"
    assert f"127.0.0.1:{throwaway.port}" in task_detail(herder, name)
    throwaway.start()
    db.execute(f"INSERT INTO {table} (vehicle_id) VALUES " +
               ",".join(f"('VH-{n}')" for n in range(500, 800)))
    wait_rows(kafka, f"jdbc-{table}", 800, timeout=90)
    wait_for(lambda: "retrying" not in task_detail(herder, name), 30,
             "the status to clear once the database is back")
    found = rows(kafka, f"jdbc-{table}", 801, timeout=2.5)
    assert sorted(i for i, _ in found) == list(range(1, 801))
    engine.dispose()



EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "jdbc"


def test_the_vehicles_example_reads_the_table_into_kafka(
        postgres_db: Db, herder: StandaloneHerder, kafka: str) -> None:
    """examples/jdbc as shipped: the table of vehicles.sql, the connector of
    vehicles-source.properties (the same as the .json and the manifest), in a schema of
    the test's own."""
    schema = f"example_{uuid.uuid4().hex[:8]}"
    postgres_db.execute(f"CREATE SCHEMA {schema}")
    with postgres_db.engine.begin() as connection:
        connection.exec_driver_sql(f"SET search_path TO {schema}")
        connection.exec_driver_sql((EXAMPLES / "vehicles.sql").read_text())
    config = load_properties(EXAMPLES / "vehicles-source.properties")
    rest = orjson.loads((EXAMPLES / "vehicles-source.json").read_bytes())
    manifest = yaml.safe_load((EXAMPLES / "vehicles-source.yaml").read_text())
    assert rest["config"] == {k: v for k, v in config.items() if k != "name"}
    assert {k: str(v) for k, v in manifest["spec"]["config"].items()
            if k != "connection.url" and k != "connection.password"} == \
        {k: v for k, v in config.items()
         if k not in ("name", "tasks.max", "connector.class", "connection.url",
                      "connection.password")}
    config.update({"connection.url": postgres_db.jdbc_url, "connection.password":
                   postgres_db.password, "schema.pattern": schema, "topic.prefix": f"{schema}."})
    herder.put_connector(config.pop("name"), config)
    found = payloads(kafka, f"{schema}.vehicles", 3)
    assert sorted(p["payload"]["vehicle_id"] for p in found) == ["VH-0001", "VH-0002",
                                                                 "VH-0003"]
    assert found[0]["schema"]["name"] == "vehicles"


TYPED_COLUMNS = {
    "postgres": ("small SMALLINT NOT NULL, whole INTEGER, big BIGINT, amount NUMERIC(8,3), "
                 "ratio REAL, precise DOUBLE PRECISION, flag BOOLEAN, day DATE, clock TIME(3), "
                 "at TIMESTAMP(3), zoned TIMESTAMPTZ, raw BYTEA, note TEXT, ref UUID, "
                 "doc JSONB",
                 "1, 2, 3, 12.345, 1.5, 2.25, TRUE, '2026-12-06', '08:30:15.250', "
                 "'2026-12-06 08:30:15.250', '2026-12-06 09:30:15.250+01', '\\x0102', 'hi', "
                 "'9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d', '{\"a\": 1}'"),
    "mariadb": ("small SMALLINT NOT NULL, whole INTEGER, big BIGINT, amount DECIMAL(8,3), "
                "ratio FLOAT, precise DOUBLE, flag TINYINT, day DATE, clock TIME(3), "
                "at DATETIME(3), zoned TIMESTAMP(3) NULL, raw BLOB, note TEXT, ref CHAR(36), "
                "doc JSON",
                "1, 2, 3, 12.345, 1.5, 2.25, 1, '2026-12-06', '08:30:15.250', "
                "'2026-12-06 08:30:15.250', '2026-12-06 08:30:15.250', x'0102', 'hi', "
                "'9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d', '{\"a\": 1}'"),
}


def test_column_types_become_connect_types_that_avro_carries(
        db: Db, schema_registry: TestRegistry) -> None:
    """Rows read by the task itself (no Kafka) and written and read back by the
    AvroConverter: the table's types survive as Avro's."""
    table = table_name()
    columns, values = TYPED_COLUMNS[db.name]
    db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, {columns})")
    db.execute(f"INSERT INTO {table} VALUES (1, {values})")
    config = source_config(db, table, "bulk", tables=table)
    task = JdbcSourceTask(JdbcSourceConnector.settings.parse(config), NoOffsets())
    task.start()
    try:
        records: list[Any] = []

        def read() -> bool:
            records.extend(task.poll())
            return bool(records)
        wait_for(read, 30, "the row")
    finally:
        task.stop()
    [record] = records
    schema = record.value_schema
    types = {f.name: (f.schema.name or f.schema.type.value, f.schema.optional)
             for f in schema.fields}
    assert types["small"] == ("int16", False)
    assert types["whole"] == ("int32", True) and types["big"] == ("int64", True)
    assert types["amount"] == ("org.apache.kafka.connect.data.Decimal", True)
    assert types["ratio"] == ("float32", True) and types["precise"] == ("float64", True)
    assert types["day"][0] == "org.apache.kafka.connect.data.Date"
    assert types["clock"][0] == "org.apache.kafka.connect.data.Time"
    assert types["at"][0] == types["zoned"][0] == "org.apache.kafka.connect.data.Timestamp"
    assert types["raw"][0] == "bytes" and types["note"][0] == types["ref"][0] == "string"
    value = record.value
    assert value["amount"] == decimal.Decimal("12.345")
    assert value["at"] == value["zoned"] == dt.datetime(2026, 12, 6, 8, 30, 15, 250000,
                                                        tzinfo=dt.UTC)
    assert value["clock"] == dt.time(8, 30, 15, 250000)
    assert value["raw"] == b"\x01\x02" and orjson.loads(value["doc"]) == {"a": 1}
    avro = AvroConverter({"schema.registry.url": schema_registry.url}, False)
    back = avro.to_connect(table, avro.from_connect(table, schema, value))
    assert back.value["amount"] == decimal.Decimal("12.345")
    assert back.value["at"] == value["at"] and back.value["day"] == value["day"]
    assert back.value["ref"] == "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"


class NoOffsets:
    task_id = "types-0"

    def offset(self, partition: Any) -> None:
        return None


def test_several_timestamp_columns_use_the_first_that_is_set(
        db: Db, herder: StandaloneHerder, kafka: str) -> None:
    table = table_name()
    db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, vehicle_id VARCHAR(16) "
               f"NOT NULL, modified_at {db.timestamp} NULL, created_at {db.timestamp} "
               "NOT NULL)")
    db.execute(f"INSERT INTO {table} VALUES (1, 'VH-1', NULL, {db.now})",
               f"INSERT INTO {table} VALUES (2, 'VH-2', {db.now}, {db.now})")
    herder.put_connector(f"src-{table}", source_config(
        db, table, "timestamp+incrementing", timestamp_column_name="modified_at,created_at"))
    wait_rows(kafka, f"jdbc-{table}", 2)
    db.execute(f"UPDATE {table} SET vehicle_id = 'VH-1b', modified_at = {db.now} WHERE id = 1")
    wait_rows(kafka, f"jdbc-{table}", 3)
    found = rows(kafka, f"jdbc-{table}", 4, timeout=2.5)
    assert sorted(found) == [(1, "VH-1"), (1, "VH-1b"), (2, "VH-2")]


def test_a_killed_worker_resumes_without_repeats_with_exactly_once_sources(
        postgres_db: Db, tmp_path: Path, kafka: str) -> None:
    """`kanal standalone` SIGKILLed while it reads: records and offsets commit together,
    so the topic holds every row once."""
    total = 10_000  # read 10 per poll, each poll its own transaction
    table = table_name()
    postgres_db.vehicles(table)
    postgres_db.execute(f"INSERT INTO {table} (vehicle_id) VALUES " +
                        ",".join(f"('VH-{n}')" for n in range(total)))
    worker = worker_properties(
        tmp_path, kafka, **{"offset.storage.topic": f"offsets-{uuid.uuid4().hex[:8]}",
                            "offset.storage.replication.factor": "1",
                            "exactly.once.source.support": "enabled",
                            "group.id": f"jdbc-eos-{table}",
                            "value.converter": "org.apache.kafka.connect.json.JsonConverter"})
    source = write_properties(tmp_path / "source.properties", {
        "name": f"src-{table}",
        **source_config(postgres_db, table, "incrementing", batch_max_rows="10",
                        poll_interval_ms="100")})
    log = tmp_path / "kanal.log"
    topic = f"jdbc-{table}"
    run = Standalone(worker, source, log=log).start().wait_running()
    wait_for(lambda: len(consume_all(kafka, topic, 1, timeout=2,
                                     isolation="read_committed")) > 0, 60,
             "records before the kill")
    run.kill()
    before = len(consume_all(kafka, topic, total, timeout=3, isolation="read_committed"))
    assert before < total, "the kill must come while rows are still being read"
    final = Standalone(worker, source, log=log).start().wait_running()
    try:
        def ids() -> list[int]:
            return [orjson.loads(m.value())["payload"]["id"] for m in consume_all(
                kafka, topic, total + 1, timeout=5, isolation="read_committed")]
        wait_for(lambda: len(ids()) >= total, 120, "every row committed")
    finally:
        assert final.stop() == 0
    found = ids()
    assert len(found) == total, "no row may appear twice"
    assert sorted(found) == list(range(1, total + 1))


def test_an_empty_incrementing_column_is_each_tables_auto_increment_column(
        db: Db, herder: StandaloneHerder, kafka: str) -> None:
    first, second = table_name(), table_name()
    db.execute(f"CREATE TABLE {first} (id {db.serial} PRIMARY KEY, vehicle_id VARCHAR(16))",
               f"CREATE TABLE {second} (vid {db.serial} PRIMARY KEY, vehicle_id VARCHAR(16))")
    for table in (first, second):
        db.execute(f"INSERT INTO {table} (vehicle_id) VALUES ('VH-1'), ('VH-2')")
    config = source_config(db, f"{first},{second}", "incrementing",
                           incrementing_column_name="")
    herder.put_connector(f"src-{first}", config)
    for table in (first, second):
        found = payloads(kafka, f"jdbc-{table}", 2)
        assert sorted(p["payload"]["vehicle_id"] for p in found) == ["VH-1", "VH-2"]
    db.execute(f"INSERT INTO {second} (vehicle_id) VALUES ('VH-3')")
    found = payloads(kafka, f"jdbc-{second}", 3)
    assert sorted(p["payload"]["vehicle_id"] for p in found) == ["VH-1", "VH-2", "VH-3"]
