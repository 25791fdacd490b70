"""Where a task runs: the worker's process or a child (``kanal.task.processes``)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kanal_worker.connectors.file import FileStreamSinkConnector
from kanal_worker.runtime import process
from kanal_worker.runtime.process import (
    ProcessTaskRunner,
    StartBarrier,
    _ChildSinkRunner,
    in_child,
    usable_cpus,
)
from kanal_worker.runtime.status import TargetState
from kanal_worker.runtime.task import TaskId, TaskRunner


def test_a_single_task_stays_in_the_worker() -> None:
    assert not in_child("auto", "sink", tasks=1, cpus=8)


def test_two_sink_tasks_get_children_when_two_cores_are_free() -> None:
    assert in_child("auto", "sink", tasks=2, cpus=2)
    assert not in_child("auto", "sink", tasks=2, cpus=1)


def test_sources_stay_with_the_worker_and_its_offsets_store() -> None:
    assert not in_child("always", "source", tasks=4, cpus=4)
    assert not in_child("auto", "source", tasks=4, cpus=4)


def test_always_and_never_override_the_rule() -> None:
    assert in_child("always", "sink", tasks=1, cpus=1)
    assert not in_child("never", "sink", tasks=4, cpus=4)


@pytest.mark.parametrize(("quota", "expected"), [
    ("max 100000", None), ("100000 100000", 1), ("150000 100000", 1), ("50000 100000", 1),
    ("200000 100000", 2)])
def test_a_cgroup_quota_caps_the_cores(tmp_path: Path, quota: str,
                                       expected: int | None) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(quota + "\n")
    cores = len(os.sched_getaffinity(0))
    assert usable_cpus(str(cpu_max)) == (cores if expected is None else min(cores, expected))


def test_without_a_cgroup_file_the_affinity_counts(tmp_path: Path) -> None:
    assert usable_cpus(str(tmp_path / "missing")) == len(os.sched_getaffinity(0))


class _Released:
    """The ``subscribe`` messages the worker sends to its children."""

    def __init__(self) -> None:
        self.tasks: list[int] = []

    def runner(self, task: int, barrier: StartBarrier | None) -> ProcessTaskRunner:
        runner = ProcessTaskRunner("FileStreamSink", TaskId("procs", task), {}, {},
                                   "worker-0:8083", TargetState.STARTED, _ignore, barrier)

        def send(message: tuple[str, Any]) -> None:
            if message[0] == "subscribe":
                self.tasks.append(task)
        runner._send = send  # type: ignore[method-assign]
        return runner


def _ignore(runner: TaskRunner) -> None:
    pass


def test_siblings_subscribe_once_all_are_ready() -> None:
    released, barrier = _Released(), StartBarrier()
    first, second = released.runner(0, barrier), released.runner(1, barrier)
    barrier.close()
    first._receive("ready", None)
    assert released.tasks == []
    second._receive("ready", None)
    assert sorted(released.tasks) == [0, 1]


def test_the_barrier_waits_for_every_sibling_enlisted_before_it_closed() -> None:
    released, barrier = _Released(), StartBarrier()
    first = released.runner(0, barrier)
    first._receive("ready", None)
    second = released.runner(1, barrier)
    assert released.tasks == []
    barrier.close()
    assert released.tasks == []
    second._receive("ready", None)
    assert sorted(released.tasks) == [0, 1]


def test_a_sibling_that_ends_before_it_is_ready_releases_the_others() -> None:
    released, barrier = _Released(), StartBarrier()
    first, second = released.runner(0, barrier), released.runner(1, barrier)
    barrier.close()
    first._receive("ready", None)
    barrier.gone(second)
    assert released.tasks == [0]


def test_a_task_started_alone_subscribes_when_ready() -> None:
    released = _Released()
    released.runner(1, None)._receive("ready", None)  # a restarted task
    assert released.tasks == [1]


def _child(sent: list[str]) -> _ChildSinkRunner:
    return _ChildSinkRunner(TaskId("procs", 0), {}, {}, "worker-0:8083", TargetState.STARTED,
                            _ignore, FileStreamSinkConnector,
                            send=lambda message: sent.append(message[0]))


def test_a_ready_child_waits_for_the_word_to_subscribe() -> None:
    sent: list[str] = []
    child = _child(sent)
    waiting = threading.Thread(target=child.ready_to_subscribe)
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive() and sent == ["ready"]
    child.may_subscribe.set()
    waiting.join(5)
    assert not waiting.is_alive()


def test_a_stop_ends_the_wait() -> None:
    child = _child([])
    child.stop()
    started = time.monotonic()
    child.ready_to_subscribe()
    assert time.monotonic() - started < process.SIBLING_WAIT_SECONDS


def test_a_child_subscribes_without_its_siblings_after_the_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "SIBLING_WAIT_SECONDS", 0.2)
    sent: list[str] = []
    started = time.monotonic()
    _child(sent).ready_to_subscribe()
    assert sent == ["ready"] and time.monotonic() - started >= 0.2
