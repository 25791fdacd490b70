"""Config providers: ``${provider:[path:]key}`` placeholders resolved just before use.

Kafka's syntax and semantics: a worker declares its providers
(``config.providers=file,env`` plus ``config.providers.<name>.class``); stored and
displayed configurations keep the placeholders, only running tasks see the values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from kanal_worker.api.errors import ConfigError
from kanal_worker.config.kubernetes_secrets import secret_provider
from kanal_worker.config.properties import load_properties

# Kafka's ConfigTransformer pattern: ${provider:[path:]key}; the path ends at the first
# colon after the provider, so a key may hold colons (${vault:secret/db:user:name})
PLACEHOLDER = re.compile(r"\$\{([^}]*?):(?:([^}]*?):)?([^}]*?)\}")

Lookup = Callable[[str | None, str], str]
"""(path, key) → value; raises ConfigError when it cannot answer."""


def _allowed(params: Mapping[str, str]) -> list[Path] | None:
    raw = params.get("allowed.paths", "").strip()
    return [Path(p.strip()).resolve() for p in raw.split(",") if p.strip()] or None


def _check_allowed(path: Path, allowed: list[Path] | None) -> Path:
    resolved = path.resolve()
    if allowed is not None and not any(resolved.is_relative_to(a) for a in allowed):
        raise ConfigError(None, f"{path} is not in allowed.paths of this config provider")
    return resolved


def env_provider(params: Mapping[str, str]) -> Lookup:
    pattern = re.compile(params.get("allowlist.pattern", ".*"))

    def lookup(path: str | None, key: str) -> str:
        if path:
            raise ConfigError(None, f"the env provider takes no path (got '{path}'); use "
                              "${env:VARIABLE}")
        if not pattern.fullmatch(key):
            raise ConfigError(None, f"environment variable {key} is not allowed by "
                              "allowlist.pattern")
        if key not in os.environ:
            raise ConfigError(None, f"environment variable {key} is not set")
        return os.environ[key]
    return lookup


def file_provider(params: Mapping[str, str]) -> Lookup:
    allowed = _allowed(params)

    def lookup(path: str | None, key: str) -> str:
        if not path:
            raise ConfigError(None, "the file provider needs ${file:<path>:<key>}")
        values = load_properties(_check_allowed(Path(path), allowed))
        if key not in values:
            raise ConfigError(None, f"key {key} not found in {path}")
        return values[key]
    return lookup


def dir_provider(params: Mapping[str, str]) -> Lookup:
    allowed = _allowed(params)

    def lookup(path: str | None, key: str) -> str:
        if not path:
            raise ConfigError(None, "the dir provider needs ${dir:<directory>:<file>}")
        if key in ("", ".", "..") or "/" in key or "\\" in key:
            raise ConfigError(None, f"{key} must be the name of a file directly inside {path}")
        # symlinks may lead elsewhere inside the allowed paths: Kubernetes mounts Secrets
        # as <dir>/<key> -> ..data/<key>
        target = _check_allowed(Path(path) / key, allowed)
        if not target.is_file():
            raise ConfigError(None, f"{Path(path) / key} is not a file")
        try:
            return target.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(None, f"cannot read {target}: {exc.strerror}") from None
    return lookup


PROVIDER_CLASSES: dict[str, Callable[[Mapping[str, str]], Lookup]] = {
    "org.apache.kafka.common.config.provider.EnvVarConfigProvider": env_provider,
    "org.apache.kafka.common.config.provider.FileConfigProvider": file_provider,
    "org.apache.kafka.common.config.provider.DirectoryConfigProvider": dir_provider,
    "EnvVarConfigProvider": env_provider,
    "FileConfigProvider": file_provider,
    "DirectoryConfigProvider": dir_provider,
    "dev.kanal.config.SecretConfigProvider": secret_provider,
    "SecretConfigProvider": secret_provider,
}


def providers_from_worker_config(worker: Mapping[str, str]) -> dict[str, Lookup]:
    """Instantiate the providers a worker configuration declares."""
    providers: dict[str, Lookup] = {}
    for name in [n.strip() for n in worker.get("config.providers", "").split(",") if n.strip()]:
        class_name = worker.get(f"config.providers.{name}.class")
        if not class_name:
            raise ConfigError(f"config.providers.{name}.class",
                              f"config provider {name} is declared without a class")
        factory = PROVIDER_CLASSES.get(class_name)
        if factory is None:
            raise ConfigError(f"config.providers.{name}.class",
                              f"unknown config provider {class_name}; known: "
                              + ", ".join(sorted(k for k in PROVIDER_CLASSES if "." in k)))
        prefix = f"config.providers.{name}.param."
        params = {k[len(prefix):]: v for k, v in worker.items() if k.startswith(prefix)}
        providers[name] = factory(params)
    return providers


def resolve(config: Mapping[str, str], providers: Mapping[str, Lookup]) -> dict[str, str]:
    """Replace every placeholder whose provider is known; unknown providers stay as is."""
    resolved: dict[str, str] = {}
    for config_key, value in config.items():
        def substitute(match: re.Match[str], config_key: str = config_key) -> str:
            provider = providers.get(match.group(1))
            if provider is None:
                return match.group(0)
            try:
                return provider(match.group(2), match.group(3))
            except ConfigError as exc:
                raise ConfigError(config_key, exc.message) from None
        resolved[config_key] = PLACEHOLDER.sub(substitute, value) if "${" in value else value
    return resolved


def has_placeholder(value: str) -> bool:
    return PLACEHOLDER.search(value) is not None
