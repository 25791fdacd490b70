"""Worker liveness from Leases, judged by the operator's own clock."""

from __future__ import annotations

from typing import Any

from kanal_operator.world import World
from kanal_worker.cluster.protocol import TaskReport, WorkerReport

WALL = 1_700_000_000.0


def lease(name: str, renew: str, report: WorkerReport | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kanal.dev/cluster": "c"},
                         "annotations": {"kanal.dev/report": (report or WorkerReport())
                                         .to_json()}},
            "spec": {"renewTime": renew, "leaseDurationSeconds": 6}}


def stamp(offset: float) -> str:
    from datetime import UTC, datetime
    return datetime.fromtimestamp(WALL + offset, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_worker_lives_while_it_renews() -> None:
    world = World()
    world.observe_lease("ns", lease("w1", stamp(0)), False, now=100, wall=WALL)
    state = world.cluster("ns", "c")
    assert list(state.live(100)) == ["w1"]
    assert state.next_expiry(101) == 5
    world.observe_lease("ns", lease("w1", stamp(2)), False, now=104, wall=WALL + 2)
    assert list(state.live(109)) == ["w1"]
    assert state.live(110.5) == {}


def test_a_released_lease_ends_the_worker_at_once() -> None:
    world = World()
    world.observe_lease("ns", lease("w1", stamp(0)), False, now=100, wall=WALL)
    world.cluster("ns", "c").connectors.add("conn")
    wake = world.wakeup("ns", "conn")
    wake.clear()
    world.observe_lease("ns", lease("w1", stamp(0)), True, now=101, wall=WALL)
    assert world.cluster("ns", "c").live(101) == {}
    assert wake.is_set()


def test_a_stale_lease_found_at_startup_is_not_alive() -> None:
    world = World()
    world.observe_lease("ns", lease("old", stamp(-3600)), False, now=100, wall=WALL)
    assert world.cluster("ns", "c").live(100) == {}


def test_report_changes_wake_connectors_renewals_do_not() -> None:
    world = World()
    world.observe_lease("ns", lease("w1", stamp(0)), False, now=100, wall=WALL)
    world.cluster("ns", "c").connectors.add("conn")
    wake = world.wakeup("ns", "conn")
    wake.clear()
    world.observe_lease("ns", lease("w1", stamp(2)), False, now=102, wall=WALL + 2)
    assert not wake.is_set()
    report = WorkerReport(tasks={"conn/0": TaskReport("RUNNING", "t")})
    world.observe_lease("ns", lease("w1", stamp(3), report), False, now=103, wall=WALL + 3)
    assert wake.is_set()
    assert world.cluster("ns", "c").workers["w1"].report == report


def test_load_counts_other_connectors_on_live_workers() -> None:
    world = World()
    world.observe_lease("ns", lease("w1", stamp(0)), False, now=100, wall=WALL)
    state = world.cluster("ns", "c")
    state.placements = {"a": {0: "w1", 1: "dead"}, "b": {0: "w1"}}
    assert state.load("b", state.live(100)) == {"w1": 1}


def pod(name: str, waiting: dict[str, str] | None) -> dict[str, Any]:
    state = {"waiting": waiting} if waiting else {"running": {}}
    return {"metadata": {"name": name, "labels": {"kanal.dev/cluster": "c"}},
            "status": {"containerStatuses": [{"name": "worker", "state": state}]}}


def test_a_worker_pod_that_cannot_pull_its_image_is_remembered_until_it_runs() -> None:
    world = World()
    state = world.cluster("ns", "c")
    world.observe_pod("ns", pod("p1", {"reason": "ContainerCreating"}), False)
    assert state.stuck == {} and not state.changed.is_set()
    world.observe_pod("ns", pod("p1", {"reason": "ErrImageNeverPull", "message":
                                       'Container image "kanal:nope" is not present'}), False)
    assert state.stuck == {"p1": 'ErrImageNeverPull: Container image "kanal:nope" is not present'}
    assert state.changed.is_set()
    world.observe_pod("ns", pod("p1", None), False)
    assert state.stuck == {}
    world.observe_pod("ns", pod("p2", {"reason": "CrashLoopBackOff"}), False)
    world.observe_pod("ns", pod("p2", {"reason": "CrashLoopBackOff"}), True)
    assert state.stuck == {}
