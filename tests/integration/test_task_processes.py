"""Sink tasks in child processes (``kanal.task.processes``) against the real broker: each
task its own process, the REST API and status as with threads, a killed child fails its task
and a restart brings it back without losing records."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.standalone import (
    Standalone,
    line_count,
    wait_for,
    worker_properties,
)
from tests.kafka_helpers import produce

pytestmark = pytest.mark.integration

SECRET = "procs-secret-7f3a"
"""A password the connector's tasks get; it must not reach the worker's log."""


def _worker_with_task_processes(tmp_path: Path, kafka: str) -> tuple[Standalone, Path, str]:
    """A running standalone worker that puts every sink task in a child process: the
    worker, its log and its REST API's address."""
    worker = worker_properties(tmp_path, kafka, listeners="http://127.0.0.1:0",
                               **{"kanal_task_processes": "always"})
    log = tmp_path / "kanal.log"
    run = Standalone(worker, log=log).start().wait_running()
    found = re.search(r"REST API on (http://\S+)", log.read_text())
    if found is None:
        run.stop()
        raise AssertionError(f"the worker logged no REST API address: {log.read_text()}")
    return run, log, found[1]


def _create_two_task_file_sink(url: str, name: str, topic: str, sink_file: Path,
                               **extra: str) -> None:
    created = httpx.post(f"{url}/connectors", json={"name": name, "config": {
        "connector.class": "FileStreamSink", "topics": topic, "tasks.max": "2",
        "file": str(sink_file), **extra}})
    assert created.status_code == 201, created.text


def _task_pids(log: Path, name: str) -> dict[int, int]:
    """The child process of each task of ``name``, as the worker logged it (latest last)."""
    found = re.findall(rf"Task {re.escape(name)}-(\d+) runs in process (\d+)", log.read_text())
    return {int(task): int(pid) for task, pid in found}


def test_two_sink_tasks_run_in_two_processes(tmp_path: Path, kafka: str,
                                             new_topic: Callable[..., str]) -> None:
    topic = new_topic("procs", 4)
    first = [f"a{i}".encode() for i in range(2000)]
    produce(kafka, topic, first)
    run, log, url = _worker_with_task_processes(tmp_path, kafka)
    name = "procs"
    try:
        sink_file = tmp_path / "out.txt"
        _create_two_task_file_sink(url, name, topic, sink_file,
                                   **{"consumer.override.sasl.password": SECRET})

        def states() -> list[str]:
            tasks = httpx.get(f"{url}/connectors/{name}/status").json()["tasks"]
            return [t["state"] for t in tasks]

        wait_for(lambda: states() == ["RUNNING", "RUNNING"], 60, "two running tasks")
        wait_for(lambda: line_count(sink_file) >= len(first), 60, "the first records")
        pids = _task_pids(log, name)
        assert len(set(pids.values())) == 2 and run.process is not None
        assert run.process.pid not in pids.values()
        # the child's own log lines reach the worker's log, in its format
        wait_for(lambda: run.logged(f"Task {name}-0: assigned".encode()), 30,
                 "the child's log line")
        assert re.search(rf"\d\d:\d\d:\d\d INFO +Task {name}-0: assigned .*"
                         r"\[kanal_worker\.runtime\.sink\]", log.read_text())

        os.kill(pids[1], signal.SIGKILL)
        wait_for(lambda: states()[1] == "FAILED", 60, "the killed task to fail")
        task = httpx.get(f"{url}/connectors/{name}/tasks/1/status").json()
        assert "SIGKILL" in task["trace"] and str(pids[1]) in task["trace"]
        assert states()[0] == "RUNNING"

        second = [f"b{i}".encode() for i in range(2000)]
        produce(kafka, topic, second)
        restarted = httpx.post(f"{url}/connectors/{name}/tasks/1/restart")
        assert restarted.status_code in (200, 204), restarted.text
        wait_for(lambda: states() == ["RUNNING", "RUNNING"], 60, "the restarted task")
        assert _task_pids(log, name)[1] != pids[1]
        wait_for(lambda: set(sink_file.read_text().split()) >= {v.decode() for v in
                                                                first + second},
                 90, "every record after the restart")

        assert httpx.put(f"{url}/connectors/{name}/pause").status_code == 202
        wait_for(lambda: states() == ["PAUSED", "PAUSED"], 60, "paused tasks")
        assert httpx.put(f"{url}/connectors/{name}/resume").status_code == 202
        wait_for(lambda: states() == ["RUNNING", "RUNNING"], 60, "resumed tasks")
        produce(kafka, topic, [b"c0", b"c1"])
        wait_for(lambda: {"c0", "c1"} <= set(sink_file.read_text().split()), 60,
                 "records after resume")

        children = _task_pids(log, name).values()
        assert SECRET not in log.read_text()
        assert httpx.delete(f"{url}/connectors/{name}").status_code == 204
        wait_for(lambda: not any(_alive(pid) for pid in children), 60,
                 "the task processes to end")
    finally:
        assert run.stop() == 0


def test_sibling_task_processes_join_the_group_together(
        tmp_path: Path, kafka: str, new_topic: Callable[..., str]) -> None:
    """A connector's task processes subscribe once all are ready: one held up in its start
    (here: SIGSTOP before it is ready) keeps the other from taking every partition alone
    and handing half of them over in a rebalance when the late one joins."""
    topic = new_topic("procs-together", 4)
    records = [f"a{i}".encode() for i in range(1000)]
    produce(kafka, topic, records)
    run, log, url = _worker_with_task_processes(tmp_path, kafka)
    name = "procs-together"
    pids: dict[int, int] = {}
    try:
        sink_file = tmp_path / "out.txt"
        _create_two_task_file_sink(url, name, topic, sink_file)
        # a child needs most of a second to import its modules: stop both well before
        deadline = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < deadline:
            for task, pid in _task_pids(log, name).items():
                if task not in pids:
                    os.kill(pid, signal.SIGSTOP)
                    pids[task] = pid
            time.sleep(0.01)
        assert len(pids) == 2, log.read_text()
        os.kill(pids[1], signal.SIGCONT)
        time.sleep(3)  # task 1 is ready well within this, task 0 still stopped
        assert not run.logged(f"Task {name}-1: assigned".encode()), log.read_text()
        os.kill(pids[0], signal.SIGCONT)

        wait_for(lambda: set(sink_file.read_text().split()) >= {r.decode() for r in records}
                 if sink_file.exists() else False, 60, "every record")
        for task in (0, 1):
            assert re.search(rf"Task {name}-{task}: assigned {re.escape(topic)}-\d",
                             log.read_text()), f"task {task} got no partition"
    finally:
        for pid in pids.values():
            if _alive(pid):
                os.kill(pid, signal.SIGCONT)
        assert run.stop() == 0


def test_a_hung_task_process_is_killed_when_it_does_not_stop(
        tmp_path: Path, kafka: str, new_topic: Callable[..., str]) -> None:
    """A child that cannot stop (here: SIGSTOP) is killed once the stop's wait is over, so
    it cannot keep its partitions or write after its replacement started."""
    topic = new_topic("procs-hung", 2)
    produce(kafka, topic, [f"a{i}".encode() for i in range(200)])
    run, log, url = _worker_with_task_processes(tmp_path, kafka)
    name = "procs-hung"
    hung: int | None = None
    try:
        sink_file = tmp_path / "out.txt"
        _create_two_task_file_sink(url, name, topic, sink_file)
        wait_for(lambda: line_count(sink_file) >= 200, 60, "the first records")
        hung = _task_pids(log, name)[1]
        os.kill(hung, signal.SIGSTOP)

        restarted = httpx.post(f"{url}/connectors/{name}/tasks/1/restart", timeout=90)
        assert restarted.status_code in (200, 204), restarted.text
        wait_for(lambda: not _alive(hung), 30, "the hung process to be killed")
        assert run.logged(f"killing its process {hung}".encode())
        replacement = _task_pids(log, name)[1]
        assert replacement != hung and _alive(replacement)

        def states() -> list[str]:
            tasks = httpx.get(f"{url}/connectors/{name}/status").json()["tasks"]
            return [t["state"] for t in tasks]

        wait_for(lambda: states() == ["RUNNING", "RUNNING"], 60, "both tasks running again")
        produce(kafka, topic, [b"after0", b"after1", b"after2"])
        wait_for(lambda: {"after0", "after1", "after2"} <= set(sink_file.read_text().split()),
                 60, "records after the restart")
    finally:
        if hung is not None and _alive(hung):
            os.kill(hung, signal.SIGKILL)
        assert run.stop() == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie until the worker reaps it counts as gone
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"
