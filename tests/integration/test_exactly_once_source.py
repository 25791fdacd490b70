"""Exactly-once sources: records and offsets commit in one transaction, zombies fenced."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from tests.integration.standalone import Standalone, wait_for, worker_properties, write_properties
from tests.kafka_helpers import consume_all

pytestmark = pytest.mark.integration


def _committed_sequences(kafka: str, topic: str, expected: int) -> list[int]:
    messages = consume_all(kafka, topic, expected, timeout=30, isolation="read_committed")
    return [orjson.loads(m.value())["seq"] for m in messages]


def test_killed_source_produces_every_record_exactly_once(
        tmp_path: Path, kafka: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic("eos", 3)
    count = 30000
    worker = worker_properties(
        tmp_path, kafka, **{"offset.storage.topic": f"offsets-{uuid.uuid4().hex[:8]}",
                            "offset.storage.replication.factor": "1",
                            "exactly.once.source.support": "enabled",
                            "group.id": "eos-test"})
    source = write_properties(tmp_path / "gen.properties", {
        "name": f"gen-{topic}", "connector.class": "VehicleTelemetrySource", "topic": topic,
        "count": str(count), "seed": "5", "batch.size": "500", "rate": "6000",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false"})
    log = tmp_path / "kanal.log"
    for _ in range(3):  # kill it mid-run, several times
        run = Standalone(worker, source, log=log).start()
        time.sleep(4)
        run.kill()
    final = Standalone(worker, source, log=log).start().wait_running()
    try:
        wait_for(lambda: len(_committed_sequences(kafka, topic, count)) >= count, 120,
                 "every record committed")
    finally:
        assert final.stop() == 0
    sequences = _committed_sequences(kafka, topic, count + 1)
    assert len(sequences) == count, "no record may appear twice"
    assert sorted(sequences) == list(range(count))
