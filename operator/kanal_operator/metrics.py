"""Prometheus metrics of the operator, read from what it knows (``World``) at scrape time.

Like the workers' collector (``kanal_worker.runtime.metrics``) nothing is counted on the
reconcile path: each scrape reads the World the handlers keep up to date (worker Leases,
task placements, worker pods). Served on ``KANAL_METRICS_PORT`` (default 9404, 0
disables; the chart sets it from ``metrics.port``). ``docs/metrics.md`` lists them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from typing import TypeVar

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from kanal_operator.world import ClusterState, World
from kanal_worker import __version__
from kanal_worker.api.errors import ConfigError
from kanal_worker.config.observability import MetricsServer, metrics_registry, serve_metrics

log = logging.getLogger(__name__)

PORT_ENV = "KANAL_METRICS_PORT"
DEFAULT_PORT = 9404
CLUSTER_LABELS = ["namespace", "cluster"]

K = TypeVar("K")
V = TypeVar("V")


def _copy(mapping: Mapping[K, V]) -> dict[K, V]:
    """Copy a dict the operator's event loop may change while a scrape reads it."""
    for _ in range(3):
        try:
            return dict(mapping)
        except RuntimeError:  # changed size during iteration
            continue
    return {}


class WorldCollector(Collector):
    """Workers, connectors and task placements per ConnectCluster."""

    def __init__(self, world: World) -> None:
        self.world = world

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        live, leases, pods, connectors, assigned, unassigned, info = families
        info.add_metric([], {"version": __version__})
        now = time.monotonic()
        for (namespace, name), state in sorted(_copy(self.world.clusters).items()):
            labels = [namespace, name]
            workers = _copy(state.workers)
            live.add_metric(labels, sum(1 for w in workers.values() if w.alive(now)))
            leases.add_metric(labels, len(workers))
            pods.add_metric(labels, state.pods)
            connectors.add_metric(labels, len(set(state.connectors)))
            per_worker, waiting = placements(state)
            unassigned.add_metric(labels, waiting)
            for worker, count in sorted(per_worker.items()):
                assigned.add_metric([*labels, worker], count)
        return list(families)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily,
                             GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily,
                             InfoMetricFamily]:
        return (
            GaugeMetricFamily("kanal_operator_live_workers", "Workers whose Lease is fresh "
                              "(they heartbeat and take tasks).", labels=CLUSTER_LABELS),
            GaugeMetricFamily("kanal_operator_worker_leases", "Worker Leases the operator "
                              "knows, live or expired.", labels=CLUSTER_LABELS),
            GaugeMetricFamily("kanal_operator_worker_pods", "Pods of the cluster's worker "
                              "Deployment.", labels=CLUSTER_LABELS),
            GaugeMetricFamily("kanal_operator_connectors", "Connectors of the cluster the "
                              "operator reconciles.", labels=CLUSTER_LABELS),
            GaugeMetricFamily("kanal_operator_assigned_tasks", "Tasks placed on each worker.",
                              labels=[*CLUSTER_LABELS, "worker"]),
            GaugeMetricFamily("kanal_operator_unassigned_tasks", "Tasks waiting for a worker "
                              "(none live, or the previous owner still stopping them).",
                              labels=CLUSTER_LABELS),
            InfoMetricFamily("kanal_operator", "The operator's Kanal version."),
        )


def placements(state: ClusterState) -> tuple[dict[str, int], int]:
    """Tasks per worker, and tasks placed nowhere, over every connector of ``state``."""
    per_worker: dict[str, int] = {}
    waiting = 0
    for placement in _copy(state.placements).values():
        for worker in _copy(placement).values():
            if worker is None:
                waiting += 1
            else:
                per_worker[worker] = per_worker.get(worker, 0) + 1
    return per_worker, waiting


def port_from_env(environ: Mapping[str, str] | None = None) -> int:
    """``KANAL_METRICS_PORT``: default 9404, 0 disables the endpoint."""
    raw = (os.environ if environ is None else environ).get(PORT_ENV, str(DEFAULT_PORT))
    try:
        port = int(raw.strip())
    except ValueError:
        raise ConfigError(PORT_ENV, f"{raw} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(PORT_ENV, f"{port} is not a port number (0 disables metrics)")
    return port


def start_operator_metrics(world: World, port: int | None = None,
                           addr: str = "0.0.0.0") -> MetricsServer | None:
    """Serve ``/metrics`` from a daemon thread; None when the port is 0 (disabled).

    ``port`` defaults to ``KANAL_METRICS_PORT``. Call it once the World exists (the
    memo ``kanal operator`` passes to kopf).
    """
    port = port_from_env() if port is None else port
    if port == 0:
        return None
    return serve_metrics(metrics_registry(WorldCollector(world)), port, addr, PORT_ENV)
