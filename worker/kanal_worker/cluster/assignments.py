"""What this worker must do, read from the Connectors of its cluster.

The operator writes the plan into each Connector's status (task tokens, the keys each
task changes, the worker of each task) and never copies configurations there; the
worker derives each task's configuration from ``spec`` and uses it only when
``status.configHash`` says the plan was made from that very configuration.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import watch

from kanal_worker.api.errors import ConfigError
from kanal_worker.cluster.executor import Assignment
from kanal_worker.cluster.kube import Kube, status_of
from kanal_worker.cluster.protocol import (
    PlanMismatch,
    config_hash,
    connector_config,
    task_config,
)
from kanal_worker.runtime.status import TargetState

log = logging.getLogger(__name__)

WATCH_SECONDS = 240

Object = dict[str, Any]


@dataclass(frozen=True)
class OffsetsJob:
    """An offsets request (``spec.offsets``) the operator gave to this worker."""

    connector: str
    nonce: str
    action: str
    offsets: list[dict[str, Any]]
    config: dict[str, str]


def _ours(body: Object, cluster: str) -> bool:
    spec = body.get("spec") or {}
    return bool((spec.get("clusterRef") or {}).get("name") == cluster)


@dataclass
class Assigned:
    """What the Connectors of a cluster ask of one worker."""

    desired: dict[str, Assignment] = field(default_factory=dict)
    """The worker's tasks, by key."""
    keep: set[str] = field(default_factory=set)
    """Connectors whose plan is being recomputed: their tasks keep running as they are
    until the operator caught up."""
    mismatches: dict[str, PlanMismatch] = field(default_factory=dict)
    """Connectors planned for a configuration hash this worker does not compute (also
    kept). It lasts when operator and worker disagree on the normal form of a
    configuration (different versions), so the worker reports it."""


def assignments(connectors: Iterable[Object], cluster: str, worker: str) -> Assigned:
    assigned = Assigned()
    for body in connectors:
        metadata = body.get("metadata") or {}
        if not _ours(body, cluster) or metadata.get("deletionTimestamp"):
            continue
        name = str(metadata["name"])
        status = body.get("status") or {}
        try:
            config = connector_config(body)
        except ConfigError:
            continue
        planned, computed = status.get("configHash"), config_hash(config)
        if planned != computed:
            assigned.keep.add(name)
            if planned:
                assigned.mismatches[name] = PlanMismatch(
                    int(metadata.get("generation") or 0), str(planned), computed)
            continue
        paused = (body.get("spec") or {}).get("state") == "paused"
        target = TargetState.PAUSED if paused else TargetState.STARTED
        for task in status.get("tasks") or []:
            if task.get("worker") != worker:
                continue
            assignment = Assignment(name, int(task["id"]), str(task["token"]),
                                    task_config(config, task.get("config") or {}), target)
            assigned.desired[assignment.key] = assignment
    return assigned


def offsets_jobs(connectors: Iterable[Object], cluster: str, worker: str) -> list[OffsetsJob]:
    """Offsets requests assigned to this worker that are not finished."""
    jobs = []
    for body in connectors:
        if not _ours(body, cluster):
            continue
        request = (body.get("spec") or {}).get("offsets") or {}
        state = (body.get("status") or {}).get("offsets") or {}
        if state.get("worker") != worker or state.get("state") not in ("Pending", "Running") \
                or state.get("nonce") != request.get("nonce"):
            continue
        try:
            config = connector_config(body)
        except ConfigError:
            continue
        jobs.append(OffsetsJob(str(body["metadata"]["name"]), str(request["nonce"]),
                               str(request["action"]), list(request.get("offsets") or []),
                               config))
    return jobs


class ConnectorWatcher:
    """Keeps the namespace's Connectors in memory and calls ``on_change`` with all of
    them after every change (list, then watch; list again when the watch expires)."""

    def __init__(self, kube: Kube, on_change: Callable[[list[Object]], None]) -> None:
        self.kube = kube
        self.on_change = on_change
        self.synced = threading.Event()
        self._objects: dict[str, Object] = {}
        self._stop = threading.Event()
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        self._thread = threading.Thread(target=self._loop, name="connectors", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._watch.stop()  # type: ignore[no-untyped-call]
        self._thread.join(5)

    def objects(self) -> list[Object]:
        return list(self._objects.values())

    def _loop(self) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    items, version = self.kube.list_connectors()
                    self._objects = {o["metadata"]["name"]: o for o in items}
                    self.synced.set()
                    self.on_change(self.objects())
                for kind, body in self.kube.watch_connectors(version, WATCH_SECONDS,
                                                             self._watch):
                    if kind == "ERROR":
                        version = None  # 410 Gone: the version is too old, list again
                        break
                    version = body["metadata"]["resourceVersion"]
                    if kind == "BOOKMARK":
                        continue
                    name = body["metadata"]["name"]
                    if kind == "DELETED":
                        self._objects.pop(name, None)
                    else:
                        self._objects[name] = body
                    self.on_change(self.objects())
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning("Watching Connectors failed (%s); listing again", exc)
                if status_of(exc) != 410:
                    self._stop.wait(1)
                version = None
