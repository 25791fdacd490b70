"""A worker's heartbeat against the real kube-apiserver: a report too large for a Lease
annotation never stops the renewals, so the operator keeps the worker alive."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from dev.kube_local import wait_for
from kanal_operator.world import World
from kanal_worker.cluster.kube import Kube
from kanal_worker.cluster.lease import Heartbeat
from kanal_worker.cluster.protocol import (
    REPORT_ANNOTATION,
    REPORT_TRIMMED,
    TaskReport,
    WorkerReport,
)

pytestmark = pytest.mark.e2e

INTERVAL = 0.5
TRACE = "Traceback (most recent call last):\n" + "  frame\n" * 600 + "ValueError: the cause"


@pytest.fixture(scope="module")
def namespace(kube: dict[str, str]) -> Iterator[str]:
    config.load_kube_config(config_file=kube["KUBECONFIG"])  # type: ignore[no-untyped-call]
    name = f"heartbeat-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


class Reports:
    def __init__(self, report: WorkerReport) -> None:
        self.current = report

    def __call__(self) -> WorkerReport:
        return self.current


def lease(kube: Kube, name: str) -> dict[str, Any]:
    found = [item for item in kube.list_leases("kanal.dev/cluster=c1")
             if item["metadata"]["name"] == name]
    assert found, f"Lease {name} is gone"
    return found[0]


def renewals(kube: Kube, name: str, count: int) -> list[dict[str, Any]]:
    """The Lease as it is after each of the next ``count`` renewals."""
    seen = [lease(kube, name)]
    deadline = time.monotonic() + count * INTERVAL + 10
    while len(seen) <= count:
        assert time.monotonic() < deadline, f"{len(seen) - 1} renewals, {count} expected"
        time.sleep(INTERVAL / 5)
        current = lease(kube, name)
        if current["spec"]["renewTime"] != seen[-1]["spec"]["renewTime"]:
            seen.append(current)
    return seen[1:]


def test_an_oversized_report_is_trimmed_and_renewals_go_on(namespace: str) -> None:
    kube = Kube(namespace)
    failing = {f"sink/{i}": TaskReport("FAILED", f"t{i}", TRACE[-4000:], 1.0)
               for i in range(120)}
    reports = Reports(WorkerReport(tasks=failing))
    assert len(WorkerReport._json(reports.current)) > 256 * 1024
    beat = Heartbeat(kube, "worker-a", "c1", None, reports, INTERVAL)
    beat.start()
    world = World()
    try:
        for body in renewals(kube, "worker-a", 3):
            text = body["metadata"]["annotations"][REPORT_ANNOTATION]
            report = WorkerReport.from_json(text)
            assert set(report.tasks) == set(failing)
            trace = report.tasks["sink/7"].trace
            assert trace is not None and trace.startswith(REPORT_TRIMMED)
            assert trace.endswith("ValueError: the cause")
            world.observe_lease(namespace, body, deleted=False)
        assert set(world.cluster(namespace, "c1").live(time.monotonic())) == {"worker-a"}
    finally:
        beat.release()


def test_a_report_the_api_server_refuses_does_not_stop_renewals(namespace: str) -> None:
    kube = Kube(namespace)
    reports = Reports(WorkerReport(tasks={"sink/0": TaskReport("RUNNING", "t0")}))
    beat = Heartbeat(kube, "worker-b", "c1", None, reports, INTERVAL)
    beat.start()
    try:
        wait_for(lambda: "sink/0" in WorkerReport.from_json(
            lease(kube, "worker-b")["metadata"]["annotations"][REPORT_ANNOTATION]).tasks,
            10, "the first report")
        # plugins are never trimmed: the API server refuses this report (422)
        reports.current = WorkerReport(plugins=[
            {"class": f"com.example.Connector{i:06d}", "type": "sink", "version": "1" * 40}
            for i in range(6000)])
        beat.poke()
        for body in renewals(kube, "worker-b", 3):
            kept = WorkerReport.from_json(body["metadata"]["annotations"][REPORT_ANNOTATION])
            assert list(kept.tasks) == ["sink/0"] and kept.plugins == []
    finally:
        beat.release()
    assert not [item for item in kube.list_leases("kanal.dev/cluster=c1")
                if item["metadata"]["name"] == "worker-b"]
