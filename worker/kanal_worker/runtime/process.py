"""Sink tasks in worker child processes, so that a connector's tasks use more than one core
(threads share one interpreter lock).

The worker keeps a :class:`ProcessTaskRunner`, which answers like any TaskRunner; the child,
a fresh interpreter (``spawn``: librdkafka's threads must never be forked), builds the real
runner from picklable inputs and reports over a pipe: status changes, counters, the topics it
uses and its log records, which the worker's own handlers then format. The worker sends stop
and target changes the other way. A child that dies without saying goodbye fails its task, as
a crashed thread does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Literal

from kanal_worker.api.records import TopicPartition
from kanal_worker.runtime.readings import own_error_counts, sink_positions
from kanal_worker.runtime.registry import find
from kanal_worker.runtime.sink import SinkTaskRunner
from kanal_worker.runtime.status import State, Status, TargetState
from kanal_worker.runtime.task import StatusListener, TaskId, TaskRunner, Throughput

log = logging.getLogger(__name__)

TASK_PROCESSES = "kanal.task.processes"
ProcessMode = Literal["auto", "always", "never"]

REPORT_SECONDS = 0.5
"""How often a child sends its counters and topics: the progress log and Prometheus read
them every few seconds."""

SIBLING_WAIT_SECONDS = 5.0
"""The longest a ready task process waits for the siblings it was started with before it
subscribes anyway. A child is ready about a second after it starts (a fresh interpreter
importing the task's modules, on a busy machine); one 5 s behind is stuck building its task,
and the others would lose more by waiting than the rebalance its later join costs (two
rounds with cooperative assignment, about a second each). A sibling that dies or is
stopped before it is ready releases the others at once."""

CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"


def usable_cpus(cpu_max: str = CGROUP_CPU_MAX) -> int:
    """The cores this process may use: those it is pinned to, capped by a cgroup v2 quota
    (a pod's CPU limit), as whole cores, at least one."""
    cores = len(os.sched_getaffinity(0))
    try:
        with open(cpu_max) as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, int(quota) // int(period)))


def in_child(mode: str, kind: str, tasks: int, cpus: int) -> bool:
    """Whether a task runs in a child process. Only sinks do: a source's offsets store (a
    file in standalone mode) and its exactly-once producer stay with the worker. ``auto``
    gives a connector of two or more tasks children when the worker has two cores or more;
    a single task stays in the worker, costing no memory or start-up."""
    if kind != "sink" or mode == "never":
        return False
    return mode == "always" or (tasks >= 2 and cpus >= 2)


@dataclass(frozen=True)
class ChildInputs:
    """What a child needs to build the real runner; all picklable."""

    plugin: str
    task_id: TaskId
    config: dict[str, str]
    worker: dict[str, str]
    worker_id: str
    target: TargetState
    log_level: int


Position = tuple[TopicPartition, int, int, int]
"""(partition, next offset to process, committed offset, high watermark)."""


@dataclass
class ChildReport:
    """What a child last said about its task beyond the counters: the metrics a worker
    reads from a runner in its own process (runtime/metrics.py)."""

    failed: int = 0
    dlq: int = 0
    positions: list[Position] = field(default_factory=list)


class StartBarrier:
    """Lets the task processes of one connector started together subscribe together.

    Each child builds its task and consumer, says it is ready and waits. Were they to
    subscribe as each is ready, the first would join the connector's (new) group alone and
    take every partition, and each later one's join would start a rebalance: with
    cooperative assignment two rounds, during which the partitions moving wait. Members
    joining within milliseconds are given their shares in the group's first assignment.

    The starter enlists the runners, starts them and then closes the barrier; it opens
    when it is closed and every member is ready or has ended. A child never waits longer
    than ``SIBLING_WAIT_SECONDS``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: set[ProcessTaskRunner] = set()
        self._ready: list[ProcessTaskRunner] = []
        self._closed = False

    def enlist(self, runner: ProcessTaskRunner) -> None:
        with self._lock:
            self._pending.add(runner)

    def close(self) -> None:
        """No more members: the barrier opens once those it has are ready."""
        with self._lock:
            self._closed = True
        self._open_if_due()

    def ready(self, runner: ProcessTaskRunner) -> None:
        with self._lock:
            self._pending.discard(runner)
            self._ready.append(runner)
        self._open_if_due()

    def gone(self, runner: ProcessTaskRunner) -> None:
        """``runner``'s process ended; ready or not, nobody waits for it any more."""
        with self._lock:
            self._pending.discard(runner)
        self._open_if_due()

    def _open_if_due(self) -> None:
        with self._lock:
            if not self._closed or self._pending:
                return
            released, self._ready = self._ready, []
        for runner in released:
            runner.release()


class ProcessTaskRunner(TaskRunner):
    """The worker's side of a task running in a child process."""

    def __init__(self, plugin: str, task_id: TaskId, config: Mapping[str, str],
                 worker: Mapping[str, str], worker_id: str, target: TargetState,
                 on_status: StatusListener, barrier: StartBarrier | None = None) -> None:
        super().__init__(task_id, config, worker, worker_id, target, on_status)
        self.plugin = plugin
        self.barrier = barrier
        """Shared with the sibling tasks started together; without one (a restarted task
        joins a running group) the child subscribes as soon as it is ready."""
        if barrier is not None:
            barrier.enlist(self)
        self.active_topics: set[str] = set()
        self._send_lock = threading.Lock()
        self._done = threading.Event()
        self._finished = False
        self._conn: Connection | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.report = ChildReport()

    def start(self) -> None:
        ours, theirs = socket.socketpair()
        inputs = ChildInputs(self.plugin, self.id, self.config, self.worker,
                             self.status.worker_id, self.target,
                             logging.getLogger().getEffectiveLevel())
        # ``python -m`` imports only the task's modules (multiprocessing's spawn would
        # import the worker's whole command line again, and start a resource tracker)
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(theirs.fileno())], pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL)
        theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send(inputs)
        log.info("Task %s runs in process %s", self.id, self.process.pid)
        self._thread = threading.Thread(target=self._listen, name=f"task-{self.id}-pipe",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        super().stop()
        self._send(("stop", None))

    def set_target(self, target: TargetState) -> None:
        super().set_target(target)
        self._send(("target", target))

    def release(self) -> None:
        """Let the child subscribe."""
        self._send(("subscribe", None))

    def join(self, timeout: float | None = None) -> bool:
        if self.process is None:
            return True
        return self._done.wait(timeout)

    def abandon(self) -> None:
        """Kill the child. A hung process left running would keep its partitions until its
        session times out and could write again after its replacement started."""
        if self.process is not None and self.process.poll() is None:
            log.warning("Task %s: killing its process %s, which did not stop in time",
                        self.id, self.process.pid)
            self._finished = True  # ended on purpose: not reported as a crash
            self.process.kill()

    def execute(self) -> None:
        raise NotImplementedError("runs in the child process")

    def _send(self, message: tuple[str, Any]) -> None:
        if self._conn is None:
            return
        # a child that is gone is reported by _listen
        with self._send_lock, contextlib.suppress(OSError, ValueError):
            self._conn.send(message)

    def _listen(self) -> None:
        assert self._conn is not None and self.process is not None
        try:
            while True:
                kind, body = self._conn.recv()
                self._receive(kind, body)
        except (EOFError, OSError):
            pass
        except Exception:
            log.exception("Task %s: its process sent what the worker cannot read; ending it",
                          self.id)
            self.process.kill()
        exitcode = self.process.wait()
        if self.barrier is not None:
            self.barrier.gone(self)
        if not self._finished:
            self._set(State.FAILED, self._death(exitcode))
        self._conn.close()
        self._done.set()

    def _receive(self, kind: str, body: Any) -> None:
        if kind == "log":
            record: logging.LogRecord = body
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)
        elif kind == "status":
            self._set(*body)
        elif kind == "metrics":
            counters, topics, self.report = body
            for name, value in counters.items():
                setattr(self.metrics, name, value)
            self.active_topics.update(topics)
        elif kind == "ready":
            if self.barrier is None:
                self.release()
            else:
                self.barrier.ready(self)
        elif kind == "finished":
            self._finished = True

    def _death(self, exitcode: int | None) -> str:
        assert self.process is not None
        how = (f"was killed by {signal.Signals(-exitcode).name}"
               if exitcode is not None and exitcode < 0 else f"exited with code {exitcode}")
        memory = " (SIGKILL: out of memory, or killed)" if exitcode == -signal.SIGKILL else ""
        return (f"org.apache.kafka.connect.errors.ConnectException: the process of task "
                f"{self.id} (pid {self.process.pid}) {how}{memory} without stopping cleanly; "
                f"restart the task to run it again")


class _PipeLogHandler(logging.Handler):
    """Sends a child's log records to the worker, which formats them as its own."""

    def __init__(self, send: Any) -> None:
        super().__init__()
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.msg = record.getMessage()
            record.args = None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            self.send(("log", record))
        except Exception:
            self.handleError(record)


def _counters(metrics: Throughput) -> dict[str, Any]:
    counters = asdict(metrics)
    del counters["last_report"]  # the worker's own: its rate is per reader
    return counters


def metrics_message(runner: SinkTaskRunner) -> tuple[str, Any]:
    """What a child tells its worker about its task every ``REPORT_SECONDS``."""
    failed, dlq = own_error_counts(runner)
    return ("metrics", (_counters(runner.metrics), sorted(runner.active_topics),
                        ChildReport(failed, dlq, list(sink_positions(runner)))))


class _ChildSinkRunner(SinkTaskRunner):
    """The real runner in a child: before its consumer joins the group it says it is ready
    and waits for the worker's word (``StartBarrier``), a stop, or ``SIBLING_WAIT_SECONDS``."""

    def __init__(self, *args: Any, send: Callable[[tuple[str, Any]], None],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._send_to_worker = send
        self.may_subscribe = threading.Event()

    def stop(self) -> None:
        super().stop()
        self.may_subscribe.set()

    def ready_to_subscribe(self) -> None:
        self._send_to_worker(("ready", None))
        if not self.may_subscribe.wait(SIBLING_WAIT_SECONDS):
            log.info("Task %s: its sibling tasks are not ready after %.0fs; joining the "
                     "group without them", self.id, SIBLING_WAIT_SECONDS)


def child_main(conn: Connection) -> None:
    """The child: runs the task until it ends, then says it finished."""
    inputs: ChildInputs = conn.recv()
    lock = threading.Lock()

    def send(message: tuple[str, Any]) -> None:
        with lock:
            conn.send(message)

    logging.basicConfig(level=inputs.log_level, handlers=[_PipeLogHandler(send)], force=True)
    logging.getLogger("azure").setLevel(logging.WARNING)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a worker's Ctrl-C stops tasks through it
    plugin = find("connector", inputs.plugin, "connector.class")

    def on_status(runner: TaskRunner) -> None:
        status: Status = runner.status
        send(("status", (status.state, status.trace, status.detail)))

    runner = _ChildSinkRunner(inputs.task_id, inputs.config, inputs.worker, inputs.worker_id,
                              inputs.target, on_status, plugin.cls, send=send)
    runner.active_topics = set()

    def commands() -> None:
        try:
            while True:
                kind, body = conn.recv()
                if kind == "stop":
                    runner.stop()
                elif kind == "target":
                    runner.set_target(body)
                elif kind == "subscribe":
                    runner.may_subscribe.set()
        except (EOFError, OSError):
            runner.stop()  # the worker is gone

    threading.Thread(target=commands, name="commands", daemon=True).start()
    runner.start()
    while not runner.join(REPORT_SECONDS):
        send(metrics_message(runner))
    send(metrics_message(runner))
    send(("finished", time.time()))
    conn.close()


if __name__ == "__main__":
    # through the module's own name: what the child pickles must unpickle in the worker
    from kanal_worker.runtime import process
    process.child_main(Connection(int(sys.argv[1])))
