"""Who may use the REST API: optional HTTP basic auth and a read-only mode.

Credentials come from a file of ``user=password`` lines (``kanal.rest.auth.file``) or
from a Kubernetes Secret whose keys are user names and whose values are passwords
(``kanal.rest.auth.secret``); both are re-read when they change, so rotating a password
needs no restart. ``kanal.rest.read.only=true`` answers every request that would change
something with 403.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import os
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import anyio
import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from kanal_worker.api.config import Settings, setting
from kanal_worker.api.errors import ConfigError
from kanal_worker.config.kubernetes import load_credentials
from kanal_worker.config.properties import load_properties

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UNAUTHENTICATED = ("GET", "/health")
"""Probes (kubelet, load balancers) rarely carry credentials; health reveals nothing."""


class RestSettings(Settings):
    auth_file: str = setting(
        "", key="kanal.rest.auth.file", importance="MEDIUM",
        doc="Kanal: file of user=password lines; when set, every request needs HTTP basic "
            "auth (except GET /health). Re-read when it changes.")
    auth_secret: str = setting(
        "", key="kanal.rest.auth.secret", importance="MEDIUM",
        doc="Kanal: Kubernetes Secret ([namespace/]name) whose keys are user names and values "
            "passwords; like kanal.rest.auth.file. Re-read every minute.")
    read_only: bool = setting(
        False, key="kanal.rest.read.only", importance="MEDIUM",
        doc="Kanal: answer every request that would change something with 403.")


def is_change(method: str, path: str) -> bool:
    """Whether a request may change something (validating a config changes nothing)."""
    if method in READ_METHODS:
        return False
    return not (method == "PUT" and path.startswith("/connector-plugins/")
                and path.endswith("/config/validate"))


class Credentials(ABC):
    """User names and passwords, reloaded when their source changes."""

    def __init__(self) -> None:
        self._passwords: dict[str, str] = {}

    def check(self, user: str, password: str) -> bool:
        expected = self._passwords.get(user)
        # compare even for unknown users, so timing does not tell which users exist
        matches = hmac.compare_digest((expected or "").encode(), password.encode())
        return expected is not None and matches

    def refresh(self) -> None:
        self._passwords = self.load()

    @abstractmethod
    def load(self) -> dict[str, str]: ...

    @abstractmethod
    def stale(self) -> bool:
        """Whether the source may have changed since the last load."""


class FileCredentials(Credentials):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._loaded_version: tuple[float, int] | None = None
        self.refresh()

    def load(self) -> dict[str, str]:
        version = self._version()
        passwords = load_properties(self.path)
        self._loaded_version = version
        return passwords

    def stale(self) -> bool:
        return self._version() != self._loaded_version

    def _version(self) -> tuple[float, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime, stat.st_size


class SecretCredentials(Credentials):
    """A Kubernetes Secret, read with the pod's service account (or the local kubeconfig)."""

    REFRESH_SECONDS = 60.0

    def __init__(self, reference: str) -> None:
        super().__init__()
        namespace, _, name = reference.rpartition("/")
        self.namespace = namespace or _own_namespace()
        self.name = name
        self._loaded_at = 0.0
        self.refresh()

    def load(self) -> dict[str, str]:
        # imported here: the Kubernetes client is slow to import and only this needs it
        from kubernetes import client

        try:
            load_credentials()
            secret: Any = client.CoreV1Api().read_namespaced_secret(self.name, self.namespace)
        except Exception as exc:  # the client raises config, HTTP and connection errors
            raise ConfigError("kanal.rest.auth.secret",
                              f"cannot read Secret {self.namespace}/{self.name}: {exc}; check "
                              "its name and that the worker may get it") from None
        self._loaded_at = time.monotonic()
        return {user: base64.b64decode(value).decode()
                for user, value in (secret.data or {}).items()}

    def stale(self) -> bool:
        return time.monotonic() - self._loaded_at > self.REFRESH_SECONDS


def _own_namespace() -> str:
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        return os.environ.get("POD_NAMESPACE", "default")


def credentials_from(settings: RestSettings) -> Credentials | None:
    if settings.auth_file and settings.auth_secret:
        raise ConfigError("kanal.rest.auth.secret", "set kanal.rest.auth.file or "
                          "kanal.rest.auth.secret, not both")
    if settings.auth_file:
        return FileCredentials(Path(settings.auth_file))
    if settings.auth_secret:
        return SecretCredentials(settings.auth_secret)
    return None


class AccessGuard:
    """ASGI middleware: basic auth first (401), then the read-only mode (403)."""

    def __init__(self, app: ASGIApp, credentials: Credentials | None, read_only: bool) -> None:
        self.app = app
        self.credentials = credentials
        self.read_only = read_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if (self.credentials is not None and (method, path) != UNAUTHENTICATED
                and not await self._authenticated(scope, self.credentials)):
            await _refuse(send, 401, "This Kanal worker's REST API needs HTTP basic "
                          "authentication with a known user and password",
                          [(b"www-authenticate", b'Basic realm="kanal", charset="UTF-8"')])
            return
        if self.read_only and is_change(method, path):
            await _refuse(send, 403, f"This Kanal worker's REST API is read-only "
                          f"(kanal.rest.read.only=true): {method} {path} is refused")
            return
        await self.app(scope, receive, send)

    async def _authenticated(self, scope: Scope, credentials: Credentials) -> bool:
        if credentials.stale():
            # on failure keep the credentials loaded last: a broken rotation must not lock out
            with contextlib.suppress(ConfigError):
                await anyio.to_thread.run_sync(credentials.refresh)
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, encoded = header.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            user, separator, password = base64.b64decode(encoded.strip(), validate=True
                                                         ).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return bool(separator) and credentials.check(user, password)


async def _refuse(send: Send, status: int, message: str,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = orjson.dumps({"error_code": status, "message": message})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
