"""Bad input met by running tasks of the MQTT source, the HTTP source and the
Elasticsearch sink, as a user sees it: one ``kanal standalone`` worker with its REST API,
and each connector's status (``GET /connectors/<name>/status``) naming the key and the
fix. What validate can see is refused when the connector is created (400); what changes
afterwards (a broker that goes away, revoked credentials, an API that changed shape, a
new topic no index can be named after) shows in the task's status.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import stack_env
from tests.integration.http_server import RecordingServer
from tests.integration.own_mosquitto import Mosquitto
from tests.integration.standalone import Standalone, wait_for, worker_properties
from tests.kafka_helpers import produce

pytestmark = pytest.mark.integration


class Worker:
    """The worker's REST API."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def put(self, name: str, config: dict[str, str]) -> httpx.Response:
        return httpx.put(f"{self.url}/connectors/{name}/config",
                         json={"tasks.max": "1", **config}, timeout=60)

    def create(self, name: str, config: dict[str, str]) -> None:
        answer = self.put(name, config)
        assert answer.status_code == 201, answer.text
        wait_for(lambda: self.task(name).get("state") == "RUNNING", 60,
                 f"{name} to run (log: {self.log})")

    def task(self, name: str) -> dict[str, Any]:
        tasks = httpx.get(f"{self.url}/connectors/{name}/status", timeout=30).json()["tasks"]
        return dict(tasks[0]) if tasks else {}

    def failed(self, name: str, timeout: float = 60) -> str:
        """The trace of the task, once FAILED."""
        wait_for(lambda: self.task(name).get("state") == "FAILED", timeout,
                 f"{name} to fail (log: {self.log})")
        trace: str = self.task(name)["trace"]
        return trace

    def retrying(self, name: str, text: str) -> str:
        """The status detail of the running task, once it shows ``text``."""
        wait_for(lambda: text in (self.task(name).get("detail") or ""), 60,
                 f"{name} to show {text!r} (log: {self.log})")
        task = self.task(name)
        assert task["state"] == "RUNNING", task
        detail: str = task["detail"]
        return detail

    def restart_task(self, name: str) -> None:
        httpx.post(f"{self.url}/connectors/{name}/tasks/0/restart",
                   timeout=60).raise_for_status()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, kafka: str) -> Iterator[Worker]:
    directory = tmp_path_factory.mktemp("worker")
    properties = worker_properties(directory, kafka, listeners="http://127.0.0.1:0",
                                   offset_flush_interval_ms="500")
    log = directory / "kanal.log"
    run = Standalone(properties, log=log).start().wait_running()
    found = re.search(r"REST API on (http://\S+)", log.read_text())
    assert found is not None, log.read_text()
    try:
        yield Worker(found[1], log)
    finally:
        assert run.stop() == 0


@pytest.fixture(scope="module")
def mqtt_env() -> dict[str, str]:
    return stack_env("mqtt")


@pytest.fixture
def items_server() -> Iterator[RecordingServer]:
    server = RecordingServer().start()
    server.state.items = [{"id": n} for n in range(1, 6)]
    yield server
    server.stop()


def mqtt_source(url: str, topic_filter: str, **extra: str) -> dict[str, str]:
    return {"connector.class": "io.confluent.connect.mqtt.MqttSourceConnector",
            "mqtt.server.uri": url, "mqtt.topics": topic_filter, "kafka.topic": "unused",
            "mqtt.qos": "1", "mqtt.connect.timeout.seconds": "3",
            **{key.replace("_", "."): value for key, value in extra.items()}}


def http_source(server: RecordingServer, topic: str) -> dict[str, str]:
    return {"connector.class": "com.github.castorm.kafka.connect.http.HttpSourceConnector",
            "kafka.topic": topic, "http.request.url": f"{server.url}/items",
            "http.response.list.pointer": "/data/items",
            "http.response.record.offset.pointer": "id=/id", "http.offset.initial": "id=0",
            "http.request.params": "since=${offset.id}", "http.timer.interval.millis": "300"}


def test_mqtt_a_lost_broker_shows_while_reconnecting_and_fails_a_restart(
        worker: Worker, tmp_path: Path, mqtt_env: dict[str, str], unique: str) -> None:
    broker = Mosquitto(tmp_path).start()
    name = f"mqtt-lost-{unique}"
    try:
        worker.create(name, mqtt_source(broker.url, f"kanal-{unique}/#"))
    finally:
        broker.stop()
    detail = worker.retrying(name, "mqtt.server.uri")
    assert "lost the connection to the broker tcp://127.0.0.1:11983" in detail
    assert "check that it runs" in detail
    worker.restart_task(name)  # a task that starts without a broker fails
    trace = worker.failed(name)
    assert "mqtt.server.uri" in trace and "cannot reach any broker" in trace
    assert "check the addresses and that the broker runs" in trace


def mosquitto_passwd(*args: str) -> None:
    subprocess.run([str(Path(__file__).resolve().parents[2] / "dev" / "stack"), "run", "mqtt",
                    "mosquitto_passwd", *args], check=True, capture_output=True)


def test_mqtt_revoked_credentials_fail_the_task_naming_the_key(
        worker: Worker, tmp_path: Path, mqtt_env: dict[str, str], unique: str) -> None:
    passwords = tmp_path / "passwd"
    user, password = f"kanal-{unique}", f"pw-{unique}"
    mosquitto_passwd("-c", "-b", str(passwords), user, password)
    broker = Mosquitto(tmp_path, "allow_anonymous false", f"password_file {passwords}").start()
    name = f"mqtt-revoked-{unique}"
    try:
        worker.create(name, mqtt_source(broker.url, f"kanal-{unique}/#", mqtt_username=user,
                                        mqtt_password=password))
        mosquitto_passwd("-D", str(passwords), user)
        broker.restart()  # the task reconnects, and the broker refuses it
        trace = worker.failed(name)
    finally:
        broker.stop()
    assert "mqtt.password" in trace and "refused the credentials" in trace
    assert "check mqtt.username and mqtt.password" in trace
    assert password not in trace


def test_mqtt_an_invalid_topic_filter_is_refused_naming_the_key(
        worker: Worker, mqtt_env: dict[str, str], unique: str) -> None:
    answer = worker.put(f"mqtt-filter-{unique}",
                        mqtt_source(mqtt_env["KANAL_MQTT_URL"], "vehicles/speed+"))
    assert answer.status_code == 400
    assert "mqtt.topics" in answer.text and "must fill a whole level" in answer.text
    assert "write e.g. vehicles/+/speed" in answer.text


def test_mqtt_a_subscription_the_broker_refuses_fails_the_task_naming_mqtt_topics(
        worker: Worker, tmp_path: Path, mqtt_env: dict[str, str], unique: str) -> None:
    """Mosquitto's acl_file does not refuse subscriptions (it grants them and delivers
    nothing); its dynamic security plugin answers SUBACK 0x87 Not authorized."""
    broker = Mosquitto(tmp_path, subscribe=[f"kanal-{unique}/#"],
                       plugins=mqtt_env["KANAL_MQTT_PLUGINS"]).start()
    name = f"mqtt-denied-{unique}"
    try:
        answer = worker.put(name, mqtt_source(broker.url, f"kanal-{unique}/#,secret/#"))
        assert answer.status_code == 201, answer.text
        trace = worker.failed(name)
    finally:
        broker.stop()
    assert "mqtt.topics" in trace
    assert "the broker refused the subscription to 'secret/#' (Not authorized)" in trace
    assert "check mqtt.topics and that mqtt.username may subscribe to it" in trace


def test_http_source_an_unreachable_server_shows_while_retrying(
        worker: Worker, items_server: RecordingServer, unique: str) -> None:
    name = f"http-gone-{unique}"
    worker.create(name, http_source(items_server, f"http-gone-{unique}"))
    items_server.stop()
    detail = worker.retrying(name, "cannot reach")
    assert "retrying poll" in detail and "http.request.url" in detail
    assert "check the URL" in detail


def test_http_source_a_401_fails_the_task_naming_the_credentials(
        worker: Worker, items_server: RecordingServer, unique: str) -> None:
    name = f"http-401-{unique}"
    worker.create(name, http_source(items_server, f"http-401-{unique}"))
    items_server.state.required_authorization = "Bearer only-this"
    trace = worker.failed(name)
    assert "http.request.headers" in trace and "HTTP 401" in trace
    assert "only-this" not in trace


def test_http_source_a_pointer_matching_nothing_fails_the_task_naming_the_key(
        worker: Worker, items_server: RecordingServer, unique: str) -> None:
    name = f"http-pointer-{unique}"
    worker.create(name, http_source(items_server, f"http-pointer-{unique}"))
    items_server.state.list_name = "rows"  # the API changed shape
    trace = worker.failed(name)
    assert "http.response.list.pointer: '/data/items' matches nothing" in trace
    assert "its top level: data, count" in trace and "point it at the array" in trace


def test_elasticsearch_an_invalid_index_name_fails_the_task_naming_topics(
        worker: Worker, kafka: str, new_topic: Callable[..., str], unique: str) -> None:
    opensearch = stack_env("opensearch")["KANAL_OPENSEARCH_URL"]
    topic = new_topic("Speeding")  # uppercase: no index can be named so
    name = f"es-index-{unique}"
    worker.create(name, {
        "connector.class": "io.confluent.connect.elasticsearch.ElasticsearchSinkConnector",
        "topics.regex": f"Speeding-{topic.split('-')[1]}", "connection.url": opensearch,
        "key.ignore": "true", "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false"})
    produce(kafka, topic, [b'{"speed": 120}'])
    trace = worker.failed(name)
    assert f"topics: topic {topic!r} cannot name the index" in trace
    assert "uppercase letters" in trace and "RegexRouter" in trace
