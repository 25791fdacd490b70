"""Key, value and header converters for one task, chosen the Kafka Connect way.

A connector's ``key.converter`` overrides the worker's; the converter's own settings
are the ``key.converter.*`` keys of whichever configuration named it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kanal_worker.api.plugins import Converter, HeaderConverter
from kanal_worker.config.worker import WorkerSettings
from kanal_worker.runtime.registry import find
from kanal_worker.runtime.transforms import sub_config


@dataclass
class Codec:
    key: Converter
    value: Converter
    header: HeaderConverter

    @property
    def key_class(self) -> str:
        return _class_name(self.key)

    @property
    def value_class(self) -> str:
        return _class_name(self.value)

    @property
    def header_class(self) -> str:
        return _class_name(self.header)


def _class_name(plugin: object) -> str:
    cls = type(plugin)
    aliases: tuple[str, ...] = getattr(cls, "aliases", ())
    return aliases[0] if aliases else cls.__name__


def _pick(role: str, connector: Mapping[str, str], worker: Mapping[str, str],
          default: str) -> tuple[str, str, dict[str, str]]:
    key = f"{role}.converter"
    if connector.get(key):
        return key, connector[key], sub_config(connector, key + ".")
    return key, worker.get(key) or default, sub_config(worker, key + ".")


def build_codec(connector: Mapping[str, str], worker: Mapping[str, str]) -> Codec:
    defaults = WorkerSettings.parse(worker)
    key_name, key_class, key_conf = _pick("key", connector, worker, defaults.key_converter)
    value_name, value_class, value_conf = _pick("value", connector, worker,
                                                defaults.value_converter)
    header_name, header_class, header_conf = _pick("header", connector, worker,
                                                   defaults.header_converter)
    key = find("converter", key_class, key_name).cls(key_conf, True)
    value = find("converter", value_class, value_name).cls(value_conf, False)
    header = find("converter", header_class, header_name).cls(header_conf)
    return Codec(key, value, header)
