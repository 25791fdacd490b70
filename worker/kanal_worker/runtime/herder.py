"""The herder: owns connectors, plans their tasks and answers for their states.

``Herder`` is what the REST API talks to. ``StandaloneHerder`` runs every task in this
process; in Kubernetes a herder of the same shape reads and writes ``Connector``
resources instead, so the API behaves the same in both modes.
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from kanal_worker.api.config import KeyInfo, describe
from kanal_worker.api.errors import ConfigError, ConnectError
from kanal_worker.api.plugins import HeaderConverter
from kanal_worker.config.providers import Lookup, providers_from_worker_config, resolve
from kanal_worker.config.worker import client_config
from kanal_worker.runtime.offsets import OffsetStore, partition_key
from kanal_worker.runtime.registry import PluginInfo, find, plugins
from kanal_worker.runtime.sink import SinkTaskRunner, group_id
from kanal_worker.runtime.source import SourceTaskRunner
from kanal_worker.runtime.status import State, Status, TargetState, format_trace
from kanal_worker.runtime.task import TaskId, TaskRunner
from kanal_worker.runtime.transforms import sub_config
from kanal_worker.runtime.validation import common_settings, connector_plugin, errors_of, validate

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
    errors: dict[str, list[str]] = {}
    name = config.get("name", "")
    if not name.strip() or "/" in name or any(unicodedata.category(char) == "Cc"
                                               for char in name):
        # a name with "/" could never be addressed in a REST path
        errors["name"] = ["Connector names may not be empty, blank or contain '/' or "
                          "control characters"]
    try:
        plugin = connector_plugin(config)
    except ConfigError as exc:
        raise InvalidConfigError({**errors, exc.key or "connector.class": [exc.message]}
                                 ) from None
    for key, messages in errors_of(validate(config)).items():
        errors.setdefault(key, []).extend(messages)
    if errors:
        raise InvalidConfigError(errors)
    return plugin


@dataclass(frozen=True)
class Health:
    """What ``GET /health`` reports; ``status`` is ``healthy``, ``starting`` or ``unhealthy``."""

    status: str
    message: str


HEALTHY = Health("healthy", "Worker has completed startup and is ready to handle requests.")


@dataclass(frozen=True)
class ConnectorOffset:
    """One offset as KIP-875 shows it: a source partition (for a sink, the Kafka topic
    partition) and its offset; an ``offset`` of None removes the partition's offset."""

    partition: dict[str, Any]
    offset: dict[str, Any] | None


@dataclass(frozen=True)
class PluginDescription:
    """A plugin as ``GET /connector-plugins`` lists it."""

    class_name: str
    type: str
    version: str


@dataclass(frozen=True)
class LoggerLevel:
    """A logger's level under Apache's names, and when the REST API last changed it (ms)."""

    level: str
    last_modified: int | None


OFFSETS_ALTERED = "The offsets for this connector have been altered successfully"
OFFSETS_RESET = "The offsets for this connector have been reset successfully"


class Herder(ABC):
    """Everything the REST API may ask; one implementation per deployment mode.

    The abstract methods differ per mode; the others work the same everywhere (plugins
    and validation come from this worker's registry, logger levels are this process's).
    """

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
        """Restart as asked; True when any task restarts."""

    @abstractmethod
    def restart_task(self, name: str, task: int) -> None: ...

    @abstractmethod
    def kafka_cluster_id(self) -> str | None:
        """The id of the Kafka cluster this worker uses; None while Kafka cannot be reached."""

    @abstractmethod
    def health(self) -> Health: ...

    @abstractmethod
    def active_topics(self, name: str) -> list[str]:
        """Topics the connector's tasks consumed from or produced to since the last reset."""

    @abstractmethod
    def reset_active_topics(self, name: str) -> None: ...

    @abstractmethod
    def connector_offsets(self, name: str) -> list[ConnectorOffset]: ...

    @abstractmethod
    def alter_offsets(self, name: str, offsets: list[ConnectorOffset]) -> str:
        """Write ``offsets`` of a STOPPED connector; returns the message for the user."""

    @abstractmethod
    def reset_offsets(self, name: str) -> str:
        """Forget every offset of a STOPPED connector; returns the message for the user."""

    @abstractmethod
    def set_cluster_logger_level(self, namespace: str, level: str) -> None:
        """Set the level of ``namespace`` and its children on every worker."""

    def task_status(self, name: str, task: int) -> dict[str, Any]:
        for entry in self.connector_status(name)["tasks"]:
            if entry["id"] == task:
                return dict(entry)
        raise NotFoundError(f"Task {name}-{task} not found")

    def connector_info(self, name: str) -> dict[str, Any]:
        """Name, configuration, task ids and type, as ``GET /connectors/{name}`` shows."""
        return {
            "name": name,
            "config": self.connector_config(name),
            "tasks": [{"connector": name, "task": index}
                      for index in range(len(self.task_configs(name)))],
            "type": self.connector_type(name),
        }

    def patch_connector(self, name: str, patch: Mapping[str, str | None]) -> None:
        """Change some keys of an existing connector; a None value removes the key."""
        config = self.connector_config(name)
        for key, value in patch.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        self.put_connector(name, config)

    def connector_plugins(self, connectors_only: bool) -> list[PluginDescription]:
        groups = ["connector"] if connectors_only else list(PLUGIN_GROUPS)
        found = [PluginDescription(info.class_name, plugin_type(info), info.cls.version)
                 for group in groups for info in plugins(group).values()]
        return sorted(found, key=lambda p: (PLUGIN_TYPE_ORDER.index(p.type), p.class_name))

    def plugin_config(self, name: str) -> list[KeyInfo]:
        """Every key ``name`` accepts; a connector's include the keys all connectors share."""
        for group in PLUGIN_GROUPS:
            try:
                info = find(group, name, "plugin")
            except ConfigError:
                continue
            keys = describe(info.cls.settings)
            if group == "connector":
                own = {key.name for key in keys}
                keys += [key for key in describe(common_settings(info)) if key.name not in own]
            return keys
        raise NotFoundError(f"Unknown plugin {name}.")

    def validate_config(self, plugin: str, config: Mapping[str, str]) -> dict[str, Any]:
        """ConfigInfos of ``config`` for the connector ``plugin``."""
        named = config.get("connector.class")
        if named is None:
            config = {**config, "connector.class": plugin}
        elif not _without_connector_suffix(named).endswith(_without_connector_suffix(plugin)):
            raise BadRequestError(f"Included connector type {named} does not match request "
                                  f"type {plugin}")
        try:
            return validate(config)
        except ConfigError as exc:
            raise BadRequestError(exc.message) from None

    def logger_levels(self) -> dict[str, LoggerLevel]:
        """Loggers of this worker whose level is set explicitly, and the root logger."""
        return PROCESS_LOGGERS.levels()

    def logger_level(self, name: str) -> LoggerLevel:
        level = PROCESS_LOGGERS.level(name)
        if level is None:
            raise NotFoundError(f"Logger {name} not found.")
        return level

    def set_worker_logger_level(self, namespace: str, level: str) -> list[str]:
        """Set the level of ``namespace`` and its children in this worker; returns the
        loggers whose level changed."""
        return PROCESS_LOGGERS.set_level(namespace, python_level(level))


PLUGIN_GROUPS = ("connector", "transform", "predicate", "converter")
PLUGIN_TYPE_ORDER = ("sink", "source", "transformation", "predicate", "converter",
                     "header_converter")


def plugin_type(info: PluginInfo) -> str:
    """The plugin's type under Apache's names."""
    if info.group == "connector":
        return info.kind
    if info.group == "converter":
        return "header_converter" if issubclass(info.cls, HeaderConverter) else "converter"
    return "transformation" if info.group == "transform" else info.group


def _without_connector_suffix(name: str) -> str:
    return name.removesuffix("Connector") if name != "Connector" else name


APACHE_LEVELS = {"OFF": logging.CRITICAL + 10, "FATAL": logging.CRITICAL,
                 "ERROR": logging.ERROR, "WARN": logging.WARNING, "INFO": logging.INFO,
                 "DEBUG": logging.DEBUG, "TRACE": 5, "ALL": 1}
"""Apache's (log4j) level names and the Python levels they map to."""
PYTHON_LEVEL_NAMES = {"WARNING": "WARN", "CRITICAL": "FATAL"}


def python_level(name: str) -> int:
    """The Python level of an Apache level name (Python's own names are accepted too)."""
    upper = name.strip().upper()
    level = APACHE_LEVELS.get(PYTHON_LEVEL_NAMES.get(upper, upper))
    if level is None:
        raise NotFoundError(f"invalid log level '{name}'.")
    return level


def apache_level(level: int) -> str:
    """The Apache name of a Python level: the highest Apache level it reaches."""
    reached = [name for name, value in APACHE_LEVELS.items() if value <= level]
    return max(reached, key=APACHE_LEVELS.__getitem__) if reached else "ALL"


class ProcessLoggers:
    """This process's Python loggers, seen and changed the way Kafka Connect's are."""

    ROOT = "root"

    def __init__(self) -> None:
        self._modified: dict[str, int] = {}
        self._lock = threading.Lock()

    def levels(self) -> dict[str, LoggerLevel]:
        with self._lock:
            found = {name: self._describe(logger) for name, logger in self._existing().items()
                     if logger.level != logging.NOTSET}
            found[self.ROOT] = self._describe(logging.getLogger())
            return dict(sorted(found.items()))

    def level(self, name: str) -> LoggerLevel | None:
        with self._lock:
            logger = (logging.getLogger() if name.lower() == self.ROOT
                      else self._existing().get(name))
            return None if logger is None else self._describe(logger)

    def set_level(self, namespace: str, level: int) -> list[str]:
        with self._lock:
            existing = self._existing()
            if namespace.lower() == self.ROOT:
                targets = [*existing.values(), logging.getLogger()]
            else:
                targets = [logger for name, logger in existing.items()
                           if name == namespace or name.startswith(namespace + ".")]
                if namespace not in existing:
                    targets.append(logging.getLogger(namespace))
            changed = []
            for logger in targets:
                if logger.getEffectiveLevel() != level:
                    logger.setLevel(level)
                    self._modified[logger.name] = int(time.time() * 1000)
                    changed.append(logger.name)
            if changed:
                log.info("Level of logger %s and its children set to %s", namespace,
                         apache_level(level))
            return sorted(changed)

    def _existing(self) -> dict[str, logging.Logger]:
        return {name: logger for name, logger in logging.root.manager.loggerDict.items()
                if isinstance(logger, logging.Logger)}

    def _describe(self, logger: logging.Logger) -> LoggerLevel:
        return LoggerLevel(apache_level(logger.getEffectiveLevel()),
                           self._modified.get(logger.name))


PROCESS_LOGGERS = ProcessLoggers()
"""Logger levels are process-wide, and so is the record of when they changed."""


SINK_TOPIC, SINK_PARTITION, SINK_OFFSET = "kafka_topic", "kafka_partition", "kafka_offset"
ADMIN_TIMEOUT = 30.0
STATIC_MEMBERS_WAIT = 45.0
"""A static group member (``group.instance.id``) does not leave the group when its task
stops: the broker keeps it until its session times out. Offset changes wait up to this
long for the group to empty."""


def parse_sink_offsets(offsets: list[ConnectorOffset]) -> dict[tuple[str, int], int | None]:
    """Kafka topic partitions and their offsets (None resets), checked like Kafka Connect."""
    parsed: dict[tuple[str, int], int | None] = {}
    for entry in offsets:
        partition = entry.partition
        if not partition:
            raise BadRequestError("The partition for a sink connector offset cannot be null "
                                  "or missing")
        if SINK_TOPIC not in partition or SINK_PARTITION not in partition:
            raise BadRequestError(f"The partition for a sink connector offset must contain "
                                  f"the keys '{SINK_TOPIC}' and '{SINK_PARTITION}'")
        topic, number = partition[SINK_TOPIC], partition[SINK_PARTITION]
        if not isinstance(topic, str) or not topic:
            raise BadRequestError("Kafka topic names must be valid strings and may not be "
                                  "null")
        key = (topic, _integer(number, "partition"))
        if entry.offset is None:
            parsed[key] = None
        elif SINK_OFFSET not in entry.offset:
            raise BadRequestError(f"The offset for a sink connector should either be null or "
                                  f"contain the key '{SINK_OFFSET}'")
        else:
            parsed[key] = _integer(entry.offset[SINK_OFFSET], "offset")
    return parsed


def _integer(value: Any, what: str) -> int:
    """Kafka Connect accepts both 10 and "10"."""
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            number = int(value)
        except ValueError:
            pass
        else:
            if number >= 0:
                return number
    raise BadRequestError(f"Failed to parse the following Kafka {what} value in the provided "
                          f"offsets: '{value}'. {what.capitalize()} values for sink connectors "
                          "need to be integers.")


def check_source_offsets(offsets: list[ConnectorOffset]) -> None:
    """Source partitions and offsets are maps of strings to primitive values."""
    for entry in offsets:
        if not entry.partition:
            raise BadRequestError("The partition for a source connector offset cannot be null "
                                  "or empty")
        for part in (entry.partition, entry.offset or {}):
            for key, value in part.items():
                if value is not None and not isinstance(value, str | int | float | bool):
                    raise BadRequestError(f"Offsets may only contain primitive types as "
                                          f"values, but field {key} contains "
                                          f"{type(value).__name__}")


class ConsumerGroupOffsets:
    """A sink connector's offsets: those of its consumer group, through the admin client."""

    def __init__(self, admin_config: Mapping[str, str], connector: str) -> None:
        self.admin = AdminClient(dict(admin_config))
        self.connector = connector
        self.group = group_id(connector)

    def read(self) -> list[ConnectorOffset]:
        request = [ConsumerGroupTopicPartitions(self.group)]
        try:
            listed = self.admin.list_consumer_group_offsets(request)[self.group].result(
                ADMIN_TIMEOUT)
        except KafkaException as exc:
            raise ConnectError(f"Failed to read the offsets of consumer group {self.group}: "
                               f"{exc}") from None
        return [ConnectorOffset({SINK_TOPIC: tp.topic, SINK_PARTITION: tp.partition},
                                {SINK_OFFSET: tp.offset})
                for tp in listed.topic_partitions if tp.offset >= 0]

    def alter(self, offsets: Mapping[tuple[str, int], int | None]) -> None:
        """Write ``offsets``; a None offset removes the partition's committed offset."""
        self._await_empty_group("alter")
        wanted = {tp: offset for tp, offset in offsets.items() if offset is not None}
        if len(wanted) < len(offsets):
            # The Python admin client cannot delete single partitions' offsets: delete the
            # group and write back what remains (the group is empty, nothing races it).
            current = {(o.partition[SINK_TOPIC], o.partition[SINK_PARTITION]):
                       int(o.offset[SINK_OFFSET]) for o in self.read() if o.offset}
            wanted = {**{tp: offset for tp, offset in current.items() if tp not in offsets},
                      **wanted}
            self._delete_group("alter")
        if wanted:
            partitions = [TopicPartition(topic, number, offset)
                          for (topic, number), offset in sorted(wanted.items())]
            request = [ConsumerGroupTopicPartitions(self.group, partitions)]
            try:
                altered = self.admin.alter_consumer_group_offsets(request)[self.group].result(
                    ADMIN_TIMEOUT)
            except KafkaException as exc:
                raise ConnectError(f"Failed to alter consumer group offsets for connector "
                                   f"{self.connector}: {exc}") from None
            for tp in altered.topic_partitions:
                if tp.error is not None and tp.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise BadRequestError(f"Topic partition {tp.topic}-{tp.partition} does not "
                                          "exist; offsets can only be set for existing ones")
                if tp.error is not None:
                    raise ConnectError(f"Failed to alter the offset of {tp.topic}-"
                                       f"{tp.partition} for connector {self.connector}: "
                                       f"{tp.error.str()}")

    def reset(self) -> None:
        self._await_empty_group("reset")
        self._delete_group("reset")

    def _delete_group(self, action: str) -> None:
        try:
            self.admin.delete_consumer_groups([self.group])[self.group].result(ADMIN_TIMEOUT)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:
                raise ConnectError(f"Failed to {action} consumer group offsets for connector "
                                   f"{self.connector}: {exc}") from None

    def _await_empty_group(self, action: str) -> None:
        deadline = time.monotonic() + STATIC_MEMBERS_WAIT
        while True:
            try:
                description = self.admin.describe_consumer_groups([self.group])[
                    self.group].result(ADMIN_TIMEOUT)
            except KafkaException as exc:
                raise ConnectError(f"Failed to describe consumer group {self.group}: "
                                   f"{exc}") from None
            if not description.members:
                return
            if time.monotonic() > deadline:
                raise ConflictError(
                    f"Failed to {action} consumer group offsets for connector "
                    f"{self.connector} either because its tasks haven't stopped completely "
                    "yet or the connector was resumed before the request could be completed. "
                    "If the connector is in a stopped state, this operation can be safely "
                    "retried.")
            time.sleep(0.5)


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
        data_runner: SinkTaskRunner | SourceTaskRunner
        if holder.plugin.kind == "sink":
            data_runner = SinkTaskRunner(task_id, resolved, self.worker, self.worker_id,
                                         holder.target, self._on_task_status, holder.plugin.cls)
        else:
            data_runner = SourceTaskRunner(task_id, resolved, self.worker, self.worker_id,
                                           holder.target, self._on_task_status,
                                           holder.plugin.cls, self.offsets)
        data_runner.active_topics = holder.active_topics
        return data_runner

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


def _status_json(status: Status, version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"state": status.state.value, "worker_id": status.worker_id,
                           "version": version}
    if status.trace:
        out["trace"] = status.trace
    if status.detail:
        out["detail"] = status.detail  # Kanal: what a running task is waiting for
    return out
