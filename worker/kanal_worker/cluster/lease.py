"""The worker's heartbeat: a coordination.k8s.io Lease it alone writes.

Renewed every couple of seconds by a patch of its own; the worker's report (task
states, offered plugins, offsets results) is written to an annotation by another patch
whenever it changed, at once when a task changes state. A report the API server
refuses (too large) therefore never stops the renewals. The operator treats a worker
whose Lease is not renewed within its ``leaseDurationSeconds`` as gone and moves its
tasks; a stopping worker deletes its Lease after its tasks stopped, so they move at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kanal_worker.cluster.kube import Kube, status_of
from kanal_worker.cluster.protocol import (
    LABEL_CLUSTER,
    LABEL_COMPONENT,
    LEASE_DURATION_SECONDS,
    RENEW_INTERVAL_SECONDS,
    REPORT_ANNOTATION,
    WORKER_COMPONENT,
    WorkerReport,
)

log = logging.getLogger(__name__)

MIN_GAP_SECONDS = 0.2
"""State changes are published at most this often (bursts are coalesced)."""


def micro_time(timestamp: float) -> str:
    """Kubernetes' MicroTime format."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Heartbeat:
    def __init__(self, kube: Kube, name: str, cluster: str, pod_uid: str | None,
                 report: Callable[[], WorkerReport],
                 interval: float = RENEW_INTERVAL_SECONDS) -> None:
        self.kube = kube
        self.name = name
        self.cluster = cluster
        self.pod_uid = pod_uid
        self.report = report
        self.interval = interval
        self._published: str | None = None
        """The report as last written to the Lease."""
        self._publish_failed = False
        self._poke = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> None:
        """Create (or take over) the Lease, then renew it in the background."""
        self._create()
        self._thread.start()

    def poke(self) -> None:
        """Publish the report soon (a task changed state)."""
        self._poke.set()

    def release(self) -> None:
        """Stop renewing and delete the Lease: the operator moves our tasks at once."""
        self._stop.set()
        self._poke.set()
        self._thread.join(10)
        try:
            self.kube.delete_lease(self.name)
            log.info("Lease %s released", self.name)
        except Exception as exc:
            log.warning("Lease %s not deleted (%s); it expires in %ss", self.name, exc,
                        LEASE_DURATION_SECONDS)

    def _body(self) -> dict[str, Any]:
        now = micro_time(time.time())
        metadata: dict[str, Any] = {
            "name": self.name,
            "labels": {LABEL_CLUSTER: self.cluster, LABEL_COMPONENT: WORKER_COMPONENT,
                       "app.kubernetes.io/name": "kanal"},
            "annotations": {REPORT_ANNOTATION: self.report().to_json()},
        }
        if self.pod_uid:  # the Lease goes away with its pod
            metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Pod",
                                            "name": self.name, "uid": self.pod_uid}]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
                "spec": {"holderIdentity": self.name,
                         "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                         "acquireTime": now, "renewTime": now}}

    def _create(self) -> None:
        body = self._body()
        try:
            self._create_or_take_over(body)
        except Exception as exc:
            if status_of(exc) != 422:
                raise
            # the report is refused: a Lease without it still keeps our tasks here (a
            # live worker keeps its tasks), the loop retries the report
            log.warning("Lease %s: report refused (%s); creating the Lease without it",
                        self.name, exc)
            body["metadata"]["annotations"][REPORT_ANNOTATION] = ""
            self._create_or_take_over(body)
        self._published = body["metadata"]["annotations"][REPORT_ANNOTATION]
        log.info("Lease %s acquired (renewed every %.1fs, expires after %ss)", self.name,
                 self.interval, LEASE_DURATION_SECONDS)

    def _create_or_take_over(self, body: dict[str, Any]) -> None:
        try:
            self.kube.create_lease(body)
        except Exception as exc:
            if status_of(exc) != 409:
                raise
            # the Lease of a previous process with our pod name: take it over
            self.kube.patch_lease(self.name, body)

    def _patch(self, patch: dict[str, Any]) -> None:
        try:
            self.kube.patch_lease(self.name, patch)
        except Exception as exc:
            if status_of(exc) != 404:
                raise
            log.warning("Lease %s was deleted by someone else; creating it again", self.name)
            self._create()

    def _renew(self) -> None:
        """A patch of its own, as small as can be: nothing in the report can stop it."""
        self._patch({"spec": {"renewTime": micro_time(time.time())}})

    def _publish(self) -> None:
        """Write the report when it changed since it was last written."""
        report = self.report().to_json()
        if report != self._published:
            self._patch({"metadata": {"annotations": {REPORT_ANNOTATION: report}}})
            self._published = report

    def _loop(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            self._poke.wait(max(0.0, last + self.interval - time.monotonic()))
            if self._stop.is_set():
                return
            gap = last + MIN_GAP_SECONDS - time.monotonic()
            if gap > 0:
                time.sleep(gap)
            self._poke.clear()
            try:
                self._renew()
            except Exception as exc:
                log.warning("Lease %s not renewed: %s", self.name, exc)
            try:
                self._publish()
                self._publish_failed = False
            except Exception as exc:
                # said once per failing stretch: the next rounds try again
                log.log(logging.DEBUG if self._publish_failed else logging.WARNING,
                        "Report of worker %s not published (%s); the Lease is still "
                        "renewed, the report is retried", self.name, exc)
                self._publish_failed = True
            last = time.monotonic()
