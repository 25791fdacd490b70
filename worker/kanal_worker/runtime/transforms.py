"""Builds the chain of ``transforms.*`` with their ``predicates.*`` from a connector config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from kanal_worker.api.config import comma_list
from kanal_worker.api.errors import ConfigError
from kanal_worker.api.plugins import Predicate, Transformation
from kanal_worker.api.records import ConnectRecord
from kanal_worker.runtime.registry import find

R = TypeVar("R", bound=ConnectRecord)


@dataclass
class Step:
    alias: str
    transform: Transformation[Any]
    predicate: Predicate[Any] | None
    negate: bool

    def apply(self, record: R) -> R | None:
        if self.predicate is not None and self.predicate.test(record) == self.negate:
            return record
        return self.transform.apply(record)

    @property
    def class_name(self) -> str:
        cls = type(self.transform)
        return cls.aliases[0] if cls.aliases else cls.__name__


def sub_config(config: Mapping[str, str], prefix: str) -> dict[str, str]:
    return {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}


def _configure(cls: type[Any], config: dict[str, str], prefix: str) -> Any:
    """Instantiate a transform or predicate; errors name the full connector key."""
    try:
        return cls(config)
    except ConfigError as exc:
        raise ConfigError(prefix + exc.key if exc.key else prefix + "type", exc.message) from None


def build_predicates(config: Mapping[str, str]) -> dict[str, Predicate[Any]]:
    predicates: dict[str, Predicate[Any]] = {}
    for alias in comma_list(config.get("predicates")):
        key = f"predicates.{alias}.type"
        if not config.get(key):
            raise ConfigError(key, f"predicate {alias} needs a type; set {key}")
        info = find("predicate", config[key], key)
        predicates[alias] = _configure(info.cls, sub_config(config, f"predicates.{alias}."),
                                       f"predicates.{alias}.")
    return predicates


def build_chain(config: Mapping[str, str]) -> list[Step]:
    predicates = build_predicates(config)
    chain: list[Step] = []
    for alias in comma_list(config.get("transforms")):
        key = f"transforms.{alias}.type"
        if not config.get(key):
            raise ConfigError(key, f"transform {alias} needs a type; set {key}")
        info = find("transform", config[key], key)
        sub = sub_config(config, f"transforms.{alias}.")
        predicate_name = sub.pop("predicate", "").strip()
        negate = sub.pop("negate", "false").strip().lower() == "true"
        predicate = None
        if predicate_name:
            if predicate_name not in predicates:
                raise ConfigError(f"transforms.{alias}.predicate",
                                  f"predicate {predicate_name} is not defined in 'predicates'")
            predicate = predicates[predicate_name]
        elif "negate" in sub_config(config, f"transforms.{alias}."):
            raise ConfigError(f"transforms.{alias}.negate",
                              "negate is set but no predicate; set transforms."
                              f"{alias}.predicate")
        chain.append(Step(alias, _configure(info.cls, sub, f"transforms.{alias}."), predicate,
                          negate))
    return chain


def apply_chain(chain: list[Step], record: R) -> R | None:
    """Run ``record`` through ``chain``; None when a transform dropped it."""
    current: R | None = record
    for step in chain:
        assert current is not None
        current = step.apply(current)
        if current is None:
            return None
    return current
