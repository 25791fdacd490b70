"""The operator's reconcile loops: backoff per object, wake-ups, status written only on
change, worker Leases joining and expiring. The API server is replaced by a recorder of
the calls the controllers make (their decisions are what is tested here)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from kopf._cogs.aiokits.aioenums import FlagSetter
from kubernetes.client.exceptions import ApiException

from kanal_operator import controllers, kube
from kanal_operator.controllers import (
    MAX_ERROR_BACKOFF,
    REAPPLY_SECONDS,
    RESYNC_SECONDS,
    STALE_LEASE_SECONDS,
    ClusterController,
    ConnectorController,
)
from kanal_operator.world import World
from kanal_worker.cluster.lease import micro_time
from kanal_worker.cluster.protocol import (
    CLUSTERS,
    CONNECTORS,
    LABEL_CLUSTER,
    REPORT_ANNOTATION,
    TaskReport,
    WorkerReport,
)

NS = "ns"


class Api(kube.Api):
    """Records the operator's writes; ``failing`` makes status writes of those names fail."""

    def __init__(self) -> None:  # no client: nothing reaches an API server
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.applied: list[dict[str, Any]] = []
        self.deleted_leases: list[str] = []
        self.failing: set[str] = set()

    def patch_status(self, plural: str, namespace: str, name: str,
                     patch: dict[str, Any]) -> None:
        if name in self.failing:
            raise ApiException(status=500, reason="etcd is unhappy")
        self.patches.append((plural, name, patch))

    def cluster_exists(self, namespace: str, name: str) -> bool:
        return True

    def apply(self, manifest: dict[str, Any]) -> None:
        self.applied.append(manifest)

    def connectors(self, namespace: str) -> list[dict[str, Any]]:
        return []

    def delete_lease(self, namespace: str, name: str) -> None:
        self.deleted_leases.append(name)

    def statuses(self, plural: str, name: str) -> list[dict[str, Any]]:
        return [patch for kind, who, patch in self.patches if (kind, who) == (plural, name)]


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    posted: list[tuple[str, str, str]] = []
    monkeypatch.setattr(controllers, "_post",
                        lambda body, kind, reason, message: posted.append((kind, reason,
                                                                           message)))
    return posted


def connector_body(name: str = "gen", tasks: int = 2) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "generation": 1, "uid": f"u-{name}"},
            "spec": {"clusterRef": {"name": "c"}, "class": "VehicleTelemetrySource",
                     "tasksMax": tasks, "config": {"topic": "t"}}}


def cluster_body(generation: int = 1, replicas: int = 2) -> dict[str, Any]:
    return {"metadata": {"name": "c", "namespace": NS, "generation": generation, "uid": "u-c"},
            "spec": {"replicas": replicas, "bootstrapServers": "kafka:9092"}}


def heartbeat(world: World, worker: str, report: WorkerReport | None = None) -> None:
    world.observe_lease(NS, {
        "metadata": {"name": worker, "labels": {LABEL_CLUSTER: "c"},
                     "annotations": {REPORT_ANNOTATION: (report or WorkerReport()).to_json()}},
        "spec": {"renewTime": micro_time(time.time()), "leaseDurationSeconds": 6}}, False)


def expire(world: World, worker: str) -> None:
    """Make the operator's view of ``worker`` as old as an expired Lease."""
    world.cluster(NS, "c").workers[worker].observed -= 7


def run(coroutine: Awaitable[Any]) -> Any:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def two_workers_and_a_connector() -> tuple[World, Api, ConnectorController, float]:
    """Two live workers, and a connector reconciled once (with the wait it returned)."""
    world, api = World(), Api()
    heartbeat(world, "w1")
    heartbeat(world, "w2")
    controller = ConnectorController(world, api, NS, "gen")
    return world, api, controller, run(controller.step(connector_body()))  # type: ignore[arg-type]


def test_a_connector_is_placed_and_its_status_written_only_when_it_changes(
        events: list[tuple[str, str, str]]) -> None:
    world, api, controller, wait = two_workers_and_a_connector()
    body = connector_body()
    assert 5 < wait <= 6.05  # the next Lease expiry is due before the resync
    [patch] = api.statuses(CONNECTORS, "gen")
    assert sorted(t["worker"] for t in patch["tasks"]) == ["w1", "w2"]
    assert patch["conditions"][0]["reason"] == "Progressing"
    run(controller.step(body))  # type: ignore[arg-type]
    assert len(api.statuses(CONNECTORS, "gen")) == 1  # nothing changed: nothing written
    for task in controller.status.tasks or []:
        assert task.worker is not None
        heartbeat(world, task.worker, WorkerReport(tasks={f"gen/{task.id}": TaskReport(
            "RUNNING", task.token)}))
    run(controller.step(body))  # type: ignore[arg-type]
    assert api.statuses(CONNECTORS, "gen")[-1]["conditions"][0]["reason"] == "Running"
    assert [reason for _, reason, _ in events] == ["Running"]


def test_the_tasks_of_a_worker_whose_lease_expired_move(
        events: list[tuple[str, str, str]]) -> None:
    world, _, controller, _ = two_workers_and_a_connector()
    expire(world, "w2")
    wait = run(controller.step(connector_body()))  # type: ignore[arg-type]
    assert {t.worker for t in controller.status.tasks or []} == {"w1"}
    assert [reason for _, reason, _ in events] == ["TaskReassigned"]
    assert "from w2" in events[0][2]
    assert wait <= 6.05
    expire(world, "w1")
    assert run(controller.step(connector_body())) == RESYNC_SECONDS  # type: ignore[arg-type]
    assert controller.status.conditions and controller.status.conditions[0].reason == \
        "NoWorkers"


def test_the_cluster_applies_its_workloads_once_per_generation_and_tells_of_workers(
        events: list[tuple[str, str, str]]) -> None:
    world, api = World(), Api()
    controller = ClusterController(world, api, NS, "c", "kanal:test")
    run(controller.step(cluster_body()))  # type: ignore[arg-type]
    kinds = sorted(m["kind"] for m in api.applied)
    assert "Deployment" in kinds and "Role" in kinds
    applied = len(api.applied)
    assert api.statuses(CLUSTERS, "c")[-1]["conditions"][0]["reason"] == "WaitingForWorkers"
    heartbeat(world, "w1")
    heartbeat(world, "w2")
    run(controller.step(cluster_body()))  # type: ignore[arg-type]
    assert len(api.applied) == applied  # same generation: not applied again
    assert api.statuses(CLUSTERS, "c")[-1]["conditions"][0]["reason"] == "WorkersReady"
    expire(world, "w2")
    run(controller.step(cluster_body(generation=2)))  # type: ignore[arg-type]
    assert len(api.applied) == 2 * applied
    assert [reason for _, reason, _ in events] == [
        "WaitingForWorkers", "WorkerJoined", "WorkerJoined", "WorkersReady", "WorkerLost",
        "WaitingForWorkers"]


def test_workloads_are_applied_again_after_a_while_and_stale_leases_collected(
        events: list[tuple[str, str, str]]) -> None:
    world, api = World(), Api()
    controller = ClusterController(world, api, NS, "c", "kanal:test")
    heartbeat(world, "gone")
    run(controller.step(cluster_body()))  # type: ignore[arg-type]
    applied = len(api.applied)
    controller._applied_at -= REAPPLY_SECONDS  # puts back hand-made edits of the children
    world.cluster(NS, "c").workers["gone"].observed -= STALE_LEASE_SECONDS + 10
    run(controller.step(cluster_body()))  # type: ignore[arg-type]
    assert len(api.applied) == 2 * applied
    assert api.deleted_leases == ["gone"]
    assert "gone" not in world.cluster(NS, "c").workers


class Stopper:
    """kopf's daemon stop flag, as kopf hands it to a daemon."""

    def __init__(self) -> None:
        self.setter: FlagSetter[Any] = FlagSetter()
        self.waiter = self.setter.async_waiter


def test_failures_back_off_exponentially_and_a_success_resets_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    outcomes: Iterator[float | Exception] = iter(
        [RuntimeError("1"), RuntimeError("2"), RuntimeError("3"), 7.0, RuntimeError("4"),
         *[RuntimeError("again")] * 8])

    async def main() -> None:
        stop = Stopper()

        async def step() -> float:
            outcome = next(outcomes, None)
            if outcome is None:
                stop.setter.set()
                return 0.0
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        async def sleep(wakeup: asyncio.Event, stopped: Any, timeout: float) -> None:
            waits.append(timeout)

        monkeypatch.setattr(controllers, "_sleep", sleep)
        await controllers._reconcile_until_stopped(step, asyncio.Event(), stop.waiter, "x")

    run(main())
    assert waits[:9] == [2.0, 4.0, 8.0, 7.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    capped = waits[9:-1]  # past the cap: jitter below it, so objects retry apart
    assert len(capped) == 4 and all(0 <= wait <= MAX_ERROR_BACKOFF for wait in capped)
    assert waits[-1] == 0.0


def test_the_wait_ends_on_a_wakeup_a_stop_or_its_timeout() -> None:
    async def timed(action: Callable[[asyncio.Event, Stopper], None]) -> float:
        wakeup, stop = asyncio.Event(), Stopper()
        asyncio.get_running_loop().call_later(0.05, action, wakeup, stop)
        start = time.monotonic()
        await controllers._sleep(wakeup, stop.waiter, 0.5)
        assert not wakeup.is_set()  # consumed: the next wait waits again
        return time.monotonic() - start

    assert run(timed(lambda wakeup, stop: wakeup.set())) < 0.3
    assert run(timed(lambda wakeup, stop: stop.setter.set())) < 0.3
    assert run(timed(lambda wakeup, stop: None)) >= 0.45


class Counted(ConnectorController):
    steps: dict[str, int] = {}

    async def step(self, body: Any) -> float:
        self.steps[self.name] = self.steps.get(self.name, 0) + 1
        return await super().step(body)


def test_a_failing_connector_never_stalls_another(events: list[tuple[str, str, str]]) -> None:
    world, api = World(), Api()
    api.failing.add("bad")
    heartbeat(world, "w1")

    async def main() -> None:
        stop = Stopper()
        daemons = [asyncio.create_task(Counted(world, api, NS, name).run(
            connector_body(name), stop.waiter))  # type: ignore[arg-type]
            for name in ("good", "bad")]
        await asyncio.sleep(0.2)
        for round_ in range(3):  # a worker's report changed: every connector is woken
            heartbeat(world, "w1", WorkerReport(tasks={"other/0": TaskReport(
                "RUNNING", str(round_))}))
            await asyncio.sleep(0.2)
        stop.setter.set()
        await asyncio.gather(*daemons)

    run(main())
    assert Counted.steps["good"] == 4 and Counted.steps["bad"] >= 1
    assert len(api.statuses(CONNECTORS, "good")) == 1
    assert api.statuses(CONNECTORS, "bad") == []
