"""What the operator knows between events: live workers and where tasks run.

Fed by watch events (worker Leases, Deployments) and by the connector daemons (their
placements), read by every daemon. It lives in one asyncio loop and is changed only
between awaits, so a connector's placement decision and its bookkeeping cannot
interleave with another connector's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kanal_worker.cluster.protocol import LABEL_CLUSTER, REPORT_ANNOTATION, WorkerReport

CLOCK_SKEW_SECONDS = 5.0
"""Tolerated difference between a worker's clock and the operator's."""


@dataclass
class WorkerView:
    """A worker as its Lease shows it. Liveness is judged by when *we* saw the Lease
    renewed (like client-go's leader election), so clock skew does not matter."""

    name: str
    report: WorkerReport
    duration: float
    renew_time: str
    observed: float
    """``time.monotonic()`` when ``renew_time`` last changed."""

    @property
    def expires(self) -> float:
        return self.observed + self.duration

    def alive(self, now: float) -> bool:
        return now < self.expires


@dataclass
class ClusterState:
    workers: dict[str, WorkerView] = field(default_factory=dict)
    placements: dict[str, dict[int, str | None]] = field(default_factory=dict)
    """Connector → task → worker, as last decided."""
    secrets: dict[str, frozenset[str]] = field(default_factory=dict)
    """Connector → Secrets its configuration references."""
    granted: frozenset[str] = frozenset()
    """Secrets the workers' Role currently grants."""
    exists: bool | None = None
    """Whether the ConnectCluster object exists (None: not known yet)."""
    pods: int = 0
    """Pods of the worker Deployment."""
    stuck: dict[str, str] = field(default_factory=dict)
    """Worker pod → why its container cannot run (an image that cannot be pulled, a
    crash loop), from the pod's status."""
    connectors: set[str] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Wakes the ConnectCluster daemon."""

    def live(self, now: float) -> dict[str, WorkerView]:
        return {name: w for name, w in self.workers.items() if w.alive(now)}

    def next_expiry(self, now: float) -> float | None:
        """Seconds until the next live worker expires, if any."""
        times = [w.expires - now for w in self.workers.values() if w.alive(now)]
        return min(times) if times else None

    def load(self, connector: str, live: Mapping[str, WorkerView]) -> dict[str, int]:
        """Tasks of connectors other than ``connector`` per live worker."""
        counts = dict.fromkeys(live, 0)
        for name, placement in self.placements.items():
            if name != connector:
                for worker in placement.values():
                    if worker in counts:
                        counts[worker] += 1
        return counts


def _parse_time(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


STUCK_REASONS = frozenset({
    "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
    "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError",
    "RunContainerError"})
"""Waiting reasons of a container that will not run without a fix (kubelet's names)."""


def stuck_reason(pod: Mapping[str, Any]) -> str | None:
    """``reason: message`` of the first container of ``pod`` that waits for a fix."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_REASONS:
            message = str(waiting.get("message") or "").strip()
            return f"{waiting['reason']}: {message}" if message else str(waiting["reason"])
    return None


class World:
    def __init__(self) -> None:
        self.clusters: dict[tuple[str, str], ClusterState] = {}
        self._wakeups: dict[tuple[str, str], asyncio.Event] = {}

    def cluster(self, namespace: str, name: str) -> ClusterState:
        return self.clusters.setdefault((namespace, name), ClusterState())

    def wakeup(self, namespace: str, connector: str) -> asyncio.Event:
        return self._wakeups.setdefault((namespace, connector), asyncio.Event())

    def forget(self, namespace: str, connector: str, cluster: str) -> None:
        state = self.cluster(namespace, cluster)
        state.connectors.discard(connector)
        state.placements.pop(connector, None)
        state.secrets.pop(connector, None)
        self._wakeups.pop((namespace, connector), None)
        self.poke(namespace, cluster)

    def poke(self, namespace: str, cluster: str) -> None:
        """Wake the cluster's daemon and every connector daemon of the cluster."""
        state = self.cluster(namespace, cluster)
        state.changed.set()
        for connector in state.connectors:
            self.wakeup(namespace, connector).set()

    def _worker_object(self, namespace: str, body: Mapping[str, Any]
                       ) -> tuple[ClusterState, str, str] | None:
        """The state of the cluster a worker's pod or Lease belongs to (by its label), the
        cluster's name and the object's; None for an object of no cluster."""
        metadata = body.get("metadata") or {}
        cluster = (metadata.get("labels") or {}).get(LABEL_CLUSTER)
        if not cluster:
            return None
        return self.cluster(namespace, cluster), cluster, str(metadata.get("name"))

    def observe_pod(self, namespace: str, body: Mapping[str, Any], deleted: bool) -> None:
        """Take in a worker pod event: remember whether its container is stuck."""
        found = self._worker_object(namespace, body)
        if found is None:
            return
        state, _, name = found
        reason = None if deleted else stuck_reason(body)
        if reason != state.stuck.get(name):
            if reason is None:
                state.stuck.pop(name, None)
            else:
                state.stuck[name] = reason
            state.changed.set()

    def observe_lease(self, namespace: str, body: Mapping[str, Any], deleted: bool,
                      now: float | None = None, wall: float | None = None) -> None:
        """Take in a worker Lease event; wake whoever it concerns."""
        now = time.monotonic() if now is None else now
        wall = time.time() if wall is None else wall
        found = self._worker_object(namespace, body)
        if found is None:
            return
        state, cluster, name = found
        if deleted:
            if state.workers.pop(name, None) is not None:
                self.poke(namespace, cluster)
            return
        spec = body.get("spec") or {}
        renew_time = str(spec.get("renewTime") or "")
        duration = float(spec.get("leaseDurationSeconds") or 0)
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        report = WorkerReport.from_json(annotations.get(REPORT_ANNOTATION))
        view = state.workers.get(name)
        if view is None:
            observed = now
            renewed = _parse_time(renew_time)
            if renewed is None or wall - renewed > duration + CLOCK_SKEW_SECONDS:
                observed = now - duration  # a stale Lease (operator restart): already expired
            state.workers[name] = WorkerView(name, report, duration, renew_time, observed)
            self.poke(namespace, cluster)
            return
        was_alive = view.alive(now)
        if renew_time != view.renew_time:
            view.renew_time, view.observed = renew_time, now
        view.duration = duration
        if report != view.report or was_alive != view.alive(now):
            view.report = report
            self.poke(namespace, cluster)
