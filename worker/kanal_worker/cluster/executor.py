"""Runs the tasks the operator assigned to this worker, with the existing TaskRunners.

The executor converges on the assignment it is given: a task whose token changed is
stopped (flush, commit) before its successor starts, so one task never runs twice in
this worker. It reports every task it holds, including tasks still stopping, so the
operator places a task elsewhere only after it stopped here. Placeholders
(``${secret:...}``, ``${file:...}``) are resolved just before a task starts and again
every few seconds; a task whose resolved configuration changed restarts, and the
secret values a task holds are redacted from the traces it reports.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import orjson

from kanal_worker.api.errors import ConfigError, RetriableError
from kanal_worker.cluster.protocol import (
    SECRET_PROVIDER,
    TaskReport,
    cut_trace,
    task_key,
)
from kanal_worker.config.providers import Lookup, has_placeholder, resolve
from kanal_worker.config.worker import WorkerSettings
from kanal_worker.runtime.offsets import OffsetStore
from kanal_worker.runtime.process import StartBarrier
from kanal_worker.runtime.registry import PluginInfo
from kanal_worker.runtime.runners import task_runner
from kanal_worker.runtime.status import State, TargetState, format_trace
from kanal_worker.runtime.task import TaskId, TaskRunner
from kanal_worker.runtime.validation import connector_plugin, hidden_keys

log = logging.getLogger(__name__)

SECRET_REFRESH_SECONDS = 10.0
"""How often tasks resolve their configuration again to notice rotated Secrets."""
MIN_REDACTED = 4
"""Shorter secret values are not redacted from traces: they would garble other text."""


@dataclass(frozen=True)
class Assignment:
    """One task this worker should run, as the operator planned it."""

    connector: str
    task: int
    token: str
    config: dict[str, str]
    """The task's configuration with placeholders (resolved only when it starts)."""
    target: TargetState

    @property
    def key(self) -> str:
        return task_key(self.connector, self.task)


@dataclass
class _Run:
    """A task this worker holds: running, stopping, or failed before it could start."""

    assignment: Assignment
    runner: TaskRunner | None = None
    digest: str = ""
    """Hash of the resolved configuration (to notice rotated Secrets)."""
    hidden: set[str] = field(default_factory=set)
    """Secret values this task uses, redacted from its traces."""
    failure: str | None = None
    since: float = field(default_factory=time.time)
    stopping_since: float | None = None
    """``time.monotonic()`` when it was asked to stop."""

    def report(self) -> TaskReport:
        if self.runner is None:
            return TaskReport(State.FAILED, self.assignment.token,
                              cut_trace(redact(self.failure, self.hidden)), self.since)
        status = self.runner.status
        return TaskReport(status.state, self.assignment.token,
                          cut_trace(redact(status.trace, self.hidden)), status.changed_at)


def redact(text: str | None, secrets: set[str]) -> str | None:
    """``text`` with every secret value replaced by ``[hidden]``."""
    if not text:
        return text
    for value in sorted(secrets, key=len, reverse=True):
        if len(value) >= MIN_REDACTED:
            text = text.replace(value, "[hidden]")
    return text


def _digest(config: Mapping[str, str]) -> str:
    return hashlib.sha256(orjson.dumps(dict(config), option=orjson.OPT_SORT_KEYS)).hexdigest()


class Executor:
    def __init__(self, worker: Mapping[str, str], worker_id: str, offsets: OffsetStore,
                 providers: Mapping[str, Lookup], on_change: Callable[[], None]) -> None:
        self.worker = dict(worker)
        self.worker_id = worker_id
        self.offsets = offsets
        self.providers = dict(providers)
        self.on_change = on_change
        settings: WorkerSettings = WorkerSettings.parse(self.worker)
        self.shutdown_timeout = settings.task_shutdown_timeout_ms / 1000
        self.topics: dict[str, set[str]] = {}
        """Topics each connector's tasks used here (REST ``/connectors/{name}/topics``)."""
        self._desired: dict[str, Assignment] = {}
        self._keep: set[str] = set()
        self._runs: dict[str, _Run] = {}
        self._stopping: list[tuple[str, _Run]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="executor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def assign(self, desired: Mapping[str, Assignment], keep: set[str]) -> None:
        """Run exactly ``desired``; leave the tasks of the ``keep`` connectors as they are
        (their plan is being recomputed)."""
        with self._lock:
            self._desired, self._keep = dict(desired), set(keep)
        self._wake.set()

    def report(self) -> dict[str, TaskReport]:
        with self._lock:
            stopping = {key: run.report() for key, run in self._stopping}
            return {**stopping, **{key: run.report() for key, run in self._runs.items()}}

    def runners(self) -> list[TaskRunner]:
        with self._lock:
            return [run.runner for run in self._runs.values() if run.runner is not None]

    def stop_all(self, timeout: float) -> None:
        """Stop every task cleanly (flush, commit, close) within ``timeout`` seconds."""
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout)
        with self._lock:
            runs = [run for _, run in self._stopping] + list(self._runs.values())
        for run in runs:
            if run.runner is not None:
                run.runner.stop()
        deadline = time.monotonic() + timeout
        for run in runs:
            if run.runner is not None and \
                    not run.runner.join(max(0.0, deadline - time.monotonic())):
                log.warning("Task %s did not stop within %.0fs", run.runner.id, timeout)
                run.runner.abandon()

    # -- the loop ----------------------------------------------------------------------

    def _loop(self) -> None:
        next_refresh = time.monotonic() + SECRET_REFRESH_SECONDS
        while not self._closed.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                self._converge()
                if time.monotonic() >= next_refresh:
                    self._refresh_secrets()
                    next_refresh = time.monotonic() + SECRET_REFRESH_SECONDS
            except Exception:
                log.exception("Executor step failed; retrying")

    def _converge(self) -> None:
        with self._lock:
            desired, keep = dict(self._desired), set(self._keep)
            changed = False
            for key, run in list(self._runs.items()):
                want = desired.get(key)
                if want is None and run.assignment.connector in keep:
                    continue
                if want is None or want.token != run.assignment.token:
                    self._retire(key, run)
                    changed = True
                elif want.target != run.assignment.target:
                    run.assignment = want
                    if run.runner is not None:
                        run.runner.set_target(want.target)
            still = []
            for key, run in self._stopping:
                if run.runner is not None and not run.runner.join(0) and \
                        not self._abandon(key, run):
                    still.append((key, run))
                else:
                    changed = True
            self._stopping = still
            busy = set(self._runs) | {key for key, _ in still}
            starting = [want for key, want in desired.items() if key not in busy]
        # a connector's tasks started in one step subscribe together (StartBarrier)
        barriers = {want.connector: StartBarrier() for want in starting}
        try:
            for want in starting:
                changed |= self._start_run(want, barriers[want.connector])
        finally:
            for barrier in barriers.values():
                barrier.close()
        if changed:
            self.on_change()

    def _start_run(self, want: Assignment, barrier: StartBarrier) -> bool:
        """Start ``want``'s task; whether it now runs here."""
        run = self._start(want, barrier)
        with self._lock:
            if self._desired.get(want.key) == want:
                self._runs[want.key] = run
                return True
        if run.runner is not None:  # the assignment changed while it started
            run.runner.stop()
            run.stopping_since = time.monotonic()
            with self._lock:
                self._stopping.append((want.key, run))
        return False

    def _retire(self, key: str, run: _Run) -> None:
        """Ask a task to stop; it stays reported until it did. Holds the lock."""
        del self._runs[key]
        if run.runner is not None:
            run.runner.stop()
            run.stopping_since = time.monotonic()
            self._stopping.append((key, run))
            log.info("Task %s stops here", key)

    def _abandon(self, key: str, run: _Run) -> bool:
        """Like Kafka Connect, give up on a task that does not stop within
        ``task.shutdown.graceful.timeout.ms``: stop reporting it, so it can run elsewhere
        (its consumer group membership and transactional id fence it if it wakes up)."""
        assert run.stopping_since is not None
        if time.monotonic() - run.stopping_since < self.shutdown_timeout:
            return False
        log.warning("Task %s did not stop within %.0fs; abandoning it", key,
                    self.shutdown_timeout)
        if run.runner is not None:
            run.runner.abandon()
        return True

    def _start(self, want: Assignment, barrier: StartBarrier) -> _Run:
        hidden = {want.config[k] for k in hidden_keys(want.config) if k in want.config}
        try:
            plugin = connector_plugin(want.config)
            resolved, used = self._resolve(want.config)
        except RetriableError as exc:  # e.g. the API server did not answer: next round
            log.warning("Task %s cannot start yet: %s", want.key, exc)
            raise
        except ConfigError as exc:
            log.error("Task %s cannot start: %s", want.key, exc)
            return _Run(want, failure=format_trace(exc), hidden=hidden)
        runner = self._runner(plugin, TaskId(want.connector, want.task), resolved, want.target,
                              barrier)
        runner.start()
        log.info("Task %s starts (%s)", want.key, plugin.class_name)
        return _Run(want, runner, _digest(resolved), hidden | used)

    def _runner(self, plugin: PluginInfo, task_id: TaskId, config: Mapping[str, str],
                target: TargetState, barrier: StartBarrier) -> TaskRunner:
        with self._lock:
            siblings = sum(a.connector == task_id.connector for a in self._desired.values())
        return task_runner(plugin, task_id, config, self.worker, self.worker_id, target,
                           self._on_status, self.offsets,
                           self.topics.setdefault(task_id.connector, set()), siblings,
                           barrier)

    def _resolve(self, config: Mapping[str, str]) -> tuple[dict[str, str], set[str]]:
        """``config`` with placeholders replaced, and the secret values it now holds."""
        used: set[str] = set()
        providers = dict(self.providers)
        lookup = providers.get(SECRET_PROVIDER)
        if lookup is not None:
            def secret(name: str | None, key: str, lookup: Lookup = lookup) -> str:
                value = lookup(name, key)
                used.add(value)
                return value
            providers[SECRET_PROVIDER] = secret
        return resolve(config, providers), used

    def _refresh_secrets(self) -> None:
        with self._lock:
            runs = [(key, run) for key, run in self._runs.items()
                    if run.runner is not None and any(
                        has_placeholder(v) for v in run.assignment.config.values())]
        for key, run in runs:
            try:
                resolved, _ = self._resolve(run.assignment.config)
            except (ConfigError, RetriableError) as exc:
                log.warning("Task %s: cannot re-read its configuration (%s); it keeps "
                            "running with the values it has", key, exc)
                continue
            if _digest(resolved) == run.digest:
                continue
            log.info("Task %s restarts: a Secret its configuration reads changed", key)
            with self._lock:
                if self._runs.get(key) is run:
                    self._retire(key, run)
        self._wake.set()

    def _on_status(self, runner: TaskRunner) -> None:
        if runner.status.state == State.FAILED:
            log.error("Task %s is FAILED", runner.id)
        self.on_change()
