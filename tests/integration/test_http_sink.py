"""HttpSinkConnector against real servers: uvicorn in this process for the happy paths,
OAuth2 and a real outage; WireMock (dev/stack) for 503-then-200 with Retry-After and 400s
that go to the dead-letter queue."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from kanal_worker.runtime.standalone import StandaloneHerder
from kanal_worker.runtime.status import State
from kanal_worker.runtime.validation import validate
from tests.conftest import stack_env
from tests.integration.http_server import CLIENT_ID, CLIENT_SECRET, RecordingServer, errors_of
from tests.integration.standalone import in_process_herder, wait_for
from tests.kafka_helpers import committed, consume_all, produce

OUTAGE_SECONDS = float(os.environ.get("KANAL_HTTP_OUTAGE_SECONDS", "10"))
"""How long the outage test keeps the server down (the issue's 60 s: set it to 60)."""

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[RecordingServer]:
    running = RecordingServer().start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def wiremock() -> str:
    return stack_env("wiremock")["KANAL_WIREMOCK_URL"]


@pytest.fixture
def herder(kafka: str) -> Iterator[StandaloneHerder]:
    with in_process_herder(kafka, "StringConverter") as worker:
        yield worker


def sink_config(topic: str, url: str, **extra: str) -> dict[str, str]:
    config = {"connector.class": "io.aiven.kafka.connect.http.HttpSinkConnector",
              "topics": topic, "http.url": url, "http.authorization.type": "none",
              "retry.backoff.ms": "200", "tasks.max": "1"}
    config.update({key.replace("_", "."): value for key, value in extra.items()})
    return config


def records(count: int, start: int = 0) -> list[bytes]:
    return [orjson.dumps({"n": n, "speed": n % 200}) for n in range(start, start + count)]


def numbers(bodies: list[bytes]) -> list[int]:
    """The record numbers in request bodies (a JSON array, or JSON lines)."""
    found: list[int] = []
    for body in bodies:
        if body.startswith(b"["):
            found.extend(item["n"] for item in orjson.loads(body))
        else:
            found.extend(orjson.loads(line)["n"] for line in body.splitlines() if line)
    return found


def task_state(herder: StandaloneHerder, name: str) -> dict[str, Any]:
    state: dict[str, Any] = herder.connector_status(name)["tasks"][0]
    return state


def test_batches_as_configured_with_static_authorization(
        herder: StandaloneHerder, server: RecordingServer, kafka: str,
        new_topic: Callable[..., str]) -> None:
    topic = new_topic("http-batch")
    produce(kafka, topic, records(25))
    server.state.required_authorization = "Bearer static-token"
    try:
        herder.put_connector(topic, sink_config(
            topic, f"{server.url}/sink/{topic}", http_authorization_type="static",
            http_headers_authorization="Bearer static-token", batching_enabled="true",
            batch_max_size="10", batch_prefix="[", batch_separator=",", batch_suffix="]",
            http_headers_content_type="application/json",
            http_headers_additional="X-Pipeline:telemetry"))
        wait_for(lambda: len(numbers([r.body for r in server.state.received(topic)])) >= 25,
                 60, "25 records at the server")
    finally:
        server.state.required_authorization = None
    received = server.state.received(topic)
    assert numbers([r.body for r in received]) == list(range(25))
    assert all(len(orjson.loads(r.body)) <= 10 for r in received)
    assert any(len(orjson.loads(r.body)) == 10 for r in received)
    assert all(r.headers["content-type"] == "application/json" for r in received)
    assert all(r.headers["x-pipeline"] == "telemetry" for r in received)
    wait_for(lambda: committed(kafka, f"connect-{topic}", topic, 1)[0] == 25, 30,
             "the offsets committed")


def test_one_request_per_record_without_batching(
        herder: StandaloneHerder, server: RecordingServer, kafka: str,
        new_topic: Callable[..., str]) -> None:
    topic = new_topic("http-single")
    produce(kafka, topic, records(7))
    herder.put_connector(topic, sink_config(topic, f"{server.url}/sink/{topic}"))
    wait_for(lambda: len(server.state.received(topic)) >= 7, 60, "7 requests")
    assert [r.body for r in server.state.received(topic)] == records(7)


def wiremock_stub(wiremock: str, mapping: dict[str, Any]) -> None:
    httpx.post(f"{wiremock}/__admin/mappings", json=mapping, timeout=10).raise_for_status()


def wiremock_requests(wiremock: str, path: str) -> list[dict[str, Any]]:
    """POST requests WireMock received at ``path``, oldest first, with the status it sent
    (validate's OPTIONS requests left out)."""
    journal = httpx.get(f"{wiremock}/__admin/requests", timeout=10).json()["requests"]
    found = [entry for entry in journal
             if entry["request"]["url"] == path and entry["request"]["method"] == "POST"]
    return sorted(found, key=lambda entry: entry["request"]["loggedDate"])


def test_503_then_200_is_retried_after_the_servers_retry_after(
        herder: StandaloneHerder, wiremock: str, kafka: str,
        new_topic: Callable[..., str]) -> None:
    topic = new_topic("http-503")
    path = f"/flaky/{topic}"
    scenario = f"flaky-{topic}"
    wiremock_stub(wiremock, {
        "scenarioName": scenario, "requiredScenarioState": "Started",
        "newScenarioState": "recovered", "request": {"method": "POST", "url": path},
        "response": {"status": 503, "headers": {"Retry-After": "2"}, "body": "busy"}})
    wiremock_stub(wiremock, {
        "scenarioName": scenario, "requiredScenarioState": "recovered",
        "request": {"method": "POST", "url": path}, "response": {"status": 200}})
    produce(kafka, topic, records(5))
    # retry.backoff.ms of a minute: only the server's Retry-After explains a quick retry
    herder.put_connector(topic, sink_config(topic, wiremock + path, batching_enabled="true",
                                            retry_backoff_ms="60000"))
    wait_for(lambda: [e["responseDefinition"]["status"]
                      for e in wiremock_requests(wiremock, path)][-1:] == [200], 60,
             "the retried request to succeed")
    answered = wiremock_requests(wiremock, path)
    assert [e["responseDefinition"]["status"] for e in answered] == [503, 200]
    assert answered[0]["request"]["body"] == answered[1]["request"]["body"]
    assert numbers([answered[1]["request"]["body"].encode()]) == list(range(5))
    waited = (answered[1]["request"]["loggedDate"] - answered[0]["request"]["loggedDate"]) / 1000
    assert 1.8 <= waited < 30
    wait_for(lambda: committed(kafka, f"connect-{topic}", topic, 1)[0] == 5, 30,
             "the offsets committed")
    assert task_state(herder, topic)["state"] == State.RUNNING


def test_records_refused_with_400_go_to_the_dead_letter_queue_with_headers(
        herder: StandaloneHerder, wiremock: str, kafka: str,
        new_topic: Callable[..., str]) -> None:
    topic = new_topic("http-400")
    dlq = f"{topic}-dlq"
    path = f"/strict/{topic}"
    wiremock_stub(wiremock, {"priority": 1, "request": {
        "method": "POST", "url": path, "bodyPatterns": [{"contains": "bad"}]},
        "response": {"status": 400, "body": "field speed is invalid"}})
    wiremock_stub(wiremock, {"priority": 5, "request": {"method": "POST", "url": path},
                             "response": {"status": 200}})
    values = [b'{"n": %d, "speed": %s}' % (n, b'"bad"' if n in (3, 11) else b"50")
              for n in range(15)]
    produce(kafka, topic, values)
    herder.put_connector(topic, sink_config(
        topic, wiremock + path, batching_enabled="true", batch_max_size="5",
        batch_prefix="[", batch_separator=",", batch_suffix="]",
        **{"errors.tolerance": "all", "errors.deadletterqueue.topic.name": dlq,
           "errors.deadletterqueue.topic.replication.factor": "1",
           "errors.deadletterqueue.context.headers.enable": "true"}))
    dead = consume_all(kafka, dlq, 2, timeout=60)
    assert sorted(orjson.loads(m.value())["n"] for m in dead) == [3, 11]
    for message in dead:
        headers = {k: v.decode() for k, v in message.headers()}
        assert headers["__connect.errors.topic"] == topic
        assert headers["__connect.errors.exception.class.name"] == \
            "org.apache.kafka.connect.errors.DataException"
        assert "HTTP 400" in headers["__connect.errors.exception.message"]
        assert "field speed is invalid" in headers["__connect.errors.exception.message"]
        assert headers["__connect.errors.stage"] == "TASK_PUT"
    delivered = [e["request"]["body"].encode() for e in wiremock_requests(wiremock, path)
                 if e["responseDefinition"]["status"] == 200]
    assert sorted(numbers(delivered)) == [n for n in range(15) if n not in (3, 11)]
    wait_for(lambda: committed(kafka, f"connect-{topic}", topic, 1)[0] == 15, 30,
             "the offsets committed")


def oauth2_config(server: RecordingServer, secret: str = CLIENT_SECRET) -> dict[str, str]:
    return {"http.authorization.type": "oauth2", "oauth2.access.token.url": f"{server.url}/token",
            "oauth2.client.id": CLIENT_ID, "oauth2.client.secret": secret}


def test_oauth2_token_is_fetched_refreshed_and_renewed_after_a_401(
        herder: StandaloneHerder, server: RecordingServer, kafka: str,
        new_topic: Callable[..., str]) -> None:
    topic = new_topic("http-oauth")
    server.state.token_lifetime = 2.0
    fetched = server.state.token_requests
    try:
        herder.put_connector(topic, {**sink_config(topic, f"{server.url}/secure/{topic}"),
                                     **oauth2_config(server)})
        produce(kafka, topic, records(3))
        wait_for(lambda: len(server.state.received(topic)) >= 3, 60, "the first records")
        first = server.state.token_requests - fetched
        assert first >= 1
        time.sleep(2.5)  # the token expires: the sink fetches a new one before sending
        produce(kafka, topic, records(3, start=3))
        wait_for(lambda: len(server.state.received(topic)) >= 6, 60, "the second records")
        assert server.state.token_requests - fetched > first
        server.state.token_lifetime = 3600.0
        produce(kafka, topic, records(1, start=6))
        wait_for(lambda: len(server.state.received(topic)) >= 7, 60, "a record")
        before = server.state.token_requests
        server.state.revoke_tokens()  # a 401 for a token thought valid: fetch again
        produce(kafka, topic, records(3, start=7))
        wait_for(lambda: len(server.state.received(topic)) >= 10, 60, "the last records")
        assert server.state.token_requests == before + 1
    finally:
        server.state.token_lifetime = 3600.0
    assert numbers([r.body for r in server.state.received(topic)]) == list(range(10))
    assert task_state(herder, topic)["state"] == State.RUNNING


def test_server_outage_loses_nothing(herder: StandaloneHerder, kafka: str,
                                     new_topic: Callable[..., str]) -> None:
    """The server stops for OUTAGE_SECONDS while records keep coming; the task retries
    (RUNNING, the status saying why), and every record arrives once, in order."""
    topic = new_topic("http-outage")
    server = RecordingServer().start()
    try:
        herder.put_connector(topic, sink_config(topic, f"{server.url}/sink/{topic}",
                                                batching_enabled="true", batch_max_size="50",
                                                batch_prefix="[", batch_separator=",",
                                                batch_suffix="]", max_retries="2"))
        produce(kafka, topic, records(100))
        wait_for(lambda: len(numbers([r.body for r in server.state.received(topic)])) >= 100,
                 60, "the records before the outage")
        server.stop()
        produce(kafka, topic, records(100, start=100))
        wait_for(lambda: "cannot reach" in (task_state(herder, topic).get("trace") or "")
                 or "cannot reach" in str(herder.connector_status(topic)), 30,
                 "the status to say the server is unreachable")
        assert task_state(herder, topic)["state"] == State.RUNNING
        end = time.monotonic() + OUTAGE_SECONDS
        produced = 200
        while time.monotonic() < end:
            produce(kafka, topic, records(50, start=produced))
            produced += 50
            time.sleep(min(2.0, max(end - time.monotonic(), 0)))
        assert task_state(herder, topic)["state"] == State.RUNNING
        server.start()
        wait_for(lambda: len(numbers([r.body for r in server.state.received(topic)]))
                 >= produced, 120, "every record after the outage")
        received = numbers([r.body for r in server.state.received(topic)])
        assert received == list(range(produced))
        wait_for(lambda: committed(kafka, f"connect-{topic}", topic, 1)[0] == produced, 30,
                 "the offsets committed")
    finally:
        server.stop()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/sink/{uuid.uuid4().hex[:6]}"


def test_validate_names_the_key_for_an_unreachable_server_and_wrong_credentials(
        server: RecordingServer) -> None:
    unreachable = errors_of(sink_config("t", closed_port_url()))
    assert list(unreachable) == ["http.url"]
    assert "cannot reach" in unreachable["http.url"][0]
    assert "check the URL" in unreachable["http.url"][0]

    wrong = errors_of({**sink_config("t", f"{server.url}/secure/x"),
                       **oauth2_config(server, secret="not-the-secret")})
    assert list(wrong) == ["oauth2.client.secret"]
    assert "refused client 'kanal-client'" in wrong["oauth2.client.secret"][0]
    shown = validate({"name": "http-sink", **sink_config("t", f"{server.url}/secure/x"),
                      **oauth2_config(server, "not-the-secret")})
    assert "not-the-secret" not in str(shown)
    assert {entry["value"]["name"]: entry["value"]["value"] for entry in shown["configs"]}[
        "oauth2.client.secret"] == "[hidden]"

    server.state.required_authorization = "Bearer right"
    try:
        static = errors_of(sink_config("t", f"{server.url}/sink/x",
                                       http_authorization_type="static",
                                       http_headers_authorization="Bearer wrong"))
    finally:
        server.state.required_authorization = None
    assert list(static) == ["http.headers.authorization"]
    assert "HTTP 401" in static["http.headers.authorization"][0]

    missing = errors_of(sink_config("t", f"{server.url}/sink/x", http_authorization_type="oauth2"))
    assert list(missing) == ["oauth2.access.token.url"]
    assert errors_of(sink_config("t", f"{server.url}/sink/x")) == {}


def test_credentials_refused_later_fail_the_task_naming_the_key_and_commit_nothing(
        herder: StandaloneHerder, server: RecordingServer, kafka: str,
        new_topic: Callable[..., str]) -> None:
    """Validate accepted the credentials; the server refuses them once records come (a
    rotated key): the task fails naming the key, and no offset is committed."""
    topic = new_topic("http-401")
    herder.put_connector(topic, sink_config(topic, f"{server.url}/sink/{topic}",
                                            http_authorization_type="static",
                                            http_headers_authorization="Bearer old"))
    server.state.required_authorization = "Bearer rotated"
    try:
        produce(kafka, topic, records(3))
        wait_for(lambda: task_state(herder, topic)["state"] == State.FAILED, 60,
                 "the task to fail")
    finally:
        server.state.required_authorization = None
    trace = task_state(herder, topic)["trace"]
    assert "http.headers.authorization: HTTP 401" in trace
    assert "fix http.headers.authorization" in trace
    assert "Bearer old" not in trace
    assert committed(kafka, f"connect-{topic}", topic, 1)[0] < 0
    assert server.state.received(topic) == []
