"""PostgresConnector against the real broker and the real PostgreSQL 15 of ``dev/stack``.

Each test captures a database of its own with its own slot and publication, and drops
them after. The restart test runs a throw-away PostgreSQL cluster of its own
(``dev/stack run postgres server``), so nothing else loses its database. Record counts of
the crash test: KANAL_CDC_CRASH_CHANGES (100000 for the full run).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import psycopg2
import psycopg2.extras
import pytest

from dev.golden.record_debezium import database_url, drop_slot, run_sql
from dev.stack_env import STACK
from kanal_worker.api import ConfigError
from kanal_worker.connectors.postgres_cdc.settings import PostgresCdcSettings
from kanal_worker.connectors.postgres_cdc.source import PostgresCdcTask
from kanal_worker.runtime.herder import InvalidConfigError
from kanal_worker.runtime.standalone import StandaloneHerder
from kanal_worker.runtime.status import State
from kanal_worker.runtime.validation import errors_of, validate
from tests.integration.standalone import (
    Standalone,
    in_process_herder,
    wait_for,
    worker_properties,
    write_properties,
)
from tests.kafka_helpers import consume_all

pytestmark = pytest.mark.integration

CRASH_CHANGES = int(os.environ.get("KANAL_CDC_CRASH_CHANGES", "6000"))
JSON = "org.apache.kafka.connect.json.JsonConverter"
PLAIN_JSON = {"key.converter": JSON, "key.converter.schemas.enable": "false",
              "value.converter": JSON, "value.converter.schemas.enable": "false"}


@dataclass
class Database:
    server: str
    name: str

    @property
    def url(self) -> str:
        return database_url(self.server, self.name)

    def run(self, *statements: str) -> None:
        run_sql(self.url, list(statements))

    def one(self, statement: str) -> Any:
        with psycopg.connect(self.url, autocommit=True) as connection:
            row = connection.execute(statement.encode()).fetchone()
        return row[0] if row else None

    def config(self, slot: str, prefix: str, **extra: str) -> dict[str, str]:
        server = psycopg.conninfo.conninfo_to_dict(self.server)
        return {"connector.class": "io.debezium.connector.postgresql.PostgresConnector",
                "tasks.max": "1", "database.hostname": str(server.get("host", "127.0.0.1")),
                "database.port": str(server.get("port", 5432)),
                "database.user": str(server.get("user", "kanal")),
                "database.password": str(server.get("password", "kanal")),
                "database.dbname": self.name, "topic.prefix": prefix, "slot.name": slot,
                "publication.name": slot, "publication.autocreate.mode": "filtered",
                "slot.drop.on.stop": "true", "poll.interval.ms": "100", **PLAIN_JSON,
                **{k.replace("_", "."): v for k, v in extra.items()}}


def new_database(server: str) -> Database:
    database = Database(server, f"cdc_{uuid.uuid4().hex[:10]}")
    run_sql(server, [f"CREATE DATABASE {database.name}"])
    return database


def drop_database(database: Database) -> None:
    with psycopg.connect(database.server, autocommit=True) as connection:
        slots = connection.execute("SELECT slot_name FROM pg_replication_slots WHERE "
                                   "database = %s", (database.name,)).fetchall()
    for (slot,) in slots:
        drop_slot(slot)
    run_sql(database.server, [f"DROP DATABASE IF EXISTS {database.name} WITH (FORCE)"])


@pytest.fixture
def db(postgres: str) -> Iterator[Database]:
    database = new_database(postgres)
    yield database
    drop_database(database)


@pytest.fixture
def names(unique: str) -> tuple[str, str]:
    """A slot (and publication) name and a topic prefix of this test only."""
    return f"kanal_cdc_{unique}", f"cdc{unique}"


def values(kafka: str, topic: str, expected: int, timeout: float = 60,
           isolation: str = "read_uncommitted") -> list[dict[str, Any] | None]:
    return [orjson.loads(m.value()) if m.value() is not None else None
            for m in consume_all(kafka, topic, expected, timeout, isolation)]


def wait_values(kafka: str, topic: str, expected: int, timeout: float = 90
                ) -> list[dict[str, Any] | None]:
    found: list[dict[str, Any] | None] = []

    def arrived() -> bool:
        nonlocal found
        found = values(kafka, topic, expected, timeout=5)
        return len(found) >= expected
    wait_for(arrived, timeout, f"{expected} records in {topic}")
    return found


def task_state(herder: StandaloneHerder, name: str) -> dict[str, Any]:
    task: dict[str, Any] = herder.connector_status(name)["tasks"][0]
    return task


def test_snapshot_then_inserts_updates_deletes_truncate_new_columns_and_tables(
        kafka: str, db: Database, names: tuple[str, str]) -> None:
    slot, prefix = names
    db.run("CREATE TABLE cars (id int PRIMARY KEY, name text, speed int)",
           "CREATE TABLE legs (car int, leg int, km int, PRIMARY KEY (car, leg))",
           "ALTER TABLE legs REPLICA IDENTITY FULL",
           "INSERT INTO cars VALUES (1, 'truck', 80), (2, 'van', 60)")
    cars, legs = f"{prefix}.public.cars", f"{prefix}.public.legs"
    with in_process_herder(kafka, JSON) as herder:
        config = db.config(slot, prefix, skipped_operations="none", slot_drop_on_stop="false",
                           table_include_list="public\\.(cars2?|legs)")
        herder.put_connector("cdc", config)
        snapshot = wait_values(kafka, cars, 2)
        assert [(v["op"], v["after"]["id"], v["source"]["snapshot"]) for v in snapshot
                if v] == [("r", 1, "first"), ("r", 2, "last")]
        db.run("INSERT INTO cars VALUES (3, 'bus', 50)",
               "UPDATE cars SET speed = 90 WHERE id = 1",
               "INSERT INTO legs VALUES (1, 1, 10)",
               "UPDATE legs SET km = 11",
               "DELETE FROM cars WHERE id = 2",
               "ALTER TABLE cars ADD COLUMN color text",
               "INSERT INTO cars VALUES (4, 'car', 120, 'red')",
               "UPDATE cars SET id = 5 WHERE id = 3",
               "TRUNCATE legs")
        streamed = wait_values(kafka, cars, 10)[2:]
        assert [(v["op"], v["before"], v["after"]) if v else None for v in streamed] == [
            ("c", None, {"id": 3, "name": "bus", "speed": 50}),
            ("u", None, {"id": 1, "name": "truck", "speed": 90}),
            ("d", {"id": 2, "name": None, "speed": None}, None),
            None,  # the tombstone
            ("c", None, {"id": 4, "name": "car", "speed": 120, "color": "red"}),
            # a new primary key: a delete of the old key, its tombstone, a create
            ("d", {"id": 3, "name": None, "speed": None, "color": None}, None),
            None,
            ("c", None, {"id": 5, "name": "bus", "speed": 50, "color": None})]
        leg_events = wait_values(kafka, legs, 3)
        assert [(v["op"], v["before"], v["after"]) for v in leg_events if v] == [
            ("c", None, {"car": 1, "leg": 1, "km": 10}),
            ("u", {"car": 1, "leg": 1, "km": 10}, {"car": 1, "leg": 1, "km": 11}),
            ("t", None, None)]
        # a table added to the publication while the connector runs
        db.run("CREATE TABLE cars2 (id int PRIMARY KEY)",
               f"ALTER PUBLICATION {slot} ADD TABLE cars2", "INSERT INTO cars2 VALUES (7)")
        added = wait_values(kafka, f"{prefix}.public.cars2", 1)
        assert [(v["op"], v["after"]) for v in added if v] == [("c", {"id": 7})]
        herder.put_connector("cdc", {**config, "poll.interval.ms": "200"})  # a restart
        db.run("INSERT INTO cars2 VALUES (8)")
        assert len(wait_values(kafka, f"{prefix}.public.cars2", 2)) == 2
        assert len(values(kafka, cars, 11, timeout=3)) == 10, "a restart repeats nothing"


def test_crashes_lose_nothing_and_exactly_once_repeats_nothing(
        tmp_path: Path, kafka: str, db: Database, names: tuple[str, str]) -> None:
    slot, prefix = names
    db.run("CREATE TABLE a (id int PRIMARY KEY, n int)", "CREATE TABLE b (id int PRIMARY KEY)")
    worker = worker_properties(
        tmp_path, kafka, **{"offset.storage.topic": f"offsets-{uuid.uuid4().hex[:8]}",
                            "offset.storage.replication.factor": "1",
                            "exactly.once.source.support": "enabled",
                            "group.id": f"cdc-{prefix}"})
    connector = db.config(slot, prefix, max_batch_size="500", slot_drop_on_stop="false")
    source = write_properties(tmp_path / "cdc.properties", {"name": f"cdc-{prefix}", **connector})
    log = tmp_path / "kanal.log"
    per_table = CRASH_CHANGES // 2
    transaction = 250
    writer = subprocess.Popen([sys.executable, "-c", WRITER, db.url, str(per_table),
                               str(transaction)])
    try:
        for _ in range(3):
            run = Standalone(worker, source, log=log).start()
            time.sleep(6)
            run.kill()
        final = Standalone(worker, source, log=log).start().wait_running()
        assert writer.wait(300) == 0
        try:
            for table in ("a", "b"):
                wait_for(lambda t=table: len(values(  # type: ignore[misc]
                    kafka, f"{prefix}.public.{t}", per_table, 10, "read_committed"))
                    >= per_table, 240, f"every change of {table}")
        finally:
            assert final.stop() == 0
    finally:
        writer.kill()
        drop_slot(slot)
    for table in ("a", "b"):
        events = values(kafka, f"{prefix}.public.{table}", per_table + 1, 15, "read_committed")
        ids = [v["after"]["id"] for v in events if v]
        assert len(ids) == per_table, f"{table}: no change missing and none twice"
        assert ids == list(range(per_table)), f"{table}: in commit order"


WRITER = """
import sys, psycopg
url, count, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with psycopg.connect(url) as connection:
    for start in range(0, count, step):
        stop = min(count, start + step)
        connection.execute("INSERT INTO a SELECT i, i FROM generate_series(%s::int, %s::int) i",
                           (start, stop - 1))
        connection.execute("INSERT INTO b SELECT i FROM generate_series(%s::int, %s::int) i",
                           (start, stop - 1))
        connection.commit()
"""


class ThrowawayPostgres:
    """A PostgreSQL cluster of this test only, stopped and started at will."""

    def __init__(self, directory: Path, port: int, *settings: str) -> None:
        self.directory = directory
        self.port = port
        self.settings = [arg for setting in settings for arg in ("-c", setting)]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> str:
        return f"postgresql://kanal:kanal@127.0.0.1:{self.port}/kanal"

    def start(self) -> ThrowawayPostgres:
        log = open(self.directory.with_suffix(".log"), "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [str(STACK), "run", "postgres", "server", str(self.directory), str(self.port),
             *self.settings],
            stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.accepts, 90, f"PostgreSQL on port {self.port}")
        return self

    def accepts(self) -> bool:
        try:
            with psycopg.connect(self.server, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)  # fast shutdown: clients are cut off
        self.process.wait(60)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_postgres_restart_resumes_at_the_confirmed_position(
        tmp_path: Path, kafka: str, names: tuple[str, str]) -> None:
    slot, prefix = names
    cluster = ThrowawayPostgres(tmp_path / "pg", free_port()).start()
    try:
        db = new_database(cluster.server)
        db.run("CREATE TABLE t (id int PRIMARY KEY)")
        topic = f"{prefix}.public.t"
        with in_process_herder(kafka, JSON) as herder:
            herder.put_connector("cdc", db.config(slot, prefix, slot_drop_on_stop="false"))
            wait_for(lambda: task_state(herder, "cdc")["state"] == State.RUNNING.value, 60,
                     "the task to run")
            db.run("INSERT INTO t SELECT generate_series(0, 99)")
            wait_values(kafka, topic, 100)
            cluster.stop()
            time.sleep(2)
            cluster.start()
            db.run("INSERT INTO t SELECT generate_series(100, 199)")
            events = wait_values(kafka, topic, 200, timeout=180)
            assert len(values(kafka, topic, 201, timeout=3)) == 200, "nothing read twice"
            assert [v["after"]["id"] for v in events if v] == list(range(200))
            assert task_state(herder, "cdc")["state"] == State.RUNNING.value
    finally:
        cluster.stop()


def test_heartbeats_advance_an_idle_slot(kafka: str, db: Database,
                                         names: tuple[str, str]) -> None:
    slot, prefix = names
    db.run("CREATE TABLE idle (id int PRIMARY KEY)", "CREATE TABLE busy (id serial, x int)",
           "CREATE TABLE beats (at timestamptz DEFAULT now())")
    with in_process_herder(kafka, JSON) as herder:
        herder.put_connector("cdc", db.config(
            slot, prefix, table_include_list="public.idle", heartbeat_interval_ms="1000",
            heartbeat_action_query="INSERT INTO beats DEFAULT VALUES"))
        wait_for(lambda: db.one(f"SELECT active FROM pg_replication_slots WHERE slot_name = "
                                f"'{slot}'") is True, 60, "the slot streaming")
        first = db.one(f"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE "
                       f"slot_name = '{slot}'")
        lsn = f"SELECT confirmed_flush_lsn > '{first}' FROM pg_replication_slots WHERE " \
              f"slot_name = '{slot}'"

        def advanced() -> bool:
            db.run("INSERT INTO busy (x) SELECT generate_series(1, 100)")
            return bool(db.one(lsn))
        wait_for(advanced, 60, "the confirmed LSN to advance while only busy changes")
        beats = values(kafka, f"__debezium-heartbeat.{prefix}", 1, timeout=10)
        assert beats and set(beats[0] or {}) == {"ts_ms"}
        assert db.one("SELECT count(*) FROM beats") >= 1, "heartbeat.action.query ran"


def test_a_server_without_logical_decoding_is_named_with_the_fix(
        tmp_path: Path, names: tuple[str, str]) -> None:
    slot, prefix = names
    cluster = ThrowawayPostgres(tmp_path / "pg", free_port(), "wal_level=replica").start()
    try:
        db = new_database(cluster.server)
        db.run("CREATE TABLE t (id int PRIMARY KEY)")
        config = {**db.config(slot, prefix), "name": "cdc"}
        errors = errors_of(validate(config))
        assert "wal_level=logical" in " ".join(errors["database.hostname"])
        task = PostgresCdcTask(PostgresCdcSettings.parse(config), NoOffsets())
        with pytest.raises(ConfigError, match="wal_level is replica"):
            task.start()
        task.stop()
        assert db.one("SELECT count(*) FROM pg_publication") == 0, "nothing was created"
    finally:
        cluster.stop()


class NoOffsets:
    task_id = "cdc-0"

    def offset(self, source_partition: Mapping[str, Any]) -> dict[str, Any] | None:
        return None


def test_bad_input_is_named_in_validate_and_task_status(
        kafka: str, db: Database, names: tuple[str, str]) -> None:
    slot, prefix = names
    db.run("CREATE TABLE t (id int PRIMARY KEY)",
           f"CREATE ROLE {slot}_plain LOGIN PASSWORD 'plain'")
    try:
        config = {**db.config(slot, prefix), "name": "cdc"}
        no_replication = validate({**config, "database.user": f"{slot}_plain",
                                   "database.password": "plain"})
        assert "ALTER ROLE" in " ".join(errors_of(no_replication)["database.user"])
        assert "matches no table" in " ".join(errors_of(validate(
            {**config, "table.include.list": "public.nope"}))["table.include.list"])
        assert "does not exist" in " ".join(errors_of(validate(
            {**config, "publication.autocreate.mode": "disabled"}))["publication.name"])
        assert "database.password" in errors_of(validate(
            {**config, "database.password": "wrong"}))
        answer = validate(config)
        assert errors_of(answer) == {}
        shown = {c["value"]["name"]: c["value"]["value"] for c in answer["configs"]}
        assert shown["database.password"] != config["database.password"]
        assert db.one(f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = "
                      f"'{slot}'") == 0, "validation creates no slot"
        db.run(f"SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')")
        holder = psycopg2.connect(db.url, connection_factory=psycopg2.extras
                                  .LogicalReplicationConnection)
        cursor = holder.cursor()
        cursor.start_replication(slot_name=slot, decode=False,
                                 options={"proto_version": "1", "publication_names": "x"})
        try:
            in_use = errors_of(validate(config))["slot.name"]
            assert "in use by another client" in " ".join(in_use)
            with pytest.raises(InvalidConfigError, match=r"slot\.name: .*in use by another"), \
                    in_process_herder(kafka, JSON) as herder:
                herder.put_connector("cdc", config)
            # the task checks again at start (the slot may be taken after validation)
            task = PostgresCdcTask(PostgresCdcSettings.parse(config), NoOffsets())
            with pytest.raises(ConfigError, match="in use by another client") as failure:
                task.start()
            assert failure.value.key == "slot.name"
            task.stop()
        finally:
            holder.close()
    finally:
        db.run(f"DROP ROLE IF EXISTS {slot}_plain")


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_example_copies_a_table_into_a_second_database(
        kafka: str, postgres: str, db: Database, names: tuple[str, str]) -> None:
    """examples/postgres-cdc.json and postgres-cdc-jdbc-sink.json, names made unique."""
    slot, prefix = names
    copy = new_database(postgres)
    try:
        db.run("CREATE TABLE vehicles (id int PRIMARY KEY, name text NOT NULL, "
               "speed numeric(6,2))", "INSERT INTO vehicles VALUES (1, 'truck', 80.5)")
        source = json.loads((EXAMPLES / "postgres-cdc.json").read_text())["config"]
        sink = json.loads((EXAMPLES / "postgres-cdc-jdbc-sink.json").read_text())["config"]
        server = db.config(slot, prefix)
        source.update({key: server[key] for key in (
            "database.hostname", "database.port", "database.password", "database.dbname",
            "topic.prefix", "slot.name", "publication.name", "slot.drop.on.stop")})
        sink.update({"topics": f"{prefix}.public.vehicles",
                     "connection.url": f"jdbc:postgresql://{server['database.hostname']}:"
                                       f"{server['database.port']}/{copy.name}",
                     "connection.password": server["database.password"]})
        with in_process_herder(kafka, JSON) as herder:
            herder.put_connector("source", source)
            herder.put_connector("sink", sink)
            copied = "SELECT string_agg(concat_ws(':', id, name, speed), ',' ORDER BY id) " \
                     "FROM vehicles"
            wait_for(lambda: copy.one("SELECT to_regclass('vehicles') IS NOT NULL") and
                     copy.one(copied) == "1:truck:80.50", 90, "the snapshot copied")
            db.run("INSERT INTO vehicles VALUES (2, 'van', NULL), (3, 'bus', 50)",
                   "UPDATE vehicles SET speed = 90.25 WHERE id = 1",
                   "DELETE FROM vehicles WHERE id = 3")
            wait_for(lambda: copy.one(copied) == "1:truck:90.25,2:van", 90,
                     "inserts, the update and the delete copied")
    finally:
        drop_database(copy)


def test_initial_only_reads_the_tables_and_leaves_no_slot(
        kafka: str, db: Database, names: tuple[str, str]) -> None:
    slot, prefix = names
    db.run("CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1), (2)")
    slots = f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"
    with in_process_herder(kafka, JSON) as herder:
        herder.put_connector("cdc", db.config(slot, prefix, snapshot_mode="initial_only",
                                              slot_drop_on_stop="false"))
        events = wait_values(kafka, f"{prefix}.public.t", 2)
        assert [(v["op"], v["after"]["id"]) for v in events if v] == [("r", 1), ("r", 2)]
        wait_for(lambda: db.one(slots) == 0, 30, "the slot dropped after the snapshot")
        db.run("INSERT INTO t VALUES (3)")
        assert len(values(kafka, f"{prefix}.public.t", 3, timeout=3)) == 2
