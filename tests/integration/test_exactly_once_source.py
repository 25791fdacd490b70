"""Exactly-once sources: records and offsets commit in one transaction, zombies fenced."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from kanal_worker.runtime.offsets import KafkaOffsetStore, partition_key
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


def test_offsets_committed_past_a_killed_tasks_open_transaction_are_read(kafka: str) -> None:
    """A task killed mid-transaction leaves it open until its successor fences it; its
    sibling's offsets committed meanwhile lie past the open transaction, and a restarting
    sibling that stopped reading there would produce its committed records again."""
    topic = f"offsets-{uuid.uuid4().hex[:8]}"
    client = {"bootstrap.servers": kafka}
    store = KafkaOffsetStore(topic, client, partitions=1, replication_factor=1)
    killed_id = f"killed-{topic}"
    killed = Producer({**client, "transactional.id": killed_id})
    killed.init_transactions(30)
    killed.begin_transaction()
    store.stage(killed, "gen", {partition_key({"task": 1}): {"position": 7}})
    assert killed.flush(30) == 0  # on the log, uncommitted: the killed task's last write
    sibling = Producer({**client, "transactional.id": f"sibling-{topic}"})
    sibling.init_transactions(30)
    sibling.begin_transaction()
    store.stage(sibling, "gen", {partition_key({"task": 0}): {"position": 1200}})
    sibling.commit_transaction(30)

    def restart_killed_task() -> None:
        time.sleep(2)
        Producer({**client, "transactional.id": killed_id}).init_transactions(30)

    restarted = KafkaOffsetStore(topic, client, partitions=1, replication_factor=1)
    assert restarted.get("gen", {"task": 0}) is None, "a worker's first read stops before it"
    successor = threading.Thread(target=restart_killed_task)
    successor.start()
    try:
        restarted.refresh(through_open_transactions=True)  # the sibling resumes
    finally:
        successor.join()
    assert restarted.get("gen", {"task": 0}) == {"position": 1200}
    assert restarted.get("gen", {"task": 1}) is None, "an aborted offset is never read"
