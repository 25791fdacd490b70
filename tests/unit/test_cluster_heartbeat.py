"""The worker's heartbeat: when it renews its Lease, what each patch carries, and how it
survives a refused report, a deleted Lease and a Lease left by a previous process."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kanal_worker.cluster.lease import MIN_GAP_SECONDS, Heartbeat
from kanal_worker.cluster.protocol import REPORT_ANNOTATION, TaskReport, WorkerReport
from tests.waiting import eventually

INTERVAL = 0.05
ANNOTATIONS_LIMIT = 256 * 1024
"""What the API server allows for all annotations of an object together."""
HUGE_PLUGINS = [{"class": f"com.example.Connector{i:06d}", "type": "sink", "version": "1" * 40}
                for i in range(6000)]
"""Plugins are never trimmed from a report: one with these cannot be made to fit."""


class Leases:
    """The Lease calls of ``Kube``, keeping one Lease in memory the way the API server
    treats merge patches (and refusing oversized annotations as it does)."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.patches: list[tuple[float, dict[str, Any]]] = []
        """Patches applied, with when."""
        self.refused = 0
        self.creates = 0
        self.deleted = False
        self.lock = threading.Lock()

    def create_lease(self, body: dict[str, Any]) -> None:
        with self.lock:
            if self.lease is not None:
                raise ApiException(status=409, reason="AlreadyExists")
            self._check(body)
            self.lease = body
            self.creates += 1

    def patch_lease(self, name: str, patch: dict[str, Any]) -> None:
        with self.lock:
            if self.lease is None:
                raise ApiException(status=404, reason="NotFound")
            merged = _merge(self.lease, patch)
            try:
                self._check(merged)
            except ApiException:
                self.refused += 1
                raise
            self.lease = merged
            self.patches.append((time.monotonic(), patch))

    def delete_lease(self, name: str) -> None:
        with self.lock:
            self.lease = None
            self.deleted = True

    @staticmethod
    def _check(body: dict[str, Any]) -> None:
        annotations = body["metadata"].get("annotations") or {}
        if sum(len(k) + len(v.encode()) for k, v in annotations.items()) > ANNOTATIONS_LIMIT:
            raise ApiException(status=422, reason="metadata.annotations: Too long")

    def renewals(self) -> list[float]:
        with self.lock:
            return [at for at, patch in self.patches if "spec" in patch]

    def report(self) -> WorkerReport:
        with self.lock:
            assert self.lease is not None
            return WorkerReport.from_json(self.lease["metadata"]["annotations"][
                REPORT_ANNOTATION])


def _merge(old: Any, patch: Any) -> Any:
    if not isinstance(old, dict) or not isinstance(patch, dict):
        return patch
    merged = dict(old)
    for key, value in patch.items():
        merged[key] = _merge(old.get(key), value)
    return merged


class Reports:
    """What the worker would report; tests change it as tasks would."""

    def __init__(self) -> None:
        self.current = WorkerReport()

    def __call__(self) -> WorkerReport:
        return self.current


@pytest.fixture
def leases() -> Leases:
    return Leases()


@pytest.fixture
def reports() -> Reports:
    return Reports()


def beating(leases: Leases, reports: Reports, name: str = "w1",
            interval: float = INTERVAL) -> Heartbeat:
    beat = Heartbeat(leases, name, "c1", "uid-1", reports, interval)  # type: ignore[arg-type]
    beat.start()
    return beat


@pytest.fixture
def heartbeat(leases: Leases, reports: Reports) -> Iterator[Heartbeat]:
    beat = beating(leases, reports)
    yield beat
    if not leases.deleted:
        beat.release()


def test_the_lease_names_its_holder_cluster_and_pod(leases: Leases, heartbeat: Heartbeat
                                                    ) -> None:
    assert leases.lease is not None
    metadata, spec = leases.lease["metadata"], leases.lease["spec"]
    assert metadata["labels"]["kanal.dev/cluster"] == "c1"
    assert metadata["ownerReferences"][0]["uid"] == "uid-1"
    assert spec["holderIdentity"] == "w1" and spec["leaseDurationSeconds"] == 6
    assert leases.report() == WorkerReport()


def test_renewals_are_small_patches_at_the_interval(leases: Leases, heartbeat: Heartbeat
                                                    ) -> None:
    eventually(lambda: len(leases.renewals()) >= 6)
    renewals = leases.renewals()
    gaps = [b - a for a, b in itertools.pairwise(renewals)]
    assert all(INTERVAL * 0.8 <= gap < INTERVAL + 0.5 for gap in gaps), gaps
    assert all(list(patch) == ["spec"] and list(patch["spec"]) == ["renewTime"]
               for _, patch in leases.patches)  # the report did not change: not re-sent


def test_a_changed_report_is_written_at_once_when_poked(leases: Leases,
                                                        reports: Reports) -> None:
    slow = beating(leases, reports, interval=60)
    try:
        time.sleep(MIN_GAP_SECONDS)
        reports.current = WorkerReport(tasks={"c/0": TaskReport("RUNNING", "t")})
        slow.poke()
        eventually(lambda: "c/0" in leases.report().tasks, timeout=5)  # not in 60 s
    finally:
        slow.release()


def test_bursts_of_pokes_are_coalesced(leases: Leases, reports: Reports) -> None:
    slow = beating(leases, reports, interval=60)
    try:
        before = len(leases.patches)
        for task in range(20):
            reports.current = WorkerReport(tasks={f"c/{task}": TaskReport("RUNNING", "t")})
            slow.poke()
            time.sleep(0.01)
        eventually(lambda: "c/19" in leases.report().tasks)
        assert len(leases.patches) - before <= 2 * 3  # a renewal and a report per round
    finally:
        slow.release()


def test_a_report_the_api_server_refuses_never_stops_renewals(leases: Leases,
                                                              reports: Reports,
                                                              heartbeat: Heartbeat) -> None:
    reports.current = WorkerReport(plugins=HUGE_PLUGINS)
    heartbeat.poke()
    renewals_go_on(leases, 5)
    assert leases.report().plugins == []  # the last report that fitted stays
    assert leases.refused >= 5  # retried every round
    reports.current = WorkerReport(plugins=HUGE_PLUGINS[:10])
    eventually(lambda: len(leases.report().plugins) == 10)


def renewals_go_on(leases: Leases, count: int = 3) -> None:
    start = len(leases.renewals())
    eventually(lambda: len(leases.renewals()) >= start + count)


def test_a_lease_is_made_even_when_its_report_is_refused(leases: Leases,
                                                        reports: Reports) -> None:
    reports.current = WorkerReport(plugins=HUGE_PLUGINS)
    beat = beating(leases, reports)
    try:
        assert leases.report() == WorkerReport()
        renewals_go_on(leases)
        leases.lease = None  # someone deleted it
        eventually(lambda: leases.lease is not None)
        assert leases.report() == WorkerReport()
        renewals_go_on(leases)
        reports.current = WorkerReport(plugins=HUGE_PLUGINS[:3])
        eventually(lambda: len(leases.report().plugins) == 3)
    finally:
        beat.release()


def test_an_oversized_report_is_trimmed_to_fit(leases: Leases, reports: Reports,
                                               heartbeat: Heartbeat) -> None:
    trace = "Traceback\n" + "x" * 3970 + "\nValueError: the cause"
    reports.current = WorkerReport(tasks={f"c/{i}": TaskReport("FAILED", "t", trace)
                                          for i in range(200)})
    heartbeat.poke()
    eventually(lambda: len(leases.report().tasks) == 200)
    assert all(t.trace and t.trace.endswith("the cause")
               for t in leases.report().tasks.values())


def test_a_deleted_lease_is_created_again_with_the_report(leases: Leases, reports: Reports,
                                                          heartbeat: Heartbeat) -> None:
    reports.current = WorkerReport(tasks={"c/0": TaskReport("RUNNING", "t")})
    leases.lease = None  # someone deleted it
    eventually(lambda: leases.creates == 2 and leases.lease is not None)
    assert "c/0" in leases.report().tasks


def test_a_lease_left_by_a_previous_process_is_taken_over(leases: Leases,
                                                          reports: Reports) -> None:
    old = WorkerReport(tasks={"c/0": TaskReport("RUNNING", "old")}).to_json()
    stale: dict[str, Any] = {
        "metadata": {"name": "w1", "annotations": {REPORT_ANNOTATION: old}},
        "spec": {"holderIdentity": "w1", "renewTime": "2020-01-01T00:00:00.000000Z"}}
    leases.lease = stale
    beat = beating(leases, reports)
    try:
        assert leases.report() == WorkerReport()  # the old process's tasks are not claimed
        assert leases.lease is not None
        assert leases.lease["spec"]["renewTime"] != "2020-01-01T00:00:00.000000Z"
    finally:
        beat.release()


def test_release_stops_renewing_and_deletes_the_lease(leases: Leases,
                                                      heartbeat: Heartbeat) -> None:
    heartbeat.release()
    assert leases.lease is None and leases.deleted
    count = len(leases.patches)
    time.sleep(INTERVAL * 3)
    assert len(leases.patches) == count
