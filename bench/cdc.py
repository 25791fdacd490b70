"""B5 cdc: Kanal's PostgresConnector capturing inserts against a raw psycopg2 logical
replication reader. Both read the same changes: two pgoutput slots are created before
the rows are inserted, one for Kanal (records into Kafka, timed on the topic's
watermarks) and one for the raw reader (decoding nothing, confirming as it goes): the
limit of the replication stream in Python."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from confluent_kafka.admin import AdminClient, NewTopic

from bench.measure import Sample
from bench.sinks import JSON
from bench.sources import _measure, drop_topic
from bench.systems import Kanal
from bench.workload import PARTITIONS, Workload

BENCH = "B5 cdc"
VARIANT = "postgresql inserts"
RAW = "raw psycopg2 replication"
MAX_CHANGES = 200_000
"""Changes captured per run: enough for a steady rate, few enough to insert quickly."""


def _sql(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement.encode())


def prepare(url: str, changes: int) -> tuple[str, str]:
    """A database with a publication, two slots and then ``changes`` inserted rows;
    its URL and name."""
    name = f"bench_cdc_{uuid.uuid4().hex[:8]}"
    _sql(url, f"CREATE DATABASE {name}")
    database = urlsplit(url)._replace(path=f"/{name}").geturl()
    _sql(database, "CREATE TABLE changes (id bigint PRIMARY KEY, vehicle text, "
                   "speed double precision, at timestamp)",
         "CREATE PUBLICATION bench FOR TABLE changes",
         "SELECT pg_create_logical_replication_slot('bench_kanal', 'pgoutput')",
         "SELECT pg_create_logical_replication_slot('bench_raw', 'pgoutput')")
    for start in range(0, changes, 10_000):
        _sql(database, f"INSERT INTO changes SELECT i, 'vehicle-' || (i % 500), i * 0.5, "
                       f"timestamp '2024-01-01' + i * interval '1 ms' FROM generate_series("
                       f"{start}, {min(changes, start + 10_000) - 1}) i")
    return database, name


def kanal_cdc(bootstrap: str, database: str, changes: int, run: int,
              workdir: Path) -> Sample:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.public.changes"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    parts = urlsplit(database)
    name = f"bench-kanal-cdc-{prefix}"
    connector = {"name": name, "connector.class": "PostgresConnector", "tasks.max": "1",
                 "database.hostname": parts.hostname or "", "database.port": str(parts.port),
                 "database.user": parts.username or "", "database.password": parts.password
                 or "", "database.dbname": parts.path.lstrip("/"), "topic.prefix": prefix,
                 "slot.name": "bench_kanal", "publication.name": "bench",
                 "publication.autocreate.mode": "disabled", "snapshot.mode": "never",
                 "key.converter": JSON, "value.converter": JSON}
    kanal = Kanal(workdir / name, bootstrap, [connector])
    sample = Sample(BENCH, VARIANT, "kanal", run, changes)
    try:
        kanal.start()
        _measure(bootstrap, topic, changes, kanal.pid, kanal.started, kanal.alive, sample)
        sample.peak_rss_mb = max(sample.peak_rss_mb,
                                 kanal.peak_rss_mb() if kanal.alive() else 0.0)
    finally:
        kanal.stop()
        if not sample.ok:
            sample.note += " | " + kanal.tail(5).replace("\n", " / ")
        shutil.rmtree(workdir / name, ignore_errors=True)
        drop_topic(bootstrap, topic)
    return sample


def raw_cdc(database: str, changes: int, run: int) -> Sample:
    sample = Sample(BENCH, VARIANT, RAW, run, changes)
    out = subprocess.run([sys.executable, "-m", "bench.raw", "replicate", database,
                          "bench_raw", "bench", str(changes)], capture_output=True, text=True,
                         timeout=600, check=False)
    try:
        result = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        sample.ok, sample.note = False, f"raw replication failed: {out.stderr[-500:]}"
        return sample
    sample.startup_s, sample.active_s = result["startup_s"], result["active_s"]
    sample.cpu_s, sample.cpu_total_s = result["cpu_s"], result["cpu_total_s"]
    sample.peak_rss_mb = result["peak_rss_mb"]
    sample.active_records = result["active_records"]
    sample.ok = result["count"] == changes
    return sample


def b5(workload: Workload, bootstrap: str, url: str, run: int, workdir: Path) -> list[Sample]:
    """Kanal, then the raw reader, over the same inserted rows."""
    changes = min(workload.records, MAX_CHANGES)
    database, name = prepare(url, changes)
    try:
        return [kanal_cdc(bootstrap, database, changes, run, workdir),
                raw_cdc(database, changes, run)]
    finally:
        _sql(url, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                  f"WHERE database = '{name}' AND NOT active",
             f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
