"""REST API behaviour that needs no broker: secrets, errors, source offsets, loggers.

The app runs over a real ``StandaloneHerder``; connectors are created STOPPED, so no task
ever reaches for Kafka.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kanal_worker.rest.app import create_app
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.standalone import StandaloneHerder

AZURE = {"connector.class": "AzureBlobStorageSink", "topics": "vehicle.speeding",
         "azblob.account.name": "telemetry", "azblob.account.key": "s3cret",
         "format.class": "JsonFormat", "flush.size": "3"}
SOURCE = {"connector.class": "FileStreamSource", "topic": "lines", "file": "/dev/null"}


@pytest.fixture
def herder() -> Iterator[StandaloneHerder]:
    herder = StandaloneHerder({"bootstrap.servers": "127.0.0.1:9"}, "test:8083",
                              MemoryOffsetStore())
    yield herder
    herder.stop_all()


@pytest.fixture
def client(herder: StandaloneHerder) -> TestClient:
    return TestClient(create_app(herder))


def create(client: TestClient, name: str, config: dict[str, str]) -> dict[str, Any]:
    answer = client.post("/connectors", json={"name": name, "config": config,
                                              "initial_state": "STOPPED"})
    assert answer.status_code == 201, answer.json()
    body: dict[str, Any] = answer.json()
    return body


def test_secrets_are_hidden_everywhere(client: TestClient) -> None:
    created = create(client, "blob", AZURE)
    assert created["config"]["azblob.account.key"] == "[hidden]"
    assert client.get("/connectors/blob").json()["config"]["azblob.account.key"] == "[hidden]"
    assert client.get("/connectors/blob/config").json()["azblob.account.key"] == "[hidden]"
    expanded = client.get("/connectors", params={"expand": "info"}).json()
    assert expanded["blob"]["info"]["config"]["azblob.account.key"] == "[hidden]"
    validated = client.put("/connector-plugins/AzureBlobStorageSink/config/validate",
                           json=AZURE).json()
    assert {c["value"]["name"]: c["value"]["value"] for c in validated["configs"]}[
        "azblob.account.key"] == "[hidden]"
    assert "s3cret" not in client.get("/connectors/blob/tasks").text


def test_hidden_secrets_put_back_keep_their_value(client: TestClient,
                                                  herder: StandaloneHerder) -> None:
    create(client, "blob", AZURE)
    fetched = client.get("/connectors/blob/config").json()
    assert client.put("/connectors/blob/config",
                      json={**fetched, "flush.size": "5"}).status_code == 200
    assert herder.connector_config("blob")["azblob.account.key"] == "s3cret"
    client.patch("/connectors/blob/config", json={"azblob.account.key": "[hidden]"})
    assert herder.connector_config("blob")["azblob.account.key"] == "s3cret"
    client.patch("/connectors/blob/config", json={"azblob.account.key": "rotated"})
    assert herder.connector_config("blob")["azblob.account.key"] == "rotated"


def test_config_provider_placeholders_stay_unresolved(client: TestClient) -> None:
    secret = "${file:/etc/kanal/azure.properties:account-key}"
    create(client, "blob", {**AZURE, "azblob.account.key": secret})
    assert client.get("/connectors/blob/config").json()["azblob.account.key"] == secret


def test_invalid_configs_list_every_error(client: TestClient) -> None:
    answer = client.post("/connectors", json={"name": "bad", "config": {
        "connector.class": "FileStreamSource", "tasks.max": "many"}})
    assert answer.status_code == 400
    message = answer.json()["message"]
    assert message.startswith("Connector configuration is invalid and contains the following")
    assert "tasks.max" in message and "topic" in message


@pytest.mark.parametrize(("body", "fragment"), [
    ({"name": "", "config": SOURCE}, "name: Connector names may not be empty"),
    ({"name": "\u0007bell", "config": SOURCE}, "control characters"),
    ({"name": "team/lines", "config": SOURCE}, "contain '/'"),
    ({"name": "a", "config": {**SOURCE, "name": "b"}}, "doesn't match connector name"),
    ({"name": "a"}, 'no "config"'),
    ({"name": "a", "config": {**SOURCE, "topic": ["a", "b"]}}, "config.topic: configuration "
                                                               "values are strings"),
    ({"name": "a", "config": SOURCE, "initial_state": "SLEEPING"}, "Invalid initial_state"),
    ([1, 2], "Input should be a valid dictionary"),
])
def test_bad_requests_are_400_with_a_reason(client: TestClient, body: Any,
                                            fragment: str) -> None:
    answer = client.post("/connectors", json=body)
    assert answer.status_code == 400
    assert fragment in answer.json()["message"]


def test_location_is_percent_encoded(client: TestClient) -> None:
    answer = client.post("/connectors", json={"name": "fleet übersicht?", "config": SOURCE,
                                              "initial_state": "STOPPED"})
    location = answer.headers["location"]
    assert location == "http://testserver/connectors/fleet%20%C3%BCbersicht%3F"
    assert client.get(location).json()["name"] == "fleet übersicht?"


def test_numbers_and_booleans_are_taken_as_text(client: TestClient) -> None:
    created = create(client, "lines", {**SOURCE, "tasks.max": 1, "errors.log.enable": True})
    assert created["config"]["tasks.max"] == "1"
    assert created["config"]["errors.log.enable"] == "true"


def test_http_errors_have_apache_bodies(client: TestClient) -> None:
    assert client.get("/connectors/lines/pause").json() == {
        "error_code": 405, "message": "HTTP 405 Method Not Allowed"}
    assert client.get("/no/such/path").json() == {"error_code": 404,
                                                  "message": "HTTP 404 Not Found"}
    assert client.get("/connectors/lines/tasks/first/status").status_code == 404
    not_json = client.put("/connectors/lines/config", content=b"file=x",
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert not_json.json() == {"error_code": 415, "message": "HTTP 415 Unsupported Media Type"}
    untyped = client.put("/connectors/lines/config", content=b'{"file": "x"}')
    assert untyped.status_code == 415
    broken = client.put("/connectors/lines/config", content=b"{oops",
                        headers={"content-type": "application/json"})
    assert broken.status_code == 400
    assert broken.json()["message"].startswith("Request body is not valid JSON")


def test_source_offsets_of_a_stopped_connector_change(client: TestClient,
                                                 herder: StandaloneHerder) -> None:
    create(client, "lines", SOURCE)
    partition = {"filename": "/dev/null"}
    offsets = {"offsets": [{"partition": partition, "offset": {"position": 42}}]}
    assert client.patch("/connectors/lines/offsets", json=offsets).json() == {
        "message": "The offsets for this connector have been altered successfully"}
    assert client.get("/connectors/lines/offsets").json() == offsets
    assert herder.offsets.get("lines", partition) == {"position": 42}
    nested = {"offsets": [{"partition": partition, "offset": {"position": {"deep": 1}}}]}
    assert client.patch("/connectors/lines/offsets", json=nested).status_code == 400
    assert client.delete("/connectors/lines/offsets").json() == {
        "message": "The offsets for this connector have been reset successfully"}
    assert client.get("/connectors/lines/offsets").json() == {"offsets": []}


def test_plugins_use_apache_names_and_types(client: TestClient) -> None:
    connectors = client.get("/connector-plugins").json()
    assert {"class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
            "type": "source", "version": "0.1.0"} in connectors
    everything = client.get("/connector-plugins", params={"connectorsOnly": "false"}).json()
    types = {plugin["type"] for plugin in everything}
    assert {"sink", "source", "converter"} <= types
    assert client.get("/connector-plugins/Nothing/config").json() == {
        "error_code": 404, "message": "Unknown plugin Nothing."}
    keys = {key["name"] for key in client.get("/connector-plugins/FileStreamSource/config")
            .json()}
    assert {"file", "topic", "connector.class", "tasks.max"} <= keys


def test_validate_fills_in_the_class_from_the_path(client: TestClient) -> None:
    answer = client.put("/connector-plugins/FileStreamSource/config/validate",
                        json={"topic": "lines"})
    assert answer.status_code == 200
    assert answer.json()["error_count"] == 1  # name is missing, nothing else
    mismatch = client.put("/connector-plugins/FileStreamSource/config/validate",
                          json={"connector.class": "FileStreamSink"})
    assert mismatch.json()["message"] == ("Included connector type FileStreamSink does not "
                                          "match request type FileStreamSource")


@pytest.fixture
def scratch_logger() -> Iterator[str]:
    name = "kanal.test.rest"
    yield name
    for logger_name in (name, f"{name}.child"):
        logging.getLogger(logger_name).setLevel(logging.NOTSET)


def test_loggers_speak_apache_level_names(client: TestClient, scratch_logger: str) -> None:
    child = logging.getLogger(f"{scratch_logger}.child")
    assert client.put(f"/admin/loggers/{scratch_logger}", json={"level": "error"}).json() == [
        scratch_logger, child.name]
    assert child.level == logging.ERROR
    level = client.get(f"/admin/loggers/{child.name}").json()
    assert level["level"] == "ERROR" and level["last_modified"] > 0
    assert client.put(f"/admin/loggers/{scratch_logger}", json={"level": "TRACE"}).json()
    assert client.get(f"/admin/loggers/{scratch_logger}").json()["level"] == "TRACE"
    assert client.get("/admin/loggers").json()[scratch_logger]["level"] == "TRACE"
    assert client.put(f"/admin/loggers/{scratch_logger}", json={"level": "WARNING"},
                      params={"scope": "cluster"}).status_code == 204
    assert child.getEffectiveLevel() == logging.WARNING
    assert client.put(f"/admin/loggers/{scratch_logger}", json={"level": "LOUD"}).json() == {
        "error_code": 404, "message": "invalid log level 'LOUD'."}
