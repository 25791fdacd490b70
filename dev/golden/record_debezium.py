"""Record what the real Debezium PostgreSQL connector writes to Kafka, as golden fixtures.

Run against the reference worker and database of ``dev/stack up connect postgres`` (the
worker loads Debezium from its plugin.path):

    .venv/bin/python dev/golden/record_debezium.py [CASE ...]

Each case creates a database of its own, runs ``SETUP`` in it (the rows the snapshot
reads), starts Debezium with the case's configuration, waits for the snapshot, runs
``CHANGES`` (the rows streaming reads) and reads back every topic of the case's
``topic.prefix``: keys, values (JsonConverter with schemas) and headers, in order per
topic. Values that differ from run to run (``normalize``: timestamps, txId, lsn, the
database and prefix names) are replaced by placeholders.

Fixtures go to ``tests/golden/debezium/<case>.json``;
``tests/integration/test_postgres_cdc_golden.py`` runs the same cases through Kanal.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "golden" / "debezium"
SERVER = os.environ.get("KANAL_POSTGRES_URL", "postgresql://kanal:kanal@127.0.0.1:15432/kanal")
BOOTSTRAP = os.environ.get("KANAL_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
PREFIX, DATABASE = "PREFIX", "DATABASE"
VARYING = frozenset({"ts_ms", "ts_us", "ts_ns", "txId", "lsn", "sequence", "xmin"})
"""Fields of ``source`` and the envelope whose values change from run to run."""
DONE_MARKER = 999_999
"""The id of the last row ``CHANGES`` inserts: once it is in Kafka, everything before is."""

SETUP = [
    "CREATE SCHEMA fleet",
    "CREATE TABLE fleet.vehicles (id integer PRIMARY KEY, name text NOT NULL, "
    "speed numeric(6,2), seen timestamp(3))",
    "CREATE TABLE fleet.trips (vehicle integer, leg integer, km integer NOT NULL DEFAULT 0, "
    "PRIMARY KEY (vehicle, leg))",
    "ALTER TABLE fleet.trips REPLICA IDENTITY FULL",
    "CREATE TABLE fleet.types (id bigint PRIMARY KEY, flag boolean, small smallint, "
    "medium integer, big bigint, ratio real, precise double precision, amount numeric(12,3), "
    "free numeric, code char(3), label varchar(20), note text, blob bytea, day date, "
    "at_time time, at_time3 time(3), at_ts timestamp, at_ts3 timestamp(3), "
    "at_tstz timestamptz, at_timetz timetz, ident uuid, doc json, docb jsonb, span interval)",
    "INSERT INTO fleet.vehicles VALUES (1, 'truck', 80.5, '2024-05-01 10:00:00.123'), "
    "(2, 'van', NULL, NULL)",
    "INSERT INTO fleet.trips VALUES (1, 1, 120)",
    "INSERT INTO fleet.types VALUES (1, true, -3, 70000, 9000000000, 1.5, 2.25, 1234.567, "
    "98.7654321, 'ab', 'label', 'note ✓', '\\x00ff10', '2024-02-29', '13:14:15.123456', "
    "'13:14:15.123', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.123', "
    "'2024-02-29 13:14:15.5+02', '13:14:15+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', "
    "'{\"a\": 1}', '{\"b\": [1, 2]}', '1 day 02:03:04.5')",
]
CHANGES = [
    "INSERT INTO fleet.vehicles VALUES (3, 'bus', 50, '2024-05-02 08:00:00')",
    "UPDATE fleet.vehicles SET speed = 90.25 WHERE id = 1",
    "UPDATE fleet.trips SET km = 130 WHERE vehicle = 1 AND leg = 1",
    "INSERT INTO fleet.trips VALUES (1, 2, 40), (2, 1, 7)",
    "DELETE FROM fleet.vehicles WHERE id = 2",
    "DELETE FROM fleet.trips WHERE vehicle = 2",
    "INSERT INTO fleet.types (id) VALUES (2)",
    "INSERT INTO fleet.types VALUES (3, false, 0, 0, -1, -0.25, 1e100, -0.001, -5, 'x', '', "
    "'', '\\x', '1969-12-31', '00:00:00', '23:59:59.999', '1900-01-01 00:00:00', "
    "'1999-12-31 23:59:59.999', '1970-01-01 00:00:00+00', '00:00:00-05', "
    "'00000000-0000-0000-0000-000000000000', '[]', '{}', '1 mon 3 days')",
    "ALTER TABLE fleet.vehicles ADD COLUMN color text DEFAULT 'white'",
    "INSERT INTO fleet.vehicles VALUES (4, 'car', 120, NULL, 'red')",
    f"INSERT INTO fleet.vehicles (id, name) VALUES ({DONE_MARKER}, 'done')",
]


@dataclass
class Case:
    name: str
    description: str
    config: dict[str, str] = field(default_factory=dict)


UNWRAP = "io.debezium.transforms.ExtractNewRecordState"
CASES = [
    Case("changes", "snapshot and streaming with the default modes: inserts, updates with "
         "and without REPLICA IDENTITY FULL, deletes with tombstones, a new column"),
    Case("string-decimals-connect-times", "decimal.handling.mode=string, "
         "time.precision.mode=connect, tombstones.on.delete=false",
         {"decimal.handling.mode": "string", "time.precision.mode": "connect",
          "tombstones.on.delete": "false"}),
    Case("double-decimals-microseconds", "decimal.handling.mode=double, "
         "time.precision.mode=adaptive_time_microseconds",
         {"decimal.handling.mode": "double",
          "time.precision.mode": "adaptive_time_microseconds"}),
    Case("unwrap-default", "ExtractNewRecordState with its defaults",
         {"transforms": "unwrap", "transforms.unwrap.type": UNWRAP}),
    Case("unwrap-rewrite", "ExtractNewRecordState rewriting deletes, with added fields and "
         "headers",
         {"transforms": "unwrap", "transforms.unwrap.type": UNWRAP,
          "transforms.unwrap.delete.tombstone.handling.mode": "rewrite",
          "transforms.unwrap.add.fields": "op,table,source.schema",
          "transforms.unwrap.add.headers": "op,table"}),
    Case("unwrap-drop-deletes", "ExtractNewRecordState dropping deletes and tombstones",
         {"transforms": "unwrap", "transforms.unwrap.type": UNWRAP,
          "transforms.unwrap.delete.tombstone.handling.mode": "drop"}),
]


def connector_config(case: Case, database: str, prefix: str, slot: str,
                     server_url: str = SERVER) -> dict[str, str]:
    """The Debezium configuration of ``case`` (Kanal runs it unchanged)."""
    server = urllib.parse.urlsplit(server_url)
    return {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "database.hostname": server.hostname or "127.0.0.1",
        "database.port": str(server.port or 5432),
        "database.user": server.username or "kanal",
        "database.password": server.password or "kanal",
        "database.dbname": database,
        "topic.prefix": prefix,
        "plugin.name": "pgoutput",
        "slot.name": slot,
        "publication.name": slot,
        "publication.autocreate.mode": "filtered",
        "schema.include.list": "fleet",
        "slot.drop.on.stop": "true",
        **case.config,
    }


def run_sql(url: str, statements: list[str]) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement.encode())


def database_url(server_url: str, database: str) -> str:
    return urllib.parse.urlsplit(server_url)._replace(path=f"/{database}").geturl()


def normalize(records: dict[str, list[dict[str, Any]]], prefix: str,
              database: str) -> dict[str, list[dict[str, Any]]]:
    """``records`` with the values that change from run to run replaced by placeholders."""
    text = json.dumps(records, ensure_ascii=False)
    text = re.sub(rf"\b{re.escape(prefix)}\b", PREFIX, text)
    text = text.replace(f'"{database}"', f'"{DATABASE}"')
    stable: dict[str, list[dict[str, Any]]] = json.loads(text)
    for topic_records in stable.values():
        for record in topic_records:
            _blank(record.get("value"))
            record["headers"] = [[key, "<runId>" if key.endswith(".runId") else value]
                                 for key, value in record["headers"]]
    return stable


def _blank(value: Any) -> None:
    if not isinstance(value, dict):
        return
    payload = value.get("payload")
    for part in (payload, payload.get("source") if isinstance(payload, dict) else None):
        if isinstance(part, dict):
            for name in VARYING & part.keys():
                if part[name] is not None:
                    part[name] = f"<{name}>"


def read_topics(prefix: str, done: Callable[[dict[str, list[dict[str, Any]]]], bool],
                timeout: float = 120, bootstrap: str = BOOTSTRAP
                ) -> dict[str, list[dict[str, Any]]]:
    """Every record of the topics named ``<prefix>.*``, by topic, once ``done`` says so."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"golden-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "topic.metadata.refresh.interval.ms": 1000})
    consumer.subscribe([f"^{re.escape(prefix)}\\..*"])
    records: dict[str, list[dict[str, Any]]] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(500, 1.0):
                if message.error():
                    continue
                key, value = message.key(), message.value()
                records.setdefault(message.topic() or "", []).append({
                    "key": json.loads(key) if key is not None else None,
                    "value": json.loads(value) if value is not None else None,
                    "headers": [[k, v.decode() if v is not None else None]
                                for k, v in message.headers() or []]})
            if done(records):
                return {topic: records[topic] for topic in sorted(records)}
        raise TimeoutError(f"topics of {prefix} incomplete after {timeout}s: "
                           f"{ {t: len(r) for t, r in records.items()} }")
    finally:
        consumer.close()


def marker_seen(records: dict[str, list[dict[str, Any]]]) -> bool:
    return any(f'"id": {DONE_MARKER}' in json.dumps(r["key"]) or
               f'"id": {DONE_MARKER}' in json.dumps(r["value"])
               for topic in records.values() for r in topic)


def snapshot_seen(records: dict[str, list[dict[str, Any]]]) -> bool:
    return sum(len(topic) for topic in records.values()) >= 4


def record_one(case: Case, work: Path, run: str) -> dict[str, Any]:
    from record_peer_outputs import rest  # a sibling script: run from this folder only

    del work
    database = f"golden_{case.name.replace('-', '_')}_{run}"
    prefix, slot = f"golden{run}", f"golden_{run}_{case.name.replace('-', '_')}"
    prefix = f"{prefix}{case.name.replace('-', '')}"
    run_sql(SERVER, [f"CREATE DATABASE {database}"])
    name = f"golden-debezium-{case.name}-{run}"
    try:
        run_sql(database_url(SERVER, database), SETUP)
        rest("PUT", f"/connectors/{name}/config", connector_config(case, database, prefix, slot))
        read_topics(prefix, snapshot_seen)
        run_sql(database_url(SERVER, database), CHANGES)
        records = read_topics(prefix, marker_seen)
        time.sleep(3)  # a tombstone or late record after the marker would show here
        records = read_topics(prefix, marker_seen)
    finally:
        rest("DELETE", f"/connectors/{name}", missing_ok=True)
        drop_slot(slot)
        run_sql(SERVER, [f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"])
    return {"name": case.name, "description": case.description, "config": case.config,
            "setup": SETUP, "changes": CHANGES, "records": normalize(records, prefix, database)}


def drop_slot(slot: str) -> None:
    """Drop ``slot`` once its connector let go of it (a left slot retains WAL)."""
    deadline = time.monotonic() + 60
    with psycopg.connect(SERVER, autocommit=True) as connection:
        while time.monotonic() < deadline:
            row = connection.execute("SELECT active FROM pg_replication_slots WHERE "
                                     "slot_name = %s", (slot,)).fetchone()
            if row is None:
                return
            if not row[0]:
                # its connector may drop it meanwhile (slot.drop.on.stop)
                with contextlib.suppress(psycopg.errors.UndefinedObject):
                    connection.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                return
            time.sleep(0.5)


def _outcome(fixture: dict[str, Any]) -> str:
    return ", ".join(f"{topic}: {len(records)}" for topic, records in
                     fixture["records"].items())


if __name__ == "__main__":
    from record_peer_outputs import record_cases

    sys.exit(record_cases(__doc__ or "", CASES, FIXTURES, record_one, _outcome))
