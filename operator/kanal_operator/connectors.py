"""Connector reconciliation as pure functions: from spec, plan, workers and the previous
status to the next status and the events worth telling a person.

``reconcile`` takes the plan (``protocol.plan``), decides placement, restarts and
offsets requests and aggregates the workers' reports. It does not touch the API server,
so every rule here is unit-tested.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kanal_operator.models import (
    AutoRestart,
    Condition,
    ConfigIssue,
    ConnectorSpec,
    ConnectorStatus,
    OffsetEntry,
    OffsetsStatus,
    RestartStatus,
    TaskStatus,
)
from kanal_operator.scheduling import assign
from kanal_worker import __version__
from kanal_worker.api.backoff import exponential_backoff
from kanal_worker.cluster.protocol import (
    Plan,
    PlanMismatch,
    State,
    TaskReport,
    WorkerReport,
    task_token,
)

HEALTHY_RUN_SECONDS = 600
"""A task RUNNING this long has recovered: its automatic restart count resets."""
MAX_BACKOFF_SECONDS = 300.0


@dataclass(frozen=True)
class Worker:
    """A live worker of the connector's cluster, as its Lease shows it."""

    name: str
    report: WorkerReport


@dataclass(frozen=True)
class Inputs:
    name: str
    generation: int
    spec: ConnectorSpec
    cluster_found: bool
    workers: Mapping[str, Worker]
    """Live workers of the cluster."""
    load: Mapping[str, int]
    """Tasks of other connectors per live worker."""
    granted_secrets: frozenset[str]
    """Secrets the workers' Role lets them read."""
    selector: str
    now: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Event:
    type: str
    """Normal or Warning."""
    reason: str
    message: str


@dataclass
class Outcome:
    status: ConnectorStatus
    events: list[Event]
    wake_in: float | None = None
    """Seconds until something is due (an automatic restart), if anything."""


def backoff(restarts: int) -> float:
    """Seconds to wait before automatic restart number ``restarts + 1``."""
    # no jitter: the due time is computed again on every reconcile
    return exponential_backoff(restarts, 5.0, MAX_BACKOFF_SECONDS, jitter=False)


def summary(trace: str | None, limit: int = 200) -> str:
    """The line of a trace a person reads first: the exception itself."""
    lines = [line for line in (trace or "").splitlines() if line.strip()]
    line = lines[-1].strip() if lines else "no trace"
    return line if len(line) <= limit else line[:limit - 1] + "…"


def reconcile(inputs: Inputs, plan: Plan, previous: ConnectorStatus) -> Outcome:
    """The next status of one connector, and the events its changes deserve."""
    return _Reconciler(inputs, plan, previous).run()


class _Reconciler:
    def __init__(self, inputs: Inputs, plan: Plan, previous: ConnectorStatus) -> None:
        self.inputs = inputs
        self.spec = inputs.spec
        self.plan = plan
        self.previous = previous
        self.events: list[Event] = []
        self.wake_in: float | None = None
        self.auto = self.spec.auto_restart or AutoRestart()
        self.disagreeing = self._disagreeing()

    def _event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def _wake(self, seconds: float) -> None:
        self.wake_in = seconds if self.wake_in is None else min(self.wake_in, seconds)

    # -- tasks -------------------------------------------------------------------------

    def _reports(self) -> dict[int, dict[str, TaskReport]]:
        """Reports of this connector's tasks: task id → worker → report."""
        found: dict[int, dict[str, TaskReport]] = {}
        prefix = f"{self.inputs.name}/"
        for worker in self.inputs.workers.values():
            for key, report in worker.report.tasks.items():
                if key.startswith(prefix) and key[len(prefix):].isdigit():
                    found.setdefault(int(key[len(prefix):]), {})[worker.name] = report
        return found

    def _disagreeing(self) -> dict[str, PlanMismatch]:
        """Live workers that will not run this plan: for the very generation and plan
        the operator made they compute another configuration hash (a worker merely
        ahead of the operator reports another generation or plan)."""
        found = {}
        for worker in self.inputs.workers.values():
            mismatch = worker.report.mismatches.get(self.inputs.name)
            if mismatch is not None and mismatch.generation == self.inputs.generation \
                    and mismatch.planned == self.plan.config_hash:
                found[worker.name] = mismatch
        return found

    def _runs_anywhere(self) -> bool:
        prefix = f"{self.inputs.name}/"
        return any(key.startswith(prefix) for worker in self.inputs.workers.values()
                   for key in worker.report.tasks)

    def _restart_request(self, tasks: dict[int, TaskStatus]) -> set[int]:
        """Task ids to restart for a new ``spec.restart`` nonce (once per nonce)."""
        request = self.spec.restart
        if request is None or (self.previous.restart is not None
                               and self.previous.restart.nonce == request.nonce):
            self.restart = self.previous.restart
            return set()
        if request.tasks is not None:
            chosen = {t for t in request.tasks if t in tasks}
        elif request.include_tasks:
            chosen = {t for t, s in tasks.items()
                      if not request.only_failed or s.state == State.FAILED}
        else:
            chosen = set()  # the connector itself: the caller re-planned it
        self.restart = RestartStatus(nonce=request.nonce, tasks=sorted(chosen))
        what = (f"tasks {', '.join(map(str, sorted(chosen)))}" if chosen
                else "the connector (no task)")
        self._event("Normal", "RestartRequested", f"Restart {request.nonce}: restarting {what}")
        return chosen

    def _tasks(self) -> list[TaskStatus]:
        inputs, plan = self.inputs, self.plan
        before = {t.id: t for t in self.previous.tasks or []}
        same_plan = self.previous.config_hash == plan.config_hash
        draft: dict[int, TaskStatus] = {}
        for task_id, overrides in enumerate(plan.tasks):
            old = before.get(task_id)
            epoch = old.epoch if old else 0
            draft[task_id] = TaskStatus(
                id=task_id, state=old.state if old and same_plan else State.UNASSIGNED,
                worker=old.worker if old else None, trace=old.trace if old else None,
                token="", epoch=epoch, restarts=old.restarts if old else 0,
                config=overrides or None)
        for task_id in self._restart_request(draft):
            draft[task_id].epoch += 1
        reports = self._reports()
        ready_to_place = plan.secrets <= inputs.granted_secrets
        held = {t for t, by_worker in reports.items()
                if t in draft and set(by_worker) - {draft[t].worker}}
        previous = {t: s.worker for t, s in draft.items()}
        able = {name: worker for name, worker in inputs.workers.items()
                if name not in self.disagreeing}
        if ready_to_place:
            placement = assign(sorted(draft), previous, able, inputs.load, held)
        else:
            # Not known to be granted (yet: a restarted operator learns it from the
            # Role it applies): place nothing new, but a task of an unchanged plan keeps
            # its live worker, which could read the Secrets all along; unassigning it
            # would restart it, maybe elsewhere.
            placement = {t: w if same_plan and w in able else None
                         for t, w in previous.items()}
        result = []
        for task_id, task in sorted(draft.items()):
            task.token = task_token(plan.config_hash, task.config or {}, task.epoch)
            worker = placement[task_id]
            old_worker = before[task_id].worker if task_id in before else None
            if old_worker and worker != old_worker and old_worker not in inputs.workers:
                self._event("Normal", "TaskReassigned",
                            f"Task {task_id} moves from {old_worker} (its Lease expired or "
                            f"was released) to {worker or 'the next free worker'}")
            task.worker = worker
            self._observe(task, reports.get(task_id, {}).get(worker or ""))
            result.append(task)
        return result

    def _observe(self, task: TaskStatus, report: TaskReport | None) -> None:
        """Set the task's state from its worker's report; restart it when it failed."""
        was_failed = task.state == State.FAILED
        if report is None or task.worker is None:
            task.state, task.trace = State.UNASSIGNED, None
            return
        if report.token != task.token:
            task.state, task.trace = State.RESTARTING, None
            return
        task.state, task.trace = report.state, report.trace
        now = self.inputs.now
        if task.state == State.RUNNING and task.restarts and \
                now - report.since >= HEALTHY_RUN_SECONDS:
            task.restarts = 0
        if task.state != State.FAILED:
            return
        if not was_failed:
            self._event("Warning", "TaskFailed",
                        f"Task {task.id} FAILED on {task.worker}: {summary(task.trace)}")
        if not self.auto.enabled or task.restarts >= self.auto.max_restarts:
            return
        due = report.since + backoff(task.restarts)
        if now < due:
            self._wake(due - now)
            return
        task.restarts += 1
        task.epoch += 1
        task.token = task_token(self.plan.config_hash, task.config or {}, task.epoch)
        task.state, task.trace = State.RESTARTING, None
        self._event("Normal", "TaskRestarting",
                    f"Restarting failed task {task.id} automatically (attempt {task.restarts}"
                    f"/{self.auto.max_restarts})")

    # -- offsets -----------------------------------------------------------------------

    def _offsets(self, stopped: bool) -> OffsetsStatus | None:
        request = self.spec.offsets
        current = self.previous.offsets
        if request is None or (current is not None and current.nonce == request.nonce
                               and current.state in ("Succeeded", "Failed")):
            return current
        if current is None or current.nonce != request.nonce:
            current = OffsetsStatus(nonce=request.nonce, action=request.action,
                                    state="Pending")
        if request.action != "list" and not stopped:
            return self._offsets_done(current, "Failed", "alter and reset need spec.state: "
                                      "stopped (KIP-875); stop the connector, then ask again "
                                      "with a new nonce", [])
        if stopped and self._runs_anywhere():
            return current.model_copy(update={
                "state": "Pending", "worker": None,
                "message": "waiting for the connector's tasks to stop"})
        worker = self.inputs.workers.get(current.worker or "")
        if worker is None:
            if not self.inputs.workers:
                return current.model_copy(update={
                    "state": "Pending", "worker": None,
                    "message": "waiting for a live worker to carry the request out"})
            name = min(self.inputs.workers, key=lambda w: (self.inputs.load.get(w, 0), w))
            return current.model_copy(update={"state": "Pending", "worker": name,
                                              "message": f"assigned to worker {name}"})
        result = worker.report.offsets.get(self.inputs.name)
        if result is None or result.nonce != request.nonce:
            return current
        if result.state == "Running":
            return current.model_copy(update={"state": "Running", "message": result.message})
        return self._offsets_done(current, result.state, result.message, result.offsets)

    def _offsets_done(self, current: OffsetsStatus, state: str, message: str,
                      offsets: list[dict[str, Any]]) -> OffsetsStatus:
        entries = [OffsetEntry.model_validate(o) for o in offsets]
        done = current.model_copy(update={"state": state, "message": message,
                                          "offsets": entries or None})
        if state == "Succeeded":
            self._event("Normal", f"Offsets{current.action.capitalize()}",
                        f"Offsets {current.action} ({current.nonce}): {message}")
        else:
            self._event("Warning", "OffsetsFailed",
                        f"Offsets {current.action} ({current.nonce}) failed: {message}")
        return done

    # -- the whole status --------------------------------------------------------------

    def run(self) -> Outcome:
        inputs, plan, spec = self.inputs, self.plan, self.spec
        self.restart = self.previous.restart
        target = spec.state
        tasks: list[TaskStatus] = []
        if not inputs.cluster_found:
            state, ready = State.UNASSIGNED, self._not_ready(
                "ClusterNotFound", f"ConnectCluster {spec.cluster_ref.name} does not exist in "
                "this namespace; create it or fix spec.clusterRef")
        elif plan.errors:
            state, ready = State.FAILED, self._not_ready(
                "InvalidConfiguration", _errors_message(plan.errors))
        elif plan.trace:
            state, ready = State.FAILED, self._not_ready(
                "ConnectorFailed", f"planning tasks failed: {summary(plan.trace)}")
        elif target == "stopped":
            state = State.STOPPED
            ready = (self._not_ready("Stopping", "waiting for the workers to stop its tasks")
                     if self._runs_anywhere() else
                     ("True", "Stopped", "stopped as requested; no task runs"))
        else:
            tasks = self._tasks()
            state, ready = self._health(tasks)
        ready_count = sum(t.state == (State.PAUSED if target == "paused" else State.RUNNING)
                          for t in tasks)
        status = ConnectorStatus(
            observed_generation=inputs.generation,
            conditions=[self._condition("Ready", *ready)],
            state=state,
            type=plan.kind,
            trace=plan.trace,
            errors=[ConfigIssue(key=k, message=m) for k, ms in plan.errors.items()
                    for m in ms] or None,
            config_hash=plan.config_hash,
            task_count=len(tasks),
            tasks_ready=ready_count,
            task_summary=f"{ready_count}/{len(tasks)}",
            selector=inputs.selector,
            tasks=tasks or None,
            restart=self.restart,
            offsets=self._offsets(target == "stopped" and not plan.errors),
        )
        self._ready_event(ready)
        return Outcome(status, self.events, self.wake_in)

    def _not_ready(self, reason: str, message: str) -> tuple[str, str, str]:
        return ("False", reason, message)

    def _health(self, tasks: list[TaskStatus]) -> tuple[State, tuple[str, str, str]]:
        inputs, target = self.inputs, self.spec.state
        running = State.PAUSED if target == "paused" else State.RUNNING
        if not self.plan.secrets <= inputs.granted_secrets:
            missing = ", ".join(sorted(self.plan.secrets - inputs.granted_secrets))
            return State.UNASSIGNED, self._not_ready(
                "WaitingForPermissions", f"waiting until the workers may read Secret(s) {missing}")
        if not inputs.workers:
            return State.UNASSIGNED, self._not_ready(
                "NoWorkers", f"no live worker in ConnectCluster {self.spec.cluster_ref.name}; "
                f"{len(tasks)} task(s) wait UNASSIGNED")
        if self.disagreeing:
            return running, self._not_ready("ConfigHashMismatch", self._mismatch_message())
        failed = [t for t in tasks if t.state == State.FAILED]
        if failed:
            first = failed[0]
            if self.auto.enabled and first.restarts < self.auto.max_restarts:
                then = (f"; automatic restart {first.restarts + 1}/{self.auto.max_restarts} "
                        "follows")
            else:
                then = ("; no automatic restart left: fix the cause, then set spec.restart "
                        "with a new nonce")
            return running, self._not_ready(
                "TaskFailed", f"{len(failed)}/{len(tasks)} task(s) FAILED; task {first.id} "
                f"on {first.worker}: {summary(first.trace)}{then}")
        waiting = [t for t in tasks if t.state != running]
        if waiting:
            listed = ", ".join(f"{t.id} {t.state}" for t in waiting[:5])
            return running, self._not_ready(
                "Progressing", f"{len(tasks) - len(waiting)}/{len(tasks)} task(s) "
                f"{running}; waiting for task(s) {listed}")
        if target == "paused":
            return running, ("True", "Paused", f"paused as requested; {len(tasks)} task(s) "
                             "PAUSED")
        return running, ("True", "Running", f"{len(tasks)}/{len(tasks)} task(s) RUNNING")

    def _mismatch_message(self) -> str:
        workers = self.inputs.workers
        names = sorted(self.disagreeing)
        versions = sorted({workers[name].report.version or "unknown" for name in names})
        computed = sorted({m.computed for m in self.disagreeing.values()})
        return (f"worker(s) {', '.join(names)} (Kanal {', '.join(versions)}) compute "
                f"configuration hash {', '.join(computed)} where the operator (Kanal "
                f"{__version__}) planned {self.plan.config_hash}, so they do not run this "
                "connector's tasks; run the operator and the ConnectCluster's workers "
                "(spec.image) at the same Kanal version")

    def _condition(self, kind: str, status: str, reason: str, message: str) -> Condition:
        before = next((c for c in self.previous.conditions or [] if c.type == kind), None)
        return Condition(
            type=kind, status=status, reason=reason, message=message,  # type: ignore[arg-type]
            last_transition_time=_rfc3339(self.inputs.now)
            if before is None or before.status != status else before.last_transition_time,
            observed_generation=self.inputs.generation)

    def _ready_event(self, ready: tuple[str, str, str]) -> None:
        status, reason, message = ready
        before = next((c for c in self.previous.conditions or [] if c.type == "Ready"), None)
        if before is not None and (before.status, before.reason) == (status, reason):
            return
        if reason in ("Progressing", "TaskFailed", "Stopping"):
            return  # task events tell these transitions in more detail
        self._event("Normal" if status == "True" else "Warning", reason, message)


def _errors_message(errors: Mapping[str, list[str]]) -> str:
    parts = [f"{key}: {message}" for key, messages in errors.items() for message in messages]
    shown = "; ".join(parts[:3]) + (f"; and {len(parts) - 3} more" if len(parts) > 3 else "")
    return f"{len(parts)} configuration error(s) (see status.errors): {shown}"


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
