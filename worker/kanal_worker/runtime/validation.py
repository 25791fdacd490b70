"""Validates a connector configuration and describes it as Kafka Connect's ConfigInfos.

The same answer feeds ``PUT /connector-plugins/{plugin}/config/validate``,
``kanal validate`` and the operator's status: every key with its definition, its
value and the errors found for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from kanal_worker.api.config import KeyInfo, Settings, describe, secret_keys
from kanal_worker.api.errors import ConfigError
from kanal_worker.api.plugins import Connector
from kanal_worker.config.connector import CommonSettings, SinkSettings, SourceSettings
from kanal_worker.config.kafka_clients import client_secret_keys
from kanal_worker.runtime.registry import PluginInfo, find
from kanal_worker.runtime.transforms import sub_config

HIDDEN = "[hidden]"
CONVERTER_KEYS = ("key.converter", "value.converter")


def connector_plugin(config: Mapping[str, str]) -> PluginInfo:
    name = config.get("connector.class", "").strip()
    if not name:
        raise ConfigError("connector.class", "Connector config contains no connector type; "
                          "set connector.class")
    return find("connector", name, "connector.class")


def common_settings(plugin: PluginInfo) -> type[CommonSettings]:
    return SinkSettings if plugin.kind == "sink" else SourceSettings


def validate(config: Mapping[str, str]) -> dict[str, Any]:
    """ConfigInfos for ``config`` (raises ConfigError only for an unknown connector class)."""
    plugin = connector_plugin(config)
    entries: list[tuple[KeyInfo, list[str]]] = []
    common = common_settings(plugin)
    plugin_settings: type[Settings] = plugin.cls.settings
    _add(entries, describe(common), common.config_errors(config))
    plugin_errors = plugin_settings.config_errors(config)
    if not plugin_errors:
        connector: Connector[Any] = plugin.cls()
        plugin_errors = connector.validate(plugin_settings.parse(config))
    _add(entries, describe(plugin_settings), plugin_errors)
    _add_chain(entries, config, "transforms", "transform")
    _add_chain(entries, config, "predicates", "predicate")
    _add_converters(entries, config)
    hidden = secret_keys(plugin_settings) | _chain_secrets(config) | _converter_secrets(config)
    groups: list[str] = []
    configs = []
    for info, errors in entries:
        if info.group and info.group not in groups:
            groups.append(info.group)
        value = config.get(info.name)
        if value is None and info.default_value is not None:
            value = info.default_value
        if info.name in hidden and value is not None:
            value = HIDDEN
        definition = asdict(info)
        definition.pop("recommended")
        configs.append({
            "definition": definition,
            "value": {"name": info.name, "value": value,
                      "recommended_values": info.recommended, "errors": errors,
                      "visible": True},
        })
    return {
        "name": plugin.class_name,
        "error_count": sum(len(c["value"]["errors"]) for c in configs),  # type: ignore[index]
        "groups": groups,
        "configs": configs,
    }


def errors_of(infos: Mapping[str, Any]) -> dict[str, list[str]]:
    """The keys with errors in a ConfigInfos answer."""
    return {c["value"]["name"]: c["value"]["errors"] for c in infos["configs"]
            if c["value"]["errors"]}


def _add(entries: list[tuple[KeyInfo, list[str]]], infos: list[KeyInfo],
         errors: Mapping[str, list[str]]) -> None:
    known = {info.name for info in infos}
    for info in infos:
        entries.append((info, list(errors.get(info.name, []))))
    for key, messages in errors.items():
        if key not in known:
            entries.append((_bare(key or "connector", None), list(messages)))


def _bare(name: str, group: str | None) -> KeyInfo:
    return KeyInfo(name=name, type="STRING", required=False, default_value=None,
                   importance="HIGH", documentation="", group=group, order=-1, width="NONE",
                   display_name=name, dependents=[], recommended=[])


def _add_chain(entries: list[tuple[KeyInfo, list[str]]], config: Mapping[str, str],
               list_key: str, group: str) -> None:
    aliases = [a.strip() for a in config.get(list_key, "").split(",") if a.strip()]
    defined_predicates = [a.strip() for a in config.get("predicates", "").split(",")
                          if a.strip()]
    for alias in aliases:
        prefix = f"{list_key}.{alias}."
        type_key = prefix + "type"
        group_name = f"{list_key.capitalize()}: {alias}"
        type_info = KeyInfo(
            name=type_key, type="CLASS", required=True, default_value=None, importance="HIGH",
            documentation=f"Class for the '{alias}' {group}.", group=group_name, order=0,
            width="LONG", display_name=f"{group.capitalize()} type for {alias}", dependents=[],
            recommended=[])
        try:
            plugin = find(group, config.get(type_key, ""), type_key)
        except ConfigError as exc:
            entries.append((type_info, [exc.message]))
            continue
        type_errors = []
        if (list_key == "transforms" and config.get(prefix + "negate", "").strip()
                and not config.get(prefix + "predicate", "").strip()):
            type_errors.append(f"'negate' is set for '{alias}' but no 'predicate' is; set "
                               f"{prefix}predicate or remove {prefix}negate")
        entries.append((type_info, type_errors))
        if list_key == "transforms":
            predicate = config.get(prefix + "predicate", "").strip()
            errors = []
            if predicate and predicate not in defined_predicates:
                errors.append(f"Predicate '{predicate}' is not defined in 'predicates'")
            entries.append((_bare(prefix + "predicate", group_name), errors))
            entries.append((_bare(prefix + "negate", group_name), []))
        settings: type[Settings] = plugin.cls.settings
        infos = [KeyInfo(**{**asdict(i), "group": group_name}) for i in
                 describe(settings, prefix=prefix)]
        sub = sub_config(config, prefix)
        errors_by_key = settings.config_errors(sub, "")
        _add(entries, infos, {prefix + k: v for k, v in errors_by_key.items()})


def _chain_secrets(config: Mapping[str, str]) -> set[str]:
    hidden: set[str] = set()
    for list_key, group in (("transforms", "transform"), ("predicates", "predicate")):
        for alias in [a.strip() for a in config.get(list_key, "").split(",") if a.strip()]:
            prefix = f"{list_key}.{alias}."
            try:
                plugin = find(group, config.get(prefix + "type", ""), prefix + "type")
            except ConfigError:
                continue
            hidden |= secret_keys(plugin.cls.settings, prefix)
    return hidden


def _converters(config: Mapping[str, str]) -> list[tuple[str, PluginInfo]]:
    """The key and value converters ``config`` names that can be found, by key."""
    found = []
    for key in CONVERTER_KEYS:
        name = config.get(key, "").strip()
        if name:
            try:
                found.append((key, find("converter", name, key)))
            except ConfigError:
                continue  # CommonSettings reports the unknown class
    return found


def _add_converters(entries: list[tuple[KeyInfo, list[str]]],
                    config: Mapping[str, str]) -> None:
    """The settings of the connector's own converters (``value.converter.*``), with
    their errors, as Apache validates them."""
    for key, plugin in _converters(config):
        prefix = key + "."
        settings: type[Settings] = plugin.cls.settings
        group = f"{key.capitalize()}: {plugin.name}"
        infos = [KeyInfo(**{**asdict(i), "group": group})
                 for i in describe(settings, prefix=prefix)]
        _add(entries, infos, settings.config_errors(config, prefix))


def _converter_secrets(config: Mapping[str, str]) -> set[str]:
    return {secret for key, plugin in _converters(config)
            for secret in secret_keys(plugin.cls.settings, key + ".")}


def hidden_keys(config: Mapping[str, str]) -> set[str]:
    """Keys of ``config`` whose values are secrets (PASSWORD type, Kafka client secrets
    such as ``consumer.override.sasl.jaas.config``) and must be masked."""
    clients = client_secret_keys(config) | _converter_secrets(config)
    try:
        plugin = connector_plugin(config)
    except ConfigError:
        return clients
    return secret_keys(plugin.cls.settings) | _chain_secrets(config) | clients


def mask(config: Mapping[str, str]) -> dict[str, str]:
    """``config`` with secret values replaced by ``[hidden]`` unless they are placeholders."""
    hidden = hidden_keys(config)
    return {k: (HIDDEN if k in hidden and not v.startswith("${") else v)
            for k, v in config.items()}
