"""``make bench`` runs end to end on a tiny workload (no timing is asserted: this machine
is shared, and the figures that matter come from the full run, see bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dev.stack_env import ROOT

pytestmark = pytest.mark.integration


@pytest.mark.timeout(1800)
def test_quick_bench_measures_every_system_and_writes_results(
        tmp_path: Path, kafka: str, azurite: str, connect_peer: str,
        kube: dict[str, str]) -> None:
    output = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=1740, check=False)
    assert output.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(output.read_text())

    assert results["workload"]["records"] == 20_000
    assert results["workload"]["partitions"] == 6
    rows = {(r["bench"], r["variant"], r["system"]): r for r in results["summary"]}
    expected = [
        ("B0 raw consume", "kanal fetch settings", "confluent-kafka"),
        *(("B1 file sink", variant, system)
          for variant in ("string", "bytearray", "json", "json-3smt", "json-schemas-smt")
          for system in ("kanal", "apache")),
        ("B3 source", "generator", "kanal"),
        ("B3 source", "file", "kanal"),
        ("B3 source", "file", "apache"),
        ("B3 source", "file lines", "confluent-kafka"),
        *(("scale 2 task(s)", variant, system)
          for variant in ("string", "json-3smt") for system in ("kanal", "apache")),
        ("B5 http sink", "batch 500", "kanal"),
        ("B5 http sink", "batch 500", "httpx"),
        ("B5 http source", "pages of 500", "kanal"),
        ("B5 http source", "pages of 500", "httpx"),
        ("B5 search sink", "json", "kanal"),
        ("B5 search sink", "json", "raw bulk"),
        ("B5 mqtt", "subscribe", "kanal"),
        ("B5 mqtt", "subscribe", "paho"),
        ("B5 mqtt", "publish", "kanal"),
        ("B5 mqtt", "publish", "paho"),
        ("B5 jdbc sink", "postgresql", "kanal"),
        ("B5 jdbc sink", "postgresql", "raw COPY"),
        ("B5 jdbc sink", "postgresql", "raw executemany"),
        ("B5 jdbc source", "postgres table", "kanal"),
        ("B5 jdbc source", "postgres table", "psycopg SELECT"),
        ("B5 cdc", "postgresql inserts", "kanal"),
        ("B5 cdc", "postgresql inserts", "raw psycopg2 replication"),
        ("B6 avro converter", "avro", "kanal"),
        ("B6 avro converter", "avro", "AvroDeserializer"),
        ("B6 avro converter", "avro", "apache"),
        ("B6 protobuf", "readings", "kanal"),
        ("B6 protobuf", "readings", "confluent-kafka"),
    ]
    for key in expected:
        assert key in rows, f"{key} missing; rows: {sorted(rows)}"
        row = rows[key]
        assert row["ok"] == row["runs"] == 1, (key, row["notes"])
        assert row["rate"] > 0 and row["peak_rss_mb"] > 0, (key, row)

    # the sinks wrote every record: the String passthrough file is the JSON bytes, one a line
    samples = results["samples"]
    passthrough = [s for s in samples if s["bench"] == "B1 file sink"
                   and s["variant"] == "string"]
    sizes = {s["system"]: s["extra"]["output_bytes"] for s in passthrough}
    workload = results["workload"]
    assert sizes["kanal"] == sizes["apache"] == workload["value_bytes"] + workload["records"]
    # both systems' files are compared for every variant; byte arrays differ by design
    outputs = {o["variant"]: o for o in results["outputs"] if o["bench"] == "B1 file sink"}
    assert set(outputs) == {"string", "bytearray", "json", "json-3smt", "json-schemas-smt"}
    assert outputs["string"]["identical"] == outputs["string"]["runs"] == 1, outputs
    assert outputs["bytearray"]["apache_first_line"].startswith("[B@"), outputs
    assert rows["B1 file sink", "bytearray", "kanal"]["output"].startswith("output differs")

    # B2 runs when the Azure sink is there, and reports what it could not do otherwise
    b2 = [s for s in samples if s["bench"].startswith("B2")]
    assert b2, "B2 produced no sample at all"
    assert {(s["variant"], s["system"]) for s in b2 if s["bench"] == "B2 gcs sink"} >= {
        (fmt, system) for fmt in ("json", "parquet") for system in ("kanal", "raw upload")}
    # Avro in through AvroConverter and the bench's registry, Parquet out
    avro = rows["B2 azure sink", "avro-parquet", "kanal"]
    assert avro["ok"] == 1 and avro["blobs"] > 0, avro
    assert {r["what"] for r in results["ratios"]} >= {
        "B1 string: Kanal / Apache records/s", "B1 json-3smt: Kanal / Apache records/s",
        "B1 string: Kanal / B0 records/s"}

    b4 = results["B4"]
    assert "error" not in b4 and "kubernetes_error" not in b4, b4
    assert set(b4["first_record_s"]) == {"kanal standalone", "kanal kubernetes", "apache"}
    failover = {item["system"]: item for item in b4["failover"]}
    # worker pods are measured too where `dev/stack up node` runs (make test starts it)
    assert set(failover) - {"kanal kubernetes (2 worker pods)"} == {
        "kanal standalone (restart)", "kanal kubernetes (2 workers)", "apache"}
    # the operator moved the killed worker's task and its partition is consumed again
    assert "consuming_again_s" in failover["kanal kubernetes (2 workers)"], b4
    assert "B4 control plane" in run.stdout
