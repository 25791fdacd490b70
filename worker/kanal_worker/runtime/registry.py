"""Finds plugins through entry points and answers to their Kafka Connect class names."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
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
    def kind(self) -> str:
        return getattr(self.cls, "kind", self.group)


@cache
def plugins(group: str) -> dict[str, PluginInfo]:
    """Every plugin of ``group`` by entry point name."""
    found: dict[str, PluginInfo] = {}
    for ep in entry_points(group=GROUPS[group]):
        try:
            cls = ep.load()
        except Exception:
            log.exception("plugin %s of %s cannot be loaded; skipping it", ep.name, ep.group)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            log.error("entry point %s of %s is not a Kanal plugin; skipping it", ep.name, group)
            continue
        found[ep.name] = PluginInfo(ep.name, cls, group)
    return found


@cache
def _index(group: str) -> dict[str, PluginInfo]:
    index: dict[str, PluginInfo] = {}
    for info in plugins(group).values():
        names = {info.name, *info.cls.aliases}
        for name in list(names):
            simple = name.rsplit(".", 1)[-1]
            names.add(simple)
            if group == "connector" and simple.endswith("Connector"):
                names.add(simple.removesuffix("Connector"))
        for name in names:
            index.setdefault(name, info)
    return index


def find(group: str, name: str, key: str) -> PluginInfo:
    """The plugin ``name`` (entry point, alias or simple class name) of ``group``.

    ``key`` is the configuration key that named it, for the error message.
    """
    info = _index(group).get(name.strip())
    if info is None:
        known = ", ".join(sorted(plugins(group)))
        raise ConfigError(key, f"Failed to find any class that implements {group} and which "
                          f"name matches {name.strip()}; available: {known}")
    return info
