"""HttpSourceConnector against a real server (uvicorn in this process) and real Kafka:
a paginated import arrives once, a restarted worker resumes at the stored offset, and
bad settings are named in validate and in the task status."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import orjson
import pytest

from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.standalone import StandaloneHerder
from kanal_worker.runtime.status import State
from tests.integration.http_server import RecordingServer, errors_of
from tests.integration.standalone import wait_for
from tests.kafka_helpers import consume_all

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[RecordingServer]:
    running = RecordingServer().start()
    running.state.items = [{"id": n, "speed": n % 200, "at": 1_700_000_000_000 + n}
                           for n in range(1, 96)]
    yield running
    running.stop()


def herder_with(kafka: str, store: MemoryOffsetStore) -> StandaloneHerder:
    return StandaloneHerder({"bootstrap.servers": kafka, "key.converter": "StringConverter",
                             "value.converter": "JsonConverter",
                             "value.converter.schemas.enable": "false",
                             "offset.flush.interval.ms": "500"}, "test:8083", store)


def source_config(server: RecordingServer, topic: str, **extra: str) -> dict[str, str]:
    config = {"connector.class": "com.github.castorm.kafka.connect.http.HttpSourceConnector",
              "tasks.max": "1", "kafka.topic": topic,
              "http.request.url": f"{server.url}/items",
              "http.request.params": "since=${offset.id}&limit=10",
              "http.request.headers": "Accept: application/json",
              "http.response.list.pointer": "/data/items",
              "http.response.record.offset.pointer": "id=/id, key=/id, timestamp=/at",
              "http.offset.initial": "id=0",
              "http.timer.interval.millis": "300"}
    config.update({key.replace("_", "."): value for key, value in extra.items()})
    return config


def test_paginated_import_arrives_once_and_a_restart_resumes_at_the_offset(
        server: RecordingServer, kafka: str) -> None:
    topic = f"http-source-{uuid.uuid4().hex[:8]}"
    store = MemoryOffsetStore()
    herder = herder_with(kafka, store)
    try:
        herder.put_connector(topic, source_config(server, topic))
        first = consume_all(kafka, topic, 95, timeout=60)
        assert [orjson.loads(m.value())["id"] for m in first] == list(range(1, 96))
        assert [m.key() for m in first[:3]] == [b"1", b"2", b"3"]
        assert first[0].timestamp()[1] == 1_700_000_000_001
        wait_for(lambda: [offset.get("id") for _, offset in store.all(topic)] == [95], 30,
                 "the offset of the last record stored")
    finally:
        herder.stop_all()
    requests_before = server.state.item_requests
    with server.state.lock:
        server.state.items.extend({"id": n, "speed": n % 200, "at": 1_700_000_000_000 + n}
                                  for n in range(96, 101))
    herder = herder_with(kafka, store)  # a new worker with the stored offsets
    try:
        herder.put_connector(topic, source_config(server, topic))
        wait_for(lambda: len(consume_all(kafka, topic, 100, timeout=5)) >= 100, 60,
                 "the new records")
        assert server.state.item_requests > requests_before
    finally:
        herder.stop_all()
    every = [orjson.loads(m.value())["id"] for m in consume_all(kafka, topic, 101, timeout=5)]
    assert every == list(range(1, 101))


def test_validate_names_the_key_for_bad_pointers_credentials_and_unreachable_servers(
        server: RecordingServer) -> None:
    assert errors_of(source_config(server, "t")) == {}

    pointer = errors_of(source_config(server, "t", http_response_list_pointer="/items"))
    assert list(pointer) == ["http.response.list.pointer"]
    assert "'/items' matches nothing" in pointer["http.response.list.pointer"][0]
    assert "its top level: data, count" in pointer["http.response.list.pointer"][0]

    offset = errors_of(source_config(server, "t",
                                     http_response_record_offset_pointer="id=/identifier"))
    assert list(offset) == ["http.response.record.offset.pointer"]

    server.state.required_authorization = "Basic a2FuYWw6cmlnaHQ="  # kanal:right
    try:
        wrong = errors_of(source_config(server, "t", http_auth_type="Basic",
                                        http_auth_user="kanal", http_auth_password="wrong"))
        right = errors_of(source_config(server, "t", http_auth_type="Basic",
                                        http_auth_user="kanal", http_auth_password="right"))
    finally:
        server.state.required_authorization = None
    assert list(wrong) == ["http.auth.password"]
    assert "HTTP 401" in wrong["http.auth.password"][0]
    assert right == {}

    unreachable = errors_of(source_config(server, "t", http_request_url="http://127.0.0.1:9/x"))
    assert list(unreachable) == ["http.request.url"]
    assert "cannot reach" in unreachable["http.request.url"][0]


def test_a_pointer_matching_nothing_fails_the_task_naming_the_key(
        server: RecordingServer, kafka: str, new_topic: Callable[..., str]) -> None:
    """A response that changed shape after the connector was created."""
    topic = new_topic("http-source-bad")
    herder = herder_with(kafka, MemoryOffsetStore())
    try:
        herder.put_connector(topic, source_config(server, topic))
        server.state.list_name = "rows"
        wait_for(lambda: herder.connector_status(topic)["tasks"][0]["state"] == State.FAILED,
                 60, "the task to fail")
        trace = herder.connector_status(topic)["tasks"][0]["trace"]
    finally:
        server.state.list_name = "items"
        herder.stop_all()
    assert "http.response.list.pointer: '/data/items' matches nothing" in trace
    assert "point it at the array of records" in trace
