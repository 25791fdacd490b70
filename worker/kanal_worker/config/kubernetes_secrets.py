"""``${secret:<name>:<key>}``: values of Kubernetes Secrets in the worker pod's namespace.

Declared like any Kafka config provider::

    config.providers=secret
    config.providers.secret.class=dev.kanal.config.SecretConfigProvider
    # optional: config.providers.secret.param.namespace=other-namespace

The worker reads the Secret with its service account (RBAC: ``get`` on ``secrets``); a
Secret read is reused for a few seconds, so resolving a configuration that names several of
its keys reads it once, while a later resolution (a task restart) sees a rotated value.
Only running tasks see the values; errors name the Secret and key, never a value.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from kanal_worker.api.errors import ConfigError, RetriableError
from kanal_worker.config.kubernetes import load_credentials

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# RFC 1123 subdomain (Secret names) and the characters Kubernetes allows in data keys
SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DATA_KEY = re.compile(r"[-._a-zA-Z0-9]+")
REUSE_SECONDS = 5.0

SecretReader = Callable[[str, str], Mapping[str, str]]
"""(namespace, name) → the Secret's ``data`` (base64 values); raises ConfigError when absent."""


def pod_namespace(params: Mapping[str, str],
                  service_account_file: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The namespace to read from: the ``namespace`` parameter, else ``POD_NAMESPACE`` (the
    downward API), else the service account's namespace file."""
    namespace = params.get("namespace", "").strip() or os.environ.get("POD_NAMESPACE", "").strip()
    if not namespace and service_account_file.is_file():
        namespace = service_account_file.read_text(encoding="utf-8").strip()
    if not namespace:
        raise ConfigError(None, "the secret config provider cannot tell its namespace: set "
                          "config.providers.<name>.param.namespace or POD_NAMESPACE")
    return namespace


def parse_reference(path: str | None, key: str) -> tuple[str, str]:
    """Check ``${secret:<name>:<key>}`` and return (name, key)."""
    if not path:
        raise ConfigError(None, "the secret provider needs ${secret:<secret name>:<key>}, "
                          f"got a key ({key}) without a Secret name")
    if len(path) > 253 or not SECRET_NAME.fullmatch(path):
        raise ConfigError(None, f"'{path}' is not a valid Kubernetes Secret name "
                          "(lower case letters, digits, '-' and '.')")
    if not DATA_KEY.fullmatch(key):
        raise ConfigError(None, f"'{key}' is not a valid key of a Kubernetes Secret "
                          "(letters, digits, '-', '_' and '.')")
    return path, key


def decode_value(name: str, key: str, data: Mapping[str, str]) -> str:
    if key not in data:
        known = ", ".join(sorted(data)) or "none"
        raise ConfigError(None, f"Secret {name} has no key {key} (keys: {known})")
    try:
        return base64.b64decode(data[key], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ConfigError(None, f"key {key} of Secret {name} is not base64-encoded UTF-8 "
                          "text") from None


def api_reader() -> SecretReader:
    """Read Secrets with the pod's service account (or the local kubeconfig)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    load_credentials()
    api = client.CoreV1Api()

    def read(namespace: str, name: str) -> Mapping[str, str]:
        try:
            secret = api.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise ConfigError(None, f"Secret {name} does not exist in namespace "
                                  f"{namespace}") from None
            if exc.status == 403:
                raise ConfigError(None, f"the worker may not read Secret {name} in namespace "
                                  f"{namespace}; grant its service account 'get' on secrets"
                                  ) from None
            raise RetriableError(f"reading Secret {name} in namespace {namespace} failed: "
                                 f"HTTP {exc.status} {exc.reason}") from None
        return {key: value.decode() if isinstance(value, bytes) else value
                for key, value in (secret.data or {}).items()}
    return read


class SecretConfigProvider:
    """A Lookup for ``providers_from_worker_config``: (path, key) → the secret's value."""

    def __init__(self, params: Mapping[str, str], reader: SecretReader | None = None) -> None:
        self.params = dict(params)
        self._reader = reader
        self._recent: dict[str, tuple[float, Mapping[str, str]]] = {}

    def __call__(self, path: str | None, key: str) -> str:
        name, data_key = parse_reference(path, key)
        return decode_value(name, data_key, self._data(name))

    def _data(self, name: str) -> Mapping[str, str]:
        now = time.monotonic()
        recent = self._recent.get(name)
        if recent is not None and now - recent[0] < REUSE_SECONDS:
            return recent[1]
        if self._reader is None:
            self._reader = api_reader()
        # the namespace is looked up at first use: a worker declaring the provider outside
        # Kubernetes starts fine and fails only configurations that use ${secret:...}
        data = self._reader(pod_namespace(self.params), name)
        self._recent[name] = (now, data)
        return data


def secret_provider(params: Mapping[str, str]) -> SecretConfigProvider:
    return SecretConfigProvider(params)
