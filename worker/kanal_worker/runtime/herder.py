"""The herder: owns connectors, plans their tasks and answers for their states.

``Herder`` is what the REST API talks to. ``StandaloneHerder`` (``runtime.standalone``)
runs every task in this process; in Kubernetes a herder of the same shape reads and writes
``Connector`` resources instead, so the API behaves the same in both modes.
"""

from __future__ import annotations

import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kanal_worker.api.config import KeyInfo, describe
from kanal_worker.api.errors import ConfigError, ConnectError
from kanal_worker.api.plugins import HeaderConverter
from kanal_worker.config.providers import Lookup, resolve
from kanal_worker.runtime.loggers import PROCESS_LOGGERS, LoggerLevel, python_level
from kanal_worker.runtime.registry import PluginInfo, find, plugins
from kanal_worker.runtime.status import TargetState
from kanal_worker.runtime.validation import common_settings, connector_plugin, errors_of, validate


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


OFFSETS_ALTERED = "The offsets for this connector have been altered successfully"
OFFSETS_RESET = "The offsets for this connector have been reset successfully"


class Herder(ABC):
    """Everything the REST API may ask; one implementation per deployment mode.

    The abstract methods differ per mode; the others work the same everywhere (plugins
    and validation come from this worker's registry, logger levels are this process's).
    """

    worker_id: str
    providers: Mapping[str, Lookup]
    """This worker's config providers. Validation sees a configuration as its tasks will,
    ``${provider:path:key}`` placeholders resolved, as Apache validates the transformed
    configuration: checks that reach the external system need the real credentials."""

    def resolved(self, config: Mapping[str, str]) -> dict[str, str]:
        """``config`` with the placeholders of this worker's providers replaced; a value
        whose placeholder cannot be resolved stays as written, as Apache's transformer
        leaves it (the task that needs it fails and says why)."""
        resolved = {}
        for key, value in config.items():
            try:
                resolved.update(resolve({key: value}, self.providers))
            except ConfigError:
                resolved[key] = value
        return resolved

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
            return validate(self.resolved(config))
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
        number = python_level(level)
        if number is None:
            raise NotFoundError(f"invalid log level '{level}'.")
        return PROCESS_LOGGERS.set_level(namespace, number)


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

