"""``kanal standalone`` against the real broker: data moves both ways, offsets hold."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.standalone import StandaloneHerder
from kanal_worker.runtime.status import State
from tests.integration.standalone import (
    KANAL,
    Standalone,
    line_count,
    wait_for,
    worker_properties,
    write_properties,
)
from tests.kafka_helpers import produce

pytestmark = pytest.mark.integration


def test_file_round_trip_is_byte_identical(tmp_path: Path, kafka: str,
                                           new_topic: Callable[..., str]) -> None:
    topic = new_topic("roundtrip", 3)
    source_file = tmp_path / "in.txt"
    lines = [f"line {i} ünïcødé {'x' * (i % 50)}" for i in range(5000)] + ["", "last"]
    source_file.write_text("".join(line + "\n" for line in lines))
    sink_file = tmp_path / "out.txt"
    worker = worker_properties(tmp_path, kafka)
    source = write_properties(tmp_path / "source.properties", {
        "name": f"src-{topic}", "connector.class": "FileStreamSource",
        "file": str(source_file), "topic": topic})
    sink = write_properties(tmp_path / "sink.properties", {
        "name": f"sink-{topic}", "connector.class": "org.apache.kafka.connect.file."
        "FileStreamSinkConnector", "topics": topic, "file": str(sink_file)})
    run = Standalone(worker, source, sink, log=tmp_path / "kanal.log").start()
    try:
        wait_for(lambda: line_count(sink_file) >= len(lines), 90, "sink file complete")
    finally:
        assert run.stop() == 0
    # 3 partitions interleave lines; each line arrives exactly once
    assert sorted(sink_file.read_text().splitlines()) == sorted(lines)


def test_single_partition_round_trip_keeps_bytes_and_order(
        tmp_path: Path, kafka: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic("ordered", 1)
    source_file = tmp_path / "in.txt"
    source_file.write_bytes(b"".join(f"{i},\t\"quoted\" \\ {i * i}\n".encode()
                                     for i in range(3000)))
    sink_file = tmp_path / "out.txt"
    worker = worker_properties(tmp_path, kafka)
    source = write_properties(tmp_path / "source.properties", {
        "name": f"src-{topic}", "connector.class": "FileStreamSource",
        "file": str(source_file), "topic": topic})
    sink = write_properties(tmp_path / "sink.properties", {
        "name": f"sink-{topic}", "connector.class": "FileStreamSink", "topics": topic,
        "file": str(sink_file)})
    run = Standalone(worker, source, sink, log=tmp_path / "kanal.log").start()
    try:
        wait_for(lambda: line_count(sink_file) >= 3000, 90, "sink file complete")
    finally:
        assert run.stop() == 0
    assert sink_file.read_bytes() == source_file.read_bytes()


def _telemetry_connectors(tmp_path: Path, topic: str, count: int,
                          sink_file: Path) -> tuple[Path, Path]:
    source = write_properties(tmp_path / "gen.properties", {
        "name": f"gen-{topic}", "connector.class": "VehicleTelemetrySource", "topic": topic,
        "count": str(count), "seed": "11", "tasks.max": "2",
        "rate": "3000",  # per task: slow enough for the tests to stop it midway
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false"})
    sink = write_properties(tmp_path / "sink.properties", {
        "name": f"sink-{topic}", "connector.class": "FileStreamSink", "topics": topic,
        "file": str(sink_file), "tasks.max": "2",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false"})
    return source, sink


def _sequences(path: Path) -> list[int]:
    """Sequence numbers of the complete lines (a killed worker may leave a torn last line
    until its successor opens the file)."""
    complete = path.read_bytes().rpartition(b"\n")[0] if path.exists() else b""
    # each reading printed as Java prints a map: {..., seq=17, ...}
    return [int(match[1]) for match in re.finditer(rb"\bseq=(\d+)", complete)]


def test_restarted_worker_resumes_with_nothing_lost_or_repeated(
        tmp_path: Path, kafka: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic("resume", 4)
    count = 30000
    sink_file = tmp_path / "out.jsonl"
    worker = worker_properties(tmp_path, kafka)
    source, sink = _telemetry_connectors(tmp_path, topic, count, sink_file)
    log = tmp_path / "kanal.log"
    first = Standalone(worker, source, sink, log=log).start()
    wait_for(lambda: line_count(sink_file) >= 5000, 90, "first records")
    assert first.stop() == 0
    stopped_at = line_count(sink_file)
    assert stopped_at < count, "the test must interrupt the run"
    second = Standalone(worker, source, sink, log=log).start().wait_running()
    try:
        wait_for(lambda: line_count(sink_file) >= count, 120, "all records")
        time.sleep(2)  # anything beyond count would be a duplicate
    finally:
        assert second.stop() == 0
    sequences = _sequences(sink_file)
    assert sorted(sequences) == list(range(count))


def test_killed_worker_loses_nothing(tmp_path: Path, kafka: str,
                                     new_topic: Callable[..., str]) -> None:
    topic = new_topic("killed", 2)
    count = 20000
    sink_file = tmp_path / "out.jsonl"
    worker = worker_properties(tmp_path, kafka)
    source, sink = _telemetry_connectors(tmp_path, topic, count, sink_file)
    log = tmp_path / "kanal.log"
    first = Standalone(worker, source, sink, log=log).start()
    wait_for(lambda: line_count(sink_file) >= 3000, 90, "first records")
    first.kill()
    second = Standalone(worker, source, sink, log=log).start().wait_running()
    try:
        wait_for(lambda: set(_sequences(sink_file)) >= set(range(count)), 120, "all records")
    finally:
        assert second.stop() == 0
    assert set(_sequences(sink_file)) == set(range(count))


def test_tasks_share_the_partitions(kafka: str, new_topic: Callable[..., str],
                                    tmp_path: Path) -> None:
    topic = new_topic("split", 6)
    # threads: the test reads each runner's assignment, which a task process keeps
    herder = StandaloneHerder({"bootstrap.servers": kafka,
                               "value.converter": "StringConverter",
                               "key.converter": "StringConverter",
                               "kanal.task.processes": "never"},
                              "test:8083", MemoryOffsetStore())
    name = f"split-{topic}"
    herder.put_connector(name, {"connector.class": "FileStreamSink", "topics": topic,
                                "tasks.max": "3", "file": str(tmp_path / "o.txt")})
    try:
        runners = herder.runners()
        wait_for(lambda: sum(len(r.assignment) for r in runners) == 6  # type: ignore[attr-defined]
                 and all(len(r.assignment) == 2 for r in runners),  # type: ignore[attr-defined]
                 60, "six partitions split over three tasks")
        owned = [p for r in runners for p in r.assignment]  # type: ignore[attr-defined]
        assert sorted(p.partition for p in owned) == list(range(6))
        status = herder.connector_status(name)
        assert [t["state"] for t in status["tasks"]] == ["RUNNING"] * 3
    finally:
        herder.stop_all()


def test_poison_record_fails_the_task_with_its_location(
        kafka: str, new_topic: Callable[..., str], tmp_path: Path) -> None:
    topic = new_topic("poison", 1)
    produce(kafka, topic, [b'{"ok": 1}', b'{"ok": 2}', b"{not json", b'{"ok": 4}'])
    herder = StandaloneHerder({"bootstrap.servers": kafka}, "test:8083", MemoryOffsetStore())
    name = f"poison-{topic}"
    herder.put_connector(name, {
        "connector.class": "FileStreamSink", "topics": topic, "file": str(tmp_path / "o"),
        "value.converter": "JsonConverter", "value.converter.schemas.enable": "false",
        "errors.tolerance": "none"})
    try:
        wait_for(lambda: herder.connector_status(name)["tasks"][0]["state"] == State.FAILED,
                 60, "task FAILED")
        trace = herder.connector_status(name)["tasks"][0]["trace"]
        assert f"topic='{topic}'" in trace
        assert "partition=0" in trace and "offset=2" in trace
        assert "VALUE_CONVERTER" in trace
    finally:
        herder.stop_all()
    written = (tmp_path / "o").read_text().splitlines() if (tmp_path / "o").exists() else []
    assert len(written) <= 2, "nothing after the poison record may be written"


@pytest.mark.parametrize(("connector", "expected"), [
    ({"connector.class": "com.example.Missing", "topics": "t"},
     "connector.class: Failed to find any class"),
    ({"connector.class": "FileStreamSource", "file": "/etc/hostname"},
     "topic: Missing required configuration"),
    ({"connector.class": "FileStreamSource", "topic": "t", "file": "/nonexistent/in.txt"},
     "file: /nonexistent/in.txt cannot be read"),
    ({"connector.class": "FileStreamSink", "topics": "t", "file": "/nonexistent/dir/out"},
     "file: directory /nonexistent/dir does not exist"),
])
def test_bad_connector_configuration_exits_with_the_key(
        tmp_path: Path, kafka: str, connector: dict[str, str], expected: str) -> None:
    worker = worker_properties(tmp_path, kafka)
    config = write_properties(tmp_path / "c.properties", {"name": "bad", **connector})
    result = subprocess.run([KANAL, "standalone", str(worker), str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert expected in result.stderr
    if "Failed to find" in expected:
        assert "FileStreamSinkConnector" in result.stderr


def test_without_connector_files_connectors_come_over_rest(
        tmp_path: Path, kafka: str, new_topic: Callable[..., str]) -> None:
    """As Apache 4.x's connect-standalone: only the worker file, then REST creates."""
    topic = new_topic("rest-only", 1)
    produce(kafka, topic, [b"one", b"two"])
    worker = worker_properties(tmp_path, kafka, listeners="http://127.0.0.1:0")
    log = tmp_path / "kanal.log"
    run = Standalone(worker, log=log).start().wait_running()
    try:
        url = re.search(r"REST API on (http://\S+)", log.read_text())[1]  # type: ignore[index]
        assert httpx.get(f"{url}/connectors").json() == []
        sink_file = tmp_path / "out.txt"
        created = httpx.post(f"{url}/connectors", json={"name": "from-rest", "config": {
            "connector.class": "FileStreamSink", "topics": topic, "file": str(sink_file)}})
        assert created.status_code == 201, created.text
        wait_for(lambda: line_count(sink_file) >= 2, 60, "the records")
        assert sink_file.read_text() == "one\ntwo\n"
    finally:
        assert run.stop() == 0


def test_unreachable_broker_names_the_address(tmp_path: Path) -> None:
    worker = worker_properties(tmp_path, "127.0.0.1:1")
    config = write_properties(tmp_path / "c.properties", {
        "name": "x", "connector.class": "FileStreamSink", "topics": "t",
        "file": str(tmp_path / "o")})
    result = subprocess.run([KANAL, "standalone", str(worker), str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in result.stderr
    assert not (tmp_path / "offsets.json").exists()


def test_a_task_stopping_during_a_rebalance_commits_what_it_wrote(
        kafka: str, new_topic: Callable[..., str], tmp_path: Path) -> None:
    """A sibling joins the group just before the task stops (as when a connector's tasks
    start and stop together): the task's last commit still covers every record it wrote.
    When that commit meets the rebalance (the timing decides), the task takes part in it
    and commits again instead of leaving what it wrote to be delivered again."""
    topic = new_topic("stop-rebalance", 2)
    count = 2000
    for partition in (0, 1):  # both hold records: the partition handed over has some
        produce(kafka, topic, [f"r{i}".encode() for i in range(partition, count, 2)],
                partition=partition)
    out = tmp_path / "o.txt"
    herder = StandaloneHerder({"bootstrap.servers": kafka,
                               "value.converter": "StringConverter",
                               "key.converter": "StringConverter",
                               "offset.flush.interval.ms": "600000",  # only the final commit
                               "kanal.task.processes": "never"},
                              "test:8083", MemoryOffsetStore())
    name = f"stop-{topic}"
    group = f"connect-{name}"
    herder.put_connector(name, {"connector.class": "FileStreamSink", "topics": topic,
                                "file": str(out)})
    sibling = Consumer({"bootstrap.servers": kafka, "group.id": group,
                        "partition.assignment.strategy": "cooperative-sticky",
                        "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    joined = threading.Event()
    done = threading.Event()

    def take_part() -> None:
        while not done.is_set():
            sibling.consume(100, 0.1)  # what it is given it never commits
            joined.set()
    member = threading.Thread(target=take_part, daemon=True)
    try:
        wait_for(lambda: line_count(out) == count, 60, "every record written")
        sibling.subscribe([topic])
        member.start()
        joined.wait(10)
    finally:
        herder.stop_all()
        done.set()
        member.join(10)
        sibling.close()
    committed = Consumer({"bootstrap.servers": kafka, "group.id": group}).committed(
        [KafkaTopicPartition(topic, p) for p in range(2)], timeout=30)
    assert sum(tp.offset for tp in committed) == count, committed
