"""Basic auth and read-only mode of the REST API, against the app over a real herder."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kanal_worker.api.errors import ConfigError
from kanal_worker.rest.app import create_app
from kanal_worker.rest.auth import FileCredentials, RestSettings, credentials_from
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.standalone import StandaloneHerder

SOURCE = {"connector.class": "FileStreamSource", "topic": "lines", "file": "/dev/null"}


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def herder() -> Iterator[StandaloneHerder]:
    herder = StandaloneHerder({"bootstrap.servers": "127.0.0.1:9"}, "test:8083",
                              MemoryOffsetStore())
    yield herder
    herder.stop_all()


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "users.properties"
    path.write_text("# who may use the REST API\nadmin=s3cret\nviewer: look only\n")
    return path


@pytest.fixture
def guarded(herder: StandaloneHerder, users: Path) -> TestClient:
    return TestClient(create_app(herder, FileCredentials(users)))


def test_requests_without_credentials_are_refused(guarded: TestClient) -> None:
    answer = guarded.get("/connectors")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith('Basic realm="kanal"')
    assert answer.json()["error_code"] == 401


@pytest.mark.parametrize("headers", [
    basic("admin", "wrong"),
    basic("nobody", "s3cret"),
    basic("admin", ""),
    {"Authorization": "Basic not-base64!"},
    {"Authorization": "Bearer s3cret"},
    {"Authorization": "Basic " + base64.b64encode(b"admin-without-colon").decode()},
])
def test_wrong_credentials_are_refused(guarded: TestClient, headers: dict[str, str]) -> None:
    assert guarded.get("/connectors", headers=headers).status_code == 401


def test_known_users_get_in(guarded: TestClient) -> None:
    assert guarded.get("/connectors", headers=basic("admin", "s3cret")).json() == []
    # Java properties syntax: "user: password" works too, spaces inside the password kept
    assert guarded.get("/connectors", headers=basic("viewer", "look only")).status_code == 200


def test_health_and_only_health_is_open(guarded: TestClient) -> None:
    assert guarded.get("/health").status_code == 200
    assert guarded.get("/openapi.json").status_code == 401
    assert guarded.put("/health").status_code == 401


def test_a_changed_file_is_read_again(guarded: TestClient, users: Path) -> None:
    users.write_text("admin=rotated-password\n")
    os.utime(users, (1, 1))  # a different mtime even within the clock's resolution
    assert guarded.get("/connectors", headers=basic("admin", "s3cret")).status_code == 401
    assert guarded.get("/connectors",
                       headers=basic("admin", "rotated-password")).status_code == 200


def test_a_vanished_file_keeps_the_last_credentials(guarded: TestClient, users: Path) -> None:
    users.unlink()
    assert guarded.get("/connectors", headers=basic("admin", "s3cret")).status_code == 200


def test_auth_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="not both"):
        credentials_from(RestSettings.parse({"kanal.rest.auth.file": "/a",
                                             "kanal.rest.auth.secret": "b"}))
    with pytest.raises(ConfigError, match="cannot read"):
        credentials_from(RestSettings.parse({"kanal.rest.auth.file": "/no/such/file"}))
    assert credentials_from(RestSettings.parse({})) is None


def test_openapi_documents_401_when_auth_is_on(guarded: TestClient,
                                               herder: StandaloneHerder) -> None:
    paths = guarded.get("/openapi.json", headers=basic("admin", "s3cret")).json()["paths"]
    assert "401" in paths["/connectors"]["get"]["responses"]
    assert "401" not in paths["/health"]["get"]["responses"]
    open_paths = TestClient(create_app(herder)).get("/openapi.json").json()["paths"]
    assert "401" not in open_paths["/connectors"]["get"]["responses"]


@pytest.fixture
def read_only(herder: StandaloneHerder) -> TestClient:
    herder.put_connector("lines", SOURCE, initial_state="STOPPED")
    return TestClient(create_app(herder, read_only=True))


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/connectors"),
    ("PUT", "/connectors/lines/config"),
    ("PATCH", "/connectors/lines/config"),
    ("DELETE", "/connectors/lines"),
    ("PUT", "/connectors/lines/pause"),
    ("PUT", "/connectors/lines/resume"),
    ("PUT", "/connectors/lines/stop"),
    ("POST", "/connectors/lines/restart"),
    ("POST", "/connectors/lines/tasks/0/restart"),
    ("PUT", "/connectors/lines/topics/reset"),
    ("PATCH", "/connectors/lines/offsets"),
    ("DELETE", "/connectors/lines/offsets"),
    ("PUT", "/admin/loggers/kanal"),
])
def test_read_only_refuses_every_change(read_only: TestClient, herder: StandaloneHerder,
                                        method: str, path: str) -> None:
    answer = read_only.request(method, path, json={"level": "DEBUG"})
    assert answer.status_code == 403
    assert answer.json() == {"error_code": 403, "message": "This Kanal worker's REST API is "
                             f"read-only (kanal.rest.read.only=true): {method} {path} is "
                             "refused"}
    assert herder.connectors() == ["lines"]
    assert herder.connector_status("lines")["connector"]["state"] == "STOPPED"


def test_read_only_still_answers_questions(read_only: TestClient) -> None:
    assert read_only.get("/connectors").json() == ["lines"]
    assert read_only.get("/connectors/lines/status").status_code == 200
    assert read_only.get("/connectors/lines/offsets").json() == {"offsets": []}
    validated = read_only.put("/connector-plugins/FileStreamSource/config/validate",
                              json=SOURCE)
    assert validated.status_code == 200  # validating changes nothing


def test_openapi_documents_403_on_changes_only(read_only: TestClient) -> None:
    paths = read_only.get("/openapi.json").json()["paths"]
    assert "403" in paths["/connectors"]["post"]["responses"]
    assert "403" in paths["/connectors/{connector}/offsets"]["delete"]["responses"]
    assert "403" not in paths["/connectors"]["get"]["responses"]
    assert "403" not in paths["/connector-plugins/{plugin}/config/validate"]["put"][
        "responses"]


def test_authentication_comes_before_read_only(herder: StandaloneHerder, users: Path) -> None:
    client = TestClient(create_app(herder, FileCredentials(users), read_only=True))
    assert client.post("/connectors", json={}).status_code == 401
    assert client.post("/connectors", json={},
                       headers=basic("admin", "s3cret")).status_code == 403
