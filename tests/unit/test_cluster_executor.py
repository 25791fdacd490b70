"""The cluster executor's decisions: which tasks it starts, stops, replaces, keeps and
abandons as assignments change, and what it reports meanwhile. Tasks here are runners
that only follow their target state (no Kafka)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping

import pytest

from kanal_worker.api.errors import RetriableError
from kanal_worker.cluster.executor import Assignment, Executor
from kanal_worker.cluster.protocol import SECRET_PROVIDER, TaskReport
from kanal_worker.config.providers import Lookup
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.process import StartBarrier
from kanal_worker.runtime.registry import PluginInfo
from kanal_worker.runtime.status import State, TargetState
from kanal_worker.runtime.task import TaskId, TaskRunner
from tests.waiting import eventually

WORKER = {"bootstrap.servers": "127.0.0.1:1", "task.shutdown.graceful.timeout.ms": "1000"}
SINK = {"name": "files", "connector.class": "FileStreamSink", "topics": "t",
        "file": "/tmp/out"}


class Task(TaskRunner):
    """Runs until stopped, in the state its target asks for; a stuck one ignores stop."""

    stuck = threading.Event()
    started_at = ended_at = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        super().start()

    def execute(self) -> None:
        if self.config.get("login"):
            raise PermissionError(f"login with {self.config['password']} refused")
        while not self.stopping:
            self._set(self.target.running_state)
            self.sleep(0.01)
        while self.config.get("stuck") and not self.stuck.is_set():
            time.sleep(0.01)
        self.ended_at = time.monotonic()


class Tasks(Executor):
    """An executor whose tasks are ``Task``s; it remembers every runner it started."""

    def __init__(self, providers: Mapping[str, Lookup] | None = None) -> None:
        self.changes = 0
        self.started: list[Task] = []
        self.barriers: dict[str, StartBarrier] = {}
        super().__init__(WORKER, "w1", MemoryOffsetStore(), providers or {}, self._changed)

    def _changed(self) -> None:
        self.changes += 1

    def _runner(self, plugin: PluginInfo, task_id: TaskId, config: Mapping[str, str],
                target: TargetState, barrier: StartBarrier) -> TaskRunner:
        runner = Task(task_id, config, self.worker, self.worker_id, target, self._on_status)
        self.started.append(runner)
        self.barriers[str(task_id)] = barrier
        return runner

    def states(self) -> dict[str, tuple[str, str]]:
        return {key: (r.state, r.token) for key, r in self.report().items()}


def assignment(task: int, token: str, connector: str = "files",
               target: TargetState = TargetState.STARTED, **config: str) -> Assignment:
    return Assignment(connector, task, token, {**SINK, "name": connector, **config}, target)


def assign(executor: Executor, *wanted: Assignment, keep: set[str] | None = None) -> None:
    executor.assign({a.key: a for a in wanted}, keep or set())


@pytest.fixture
def executor() -> Iterator[Tasks]:
    tasks = Tasks()
    tasks.start()
    yield tasks
    Task.stuck.set()
    tasks.stop_all(5)
    Task.stuck.clear()


def test_assigned_tasks_start_and_are_reported_with_their_token(executor: Tasks) -> None:
    assign(executor, assignment(0, "a"), assignment(1, "b"))
    eventually(lambda: executor.states() == {"files/0": ("RUNNING", "a"),
                                             "files/1": ("RUNNING", "b")})
    assert [str(r.id) for r in executor.started] == ["files-0", "files-1"]
    assert executor.changes > 0
    assert {str(r.id) for r in executor.runners()} == {"files-0", "files-1"}


def test_a_connectors_tasks_started_in_one_step_share_a_start_barrier(executor: Tasks) -> None:
    assign(executor, assignment(0, "a"), assignment(1, "b"),
           assignment(0, "c", connector="other"))
    eventually(lambda: len(executor.started) == 3)
    barriers = executor.barriers
    assert barriers["files-0"] is barriers["files-1"]
    assert barriers["other-0"] is not barriers["files-0"]


def test_a_new_token_replaces_the_task_after_it_stopped(executor: Tasks) -> None:
    assign(executor, assignment(0, "a"))
    eventually(lambda: executor.states() == {"files/0": ("RUNNING", "a")})
    first = executor.started[0]
    assign(executor, assignment(0, "b"))
    eventually(lambda: executor.states() == {"files/0": ("RUNNING", "b")})
    successor = executor.started[1]
    assert first.join(0) and first.status.state == State.UNASSIGNED
    assert successor.started_at >= first.ended_at > 0  # never both at once
    assert len(executor.started) == 2


def test_a_new_target_state_changes_the_running_task(executor: Tasks) -> None:
    assign(executor, assignment(0, "a"))
    eventually(lambda: executor.states() == {"files/0": ("RUNNING", "a")})
    assign(executor, assignment(0, "a", target=TargetState.PAUSED))
    eventually(lambda: executor.states() == {"files/0": ("PAUSED", "a")})
    assert len(executor.started) == 1  # paused in place, not restarted


def test_tasks_of_a_connector_being_replanned_keep_running(executor: Tasks) -> None:
    assign(executor, assignment(0, "a"), assignment(0, "x", connector="other"))
    eventually(lambda: len(executor.states()) == 2)
    assign(executor, keep={"files"})
    eventually(lambda: list(executor.states()) == ["files/0"])
    assert executor.started[0].join(0) is False  # still running
    assert executor.started[1].join(1)


def test_an_unassigned_task_stays_reported_until_it_stopped(executor: Tasks) -> None:
    assign(executor, assignment(0, "a", stuck="yes"))
    eventually(lambda: executor.states() == {"files/0": ("RUNNING", "a")})
    assign(executor)
    time.sleep(0.15)
    assert executor.states() == {"files/0": ("RUNNING", "a")}  # stopping, not gone
    Task.stuck.set()
    eventually(lambda: executor.states() == {})


def test_a_task_that_does_not_stop_is_abandoned_after_the_graceful_timeout(
        executor: Tasks) -> None:
    assign(executor, assignment(0, "a", stuck="yes"))
    eventually(lambda: executor.states() == {"files/0": ("RUNNING", "a")})
    asked = time.monotonic()
    assign(executor, assignment(0, "b"))
    eventually(lambda: executor.states() == {"files/0": ("RUNNING", "b")})
    assert time.monotonic() - asked >= 1.0  # task.shutdown.graceful.timeout.ms
    assert executor.started[0].join(0) is False  # abandoned, still stuck


def test_a_task_that_cannot_start_is_reported_failed_with_the_reason(executor: Tasks
                                                                     ) -> None:
    unknown = assignment(0, "a")
    assign(executor, Assignment("files", 0, "a", {**unknown.config,
                                                  "connector.class": "NoSuchConnector"},
                                TargetState.STARTED))
    eventually(lambda: "files/0" in executor.report())
    report = executor.report()["files/0"]
    assert (report.state, report.token) == ("FAILED", "a")
    assert report.trace is not None and "NoSuchConnector" in report.trace
    assert executor.started == []
    assign(executor, assignment(0, "b"))  # a fixed plan starts it
    eventually(lambda: executor.states() == {"files/0": ("RUNNING", "b")})


class Secrets:
    """A ``${secret:...}`` lookup whose values can rotate or become unreadable."""

    def __init__(self) -> None:
        self.values = {("creds", "password"): "first-value"}
        self.down = False

    def __call__(self, name: str | None, key: str) -> str:
        if self.down:
            raise RetriableError("the API server did not answer")
        return self.values[(name or "", key)]


def test_a_rotated_secret_restarts_the_task_and_values_never_reach_traces(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kanal_worker.cluster.executor.SECRET_REFRESH_SECONDS", 0.05)
    secrets = Secrets()
    tasks = Tasks({SECRET_PROVIDER: secrets})
    tasks.start()

    def trace() -> str | None:
        report: TaskReport | None = tasks.report().get("files/0")
        return report.trace if report is not None and report.state == State.FAILED else None

    try:
        assign(tasks, assignment(0, "a", password="${secret:creds:password}", login="yes"))
        eventually(lambda: trace() is not None)
        assert tasks.started[0].config["password"] == "first-value"
        assert "login with [hidden] refused" in (trace() or "")
        secrets.down = True  # unreadable: keeps what it has
        time.sleep(0.2)
        assert len(tasks.started) == 1
        secrets.down = False
        secrets.values[("creds", "password")] = "second-value"
        eventually(lambda: len(tasks.started) == 2 and trace() is not None)
        assert tasks.started[1].config["password"] == "second-value"
        assert "login with [hidden] refused" in (trace() or "")
        assert "value" not in (trace() or "")
    finally:
        tasks.stop_all(5)


def test_a_secret_the_api_server_cannot_give_yet_is_retried() -> None:
    secrets = Secrets()
    secrets.down = True
    tasks = Tasks({SECRET_PROVIDER: secrets})
    tasks.start()
    try:
        assign(tasks, assignment(0, "a", password="${secret:creds:password}"))
        time.sleep(0.6)
        assert tasks.report() == {}  # neither started nor failed
        secrets.down = False
        eventually(lambda: tasks.states() == {"files/0": ("RUNNING", "a")})
    finally:
        tasks.stop_all(5)


def test_stop_all_stops_every_task(executor: Tasks) -> None:
    assign(executor, assignment(0, "a"), assignment(1, "b"))
    eventually(lambda: len(executor.states()) == 2)
    executor.stop_all(5)
    assert all(runner.join(0) for runner in executor.started)
