"""JdbcSinkConnector against the real broker and real PostgreSQL, MariaDB and SQLite.

Connectors run through Kanal's runtime: an in-process ``StandaloneHerder`` or a
``kanal standalone`` subprocess that the crash test kills with SIGKILL. Tables are read
back with SQLAlchemy. The database-restart test runs a throw-away PostgreSQL cluster of
its own (``dev/stack run postgres server``), so nothing else loses its database.
"""

from __future__ import annotations

import base64
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import sqlalchemy as sa

from dev.stack_env import STACK
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.standalone import StandaloneHerder
from kanal_worker.runtime.status import State
from kanal_worker.runtime.validation import errors_of, validate
from tests.integration.standalone import (
    Standalone,
    wait_for,
    worker_properties,
    write_properties,
)
from tests.kafka_helpers import committed, consume_all, produce

pytestmark = pytest.mark.integration

CRASH_RECORDS = int(os.environ.get("KANAL_JDBC_CRASH_RECORDS", "4000"))
"""Records of the SIGKILL test (KANAL_JDBC_CRASH_RECORDS=100000 for the full run)."""
SCHEMAS = {"key.converter": "org.apache.kafka.connect.storage.StringConverter",
           "value.converter": "org.apache.kafka.connect.json.JsonConverter",
           "value.converter.schemas.enable": "true"}
SCHEMALESS = {**SCHEMAS, "value.converter.schemas.enable": "false"}
DIALECTS = ["postgresql", "mariadb", "sqlite"]


class Db:
    """One test database: the connector keys a user would write and a reader."""

    def __init__(self, dialect: str, url: str, connector: dict[str, str]) -> None:
        self.dialect = dialect
        self.engine = sa.create_engine(url)
        self.connector = connector

    def quote(self, name: str) -> str:
        return self.engine.dialect.identifier_preparer.quote(name)

    def rows(self, table: str, order: str = "1") -> list[tuple[Any, ...]]:
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(
                f"SELECT * FROM {self.quote(table)} ORDER BY {order}"))]

    def exists(self, table: str) -> bool:
        return sa.inspect(self.engine).has_table(table)

    def count(self, table: str) -> int:
        if not self.exists(table):
            return 0
        with self.engine.connect() as connection:
            return int(connection.execute(sa.text(
                f"SELECT COUNT(*) FROM {self.quote(table)}")).scalar_one())

    def columns(self, table: str) -> dict[str, sa.types.TypeEngine[Any]]:
        return {c["name"]: c["type"] for c in sa.inspect(self.engine).get_columns(table)}

    def execute(self, sql: str) -> None:
        with self.engine.begin() as connection:
            connection.exec_driver_sql(sql)


def server_db(dialect: str, url: str) -> Db:
    """A Db for the dev/stack server at ``url`` (user:password@host:port/db), configured
    with the JDBC URL and the connection.user/password keys."""
    parts = urlsplit(url)
    jdbc = f"jdbc:{dialect}://{parts.hostname}:{parts.port}{parts.path}"
    driver = "postgresql+psycopg" if dialect == "postgresql" else "mysql+pymysql"
    return Db(dialect, f"{driver}://{parts.netloc}{parts.path}",
              {"connection.url": jdbc, "connection.user": parts.username or "",
               "connection.password": parts.password or ""})


@pytest.fixture(params=DIALECTS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if request.param == "sqlite":
        path = tmp_path / "sink.db"
        found = Db("sqlite", f"sqlite:///{path}", {"connection.url": f"jdbc:sqlite:{path}"})
    else:
        url = request.getfixturevalue("postgres" if request.param == "postgresql" else "mariadb")
        found = server_db(request.param, url)
    yield found
    found.engine.dispose()


@contextmanager
def herder_running(kafka: str) -> Iterator[StandaloneHerder]:
    herder = StandaloneHerder({"bootstrap.servers": kafka, "offset.flush.interval.ms": "500",
                               "listeners": ""}, "test:8083", MemoryOffsetStore())
    try:
        yield herder
    finally:
        herder.stop_all()


def start(herder: StandaloneHerder, name: str, config: dict[str, str]) -> None:
    herder.put_connector(name, {"connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector",
                                "tasks.max": "1", **config})


def task_state(herder: StandaloneHerder, name: str) -> dict[str, Any]:
    task: dict[str, Any] = herder.connector_status(name)["tasks"][0]
    return task


def envelope(fields: list[dict[str, Any]], payload: dict[str, Any]) -> bytes:
    return orjson.dumps({"schema": {"type": "struct", "name": "reading", "fields": fields},
                         "payload": payload})


READING = [{"field": "vehicle_id", "type": "string"},
           {"field": "speed", "type": "double"},
           {"field": "fuel", "type": "bytes", "optional": True,
            "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
            "parameters": {"scale": "2"}},
           {"field": "day", "type": "int32", "optional": True,
            "name": "org.apache.kafka.connect.data.Date", "version": 1},
           {"field": "at", "type": "int64", "optional": True,
            "name": "org.apache.kafka.connect.data.Timestamp", "version": 1}]
DRIVER = {"field": "driver", "type": "string", "optional": True}
SHIFT = [{"field": "start", "type": "int32", "optional": True,
          "name": "org.apache.kafka.connect.data.Time", "version": 1},
         {"field": "stops", "type": "array", "items": {"type": "string"}, "optional": True}]
AT_MS = 1_767_323_045_678  # 2026-01-02T03:04:05.678Z
AT_DAY = 20_455  # 2026-01-02


def cents(value: int) -> str:
    """A Decimal of scale 2 as JsonConverter writes it: the unscaled value's bytes."""
    return base64.b64encode(value.to_bytes(4, "big", signed=True)).decode()


def reading(vehicle: str, speed: float, **more: Any) -> dict[str, Any]:
    return {"vehicle_id": vehicle, "speed": speed, "fuel": cents(1234), "day": AT_DAY,
            "at": AT_MS, **more}


def test_insert_upsert_update_delete_create_and_evolve(
        kafka: str, db: Db, new_topic: Callable[..., str], unique: str) -> None:
    upserts, inserts, updates = new_topic("up"), new_topic("ins"), new_topic("upd")
    produce(kafka, upserts, [envelope(READING, reading("v1", 10)),
                             envelope(READING, reading("v2", 20)),
                             envelope(READING, reading("v1", 11)),
                             envelope(READING, reading("v3", 30)),
                             None,
                             envelope([*READING, DRIVER, *SHIFT],
                                      reading("v4", 40, driver="ann", start=11_045_678,
                                              stops=["depot", "port"]))],
            keys=[b"v1", b"v2", b"v1", b"v3", b"v2", b"v4"])
    produce(kafka, inserts, [envelope(READING, reading(f"i{n}", n)) for n in range(3)])
    db.execute(f"CREATE TABLE {db.quote(updates)} (vehicle_id VARCHAR(64) PRIMARY KEY, "
               f"speed DOUBLE PRECISION, note VARCHAR(20))")
    db.execute(f"INSERT INTO {db.quote(updates)} VALUES ('v1', 0, 'kept'), ('v2', 0, 'kept')")
    produce(kafka, updates, [envelope(READING[:2], {"vehicle_id": "v1", "speed": 5}),
                             envelope(READING[:2], {"vehicle_id": "v9", "speed": 9})])
    with herder_running(kafka) as herder:
        start(herder, f"up-{unique}", {
            "topics": upserts, **SCHEMAS, **db.connector, "insert.mode": "upsert",
            "pk.mode": "record_key", "pk.fields": "vehicle_id", "delete.enabled": "true",
            "auto.create": "true", "auto.evolve": "true"})
        start(herder, f"ins-{unique}", {
            "topics": inserts, **SCHEMAS, **db.connector, "pk.mode": "kafka",
            "auto.create": "true", "fields.whitelist": "vehicle_id,speed"})
        start(herder, f"upd-{unique}", {
            "topics": updates, **SCHEMAS, **db.connector, "insert.mode": "update",
            "pk.mode": "record_value", "pk.fields": "vehicle_id"})
        for name, topic, count in ((f"up-{unique}", upserts, 6), (f"ins-{unique}", inserts, 3),
                                   (f"upd-{unique}", updates, 2)):
            wait_for(lambda n=name, t=topic, c=count: committed(
                kafka, f"connect-{n}", t, 1) == {0: c}, 90, f"{name} offsets committed")
            assert task_state(herder, name)["state"] == State.RUNNING.value

    rows = db.rows(upserts)
    assert [(r[0], r[1], r[5]) for r in rows] == [("v1", 11, None), ("v3", 30, None),
                                                  ("v4", 40, "ann")]
    shift_start, stops = rows[2][6:]
    assert str(shift_start).lstrip("0").startswith("3:04:05.678")  # MySQL reads a timedelta
    assert (stops if isinstance(stops, list) else orjson.loads(stops)) == ["depot", "port"]
    fuel, day, at = rows[0][2:5]
    assert str(fuel) in ("12.34", "12.340000000000000000000000000000") or float(fuel) == 12.34
    assert str(day).startswith("2026-01-02")
    assert str(at).startswith("2026-01-02 03:04:05.678")
    columns = db.columns(upserts)
    assert list(columns) == ["vehicle_id", "speed", "fuel", "day", "at", "driver", "start",
                             "stops"]
    if db.dialect == "postgresql":
        assert isinstance(columns["stops"], sa.ARRAY)
    if db.dialect != "sqlite":
        assert isinstance(columns["start"], sa.Time)
        assert isinstance(columns["fuel"], sa.Numeric)
        assert isinstance(columns["day"], sa.Date)
        assert isinstance(columns["at"], sa.DateTime)

    assert db.rows(inserts, "4") == [(inserts, 0, n, f"i{n}", n) for n in range(3)]
    assert db.rows(updates) == [("v1", 5, "kept"), ("v2", 0, "kept")]


def test_schemaless_json_infers_column_types_and_widens_them(
        kafka: str, db: Db, new_topic: Callable[..., str], unique: str) -> None:
    topic = new_topic("json")
    name = f"json-{unique}"
    first = [{"id": 1, "speed": 50, "moving": True, "tags": ["a", "b"], "gone": None}]
    later = [{"id": 2, "speed": 51.5, "note": "late"}, {"id": 3, "speed": 12, "code": 7},
             {"id": 4, "code": "X7"}, {"id": 1, "speed": 52, "moving": False}]
    produce(kafka, topic, [orjson.dumps(v) for v in first])
    with herder_running(kafka) as herder:
        start(herder, name, {"topics": topic, **SCHEMALESS, **db.connector,
                             "insert.mode": "upsert", "pk.mode": "record_value",
                             "pk.fields": "id", "auto.create": "true", "auto.evolve": "true"})
        wait_for(lambda: committed(kafka, f"connect-{name}", topic, 1) == {0: 1}, 90,
                 "the first record written")
        created = db.columns(topic)
        produce(kafka, topic, [orjson.dumps(v) for v in later])
        wait_for(lambda: committed(kafka, f"connect-{name}", topic, 1) == {0: 5}, 90,
                 "the later records written")
        assert task_state(herder, name)["state"] == State.RUNNING.value

    assert list(created) == ["id", "speed", "moving", "tags"]  # a null makes no column
    assert isinstance(created["id"], sa.BigInteger | sa.Integer)
    assert isinstance(created["speed"], sa.BigInteger | sa.Integer)
    rows = {r[0]: r[1:] for r in db.rows(topic)}
    assert set(rows) == {1, 2, 3, 4}
    evolved = db.columns(topic)
    assert list(evolved) == ["id", "speed", "moving", "tags", "note", "code"]
    if db.dialect != "sqlite":  # SQLite columns take any value as they are
        assert isinstance(evolved["speed"], sa.Float)  # integers widened to doubles
        assert isinstance(evolved["code"], sa.Text | sa.String)  # integer then text
    speed, moving, tags, note, code = rows[1]
    assert (float(speed), bool(moving), note, code) == (52.0, False, None, None)
    assert (tags if isinstance(tags, list) else orjson.loads(tags)) == ["a", "b"]
    assert float(rows[2][0]) == 51.5 and rows[2][3] == "late"
    assert str(rows[3][4]) == "7" and rows[4][4] == "X7"


def crash_values(start_seq: int, count: int) -> tuple[list[bytes | None], list[bytes | None]]:
    """Readings of 500 vehicles (keyed by vehicle, so each vehicle keeps one partition)."""
    rng = random.Random(start_seq)
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    for seq in range(start_seq, start_seq + count):
        vehicle = f"veh-{rng.randrange(500):03d}"
        keys.append(vehicle.encode())
        values.append(orjson.dumps({"vehicle_id": vehicle, "seq": seq,
                                    "speed": rng.randrange(130)}))
    return keys, values


def test_sigkill_three_times_leaves_exactly_the_last_value_of_every_key(
        tmp_path: Path, kafka: str, db: Db, new_topic: Callable[..., str],
        unique: str) -> None:
    topic = new_topic("crash", 2)
    worker = worker_properties(tmp_path, kafka)
    connector = write_properties(tmp_path / "jdbc.properties", {
        "name": f"crash-{unique}", "connector.class":
            "io.confluent.connect.jdbc.JdbcSinkConnector",
        "topics": topic, **SCHEMALESS, **db.connector, "insert.mode": "upsert",
        "pk.mode": "record_value", "pk.fields": "vehicle_id", "auto.create": "true",
        "auto.evolve": "true", "batch.size": "500",
        "consumer.override.max.poll.records": "500"})
    log = tmp_path / "kanal.log"
    rng = random.Random(unique)
    expected: dict[str, int] = {}
    chunk = CRASH_RECORDS // 4
    for run_number in range(4):
        keys, values = crash_values(run_number * chunk, chunk)
        produce(kafka, topic, values, keys=keys)
        for value in values:
            assert value is not None
            reading = orjson.loads(value)
            expected[reading["vehicle_id"]] = reading["seq"]
        run = Standalone(worker, connector, log=log).start()
        if run_number == 3:
            break
        floor = run_number * chunk
        wait_for(lambda f=floor: max_seq(db, topic) >= f, 120,  # type: ignore[misc]
                 f"rows of run {run_number} (log: {log})")
        time.sleep(rng.uniform(0, 0.5))
        run.stop(signal.SIGKILL)
    try:
        wait_for(lambda: committed(kafka, f"connect-crash-{unique}", topic, 2) and
                 sum(committed(kafka, f"connect-crash-{unique}", topic, 2).values())
                 == 4 * chunk, 240, f"every record committed (log: {log})")
    finally:
        assert run.stop() == 0
    table = {vehicle: seq for vehicle, seq, _ in db.rows(topic)}
    assert table == expected


def max_seq(db: Db, table: str) -> int:
    if not db.exists(table):
        return -1
    with db.engine.connect() as connection:
        found = connection.execute(sa.text(f"SELECT MAX(seq) FROM {db.quote(table)}")).scalar()
    return -1 if found is None else int(found)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class ThrowawayPostgres:
    """A PostgreSQL cluster of this test only, stopped and started at will."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ThrowawayPostgres:
        log = open(self.directory.with_suffix(".log"), "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [str(STACK), "run", "postgres", "server", str(self.directory), str(self.port)],
            stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.accepts, 90, f"PostgreSQL on port {self.port}")
        return self

    def accepts(self) -> bool:
        try:
            with sa.create_engine(self.url("postgresql+psycopg")).connect():
                return True
        except sa.exc.OperationalError:
            return False

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)  # fast shutdown: clients are cut off
        self.process.wait(60)

    def url(self, scheme: str) -> str:
        return f"{scheme}://kanal:kanal@127.0.0.1:{self.port}/kanal"


def test_database_restart_is_retried_with_backoff_and_loses_nothing(
        tmp_path: Path, kafka: str, new_topic: Callable[..., str], unique: str) -> None:
    database = ThrowawayPostgres(tmp_path / "pg").start()
    db = server_db("postgresql", database.url("postgresql"))
    topic = new_topic("restart")
    name = f"restart-{unique}"
    keys, values = crash_values(0, 2000)
    produce(kafka, topic, values[:1000], keys=keys[:1000])
    try:
        with herder_running(kafka) as herder:
            start(herder, name, {"topics": topic, **SCHEMALESS, **db.connector,
                                 "insert.mode": "upsert", "pk.mode": "record_value",
                                 "pk.fields": "vehicle_id", "auto.create": "true",
                                 "connection.attempts": "2", "connection.backoff.ms": "100"})
            wait_for(lambda: committed(kafka, f"connect-{name}", topic, 1) == {0: 1000}, 90,
                     "the first records written")
            database.stop()
            produce(kafka, topic, values[1000:], keys=keys[1000:])
            details: set[str] = set()

            def retrying() -> bool:
                details.add(task_state(herder, name).get("trace", "") +
                            (herder.runners()[0].status.detail or ""))
                return any("retrying write" in d for d in details)
            wait_for(retrying, 60, "the status to say the write is retried")
            assert task_state(herder, name)["state"] == State.RUNNING.value
            database.start()
            wait_for(lambda: committed(kafka, f"connect-{name}", topic, 1) == {0: 2000}, 120,
                     "every record written after the restart")
        assert any("unreachable" in d or "Database" in d for d in details), details
        last = {}
        for value in values:
            assert value is not None
            reading = orjson.loads(value)
            last[reading["vehicle_id"]] = reading["seq"]
        assert {vehicle: seq for vehicle, seq, _ in db.rows(topic)} == last
    finally:
        db.engine.dispose()
        database.stop()


def test_configuration_errors_name_the_key() -> None:
    base = {"name": "bad", "connector.class": "JdbcSinkConnector", "topics": "t",
            "connection.url": "jdbc:postgresql://127.0.0.1:15432/kanal",
            "connection.password": "s3cret-pw"}

    def errors(**changes: str) -> dict[str, list[str]]:
        config = {**base, **{k.replace("_", "."): v for k, v in changes.items()}}
        return errors_of(validate(config))

    assert errors() == {}
    assert "jdbc:postgresql://" in errors(connection_url="jdbc:oracle:thin:@h:1521:x")[
        "connection.url"][0]
    assert "pk.mode=record_key" in errors(delete_enabled="true")["delete.enabled"][0]
    assert "needs a primary key" in errors(insert_mode="upsert")["pk.mode"][0]
    assert "Unknown time zone" in errors(db_timezone="Mars/Olympus")["db.timezone"][0]
    assert "insert.mode" in errors(insert_mode="merge")
    assert "does not match" in errors(dialect_name="MySqlDatabaseDialect")["dialect.name"][0]
    shown = {c["value"]["name"]: c["value"]["value"] for c in validate(base)["configs"]}
    assert shown["connection.password"] == "[hidden]"


def test_bad_records_go_to_the_dead_letter_queue_and_the_rest_commits(
        kafka: str, postgres: str, new_topic: Callable[..., str], unique: str) -> None:
    db = server_db("postgresql", postgres)
    topic, orphan = new_topic("bad"), new_topic("orphan")
    dlq = f"{topic}-dlq"
    db.execute(f"CREATE TABLE {db.quote(topic)} (id BIGINT PRIMARY KEY, speed INTEGER)")
    values = [{"id": 1, "speed": 10}, {"id": 2, "speed": "fast"}, {"id": 3, "speed": 30},
              {"speed": 40}, {"id": 5, "speed": 50}]
    produce(kafka, topic, [orjson.dumps(v) for v in values])
    produce(kafka, orphan, [orjson.dumps({"id": 9, "speed": 1})])
    name = f"bad-{unique}"
    with herder_running(kafka) as herder:
        start(herder, name, {"topics": f"{topic},{orphan}", **SCHEMALESS, **db.connector,
                             "insert.mode": "upsert", "pk.mode": "record_value",
                             "pk.fields": "id", "errors.tolerance": "all",
                             "errors.deadletterqueue.topic.name": dlq,
                             "errors.deadletterqueue.topic.replication.factor": "1",
                             "errors.deadletterqueue.context.headers.enable": "true"})
        dead = consume_all(kafka, dlq, 3, timeout=90)
        assert task_state(herder, name)["state"] == State.RUNNING.value
        wait_for(lambda: committed(kafka, f"connect-{name}", topic, 1) == {0: 5}, 60,
                 "offsets committed")
    assert db.rows(topic) == [(1, 10), (3, 30), (5, 50)]
    assert not db.exists(orphan)
    messages = {(m.topic(), orjson.loads(m.value()).get("id")):
                dict(m.headers())["__connect.errors.exception.message"].decode()
                for m in dead}
    assert set(messages) == {(dlq, 2), (dlq, None), (dlq, 9)}
    assert f"record {topic}-0 offset 1: table {topic} refused the row" in messages[(dlq, 2)]
    assert "column speed is INTEGER but the value is 'fast'" in messages[(dlq, 2)]
    assert f"record {topic}-0 offset 3: primary key field 'id'" in messages[(dlq, None)]
    assert f"table {orphan} does not exist and auto.create=false" in messages[(dlq, 9)]
    db.engine.dispose()


def test_wrong_password_fails_the_task_naming_the_keys_without_the_password(
        kafka: str, postgres: str, new_topic: Callable[..., str], unique: str) -> None:
    db = server_db("postgresql", postgres)
    topic = new_topic("pw")
    name = f"pw-{unique}"
    with herder_running(kafka) as herder:
        start(herder, name, {"topics": topic, **SCHEMALESS, **db.connector,
                             "connection.password": "not-the-password"})
        wait_for(lambda: task_state(herder, name)["state"] == State.FAILED.value, 60,
                 "the task to fail")
        trace = task_state(herder, name)["trace"]
    assert "password authentication failed" in trace
    assert "connection.password" in trace
    assert "not-the-password" not in trace
    db.engine.dispose()


def test_plain_inserts_with_documents_and_a_refused_row(
        kafka: str, db: Db, new_topic: Callable[..., str], unique: str) -> None:
    """insert.mode=insert (COPY on PostgreSQL): JSON documents land as JSON, and a row the
    table refuses fails alone while the rest of its batch is written."""
    topic = new_topic("plain")
    name = f"plain-{unique}"
    db.execute(f"CREATE TABLE {db.quote(topic)} (n BIGINT, speed BIGINT, "
               f"tags {'JSONB' if db.dialect == 'postgresql' else 'JSON'})")
    values = [{"n": n, "speed": "fast" if n == 3 else n, "tags": {"seen": [n, "x"]}}
              for n in range(6)]
    produce(kafka, topic, [orjson.dumps(v) for v in values])
    with herder_running(kafka) as herder:
        start(herder, name, {"topics": topic, **SCHEMALESS, **db.connector,
                             "errors.tolerance": "all"})
        wait_for(lambda: committed(kafka, f"connect-{name}", topic, 1) == {0: 6}, 90,
                 "offsets committed")
        assert task_state(herder, name)["state"] == State.RUNNING.value
    rows = db.rows(topic)
    if db.dialect == "sqlite":  # SQLite stores the text as it is: nothing is refused
        assert [r[1] for r in rows] == [0, 1, 2, "fast", 4, 5]
        return
    assert [(n, speed) for n, speed, _ in rows] == [(n, n) for n in (0, 1, 2, 4, 5)]
    assert [t if isinstance(t, dict) else orjson.loads(t) for _, _, t in rows] == \
        [{"seen": [n, "x"]} for n in (0, 1, 2, 4, 5)]
