"""The herder: owns connectors, plans their tasks and answers for their states.

``Herder`` is what the REST API talks to. ``StandaloneHerder`` runs every task in this
process; in Kubernetes a herder of the same shape reads and writes ``Connector``
resources instead, so the API behaves the same in both modes.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kanal_worker.api.errors import ConfigError, ConnectError
from kanal_worker.config.providers import Lookup, providers_from_worker_config, resolve
from kanal_worker.runtime.offsets import OffsetStore
from kanal_worker.runtime.registry import PluginInfo
from kanal_worker.runtime.sink import SinkTaskRunner
from kanal_worker.runtime.source import SourceTaskRunner
from kanal_worker.runtime.status import State, Status, TargetState, format_trace
from kanal_worker.runtime.task import TaskId, TaskRunner
from kanal_worker.runtime.validation import connector_plugin, errors_of, validate

log = logging.getLogger(__name__)


class NotFoundError(ConnectError):
    """Unknown connector or task (HTTP 404)."""


class ConflictError(ConnectError):
    """Already exists, or conflicts with an operation in progress (HTTP 409)."""


class BadRequestError(ConnectError):
    """The request cannot be honoured as asked (HTTP 400)."""


class InvalidConfigError(BadRequestError):
    """The configuration has errors; ``errors`` lists every one by key."""

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        self.errors = dict(errors)
        lines = [f"{key}: {message}" for key, messages in errors.items() for message in messages]
        super().__init__(f"Connector configuration is invalid and contains the following "
                         f"{len(lines)} error(s):\n" + "\n".join(lines) +
                         "\nYou can also find the above list of errors at the endpoint "
                         "`/connector-plugins/{connectorType}/config/validate`")


def check_config(config: Mapping[str, str]) -> PluginInfo:
    """Raise ``InvalidConfigError`` listing every error of ``config``."""
    try:
        plugin = connector_plugin(config)
    except ConfigError as exc:
        raise InvalidConfigError({exc.key or "connector.class": [exc.message]}) from None
    errors = errors_of(validate(config))
    if errors:
        raise InvalidConfigError(errors)
    return plugin


class Herder(ABC):
    """Everything the REST API may ask; one implementation per deployment mode."""

    worker_id: str

    @abstractmethod
    def connectors(self) -> list[str]: ...

    @abstractmethod
    def connector_config(self, name: str) -> dict[str, str]: ...

    @abstractmethod
    def put_connector(self, name: str, config: dict[str, str], *, create_only: bool = False,
                      initial_state: str = "RUNNING") -> bool:
        """Create or update; True when created. ``create_only`` raises ConflictError."""

    @abstractmethod
    def delete_connector(self, name: str) -> None: ...

    @abstractmethod
    def connector_status(self, name: str) -> dict[str, Any]: ...

    @abstractmethod
    def task_configs(self, name: str) -> list[dict[str, str]]: ...

    @abstractmethod
    def connector_type(self, name: str) -> str: ...

    @abstractmethod
    def set_target_state(self, name: str, target: TargetState) -> None: ...

    @abstractmethod
    def restart(self, name: str, include_tasks: bool, only_failed: bool) -> bool:
        """Restart as asked; True when any task restarts (Apache answers 202 then)."""

    @abstractmethod
    def restart_task(self, name: str, task: int) -> None: ...

    def task_status(self, name: str, task: int) -> dict[str, Any]:
        for entry in self.connector_status(name)["tasks"]:
            if entry["id"] == task:
                return dict(entry)
        raise NotFoundError(f"Task {name}-{task} not found")


@dataclass
class ConnectorHolder:
    name: str
    config: dict[str, str]
    plugin: PluginInfo
    target: TargetState
    status: Status
    task_configs: list[dict[str, str]] = field(default_factory=list)
    tasks: list[TaskRunner] = field(default_factory=list)


class StandaloneHerder(Herder):
    """Runs connectors in this process, like Kafka Connect's standalone worker."""

    def __init__(self, worker_config: Mapping[str, str], worker_id: str,
                 offsets: OffsetStore, extra_providers: Mapping[str, Lookup] | None = None,
                 ) -> None:
        self.worker = dict(worker_config)
        self.worker_id = worker_id
        self.offsets = offsets
        self.providers = {**providers_from_worker_config(self.worker),
                          **(extra_providers or {})}
        self._connectors: dict[str, ConnectorHolder] = {}
        self._lock = threading.RLock()

    # -- queries -----------------------------------------------------------------------

    def _get(self, name: str) -> ConnectorHolder:
        holder = self._connectors.get(name)
        if holder is None:
            raise NotFoundError(f"Connector {name} not found")
        return holder

    def connectors(self) -> list[str]:
        with self._lock:
            return sorted(self._connectors)

    def connector_config(self, name: str) -> dict[str, str]:
        with self._lock:
            return dict(self._get(name).config)

    def connector_type(self, name: str) -> str:
        with self._lock:
            return self._get(name).plugin.kind

    def task_configs(self, name: str) -> list[dict[str, str]]:
        with self._lock:
            return [dict(c) for c in self._get(name).task_configs]

    def connector_status(self, name: str) -> dict[str, Any]:
        with self._lock:
            holder = self._get(name)
            return {
                "name": name,
                "connector": _status_json(holder.status),
                "tasks": [{"id": i, **_status_json(t.status)} for i, t in enumerate(holder.tasks)],
                "type": holder.plugin.kind,
            }

    def runners(self) -> list[TaskRunner]:
        with self._lock:
            return [t for h in self._connectors.values() for t in h.tasks]

    # -- changes -----------------------------------------------------------------------

    def put_connector(self, name: str, config: dict[str, str], *, create_only: bool = False,
                      initial_state: str = "RUNNING") -> bool:
        config = {**config, "name": name}
        plugin = check_config(config)
        with self._lock:
            existing = self._connectors.get(name)
            if existing is not None and create_only:
                raise ConflictError(f"Connector {name} already exists")
            if existing is not None:
                if existing.config == config:
                    return False
                self._stop_tasks(existing)
                existing.config, existing.plugin = config, plugin
                self._start(existing)
                return False
            try:
                target = TargetState.from_initial(initial_state)
            except KeyError:
                raise BadRequestError(f"Invalid initial_state {initial_state}; use RUNNING, "
                                      "PAUSED or STOPPED") from None
            holder = ConnectorHolder(name, config, plugin, target,
                                     Status(worker_id=self.worker_id))
            self._connectors[name] = holder
            self._start(holder)
            log.info("Connector %s created (%s, %d task(s))", name, plugin.class_name,
                     len(holder.tasks))
            return True

    def delete_connector(self, name: str) -> None:
        with self._lock:
            holder = self._get(name)
            self._stop_tasks(holder)
            del self._connectors[name]
            log.info("Connector %s deleted", name)

    def set_target_state(self, name: str, target: TargetState) -> None:
        with self._lock:
            holder = self._get(name)
            previous, holder.target = holder.target, target
            if target == TargetState.STOPPED:
                self._stop_tasks(holder)
                holder.tasks = []
                holder.status.set(State.STOPPED)
            elif previous == TargetState.STOPPED:
                self._start(holder)
            else:
                for task in holder.tasks:
                    task.set_target(target)
                holder.status.set(target.running_state)

    def restart(self, name: str, include_tasks: bool, only_failed: bool) -> bool:
        with self._lock:
            holder = self._get(name)
            connector_failed = holder.status.state == State.FAILED
            if not include_tasks:
                if only_failed and not connector_failed:
                    return False
                self._start(holder, restart_tasks=False)
                return False
            chosen = [i for i, t in enumerate(holder.tasks)
                      if not only_failed or t.status.state == State.FAILED]
            if only_failed and not chosen and not connector_failed:
                return False
            for index in chosen:
                self._restart_task(holder, index)
            return bool(chosen)

    def restart_task(self, name: str, task: int) -> None:
        with self._lock:
            holder = self._get(name)
            if not 0 <= task < len(holder.tasks):
                raise NotFoundError(f"Task {name}-{task} not found")
            self._restart_task(holder, task)

    def stop_all(self, timeout: float = 30) -> None:
        """Stop every task cleanly: flush, commit, close."""
        with self._lock:
            runners = self.runners()
            for runner in runners:
                runner.stop()
        deadline = time.monotonic() + timeout
        for runner in runners:
            if not runner.join(max(0.0, deadline - time.monotonic())):
                log.warning("Task %s did not stop within %.0fs", runner.id, timeout)

    # -- internals ---------------------------------------------------------------------

    def _start(self, holder: ConnectorHolder, restart_tasks: bool = True) -> None:
        """(Re)plan tasks; start them unless the connector is stopped."""
        if holder.target == TargetState.STOPPED:
            holder.status.set(State.STOPPED)
            return
        try:
            connector = holder.plugin.cls()
            max_tasks = int(holder.config.get("tasks.max", "1"))
            planned = connector.task_configs(holder.config, max_tasks)
        except Exception as exc:
            holder.status.set(State.FAILED, format_trace(exc))
            return
        if not restart_tasks and planned == holder.task_configs and holder.tasks:
            holder.status.set(holder.target.running_state)
            return
        self._stop_tasks(holder)
        holder.task_configs = planned
        holder.tasks = [self._runner(holder, i, c) for i, c in enumerate(planned)]
        holder.status.set(holder.target.running_state)
        for task in holder.tasks:
            task.start()

    def _runner(self, holder: ConnectorHolder, index: int, config: dict[str, str]) -> TaskRunner:
        task_id = TaskId(holder.name, index)
        try:
            resolved = resolve(config, self.providers)
        except ConfigError as exc:
            runner = _failed_runner(self, holder, task_id, config, exc)
            return runner
        if holder.plugin.kind == "sink":
            return SinkTaskRunner(task_id, resolved, self.worker, self.worker_id, holder.target,
                                  self._on_task_status, holder.plugin.cls)
        return SourceTaskRunner(task_id, resolved, self.worker, self.worker_id, holder.target,
                                self._on_task_status, holder.plugin.cls, self.offsets)

    def _restart_task(self, holder: ConnectorHolder, index: int) -> None:
        old = holder.tasks[index]
        old.status.set(State.RESTARTING)
        old.stop()
        old.join(30)
        runner = self._runner(holder, index, holder.task_configs[index])
        holder.tasks[index] = runner
        runner.start()

    def _stop_tasks(self, holder: ConnectorHolder) -> None:
        for task in holder.tasks:
            task.stop()
        for task in holder.tasks:
            if not task.join(30):
                log.warning("Task %s did not stop in time", task.id)

    def _on_task_status(self, runner: TaskRunner) -> None:
        status = runner.status
        if status.state == State.FAILED:
            log.error("Task %s is FAILED", runner.id)
        elif status.detail:
            log.info("Task %s is %s: %s", runner.id, status.state, status.detail)


class _FailedRunner(TaskRunner):
    """A task that could not even be configured; it reports FAILED with the reason."""

    def __init__(self, error: Exception, *args: Any) -> None:
        super().__init__(*args)
        self.error = error

    def execute(self) -> None:
        raise self.error


def _failed_runner(herder: StandaloneHerder, holder: ConnectorHolder, task_id: TaskId,
                   config: dict[str, str], error: Exception) -> TaskRunner:
    return _FailedRunner(error, task_id, config, herder.worker, herder.worker_id,
                         holder.target, herder._on_task_status)


def _status_json(status: Status) -> dict[str, Any]:
    out: dict[str, Any] = {"state": status.state.value, "worker_id": status.worker_id}
    if status.trace:
        out["trace"] = status.trace
    return out
