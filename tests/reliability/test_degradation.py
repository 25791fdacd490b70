"""Degraded operation in standalone mode: Kafka absent or gone, a worker killed while it
commits hundreds of files.

- ``kanal standalone`` with Kafka down at start exits with a clear error (specified).
- A running standalone worker rides out a broker outage: its REST API keeps answering,
  its tasks stay up and retry, and when the broker returns every record arrives.
- The Azure sink killed while committing many files (every partition ends a set of 48
  files, one per vehicle, at about the same time) replays to exactly the same blobs:
  no record lost, none duplicated.
"""

from __future__ import annotations

import collections
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.integration.standalone import (
    KANAL,
    Standalone,
    line_count,
    worker_properties,
    write_properties,
)
from tests.kafka_helpers import produce
from tests.reliability.faults import (
    blob_count,
    blob_ids,
    container_client,
    duplicates_and_missing,
    log,
    wait_until,
)
from tests.reliability.faults import stack as stack_command
from tests.reliability.test_secrets import free_port

pytestmark = pytest.mark.integration


def test_standalone_exits_with_a_clear_error_when_kafka_is_down(tmp_path: Path) -> None:
    closed = free_port()
    worker = worker_properties(tmp_path, f"127.0.0.1:{closed}")
    source = write_properties(tmp_path / "source.properties", {
        "name": "nowhere", "connector.class": "FileStreamSource",
        "file": str(tmp_path / "in.txt"), "topic": "nowhere"})
    started = time.monotonic()
    result = subprocess.run([KANAL, "standalone", str(worker), str(source)],
                            capture_output=True, text=True, timeout=120)
    log(f"standalone without Kafka exited after {time.monotonic() - started:.1f}s")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert "bootstrap.servers" in errors[0]
    assert f"127.0.0.1:{closed}" in errors[0] and "Connection refused" in errors[0]


def test_running_standalone_worker_rides_out_a_broker_outage(
        tmp_path: Path, stack: dict[str, str],
        topic_factory: Callable[[str, int], str]) -> None:
    kafka = stack["KANAL_BOOTSTRAP_SERVERS"]
    topic = topic_factory("outage", 2)
    source_file, sink_file = tmp_path / "in.txt", tmp_path / "out.txt"
    source_file.write_text("".join(f"before {i}\n" for i in range(20000)))
    port = free_port()
    worker = worker_properties(tmp_path, kafka, listeners=f"http://127.0.0.1:{port}")
    name = f"sink-{topic}"
    run = Standalone(worker, write_properties(tmp_path / "source.properties", {
        "name": f"src-{topic}", "connector.class": "FileStreamSource",
        "file": str(source_file), "topic": topic}), write_properties(
        tmp_path / "sink.properties", {"name": name, "connector.class": "FileStreamSink",
                                       "topics": topic, "file": str(sink_file)}),
        log=tmp_path / "kanal.log").start()
    base = f"http://127.0.0.1:{port}"
    during: list[dict[str, object]] = []
    try:
        wait_until(lambda: line_count(sink_file) >= 20000, 90, "the first lines")
        wait_until(lambda: committed_total(kafka, f"connect-{name}", topic, 2) == 20000, 60,
                   "the sink to commit the first lines")
        stack_started = time.monotonic()
        stack_command("down", "kafka")
        try:
            with source_file.open("a") as handle:  # written while Kafka is away
                handle.writelines(f"during {i}\n" for i in range(10000))
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                answer = httpx.get(f"{base}/connectors", params={"expand": "status"},
                                   timeout=10)
                assert answer.status_code == 200, "the REST API must keep answering"
                during.append(answer.json())
                time.sleep(3)
        finally:
            stack_command("up", "kafka")
        log(f"broker away for {time.monotonic() - stack_started:.0f}s")
        wait_until(lambda: line_count(sink_file) >= 30000, 120,
                   "the lines written during the outage")
    finally:
        assert run.stop() == 0
    states = {task["state"] for snapshot in during for connector in snapshot.values()
              for task in connector["status"]["tasks"]}  # type: ignore[index]
    assert states == {"RUNNING"}, "tasks wait for Kafka; they do not fail"
    lines = sink_file.read_text().splitlines()
    expected = {f"before {i}" for i in range(20000)} | {f"during {i}" for i in range(10000)}
    assert set(lines) == expected, "no record lost"
    twice = collections.Counter(lines) - collections.Counter(expected)
    assert not [line for line in twice if line.startswith("before")], \
        "records whose offsets were committed before the outage come once"
    log(f"outage: {sum(twice.values())} lines delivered twice (at-least-once)")
    text = orjson.dumps(during).decode().lower()
    assert "waiting for kafka" in text, "the status tells that Kafka is unreachable"


def committed_total(kafka: str, group: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": group})
    try:
        committed = consumer.committed([TopicPartition(topic, p)
                                        for p in range(partitions)], 10)
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in committed)


def test_sink_killed_while_committing_many_files_loses_and_duplicates_nothing(
        tmp_path: Path, stack: dict[str, str], topic_factory: Callable[[str, int], str],
        container: str) -> None:
    kafka = stack["KANAL_BOOTSTRAP_SERVERS"]
    partitions, per_partition, flush_size, vehicles = 4, 10000, 2500, 48
    count = partitions * per_partition
    topic = topic_factory("commit-kill", partitions)
    values: list[bytes | None] = [
        orjson.dumps({"id": i, "vehicle": f"v{(i * 7919) % vehicles:02d}", "speed": i % 150})
        for i in range(count)]
    for p in range(partitions):
        produce(kafka, topic, values[p::partitions], partition=p)
    # blobs expected: per partition, per set of flush.size records, one per vehicle
    expected = sum(len({orjson.loads(v or b"")["vehicle"] for v in
                        values[p::partitions][s:s + flush_size]})
                   for p in range(partitions) for s in range(0, per_partition, flush_size))
    name = f"commit-kill-{topic}"
    sink = write_properties(tmp_path / "sink.properties", {
        "name": name, "connector.class": "AzureBlobStorageSinkConnector", "topics": topic,
        "tasks.max": "1", "azblob.account.name": stack["AZURITE_ACCOUNT_NAME"],
        "azblob.account.key": stack["AZURITE_ACCOUNT_KEY"],
        "store.url": stack["AZURITE_BLOB_ENDPOINT"], "azblob.container.name": container,
        "format.class": "JsonFormat", "flush.size": str(flush_size),
        "partitioner.class": "FieldPartitioner", "partition.field.name": "vehicle",
        "kanal.max.open.files.per.partition": "64", "kanal.upload.threads": "2"})
    worker = worker_properties(tmp_path, kafka, **{
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false", "offset.flush.interval.ms": "30000"})
    blobs = container_client(stack["AZURITE_CONNECTION_STRING"], container)
    kills: list[tuple[int, int]] = []
    log_file = tmp_path / "kanal.log"
    for threshold in (0.1, 0.5):
        run = Standalone(worker, sink, log=log_file).start()
        goal = threshold * expected
        seen = wait_until_value(lambda: blob_count(blobs),
                                lambda n, goal=goal: n >= goal, 120)  # type: ignore[misc]
        run.kill()
        kills.append((seen, committed_total(kafka, f"connect-{name}", topic, partitions)))
        log(f"SIGKILL while committing: {seen}/{expected} blobs, "
            f"{kills[-1][1]}/{count} offsets committed")
    run = Standalone(worker, sink, log=log_file).start()
    try:
        wait_until(lambda: blob_count(blobs) >= expected, 300, f"{expected} blobs")
        wait_until(lambda: committed_total(kafka, f"connect-{name}", topic, partitions)
                   == count, 120, "every offset committed")
    finally:
        assert run.stop() == 0
    assert all(seen < expected for seen, _ in kills), "each kill came before the end"
    assert any(offsets < count for _, offsets in kills), \
        "a kill should come before the offsets of the files it wrote were committed"
    ids, total = blob_ids(blobs)
    duplicated, missing = duplicates_and_missing(ids, count)
    assert missing == [] and duplicated == {}, (len(missing), len(duplicated))
    assert total == expected
    by_vehicle = collections.Counter(
        path.split("vehicle=")[1].split("/")[0] for path in
        (b.name for b in blobs.list_blobs()))
    assert len(by_vehicle) == vehicles


def wait_until_value(read: Callable[[], int], good: Callable[[int], bool],
                     timeout: float) -> int:
    """Poll ``read`` as fast as it answers until ``good``; the value seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if good(value):
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s")
