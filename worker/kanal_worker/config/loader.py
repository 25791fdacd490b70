"""Connector definitions in every form Kanal accepts.

The same connector can be written as Kafka Connect ``.properties``, as the JSON body
of ``POST /connectors`` (``{"name": ..., "config": {...}}``), as a bare JSON config
map, or as a Kanal ``Connector`` manifest in YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from kanal_worker.api.errors import ConfigError
from kanal_worker.config.properties import load_properties

MANIFEST_KIND = "Connector"
MANIFEST_GROUP = "kanal.dev"


@dataclass
class ConnectorDefinition:
    name: str
    config: dict[str, str]
    initial_state: str = "RUNNING"
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def stringify(value: Any) -> str:
    """Config values as Kafka Connect stores them: strings (lists comma-joined)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(stringify(v) for v in value)
    if value is None:
        return ""
    return str(value)


def load_connector(path: Path) -> ConnectorDefinition:
    suffix = path.suffix.lower()
    if suffix in (".properties", ".conf", ""):
        config = load_properties(path)
        return _from_config(config, str(path), fallback_name=path.stem)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(None, f"cannot read {path}: {exc.strerror}; check the path") from None
    if suffix == ".json":
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(None, f"{path}: not valid JSON: {exc}") from None
        return from_rest_json(document, str(path), fallback_name=path.stem)
    if suffix in (".yaml", ".yml"):
        try:
            documents = [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as exc:
            raise ConfigError(None, f"{path}: not valid YAML: {exc}") from None
        connectors = [d for d in documents
                      if isinstance(d, dict) and d.get("kind") == MANIFEST_KIND]
        if len(connectors) != 1:
            raise ConfigError(None, f"{path}: expected exactly one 'kind: Connector' document, "
                              f"found {len(connectors)}")
        return from_manifest(connectors[0], str(path))
    raise ConfigError(None, f"{path}: unknown file type {suffix!r}; use .properties, .json "
                      "or .yaml")


def from_rest_json(document: Any, source: str = "<request>",
                   fallback_name: str | None = None) -> ConnectorDefinition:
    if not isinstance(document, dict):
        raise ConfigError(None, f"{source}: expected a JSON object")
    if "config" in document and isinstance(document["config"], dict):
        config = {str(k): stringify(v) for k, v in document["config"].items()}
        name = document.get("name") or config.get("name") or fallback_name
        definition = _from_config(config, source, fallback_name=name)
        if document.get("initial_state"):
            definition.initial_state = str(document["initial_state"]).upper()
        return definition
    config = {str(k): stringify(v) for k, v in document.items()}
    return _from_config(config, source, fallback_name=fallback_name)


def from_manifest(document: dict[str, Any], source: str = "<manifest>") -> ConnectorDefinition:
    metadata = document.get("metadata") or {}
    spec = document.get("spec") or {}
    name = metadata.get("name")
    if not name:
        raise ConfigError("metadata.name", f"{source}: a Connector needs metadata.name")
    if not spec.get("class"):
        raise ConfigError("spec.class", f"{source}: set spec.class to the connector class")
    config = {str(k): stringify(v) for k, v in (spec.get("config") or {}).items()}
    config["connector.class"] = str(spec["class"])
    config["tasks.max"] = str(spec.get("tasksMax", config.get("tasks.max", 1)))
    config["name"] = name
    state = str(spec.get("state", "running")).upper()
    return ConnectorDefinition(name, config, initial_state=state, source=source,
                               extra={"clusterRef": spec.get("clusterRef")})


def _from_config(config: dict[str, str], source: str,
                 fallback_name: str | None) -> ConnectorDefinition:
    name = config.get("name") or fallback_name
    if not name:
        raise ConfigError("name", f"{source}: the connector needs a name; set name=...")
    config["name"] = name
    if not config.get("connector.class"):
        raise ConfigError("connector.class", f"{source}: set connector.class to the "
                          "connector to run (see `kanal plugins`)")
    return ConnectorDefinition(name, config, source=source)
