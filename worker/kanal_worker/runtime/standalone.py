"""The standalone herder: runs every connector in this process, like Kafka Connect's
standalone worker."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from kanal_worker.api.errors import ConfigError
from kanal_worker.config.providers import Lookup, providers_from_worker_config, resolve
from kanal_worker.config.worker import client_config
from kanal_worker.runtime.group_offsets import ConsumerGroupOffsets, parse_sink_offsets
from kanal_worker.runtime.herder import (
    HEALTHY,
    OFFSETS_ALTERED,
    OFFSETS_RESET,
    BadRequestError,
    ConflictError,
    ConnectorOffset,
    Health,
    Herder,
    NotFoundError,
    check_config,
    check_source_offsets,
)
from kanal_worker.runtime.offsets import OffsetStore, partition_key
from kanal_worker.runtime.process import StartBarrier
from kanal_worker.runtime.registry import PluginInfo
from kanal_worker.runtime.runners import task_runner
from kanal_worker.runtime.status import State, Status, TargetState, format_trace
from kanal_worker.runtime.task import TaskId, TaskRunner
from kanal_worker.runtime.transforms import sub_config

log = logging.getLogger(__name__)


@dataclass
class ConnectorHolder:
    name: str
    config: dict[str, str]
    plugin: PluginInfo
    target: TargetState
    status: Status
    task_configs: list[dict[str, str]] = field(default_factory=list)
    tasks: list[TaskRunner] = field(default_factory=list)
    active_topics: set[str] = field(default_factory=set)
    """Shared with the connector's task runners, which add the topics they use."""


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
        self._cluster_id: str | None = None
        self._cluster_id_lock = threading.Lock()

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
            version = holder.plugin.cls.version
            return {
                "name": name,
                "connector": _status_json(holder.status, version),
                "tasks": [{"id": i, **_status_json(t.status, version)}
                          for i, t in enumerate(holder.tasks)],
                "type": holder.plugin.kind,
            }

    def kafka_cluster_id(self) -> str | None:
        with self._cluster_id_lock:
            if self._cluster_id is None:
                admin = AdminClient(client_config(self.worker, "admin"))
                try:
                    self._cluster_id = admin.list_topics(timeout=10).cluster_id
                except KafkaException as exc:
                    log.warning("Cannot read the Kafka cluster id: %s", exc)
            return self._cluster_id

    def health(self) -> Health:
        return HEALTHY

    def active_topics(self, name: str) -> list[str]:
        with self._lock:
            return sorted(self._get(name).active_topics.copy())

    def connector_offsets(self, name: str) -> list[ConnectorOffset]:
        with self._lock:
            holder = self._get(name)
        if holder.plugin.kind == "sink":
            return self._group_offsets(holder).read()
        return [ConnectorOffset(partition, offset)
                for partition, offset in self.offsets.all(name)]

    def runners(self) -> list[TaskRunner]:
        with self._lock:
            return [t for h in self._connectors.values() for t in h.tasks]

    # -- changes -----------------------------------------------------------------------

    def put_connector(self, name: str, config: dict[str, str], *, create_only: bool = False,
                      initial_state: str = "RUNNING") -> bool:
        config = {**config, "name": name}
        plugin = check_config(self.resolved(config))
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

    def reset_active_topics(self, name: str) -> None:
        with self._lock:
            self._get(name).active_topics.clear()

    def alter_offsets(self, name: str, offsets: list[ConnectorOffset]) -> str:
        holder = self._stopped(name)
        if holder.plugin.kind == "sink":
            self._group_offsets(holder).alter(parse_sink_offsets(offsets))
        else:
            check_source_offsets(offsets)
            self.offsets.put(name, {partition_key(entry.partition): entry.offset
                                    for entry in offsets})
        log.info("Offsets of connector %s altered", name)
        return OFFSETS_ALTERED

    def reset_offsets(self, name: str) -> str:
        holder = self._stopped(name)
        if holder.plugin.kind == "sink":
            self._group_offsets(holder).reset()
        else:
            self.offsets.put(name, {partition_key(partition): None
                                    for partition, _ in self.offsets.all(name)})
        log.info("Offsets of connector %s reset", name)
        return OFFSETS_RESET

    def set_cluster_logger_level(self, namespace: str, level: str) -> None:
        self.set_worker_logger_level(namespace, level)  # this worker is the whole cluster

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
                holder.task_configs = []
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
                runner.abandon()

    # -- internals ---------------------------------------------------------------------

    def _stopped(self, name: str) -> ConnectorHolder:
        """The connector, if it is STOPPED (offsets may only change then)."""
        with self._lock:
            holder = self._get(name)
            if holder.target != TargetState.STOPPED or holder.tasks:
                raise BadRequestError(
                    "Connectors must be in the STOPPED state before their offsets can be "
                    "modified. This can be done for the specified connector by issuing a "
                    f"'PUT' request to the '/connectors/{name}/stop' endpoint")
            return holder

    def _group_offsets(self, holder: ConnectorHolder) -> ConsumerGroupOffsets:
        overrides = sub_config(holder.config, "admin.override.")
        return ConsumerGroupOffsets(client_config(self.worker, "admin", overrides), holder.name)

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
        barrier = StartBarrier()
        holder.tasks = [self._runner(holder, i, c, barrier) for i, c in enumerate(planned)]
        holder.status.set(holder.target.running_state)
        try:
            for task in holder.tasks:
                task.start()
        finally:
            barrier.close()

    def _runner(self, holder: ConnectorHolder, index: int, config: dict[str, str],
                barrier: StartBarrier | None = None) -> TaskRunner:
        task_id = TaskId(holder.name, index)
        try:
            resolved = resolve(config, self.providers)
        except ConfigError as exc:
            return _FailedRunner(exc, task_id, config, self.worker, self.worker_id,
                                 holder.target, self._on_task_status)
        return task_runner(holder.plugin, task_id, resolved, self.worker, self.worker_id,
                           holder.target, self._on_task_status, self.offsets,
                           holder.active_topics, len(holder.task_configs), barrier)

    def _restart_task(self, holder: ConnectorHolder, index: int) -> None:
        old = holder.tasks[index]
        old.status.set(State.RESTARTING)
        old.stop()
        if not old.join(30):
            log.warning("Task %s did not stop in time; restarting it anyway", old.id)
            old.abandon()
        runner = self._runner(holder, index, holder.task_configs[index])
        holder.tasks[index] = runner
        runner.start()

    def _stop_tasks(self, holder: ConnectorHolder) -> None:
        for task in holder.tasks:
            task.stop()
        for task in holder.tasks:
            if not task.join(30):
                log.warning("Task %s did not stop in time", task.id)
                task.abandon()

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


def _status_json(status: Status, version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"state": status.state.value, "worker_id": status.worker_id,
                           "version": version}
    if status.trace:
        out["trace"] = status.trace
    if status.detail:
        out["detail"] = status.detail  # Kanal: what a running task is waiting for
    return out
