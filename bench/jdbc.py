"""B5: Kanal's JdbcSinkConnector into PostgreSQL against raw psycopg loads of the very
same rows (read back from the table Kanal filled): a ``COPY`` and an ``executemany`` of
3,000-row batches, each in its own process: the database's limit."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from bench.measure import Sample
from bench.sinks import JSON, STRING
from bench.storage import until_committed
from bench.systems import Kanal
from bench.workload import Workload

BENCH = "B5 jdbc sink"
VARIANT = "postgresql"
RAW_METHODS = {"copy": "raw COPY", "executemany": "raw executemany"}


def kanal_jdbc(workload: Workload, bootstrap: str, url: str, run: int,
               workdir: Path) -> tuple[Sample, str]:
    """Every record of the workload as a row (insert.mode=insert, pk.mode=kafka, the
    table created from the schemaless JSON), timed on committed offsets."""
    name = f"bench-kanal-jdbc-{uuid.uuid4().hex[:8]}"
    table = name.replace("-", "_")
    parts = urlsplit(url)
    connector = {"name": name, "connector.class": "JdbcSinkConnector", "tasks.max": "1",
                 "topics": workload.topic, "table.name.format": table,
                 "connection.url": f"jdbc:postgresql://{parts.hostname}:{parts.port}{parts.path}",
                 "connection.user": parts.username or "",
                 "connection.password": parts.password or "",
                 "insert.mode": "insert", "pk.mode": "kafka", "auto.create": "true",
                 "key.converter": STRING, "value.converter": JSON,
                 "value.converter.schemas.enable": "false"}
    sample = Sample(BENCH, VARIANT, "kanal", run, workload.records)
    until_committed(Kanal(workdir / name, bootstrap, [connector]), sample, bootstrap, name,
                    workload)
    return sample, table


def raw_load(workload: Workload, url: str, run: int, source: str, method: str) -> Sample:
    sample = Sample(BENCH, VARIANT, RAW_METHODS[method], run, workload.records)
    out = subprocess.run([sys.executable, "-m", "bench.raw", method, url, source,
                          f"{source}_{method}"], capture_output=True, text=True,
                         timeout=workload.timeout, check=False)
    try:
        result = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        sample.ok, sample.note = False, f"raw {method} failed: {out.stderr[-500:]}"
        return sample
    sample.startup_s, sample.active_s = result["startup_s"], result["active_s"]
    sample.cpu_s, sample.cpu_total_s = result["cpu_s"], result["cpu_total_s"]
    sample.peak_rss_mb = result["peak_rss_mb"]
    sample.active_records = result["count"]
    sample.ok = result["count"] == workload.records
    return sample


def drop(url: str, table: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        for name in (table, *(f"{table}_{method}" for method in RAW_METHODS)):
            connection.execute(f'DROP TABLE IF EXISTS "{name}"')


def b5(workload: Workload, bootstrap: str, url: str, run: int, workdir: Path) -> list[Sample]:
    """Kanal, then each raw load of the rows Kanal wrote."""
    kanal, table = kanal_jdbc(workload, bootstrap, url, run, workdir)
    samples = [kanal]
    try:
        if kanal.ok:
            samples += [raw_load(workload, url, run, table, method) for method in RAW_METHODS]
    finally:
        drop(url, table)
    return samples
