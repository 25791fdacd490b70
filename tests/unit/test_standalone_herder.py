"""The standalone herder's decisions: which connectors it creates, replans, restarts,
pauses and stops, what it answers about them, and when offsets may change. Tasks here are
runners that only follow their target state (no Kafka); connectors are test plugins."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from kanal_worker.api import ConfigError, ConnectError, Settings, SinkConnector, SinkTask, setting
from kanal_worker.api.plugins import SourceConnector, SourceTask
from kanal_worker.runtime import registry, standalone
from kanal_worker.runtime.herder import (
    OFFSETS_ALTERED,
    OFFSETS_RESET,
    BadRequestError,
    ConflictError,
    ConnectorOffset,
    InvalidConfigError,
    NotFoundError,
)
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.process import StartBarrier
from kanal_worker.runtime.registry import PluginInfo
from kanal_worker.runtime.standalone import StandaloneHerder
from kanal_worker.runtime.status import State, TargetState
from kanal_worker.runtime.task import StatusListener, TaskId, TaskRunner
from tests.waiting import eventually

WORKER = {"bootstrap.servers": "127.0.0.1:1"}


class PlanSettings(Settings):
    plan_fail: bool = setting(False, key="plan.fail", doc="Fail while planning tasks.")


class PlannedSink(SinkConnector[PlanSettings]):
    settings = PlanSettings
    task_class = SinkTask
    version = "1.2.3"

    def task_configs(self, config: Mapping[str, str], max_tasks: int) -> list[dict[str, str]]:
        if config.get("plan.fail") == "true":
            raise ConnectError("cannot plan")
        return [{**config, "task.index": str(index)} for index in range(max_tasks)]


class PlannedSource(SourceConnector[PlanSettings]):
    settings = PlanSettings
    task_class = SourceTask


FAILING: set[str] = set()
"""Ids of the tasks that fail when they start."""


class Task(TaskRunner):
    """Runs until stopped in the state its target asks for; one in ``FAILING`` fails."""

    def execute(self) -> None:
        self.active_topics.add(self.config.get("topics", "produced"))
        if str(self.id) in FAILING:
            raise ConnectError("task broke")
        while not self.stopping:
            self._set(self.target.running_state)
            self.sleep(0.01)


@pytest.fixture(autouse=True)
def test_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real = registry.entry_points

    def with_test_connectors(group: str) -> list[EntryPoint]:
        found = list(real(group=group))
        if group == registry.GROUPS["connector"]:
            found += [EntryPoint(name, f"{__name__}:{name}", group)
                      for name in ("PlannedSink", "PlannedSource")]
        return found

    def clear() -> None:
        registry._entry_points.cache_clear()
        registry._load.cache_clear()
        registry._index.cache_clear()

    clear()
    monkeypatch.setattr(registry, "entry_points", with_test_connectors)
    yield
    clear()


@pytest.fixture
def started() -> Iterator[list[Task]]:
    yield []
    FAILING.clear()


def env(path: str | None, key: str) -> str:
    if key != "GOOD":
        raise ConfigError(key, f"no variable {key}")
    return "value"


@pytest.fixture
def barriers() -> dict[str, StartBarrier | None]:
    """The start barrier each task's latest runner was given."""
    return {}


@pytest.fixture
def herder(monkeypatch: pytest.MonkeyPatch, started: list[Task],
           barriers: dict[str, StartBarrier | None]) -> Iterator[StandaloneHerder]:
    def task_runner(plugin: PluginInfo, task_id: TaskId, config: Mapping[str, str],
                    worker: Mapping[str, str], worker_id: str, target: TargetState,
                    on_status: StatusListener, offsets: Any,
                    active_topics: set[str], tasks: int = 1,
                    barrier: StartBarrier | None = None) -> TaskRunner:
        runner = Task(task_id, config, worker, worker_id, target, on_status)
        runner.active_topics = active_topics
        started.append(runner)
        barriers[str(task_id)] = barrier
        return runner

    monkeypatch.setattr(standalone, "task_runner", task_runner)
    herder = StandaloneHerder(WORKER, "worker-1", MemoryOffsetStore(),
                              {"env": env})
    yield herder
    herder.stop_all(5)


def sink(**config: str) -> dict[str, str]:
    return {"connector.class": "PlannedSink", "topics": "orders", "tasks.max": "2", **config}


def source(**config: str) -> dict[str, str]:
    return {"connector.class": "PlannedSource", "tasks.max": "1", **config}


def states(herder: StandaloneHerder, name: str) -> tuple[str, list[str]]:
    status = herder.connector_status(name)
    return status["connector"]["state"], [task["state"] for task in status["tasks"]]


def test_a_created_connector_plans_and_starts_its_tasks(herder: StandaloneHerder,
                                                        started: list[Task]) -> None:
    assert herder.put_connector("orders", sink()) is True
    assert herder.connectors() == ["orders"]
    assert [c["task.index"] for c in herder.task_configs("orders")] == ["0", "1"]
    assert herder.connector_config("orders")["name"] == "orders"
    eventually(lambda: states(herder, "orders") == ("RUNNING", ["RUNNING", "RUNNING"]))
    status = herder.connector_status("orders")
    assert status["type"] == "sink"
    assert status["tasks"][1] == {"id": 1, "state": "RUNNING", "worker_id": "worker-1",
                                  "version": "1.2.3"}
    assert herder.connector_info("orders")["tasks"] == [
        {"connector": "orders", "task": 0}, {"connector": "orders", "task": 1}]
    assert herder.task_status("orders", 1)["state"] == "RUNNING"
    assert [str(task.id) for task in started] == ["orders-0", "orders-1"]


def test_putting_the_same_config_again_changes_nothing_and_another_replans(
        herder: StandaloneHerder, started: list[Task]) -> None:
    herder.put_connector("orders", sink())
    assert herder.put_connector("orders", sink()) is False
    assert len(started) == 2
    assert herder.put_connector("orders", sink(**{"tasks.max": "3"})) is False
    assert len(started) == 5
    assert all(task.join(0) is not False for task in started[:2])  # the old ones stopped
    assert len(herder.task_configs("orders")) == 3
    with pytest.raises(ConflictError, match="already exists"):
        herder.put_connector("orders", sink(), create_only=True)


def test_a_bad_config_lists_every_error_and_creates_nothing(herder: StandaloneHerder) -> None:
    with pytest.raises(InvalidConfigError) as info:
        herder.put_connector("a/b", {"connector.class": "PlannedSink", "tasks.max": "x"})
    assert set(info.value.errors) == {"name", "tasks.max"}
    with pytest.raises(InvalidConfigError, match="topics"):
        herder.put_connector("b", {"connector.class": "PlannedSink"})
    with pytest.raises(InvalidConfigError, match=r"connector\.class"):
        herder.put_connector("c", {"connector.class": "NoSuchConnector"})
    assert herder.connectors() == []


def test_initial_state_stopped_plans_nothing_until_resumed(herder: StandaloneHerder,
                                                           started: list[Task]) -> None:
    herder.put_connector("orders", sink(), initial_state="STOPPED")
    assert states(herder, "orders") == ("STOPPED", [])
    assert herder.task_configs("orders") == [] and started == []
    herder.set_target_state("orders", TargetState.STARTED)
    eventually(lambda: states(herder, "orders") == ("RUNNING", ["RUNNING", "RUNNING"]))
    with pytest.raises(BadRequestError, match="Invalid initial_state"):
        herder.put_connector("other", sink(), initial_state="SLEEPING")


def test_pause_reaches_the_running_tasks_and_stop_ends_them(herder: StandaloneHerder,
                                                            started: list[Task]) -> None:
    herder.put_connector("orders", sink())
    herder.set_target_state("orders", TargetState.PAUSED)
    eventually(lambda: states(herder, "orders") == ("PAUSED", ["PAUSED", "PAUSED"]))
    herder.set_target_state("orders", TargetState.STOPPED)
    assert states(herder, "orders") == ("STOPPED", [])
    assert herder.task_configs("orders") == []
    assert all(task.join(0) for task in started)


def test_a_connector_that_cannot_plan_is_failed_with_its_trace(herder: StandaloneHerder
                                                               ) -> None:
    herder.put_connector("orders", sink(**{"plan.fail": "true"}))
    status = herder.connector_status("orders")
    assert status["connector"]["state"] == "FAILED"
    assert "cannot plan" in status["connector"]["trace"]
    assert status["tasks"] == []


def test_a_task_whose_config_cannot_be_resolved_fails_alone(herder: StandaloneHerder) -> None:
    herder.put_connector("orders", sink(**{"secret": "${env:GOOD}", "tasks.max": "1"}))
    eventually(lambda: states(herder, "orders") == ("RUNNING", ["RUNNING"]))
    assert herder.task_configs("orders")[0]["secret"] == "${env:GOOD}"  # never resolved
    herder.put_connector("broken", sink(**{"secret": "${env:MISSING}", "tasks.max": "1"}))
    eventually(lambda: states(herder, "broken") == ("RUNNING", ["FAILED"]))
    assert "MISSING" in herder.task_status("broken", 0)["trace"]


def test_validation_sees_the_placeholders_its_providers_resolve(
        herder: StandaloneHerder) -> None:
    """As Apache validates the transformed configuration: a value that is valid once
    resolved passes, one that cannot be resolved is checked as written."""
    def environment(_path: str | None, key: str) -> str:
        if key != "TOLERANCE":
            raise ConfigError(key, f"no variable {key}")
        return "all"

    herder.providers = {"env": environment}
    resolvable = sink(**{"name": "tolerant", "errors.tolerance": "${env:TOLERANCE}"})
    assert herder.validate_config("PlannedSink", resolvable)["error_count"] == 0
    herder.put_connector("tolerant", resolvable)
    unresolvable = herder.validate_config("PlannedSink",
                                          sink(**{"name": "tolerant",
                                                  "errors.tolerance": "${env:ELSEWHERE}"}))
    assert unresolvable["error_count"] == 1
    assert [c["value"]["errors"] for c in unresolvable["configs"]
            if c["value"]["name"] == "errors.tolerance"] != [[]]


def test_restart_picks_the_tasks_asked_for(herder: StandaloneHerder,
                                           started: list[Task]) -> None:
    herder.put_connector("orders", sink())
    eventually(lambda: states(herder, "orders") == ("RUNNING", ["RUNNING", "RUNNING"]))
    assert herder.restart("orders", include_tasks=True, only_failed=True) is False
    assert len(started) == 2
    FAILING.add("orders-1")
    herder.restart_task("orders", 1)
    eventually(lambda: states(herder, "orders") == ("RUNNING", ["RUNNING", "FAILED"]))
    first = started[0]
    assert herder.restart("orders", include_tasks=True, only_failed=True) is True
    assert started[0] is first and not first.join(0)  # the healthy task kept running
    assert herder.restart("orders", include_tasks=True, only_failed=False) is True
    assert first.join(0)
    assert herder.restart("orders", include_tasks=False, only_failed=False) is False
    with pytest.raises(NotFoundError, match="orders-7"):
        herder.restart_task("orders", 7)


def test_the_tasks_started_together_share_a_start_barrier_and_a_restarted_one_has_none(
        herder: StandaloneHerder, barriers: dict[str, StartBarrier | None]) -> None:
    herder.put_connector("orders", sink())
    assert barriers["orders-0"] is not None and barriers["orders-0"] is barriers["orders-1"]
    herder.restart_task("orders", 1)
    assert barriers["orders-1"] is None


def test_unknown_connectors_and_tasks_are_not_found(herder: StandaloneHerder) -> None:
    for ask in (lambda: herder.connector_config("nope"), lambda: herder.delete_connector("nope"),
                lambda: herder.connector_status("nope"),
                lambda: herder.set_target_state("nope", TargetState.PAUSED)):
        with pytest.raises(NotFoundError, match="Connector nope not found"):
            ask()
    herder.put_connector("orders", sink())
    with pytest.raises(NotFoundError, match="Task orders-5 not found"):
        herder.task_status("orders", 5)


def test_delete_stops_the_tasks_and_forgets_the_connector(herder: StandaloneHerder,
                                                          started: list[Task]) -> None:
    herder.put_connector("orders", sink())
    herder.delete_connector("orders")
    assert herder.connectors() == [] and herder.runners() == []
    assert all(task.join(0) for task in started)


def test_active_topics_are_shared_by_the_tasks_and_can_be_reset(herder: StandaloneHerder
                                                                ) -> None:
    herder.put_connector("orders", sink())
    eventually(lambda: herder.active_topics("orders") == ["orders"])
    herder.reset_active_topics("orders")
    assert herder.active_topics("orders") == []


def test_source_offsets_change_only_while_stopped(herder: StandaloneHerder) -> None:
    herder.put_connector("files", source())
    wanted = [ConnectorOffset({"file": "a.txt"}, {"position": 10})]
    with pytest.raises(BadRequestError, match="must be in the STOPPED state"):
        herder.alter_offsets("files", wanted)
    herder.set_target_state("files", TargetState.STOPPED)
    assert herder.alter_offsets("files", wanted) == OFFSETS_ALTERED
    assert herder.connector_offsets("files") == wanted
    with pytest.raises(BadRequestError, match="only contain primitive types"):
        herder.alter_offsets("files", [ConnectorOffset({"file": "a"}, {"at": [1]})])
    assert herder.reset_offsets("files") == OFFSETS_RESET
    assert herder.connector_offsets("files") == []


def test_stop_all_stops_every_task_of_every_connector(herder: StandaloneHerder,
                                                      started: list[Task]) -> None:
    herder.put_connector("orders", sink())
    herder.put_connector("files", source())
    eventually(lambda: all(task.status.state == State.RUNNING for task in started))
    herder.stop_all(5)
    assert len(started) == 3 and all(task.join(0) for task in started)


def test_the_herder_is_safe_to_call_from_many_threads(herder: StandaloneHerder) -> None:
    errors: list[BaseException] = []

    def churn(index: int) -> None:
        try:
            for round_ in range(5):
                herder.put_connector(f"c{index}", sink(**{"tasks.max": str(round_ % 2 + 1)}))
                herder.connector_status(f"c{index}")
            herder.delete_connector(f"c{index}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and herder.connectors() == []
