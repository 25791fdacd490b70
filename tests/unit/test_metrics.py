"""The worker's Prometheus collector, over real (unstarted) task runner objects."""

from __future__ import annotations

import urllib.request
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from kanal_worker.api.errors import ConfigError
from kanal_worker.api.records import TopicPartition
from kanal_worker.config.observability import metrics_registry
from kanal_worker.connectors.file import FileStreamSinkConnector, FileStreamSourceConnector
from kanal_worker.runtime.errors import ErrorHandler
from kanal_worker.runtime.metrics import (
    DEFAULT_PORT,
    TaskCollector,
    metrics_port,
    start_metrics_server,
)
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.process import ChildReport, ProcessTaskRunner
from kanal_worker.runtime.sink import SinkTaskRunner
from kanal_worker.runtime.source import SourceTaskRunner
from kanal_worker.runtime.status import State, TargetState
from kanal_worker.runtime.task import TaskId, TaskRunner

WORKER = {"bootstrap.servers": "127.0.0.1:1"}


def ignore(_: TaskRunner) -> None:
    return None


class Herder:
    """The two things the collector reads from a herder."""

    def __init__(self, runners: list[TaskRunner]) -> None:
        self.worker_id = "worker-0:8083"
        self._runners = runners

    def runners(self) -> list[TaskRunner]:
        return list(self._runners)


class WatermarkConsumer:
    """Answers cached high watermarks like librdkafka's consumer (no broker)."""

    def __init__(self, highs: dict[tuple[str, int], int]) -> None:
        self.highs = highs
        self.cached: list[bool] = []

    def get_watermark_offsets(self, tp: Any, timeout: float | None = None,
                              cached: bool = False) -> tuple[int, int]:
        self.cached.append(cached)
        return 0, self.highs.get((tp.topic, tp.partition), -1001)


def sink_runner(task: int = 0) -> SinkTaskRunner:
    return SinkTaskRunner(TaskId("blob-sink", task), {"topics": "vehicle.speeding",
                                                      "file": "/dev/null"},
                          WORKER, "worker-0:8083", TargetState.STARTED, ignore,
                          FileStreamSinkConnector)


def source_runner() -> SourceTaskRunner:
    return SourceTaskRunner(TaskId("generator", 0), {"topic": "vehicle.speeding"}, WORKER,
                            "worker-0:8083", TargetState.STARTED, ignore,
                            FileStreamSourceConnector, MemoryOffsetStore())


def samples(herder: Herder) -> list[Sample]:
    return [s for family in TaskCollector(herder).collect() for s in family.samples]


def value(found: list[Sample], name: str, **labels: str) -> float:
    matches = [s.value for s in found
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, (name, labels, matches)
    return float(matches[0])


def test_counters_come_from_the_runners_throughput_and_error_handler() -> None:
    sink, source = sink_runner(), source_runner()
    sink.metrics.records_in, sink.metrics.records_out = 1200, 1100
    sink.metrics.batches, sink.metrics.batch_seconds = 4, 0.5
    handler = ErrorHandler(tolerance="all", retry_timeout_ms=0, retry_delay_max_ms=0,
                           log_enable=False, log_messages=False, task="blob-sink-0", dlq=None)
    handler.failed = 7
    handler.dlq = SimpleNamespace(count=5)  # type: ignore[assignment]
    sink.errors = handler
    source.metrics.records_in, source.metrics.records_out = 30, 29
    source.metrics.records_failed = 1

    found = samples(Herder([sink, source]))
    sink_labels = {"connector": "blob-sink", "task": "0", "type": "sink"}
    assert value(found, "kanal_task_records_in_total", **sink_labels) == 1200
    assert value(found, "kanal_task_records_out_total", **sink_labels) == 1100
    assert value(found, "kanal_task_errors_total", **sink_labels) == 7
    assert value(found, "kanal_dlq_records_total", **sink_labels) == 5
    assert value(found, "kanal_task_batch_seconds_count", **sink_labels) == 4
    assert value(found, "kanal_task_batch_seconds_sum", **sink_labels) == 0.5
    source_labels = {"connector": "generator", "task": "0", "type": "source"}
    assert value(found, "kanal_task_records_out_total", **source_labels) == 29
    assert value(found, "kanal_task_errors_total", **source_labels) == 1
    assert value(found, "kanal_dlq_records_total", **source_labels) == 0
    assert value(found, "kanal_worker_info", worker_id="worker-0:8083") == 1


def test_scrapes_see_the_counters_move_without_re_registering() -> None:
    runner = sink_runner()
    collector = TaskCollector(Herder([runner]))
    first = [s for f in collector.collect() for s in f.samples]
    runner.metrics.records_out += 250
    second = [s for f in collector.collect() for s in f.samples]
    labels = {"connector": "blob-sink", "task": "0"}
    assert value(first, "kanal_task_records_out_total", **labels) == 0
    assert value(second, "kanal_task_records_out_total", **labels) == 250


def test_state_is_one_hot_over_every_task_state() -> None:
    running, failed = sink_runner(0), sink_runner(1)
    running.status.set(State.RUNNING)
    failed.status.set(State.FAILED, "Traceback ...")
    found = samples(Herder([running, failed]))
    for runner, current in ((running, State.RUNNING), (failed, State.FAILED)):
        for state in State:
            assert value(found, "kanal_task_state", task=str(runner.id.task),
                         state=state.value) == (1 if state == current else 0)


def test_sink_lag_uses_cached_watermarks_and_skips_unknown_partitions() -> None:
    runner = sink_runner()
    consumer = WatermarkConsumer({("vehicle.speeding", 0): 1000, ("vehicle.speeding", 1): 40})
    runner.consumer = consumer
    runner.consumed = {TopicPartition("vehicle.speeding", 0): 900,
                       TopicPartition("vehicle.speeding", 1): 40,
                       TopicPartition("vehicle.speeding", 2): 5}
    runner.committed = {TopicPartition("vehicle.speeding", 0): 850}
    found = samples(Herder([runner]))
    assert value(found, "kanal_sink_lag", partition="0") == 100
    assert value(found, "kanal_sink_lag", partition="1") == 0
    assert value(found, "kanal_sink_uncommitted_records", partition="0") == 50
    assert value(found, "kanal_sink_uncommitted_records", partition="1") == 0
    assert not [s for s in found if s.labels.get("partition") == "2"]
    assert consumer.cached and all(consumer.cached), "a scrape must not ask the broker"


def test_a_closed_consumer_costs_the_scrape_nothing() -> None:
    class Closed:
        def get_watermark_offsets(self, *args: Any, **kwargs: Any) -> tuple[int, int]:
            raise RuntimeError("Consumer closed")

    runner = sink_runner()
    runner.consumer = Closed()
    runner.consumed = {TopicPartition("vehicle.speeding", 0): 10}
    found = samples(Herder([runner]))
    assert not [s for s in found if s.name == "kanal_sink_lag"]
    assert value(found, "kanal_task_records_in_total", task="0") == 0


def test_registry_names_do_not_clash_with_process_metrics() -> None:
    registry = metrics_registry(TaskCollector(Herder([])))
    names = {family.name for family in registry.collect()}
    assert {"kanal_task_records_in", "kanal_task_state", "kanal_sink_lag",
            "process_cpu_seconds", "python_info"} <= names


def test_metrics_server_serves_the_text_format() -> None:
    runner = sink_runner()
    runner.metrics.records_out = 42
    server = start_metrics_server(Herder([runner]), port=0, addr="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
            assert r.status == 200
            body = r.read().decode()
    finally:
        server.stop()
    families = {f.name: f for f in text_string_to_metric_families(body)}
    out = families["kanal_task_records_out"]
    assert out.type == "counter"
    assert [s.value for s in out.samples if s.name.endswith("_total")] == [42]
    assert families["kanal_task_batch_seconds"].type == "summary"
    assert DEFAULT_PORT == 9404


def test_metrics_port_setting_and_a_busy_port() -> None:
    assert metrics_port({}) == DEFAULT_PORT
    assert metrics_port({"kanal.metrics.port": " 0 "}) == 0
    for bad in ("http", "70000"):
        with pytest.raises(ConfigError, match=r"kanal\.metrics\.port"):
            metrics_port({"kanal.metrics.port": bad})
    first = start_metrics_server(Herder([]), port=0, addr="127.0.0.1")
    try:
        with pytest.raises(ConfigError, match=r"kanal\.metrics\.port"):
            start_metrics_server(Herder([]), port=first.port, addr="127.0.0.1")
    finally:
        first.stop()


def test_docs_list_every_metric_the_collectors_serve() -> None:
    from pathlib import Path

    from kanal_operator.metrics import WorldCollector
    from kanal_operator.world import World

    docs = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    families = [*TaskCollector(Herder([])).describe(), *WorldCollector(World()).describe()]
    suffix = {"counter": "_total", "info": "_info"}
    for family in families:
        name = family.name + suffix.get(family.type, "")
        assert f"`{name}`" in docs, f"docs/metrics.md does not document {name}"


def test_a_task_process_reports_like_a_thread() -> None:
    """The counters, error counts and partition positions a child sends over its pipe are
    what the collector shows for its task."""
    runner = ProcessTaskRunner("FileStreamSink", TaskId("procs", 1), {}, WORKER,
                               "worker-0:8083", TargetState.STARTED, ignore)
    runner._receive("status", (State.RUNNING, None, None))
    report = ChildReport(failed=2, dlq=1,
                         positions=[(TopicPartition("vehicle.speeding", 3), 5, 3, 9)])
    runner._receive("metrics", ({"records_in": 7, "records_out": 5}, ["vehicle.speeding"],
                                report))
    found = samples(Herder([runner]))
    task = {"connector": "procs", "task": "1", "type": "sink"}
    assert value(found, "kanal_task_records_out_total", **task) == 5
    assert value(found, "kanal_task_errors_total", **task) == 2
    assert value(found, "kanal_dlq_records_total", **task) == 1
    assert value(found, "kanal_task_state", state="RUNNING", **task) == 1
    where = {"connector": "procs", "task": "1", "topic": "vehicle.speeding",
             "partition": "3"}
    assert value(found, "kanal_sink_lag", **where) == 4
    assert value(found, "kanal_sink_uncommitted_records", **where) == 2
    assert runner.active_topics == {"vehicle.speeding"}
