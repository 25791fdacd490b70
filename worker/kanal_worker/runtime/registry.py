"""Finds plugins through entry points and answers to their Kafka Connect class names.

A plugin's module is imported when the plugin is first needed; listing plugins imports
them all."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points, requires
from typing import Any

from kanal_worker.api.errors import ConfigError
from kanal_worker.api.plugins import Plugin

log = logging.getLogger(__name__)

GROUPS = {
    "connector": "kanal.connectors",
    "converter": "kanal.converters",
    "transform": "kanal.transforms",
    "predicate": "kanal.predicates",
}


@dataclass(frozen=True)
class PluginInfo:
    name: str
    cls: type[Any]
    group: str

    @property
    def class_name(self) -> str:
        """The name shown in plugin listings: the Kafka Connect class name when the
        plugin has one, so tools that match on it keep working."""
        return self.cls.aliases[0] if self.cls.aliases else self.name

    @property
    def task_class_name(self) -> str:
        """The task class Apache names in each task's configuration (``task.class``): by
        Kafka Connect's convention its connector's class name ending in Task instead of
        Connector; else the Python task class."""
        name = self.class_name
        if name.endswith("Connector"):
            return name.removesuffix("Connector") + "Task"
        task = self.cls.task_class
        return f"{task.__module__}.{task.__qualname__}"

    @property
    def kind(self) -> str:
        return getattr(self.cls, "kind", self.group)


@cache
def _entry_points(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUPS[group])}


@cache
def _load(group: str, name: str) -> PluginInfo | None:
    """The plugin of entry point ``name``, imported now; None (logged) when it is broken."""
    ep = _entry_points(group)[name]
    try:
        cls = ep.load()
    except ModuleNotFoundError as exc:
        log.error("plugin %s of %s cannot be loaded: %s", ep.name, ep.group,
                  missing_extra(exc) or exc)
        return None
    except Exception:
        log.exception("plugin %s of %s cannot be loaded; skipping it", ep.name, ep.group)
        return None
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        log.error("entry point %s of %s is not a Kanal plugin; skipping it", ep.name, group)
        return None
    return PluginInfo(ep.name, cls, group)


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """How to install the missing module of ``exc`` when one of Kanal's extras (see
    pyproject.toml) provides it, e.g. ``pip install 'kanal[parquet]'``; else None."""
    module = (exc.name or "").replace(".", "-").replace("_", "-").lower()
    try:
        requirements = requires("kanal") or []
    except PackageNotFoundError:
        return None
    for requirement in requirements:
        found = re.match(r"([A-Za-z0-9_.-]+).*;.*extra\s*==\s*[\"']([\w-]+)[\"']", requirement)
        if not found or found[2] == "all":
            continue
        package = re.sub(r"[-_.]+", "-", found[1]).lower()
        # opensearch-py installs opensearchpy: compare without the separators too
        if module and (package == module or package.startswith(module + "-")
                       or module.startswith(package + "-")
                       or package.replace("-", "") == module.replace("-", "")):
            return (f"the Python package {package} is not installed; it comes with the "
                    f"extra {found[2]}: pip install 'kanal[{found[2]}]'")
    return None


def plugins(group: str) -> dict[str, PluginInfo]:
    """Every plugin of ``group`` by entry point name (imports them all)."""
    return {name: info for name in _entry_points(group)
            if (info := _load(group, name)) is not None}


def _names(info: PluginInfo) -> set[str]:
    """Every name ``info`` answers to: entry point, aliases and their simple class names
    (and for connectors, without the ``Connector`` suffix)."""
    names = {info.name, *info.cls.aliases}
    for name in list(names):
        simple = name.rsplit(".", 1)[-1]
        names.add(simple)
        if info.group == "connector" and simple.endswith("Connector"):
            names.add(simple.removesuffix("Connector"))
    return names


@cache
def _index(group: str) -> dict[str, PluginInfo]:
    index: dict[str, PluginInfo] = {}
    for info in plugins(group).values():
        for name in _names(info):
            index.setdefault(name, info)
    return index


def _by_entry_point(group: str, name: str) -> PluginInfo | None:
    """The plugin whose entry point ``name`` designates (its own name, or an alias whose
    simple class name is the entry point's), imported alone: a worker then imports only
    the plugins it runs (the others cost memory and start-up time)."""
    simple = name.rsplit(".", 1)[-1]
    for candidate in (name, simple, simple + "Connector" if group == "connector" else None):
        if candidate in _entry_points(group):
            info = _load(group, candidate)
            if info is not None and name in _names(info):
                return info
    return None


def find(group: str, name: str, key: str) -> PluginInfo:
    """The plugin ``name`` (entry point, alias or simple class name) of ``group``.

    ``key`` is the configuration key that named it, for the error message.
    """
    name = name.strip()
    info = _by_entry_point(group, name) or _index(group).get(name)
    if info is None:
        known = ", ".join(sorted(plugins(group)))
        raise ConfigError(key, f"Failed to find any class that implements {group} and which "
                          f"name matches {name}; available: {known}")
    return info
