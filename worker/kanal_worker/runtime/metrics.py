"""Prometheus metrics of a worker, read from its task runners at scrape time.

Nothing here runs per record: tasks keep plain counters (``TaskRunner.metrics``, a
``Throughput``) and their ``Status``; the collector below turns whatever runners the
herder holds *now* into metric families each time Prometheus scrapes. A task that
restarts gets a fresh runner, so its counters start again from zero, which Prometheus
treats as a counter reset (``rate()`` and ``increase()`` handle it).

The names follow Kafka Connect's task metrics (``sink-record-read-total`` becomes
``kanal_task_records_in_total``, ...); ``docs/metrics.md`` lists them all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from kanal_worker import __version__
from kanal_worker.api.errors import ConfigError
from kanal_worker.config.observability import MetricsServer, metrics_registry, serve_metrics
from kanal_worker.runtime.process import ProcessTaskRunner
from kanal_worker.runtime.readings import own_error_counts, sink_positions
from kanal_worker.runtime.sink import SinkTaskRunner
from kanal_worker.runtime.source import SourceTaskRunner
from kanal_worker.runtime.status import State
from kanal_worker.runtime.task import TaskRunner

log = logging.getLogger(__name__)

PORT_KEY = "kanal.metrics.port"
DEFAULT_PORT = 9404
"""Worker metrics port (``kanal.metrics.port``); the worker Service names it ``metrics``."""

TASK_LABELS = ["connector", "task", "type"]
PARTITION_LABELS = ["connector", "task", "topic", "partition"]


class RunnerSource(Protocol):
    """What the collector needs from a herder: its id and the runners it holds now."""

    worker_id: str

    def runners(self) -> list[TaskRunner]: ...


def task_type(runner: TaskRunner) -> str:
    if isinstance(runner, SinkTaskRunner | ProcessTaskRunner):
        return "sink"
    if isinstance(runner, SourceTaskRunner):
        return "source"
    return "unknown"


def error_counts(runner: TaskRunner) -> tuple[int, int]:
    """(records that failed for good, records sent to the dead letter queue), as the
    runner or, for a task process, its last report says."""
    if isinstance(runner, ProcessTaskRunner):
        return runner.report.failed, runner.report.dlq
    return own_error_counts(runner)


class TaskCollector(Collector):
    """Turns the runners of a herder into Prometheus metric families on each scrape."""

    def __init__(self, source: RunnerSource) -> None:
        self.source = source

    def describe(self) -> Iterable[Metric]:
        # Names only (for the registry's duplicate check); no runner is read.
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        records_in, records_out, errors, dlq, batch, state, lag, uncommitted, info = families
        info.add_metric([], {"worker_id": self.source.worker_id, "version": __version__})
        try:
            runners = list(self.source.runners())
        except Exception:
            log.exception("metrics: could not list the task runners")
            runners = []
        for runner in runners:
            labels = [runner.id.connector, str(runner.id.task), task_type(runner)]
            m = runner.metrics
            failed, to_dlq = error_counts(runner)
            records_in.add_metric(labels, m.records_in)
            records_out.add_metric(labels, m.records_out)
            errors.add_metric(labels, failed)
            dlq.add_metric(labels, to_dlq)
            batch.add_metric(labels, m.batches, m.batch_seconds)
            current = runner.status.state
            for value in State:
                state.add_metric([*labels, value.value], 1.0 if value == current else 0.0)
            positions = runner.report.positions if isinstance(runner, ProcessTaskRunner) \
                else sink_positions(runner) if isinstance(runner, SinkTaskRunner) else []
            for tp, position, done, high in positions:
                where = [runner.id.connector, str(runner.id.task), tp.topic,
                         str(tp.partition)]
                lag.add_metric(where, max(high - position, 0))
                uncommitted.add_metric(where, max(position - done, 0))
        return list(families)

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, CounterMetricFamily, CounterMetricFamily,
                             CounterMetricFamily, SummaryMetricFamily, GaugeMetricFamily,
                             GaugeMetricFamily, GaugeMetricFamily, InfoMetricFamily]:
        return (
            CounterMetricFamily(
                "kanal_task_records_in", "Records a task read: consumed from Kafka (sink) or "
                "polled from the external system (source).", labels=TASK_LABELS),
            CounterMetricFamily(
                "kanal_task_records_out", "Records a task delivered: written by the sink or "
                "produced to Kafka by the source (after transforms and filters).",
                labels=TASK_LABELS),
            CounterMetricFamily(
                "kanal_task_errors", "Records that failed for good in conversion, a "
                "transform or the write (tolerated, sent to the DLQ, or failing the task).",
                labels=TASK_LABELS),
            CounterMetricFamily(
                "kanal_dlq_records", "Records a task sent to its dead letter queue topic "
                "(errors.deadletterqueue.topic.name).", labels=TASK_LABELS),
            SummaryMetricFamily(
                "kanal_task_batch_seconds", "Time a task spent on each batch: convert, "
                "transform and write (sink) or convert and produce (source).",
                labels=TASK_LABELS),
            GaugeMetricFamily(
                "kanal_task_state", "1 for the state the task is in, 0 for the others "
                "(UNASSIGNED, RUNNING, PAUSED, STOPPED, FAILED, RESTARTING).",
                labels=[*TASK_LABELS, "state"]),
            GaugeMetricFamily(
                "kanal_sink_lag", "Records in the partition not yet processed by the sink "
                "task: high watermark minus the next offset to process.",
                labels=PARTITION_LABELS),
            GaugeMetricFamily(
                "kanal_sink_uncommitted_records", "Records processed by the sink task whose "
                "offsets are not committed yet (waiting for the sink to make them durable).",
                labels=PARTITION_LABELS),
            InfoMetricFamily("kanal_worker", "The worker: its id and Kanal version."),
        )


def metrics_port(worker: Mapping[str, str]) -> int:
    """``kanal.metrics.port`` of a worker configuration: default 9404, 0 disables."""
    raw = worker.get(PORT_KEY, str(DEFAULT_PORT)).strip()
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(PORT_KEY, f"{raw} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(PORT_KEY, f"{port} is not a port number (0 disables metrics)")
    return port


def start_metrics_server(herder: RunnerSource, port: int = DEFAULT_PORT,
                         addr: str = "0.0.0.0") -> MetricsServer:
    """Serve the worker's metrics on ``http://addr:port/metrics`` from a daemon thread.

    ``herder`` is anything with ``runners()`` and ``worker_id``: the standalone herder
    or the cluster-mode executor. ``port`` 0 picks a free port (see
    ``MetricsServer.port``; use ``metrics_port`` to honour 0 as "disabled"). Scrapes
    read the runners' counters; the data path does no extra work for them. A port in
    use raises ``ConfigError`` naming ``kanal.metrics.port``.
    """
    return serve_metrics(metrics_registry(TaskCollector(herder)), port, addr, PORT_KEY)
