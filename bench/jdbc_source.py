"""B5 (JDBC source): rows of a PostgreSQL table into Kafka by Kanal's JDBC source, against a
raw psycopg ``SELECT`` fetching the same rows in batches of the same size.

The table holds the workload's telemetry readings (``seq`` the incrementing column), filled
once with ``COPY`` and reused while it holds exactly that many rows.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from bench.measure import Sample, run_raw
from bench.sources import measure_kanal
from bench.systems import Kanal
from bench.workload import PARTITIONS, SEED, START_MS, STEP_MS, VEHICLES, Workload
from kanal_worker.connectors.jdbc.database import parse_url
from kanal_worker.connectors.telemetry import reading

BENCH = "B5 jdbc source"
FETCH_ROWS = 2000
"""Rows per fetch, for both: Kanal's batch.max.rows and the raw cursor's fetchmany."""
COLUMNS = ("seq", "vehicle_id", "ts", "speed_kmh", "fuel_level", "lat", "lon")


def table_name(count: int) -> str:
    return f"bench_readings_{count}"


def ensure_table(postgres_url: str, count: int) -> str:
    """The readings table of ``count`` rows (made with COPY when missing or wrong)."""
    import psycopg

    table = table_name(count)
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        found = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        if found and found[0]:
            rows = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
            if rows and rows[0] == count:
                return table
            connection.execute(f"DROP TABLE {table}")
        connection.execute(f"CREATE TABLE {table} (seq BIGINT PRIMARY KEY, vehicle_id TEXT "
                           "NOT NULL, ts TIMESTAMP(3) NOT NULL, speed_kmh DOUBLE PRECISION, "
                           "fuel_level DOUBLE PRECISION, lat DOUBLE PRECISION, "
                           "lon DOUBLE PRECISION)")
        buffer = io.StringIO()
        for seq in range(count):
            r = reading(SEED, seq, VEHICLES, START_MS, STEP_MS)
            stamp = dt.datetime.fromtimestamp(r["timestamp"] / 1000, dt.UTC)
            buffer.write(f"{seq + 1}\t{r['vehicle_id']}\t{stamp:%Y-%m-%d %H:%M:%S.%f}\t"
                         f"{r['speed_kmh']}\t{r['fuel_level']}\t{r['lat']}\t{r['lon']}\n")
        with connection.cursor().copy(
                f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        connection.execute(f"ANALYZE {table}")
    return table


def kanal_jdbc_source(workload: Workload, bootstrap: str, postgres_url: str, run: int,
                      workdir: Path) -> Sample:
    table = ensure_table(postgres_url, workload.records)
    prefix = f"bench.jdbc.{uuid.uuid4().hex[:8]}."
    topic = prefix + table
    create_topic(bootstrap, topic)
    url = parse_url(postgres_url)
    name = f"bench-kanal-jdbc-{uuid.uuid4().hex[:8]}"
    connector = {"name": name, "connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector",
                 "tasks.max": "1",
                 "connection.url": f"jdbc:postgresql://{url.host}:{url.port}/{url.database}",
                 "connection.user": url.user or "", "connection.password": url.password or "",
                 "mode": "incrementing", "incrementing.column.name": "seq",
                 "table.whitelist": table, "topic.prefix": prefix,
                 "batch.max.rows": str(FETCH_ROWS), "poll.interval.ms": "1000",
                 "value.converter": "org.apache.kafka.connect.json.JsonConverter",
                 "value.converter.schemas.enable": "true"}
    sample = Sample(BENCH, "postgres table", "kanal", run, workload.records,
                    note="JsonConverter with schemas")
    return measure_kanal(Kanal(workdir / name, bootstrap, [connector]), sample, bootstrap,
                         topic)


def create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)


def raw_select(workload: Workload, postgres_url: str, run: int) -> Sample:
    table = ensure_table(postgres_url, workload.records)
    sample = Sample(BENCH, "postgres table", "psycopg SELECT", run, workload.records,
                    note=f"server-side cursor, fetchmany({FETCH_ROWS})")
    return run_raw(sample, "bench.raw", ["select", postgres_url, table, str(FETCH_ROWS)],
                   workload.timeout)


def jdbc_source(workload: Workload, bootstrap: str, postgres_url: str, run: int,
                workdir: Path) -> list[Sample]:
    return [raw_select(workload, postgres_url, run),
            kanal_jdbc_source(workload, bootstrap, postgres_url, run, workdir)]

