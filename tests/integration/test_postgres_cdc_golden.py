"""Kanal's PostgresConnector against the recorded outputs of the real Debezium.

``tests/golden/debezium/*.json`` hold, for each case, what Debezium's PostgresConnector
(run on the Apache Connect peer by ``dev/golden/record_debezium.py``) wrote for the same
SQL: every topic's keys, values and headers with their Connect schemas (JsonConverter).
This test runs the cases' SQL in databases of its own, runs Kanal with the cases'
configuration (unchanged) on the real broker and PostgreSQL, and compares record by
record, run-dependent values (timestamps, txId, lsn, names) normalized alike.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dev.golden.record_debezium import (
    CASES,
    connector_config,
    database_url,
    drop_slot,
    marker_seen,
    normalize,
    read_topics,
    run_sql,
    snapshot_seen,
)
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.standalone import StandaloneHerder

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "debezium"
FIXTURES = {path.stem: json.loads(path.read_text()) for path in sorted(GOLDEN.glob("*.json"))}
CONVERTERS = {"key.converter": "org.apache.kafka.connect.json.JsonConverter",
              "value.converter": "org.apache.kafka.connect.json.JsonConverter"}


@pytest.fixture(scope="module")
def kanal_outputs(kafka: str, postgres: str) -> Iterator[dict[str, Any]]:
    """Every case run through Kanal at once (one connector and database per case)."""
    run = uuid.uuid4().hex[:6]
    herder = StandaloneHerder({"bootstrap.servers": kafka, "offset.flush.interval.ms": "500",
                               "listeners": ""}, "test:8083", MemoryOffsetStore())
    started: list[tuple[str, str, str, str]] = []
    outputs: dict[str, Any] = {}
    try:
        for case in CASES:
            slug = case.name.replace("-", "_")
            database, slot = f"cdc_golden_{slug}_{run}", f"kanal_{run}_{slug}"
            prefix = f"kanalgolden{run}{case.name.replace('-', '')}"
            run_sql(postgres, [f"CREATE DATABASE {database}"])
            started.append((case.name, database, prefix, slot))
            run_sql(database_url(postgres, database), FIXTURES[case.name]["setup"])
            herder.put_connector(f"golden-{case.name}-{run}", {
                **connector_config(case, database, prefix, slot, postgres), **CONVERTERS,
                "tasks.max": "1"})
        for _, _, prefix, _ in started:
            read_topics(prefix, snapshot_seen, bootstrap=kafka)
        for name, database, _, _ in started:
            run_sql(database_url(postgres, database), FIXTURES[name]["changes"])
        for _, _, prefix, _ in started:
            read_topics(prefix, marker_seen, bootstrap=kafka)
        for name, database, prefix, _ in started:
            outputs[name] = normalize(read_topics(prefix, marker_seen, bootstrap=kafka),
                                      prefix, database)
        yield outputs
    finally:
        herder.stop_all()
        for _, database, _, slot in started:
            drop_slot(slot)
            run_sql(postgres, [f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"])


def test_every_case_has_a_fixture() -> None:
    assert {case.name for case in CASES} <= FIXTURES.keys(), \
        "run dev/golden/record_debezium.py against dev/stack up connect postgres"


@pytest.mark.parametrize("name", [case.name for case in CASES])
def test_topics_keys_schemas_and_payloads_match_debezium(
        kanal_outputs: dict[str, Any], name: str) -> None:
    expected = FIXTURES[name]["records"]
    actual = kanal_outputs[name]
    assert sorted(actual) == sorted(expected)
    for topic, records in expected.items():
        assert len(actual[topic]) == len(records), topic
        for index, (mine, theirs) in enumerate(zip(actual[topic], records, strict=True)):
            assert differences(mine, theirs) == [], f"{topic} record {index}"


def differences(mine: Any, theirs: Any, path: str = "") -> list[str]:
    """Where two decoded records differ, as paths (readable where ``==`` is not)."""
    if isinstance(mine, dict) and isinstance(theirs, dict):
        found = [f"{path}.{k}: missing" for k in theirs.keys() - mine.keys()]
        found += [f"{path}.{k}: extra" for k in mine.keys() - theirs.keys()]
        for key in mine.keys() & theirs.keys():
            found += differences(mine[key], theirs[key], f"{path}.{key}")
        if not found and list(mine) != list(theirs):
            found.append(f"{path}: order {list(mine)} != {list(theirs)}")
        return found
    if isinstance(mine, list) and isinstance(theirs, list) and len(mine) == len(theirs):
        return [d for i, (a, b) in enumerate(zip(mine, theirs, strict=True))
                for d in differences(a, b, f"{path}[{i}]")]
    return [] if mine == theirs else [f"{path}: {mine!r} != {theirs!r}"]

