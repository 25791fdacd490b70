"""A sink whose storage is unreachable for three times ``max.poll.interval.ms`` keeps its
consumer group membership, loses nothing and duplicates nothing.

The Azure sink writes through a ``FaultProxy`` to the real Azurite; the proxy cuts it
off for 90 s with ``consumer.override.max.poll.interval.ms=30000`` while records keep
arriving. While the batch is retried the partitions are paused and the consumer keeps
polling, so the group keeps the same single member and assignment from start to end
(librdkafka would leave the group after 30 s without a poll, and rejoin as a new
member); the task's status says it is retrying the whole outage; afterwards every record
is in exactly one blob and every offset is committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from tests.integration.standalone import Standalone, worker_properties, write_properties
from tests.reliability.faults import (
    BackgroundProducer,
    FaultProxy,
    blob_count,
    blob_ids,
    container_client,
    duplicates_and_missing,
    log,
    wait_until,
)
from tests.reliability.test_degradation import committed_total
from tests.reliability.test_secrets import free_port

pytestmark = pytest.mark.integration

MAX_POLL_INTERVAL_MS = 30000
OUTAGE_SECONDS = 3 * MAX_POLL_INTERVAL_MS / 1000
FIRST_RETRY_WITHIN = 25.0
"""Seconds the first failed write may take to report: the SDK's timeouts below, twice
over on a busy machine."""


def members(admin: AdminClient, group: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The group's state and its members with their assignments, as the broker has
    them; a member that left and rejoined has a new member id."""
    description = admin.describe_consumer_groups([group])[group].result(10)
    state = ("STABLE" if description.state == ConsumerGroupState.STABLE
             else str(description.state))
    return state, tuple(sorted(
        (member.member_id, ",".join(sorted(f"{tp.topic}-{tp.partition}"
                                           for tp in member.assignment.topic_partitions)))
        for member in description.members))


def test_long_storage_outage_keeps_the_group_and_every_record_once(
        tmp_path: Path, stack: dict[str, str], topic_factory: Callable[[str, int], str],
        container: str) -> None:
    kafka = stack["KANAL_BOOTSTRAP_SERVERS"]
    partitions, flush_size, rate = 4, 500, 200
    count = partitions * flush_size * 12  # every file ends by size: no rotation timer
    topic = topic_factory("liveness", partitions)
    endpoint = urlsplit(stack["AZURITE_BLOB_ENDPOINT"])
    proxy = FaultProxy((endpoint.hostname or "127.0.0.1", endpoint.port or 10000))
    name = f"liveness-{topic}"
    group = f"connect-{name}"
    sink = write_properties(tmp_path / "sink.properties", {
        "name": name, "connector.class": "AzureBlobStorageSinkConnector", "topics": topic,
        "tasks.max": "1", "azblob.account.name": stack["AZURITE_ACCOUNT_NAME"],
        "azblob.account.key": stack["AZURITE_ACCOUNT_KEY"],
        "store.url": f"http://127.0.0.1:{proxy.port}{endpoint.path}",
        "azblob.container.name": container, "format.class": "JsonFormat",
        "flush.size": str(flush_size), "kanal.upload.threads": str(partitions),
        # one write attempt gives up within seconds, far below max.poll.interval.ms
        "azblob.retry.retries": "1", "azblob.retry.backoff.ms": "500",
        "azblob.connection.timeout.ms": "3000",
        "consumer.override.max.poll.interval.ms": str(MAX_POLL_INTERVAL_MS)})
    port = free_port()
    worker = worker_properties(tmp_path, kafka, **{
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false", "listeners": f"http://127.0.0.1:{port}"})
    blobs = container_client(stack["AZURITE_CONNECTION_STRING"], container)
    admin = AdminClient({"bootstrap.servers": kafka})
    status_url = f"http://127.0.0.1:{port}/connectors/{name}/status"
    producer = BackgroundProducer(kafka, topic, count, partitions, rate).start()
    run = Standalone(worker, sink, log=tmp_path / "kanal.log").start()
    try:
        wait_until(lambda: blob_count(blobs) >= partitions, 60, "the first blobs")
        before = members(admin, group)
        assert before[0] == "STABLE" and len(before[1]) == 1, before
        log(f"group before the outage: {before}")
        proxy.cut()
        started = time.monotonic()
        retrying_since: float | None = None
        while (elapsed := time.monotonic() - started) < OUTAGE_SECONDS:
            task = httpx.get(status_url, timeout=5).json()["tasks"][0]
            assert task["state"] == "RUNNING", task
            retrying = (task.get("detail") or "").startswith("retrying write")
            if retrying and retrying_since is None:
                retrying_since = elapsed
                log(f"status after {elapsed:.0f}s of outage: {task['detail'][:120]}")
            if retrying_since is not None or elapsed > FIRST_RETRY_WITHIN:
                assert retrying, f"after {elapsed:.0f}s of outage: {task}"
            assert members(admin, group) == before, f"after {elapsed:.0f}s of outage"
            time.sleep(2)
        proxy.restore()
        log("storage reachable again")
        producer.join(300)
        wait_until(lambda: committed_total(kafka, group, topic, partitions) == count, 180,
                   "every offset committed")
        assert members(admin, group) == before
        task = httpx.get(status_url, timeout=5).json()["tasks"][0]
        assert task["state"] == "RUNNING" and task.get("detail") is None, task
    finally:
        proxy.close()
        assert run.stop() == 0
    text = run.log.read_text(errors="replace")
    assert "maximum poll interval" not in text.lower()
    assert text.count(f"Task {name}-0: assigned") == 1, "the task was assigned once"
    ids, total = blob_ids(blobs)
    duplicated, missing = duplicates_and_missing(ids, count)
    assert missing == [] and duplicated == {}, (len(missing), len(duplicated))
    assert total == count // flush_size
