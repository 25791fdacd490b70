"""REST basic auth with users from a Kubernetes Secret, on the real kube-apiserver."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from kanal_worker.api.errors import ConfigError
from kanal_worker.rest.app import create_app
from kanal_worker.rest.auth import SecretCredentials
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.standalone import StandaloneHerder

pytestmark = pytest.mark.e2e


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def secret(kube: dict[str, str], unique: str,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[str]]]:
    """A Secret ``default/rest-users-<unique>`` holding the user admin, and the kubectl
    command line to change it."""
    monkeypatch.setenv("KUBECONFIG", kube["KUBECONFIG"])
    name = f"rest-users-{unique}"
    kubectl = [kube["KUBECTL"], "--kubeconfig", kube["KUBECONFIG"], "-n", "default"]
    subprocess.run([*kubectl, "create", "secret", "generic", name,
                    "--from-literal=admin=first-password"], check=True, capture_output=True)
    yield name, kubectl
    subprocess.run([*kubectl, "delete", "secret", name, "--wait=false"], check=False,
                   capture_output=True)


def test_users_come_from_the_secret_and_rotate(secret: tuple[str, list[str]]) -> None:
    name, kubectl = secret
    credentials = SecretCredentials(f"default/{name}")
    herder = StandaloneHerder({}, "test:8083", MemoryOffsetStore())
    client = TestClient(create_app(herder, credentials))
    assert client.get("/connectors").status_code == 401
    assert client.get("/connectors", headers=basic("admin", "first-password")).json() == []

    rotated = base64.b64encode(b"second-password").decode()
    subprocess.run([*kubectl, "patch", "secret", name, "-p",
                    f'{{"data": {{"admin": "{rotated}"}}}}'], check=True, capture_output=True)
    credentials.refresh()  # what the next request does once REFRESH_SECONDS passed
    assert client.get("/connectors",
                      headers=basic("admin", "first-password")).status_code == 401
    assert client.get("/connectors",
                      headers=basic("admin", "second-password")).status_code == 200


def test_a_missing_secret_is_a_clear_startup_error(secret: tuple[str, list[str]]) -> None:
    with pytest.raises(ConfigError, match="cannot read Secret default/no-such-secret"):
        SecretCredentials("default/no-such-secret")
