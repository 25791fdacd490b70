"""One REST request sequence against Kanal and against Apache Kafka Connect 4.3.1.

Every step sends the same request to both and compares the status codes and the JSON
shapes (key sets, recursively; lists by their first element). Where Kanal answers
differently on purpose, the step says so in an explicit, commented exception.

Each side names its connector differently (``{connector}`` in a path): sink connectors of
the same name would share the consumer group ``connect-<name>`` and split the records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka.admin import AdminClient
from kafka_connect_api.kafka_connect_api import Api, Cluster, Connector
from kafka_connect_healthcheck.health import Health

from kanal_worker.rest.server import RestServer
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.standalone import StandaloneHerder
from tests.kafka_helpers import produce

pytestmark = pytest.mark.integration

STRINGS = "org.apache.kafka.connect.storage.StringConverter"


@dataclass
class Answer:
    status: int
    body: Any
    headers: httpx.Headers


class Side:
    """One REST server under test, Kanal's or Apache's, with its connector's name."""

    def __init__(self, name: str, url: str, connector: str) -> None:
        self.name = name
        self.connector = connector
        self.client = httpx.Client(base_url=url, timeout=90)

    def call(self, method: str, path: str, **kwargs: Any) -> Answer:
        """``path`` may hold ``{connector}``; a callable argument is called with this side."""
        arguments = {key: value(self) if callable(value) else value
                     for key, value in kwargs.items()}
        response = self.client.request(method, path.format(connector=self.connector),
                                       **arguments)
        body = response.json() if response.content else None
        return Answer(response.status_code, body, response.headers)

    def eventually(self, path: str, condition: Callable[[Any], bool], what: str,
                   timeout: float = 90) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            answer = self.call("GET", path)
            if answer.status == 200 and condition(answer.body):
                return answer.body
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: {what} not reached; last answer "
                                     f"{answer.status} {answer.body}")
            time.sleep(0.5)


def shape(value: Any, connector: str = "") -> Any:
    """Key sets, recursively, with the key ``connector`` (a map keyed by the connector's
    name) written ``{connector}``; a list by its first element. Scalars are alike (the
    response models type Kanal's; a default may be "" on one side and null on the other)."""
    if isinstance(value, dict):
        return {("{connector}" if key == connector else key): shape(item, connector)
                for key, item in value.items()}
    if isinstance(value, list):
        return ["list", shape(value[0], connector)] if value else ["list"]
    return "scalar"


class Compare:
    def __init__(self, kanal: Side, peer: Side) -> None:
        self.kanal, self.peer = kanal, peer

    def both(self, method: str, path: str, **kwargs: Any) -> tuple[Answer, Answer]:
        return self.kanal.call(method, path, **kwargs), self.peer.call(method, path, **kwargs)

    def same(self, method: str, path: str, status: int, **kwargs: Any) -> tuple[Answer, Answer]:
        """Both answer ``status`` with bodies of the same shape."""
        kanal, peer = self.both(method, path, **kwargs)
        step = f"{method} {path}"
        assert peer.status == status, f"peer: {step} -> {peer.status} {peer.body}"
        assert (kanal.status, shape(kanal.body, self.kanal.connector)) == \
            (peer.status, shape(peer.body, self.peer.connector)), step
        return kanal, peer

    def same_body(self, kanal: Answer, peer: Answer) -> None:
        """The same body word for word, but for the connectors' names."""
        assert orjson.dumps(kanal.body).decode().replace(self.kanal.connector, "{connector}") \
            == orjson.dumps(peer.body).decode().replace(self.peer.connector, "{connector}")

    def created(self, answers: tuple[Answer, Answer], suffix: str) -> None:
        """Both created connector ``<name><suffix>`` (201, Location)."""
        kanal, peer = answers
        assert kanal.status == peer.status == 201, (kanal.body, peer.body)
        for side, answer in ((self.kanal, kanal), (self.peer, peer)):
            assert answer.headers["location"].endswith(f"/connectors/{side.connector}{suffix}")
        # both answer before the tasks are listed
        assert kanal.body["tasks"] == peer.body["tasks"] == []
        assert shape(kanal.body) == shape(peer.body)

    def eventually(self, path: str, condition: Callable[[Any], bool], what: str) -> None:
        for side in (self.kanal, self.peer):
            side.eventually(path, condition, what)


@pytest.fixture
def kanal_url(kafka: str) -> Iterator[str]:
    worker = {"bootstrap.servers": kafka, "listeners": "http://127.0.0.1:0",
              "offset.flush.interval.ms": "1000"}
    herder = StandaloneHerder(worker, "127.0.0.1:0", MemoryOffsetStore())
    server = RestServer.start(herder, worker)
    try:
        yield server.urls[0]
    finally:
        server.stop()
        herder.stop_all()


def await_empty_group(kafka: str, group: str, timeout: float = 60) -> None:
    admin = AdminClient({"bootstrap.servers": kafka})
    deadline = time.monotonic() + timeout
    while admin.describe_consumer_groups([group])[group].result(10).members:
        assert time.monotonic() < deadline, f"consumer group {group} still has members"
        time.sleep(0.5)


def sink_config(topic: str, file: Path, tasks: int) -> dict[str, str]:
    return {"connector.class": "FileStreamSink", "topics": topic, "file": str(file),
            "tasks.max": str(tasks), "key.converter": STRINGS, "value.converter": STRINGS}


def running(tasks: int) -> Callable[[Any], bool]:
    return lambda status: (status["connector"]["state"] == "RUNNING"
                           and [t["state"] for t in status["tasks"]] == ["RUNNING"] * tasks)


def in_state(state: str) -> Callable[[Any], bool]:
    return lambda status: status["connector"]["state"] == state and all(
        task["state"] == state for task in status["tasks"])


def test_same_answers_as_apache_kafka_connect(kanal_url: str, connect_peer: str, kafka: str,
                                              new_topic: Callable[..., str], unique: str,
                                              tmp_path: Path) -> None:
    kanal = Side("kanal", kanal_url, f"compat-kanal-{unique}")
    peer = Side("apache", connect_peer, f"compat-apache-{unique}")
    topic = new_topic("rest-compat", 1)
    try:
        run_sequence(Compare(kanal, peer), kafka, topic, tmp_path, unique)
    finally:
        for path in (BASE, CREATED_BY_PUT, SUBSCRIBED_ONLY):
            peer.call("DELETE", path)


BASE = "/connectors/{connector}"
CREATED_BY_PUT = "/connectors/{connector}-put"
SUBSCRIBED_ONLY = "/connectors/{connector}-fresh"


def run_sequence(compare: Compare, kafka: str, topic: str, tmp_path: Path,
                 unique: str) -> None:
    kanal, peer = compare.kanal, compare.peer

    def sink(tasks: int, **extra: str) -> Callable[[Side], dict[str, str]]:
        return lambda side: {**sink_config(topic, tmp_path / f"{side.name}.txt", tasks),
                             **extra}

    # -- the worker ----------------------------------------------------------------------
    compare.same("GET", "/", 200)  # versions differ in value: 4.3.1 vs 4.3.1-kanal-<version>
    compare.same("GET", "/health", 200)

    # -- create ----------------------------------------------------------------------------
    creation = {"json": lambda side: {"name": side.connector, "config": sink(2)(side)}}
    compare.created(compare.both("POST", "/connectors", **creation), "")

    compare.same("POST", "/connectors", 409, **creation)
    compare.same("POST", "/connectors", 400, json={"name": f"invalid-{unique}", "config": {
        "connector.class": "FileStreamSink", "tasks.max": "many"}})
    compare.same("POST", "/connectors", 400, json=lambda side: {
        "name": f"named-{unique}", "config": sink(1, name="another")(side)})
    compare.same("POST", "/connectors", 415, content=b"{}",
                 headers={"content-type": "text/plain"})
    compare.same("POST", "/connectors", 415, content=b"{}")  # a body without Content-Type
    broken = compare.both("POST", "/connectors", content=b"{not json",
                          headers={"content-type": "application/json"})
    # Exception: Apache answers malformed JSON with 500; Kanal never answers 500 for bad input.
    assert (broken[0].status, broken[1].status) == (400, 500)
    assert broken[0].body.keys() == broken[1].body.keys() == {"error_code", "message"}

    compare.eventually(f"{BASE}/status", running(2), "2 running tasks")

    # -- read -----------------------------------------------------------------------------
    kanal_listed, peer_listed = compare.same("GET", "/connectors", 200)
    # the peer may hold other tests' connectors too
    assert kanal.connector in kanal_listed.body and peer.connector in peer_listed.body
    for expand in ([("expand", "status"), ("expand", "info")], {"expand": "status"},
                   {"expand": "info"}):
        kanal_expanded, peer_expanded = compare.both("GET", "/connectors", params=expand)
        assert shape(kanal_expanded.body[kanal.connector]) == \
            shape(peer_expanded.body[peer.connector]), expand
    kanal_info, peer_info = compare.same("GET", BASE, 200)
    assert kanal_info.body["config"].keys() == peer_info.body["config"].keys()
    kanal_config, peer_config = compare.same("GET", f"{BASE}/config", 200)
    assert kanal_config.body.keys() == peer_config.body.keys()
    compare.same("GET", f"{BASE}/status", 200)
    kanal_tasks, peer_tasks = compare.same("GET", f"{BASE}/tasks", 200)
    assert [t["config"].keys() for t in kanal_tasks.body] == \
        [t["config"].keys() for t in peer_tasks.body]
    assert {t["config"]["task.class"] for t in kanal_tasks.body} == \
        {t["config"]["task.class"] for t in peer_tasks.body} == \
        {"org.apache.kafka.connect.file.FileStreamSinkTask"}
    compare.same("GET", f"{BASE}/tasks/0/status", 200)
    compare.same("GET", f"{BASE}/tasks/7/status", 404)
    compare.same("GET", f"{BASE}/tasks/first/status", 404)

    # -- change the configuration ------------------------------------------------------------
    compare.same("PUT", f"{BASE}/config", 200, json=sink(1, **{"errors.log.enable": "false"}))
    compare.created(compare.both("PUT", f"{CREATED_BY_PUT}/config", json=sink(1)), "-put")
    compare.same("DELETE", CREATED_BY_PUT, 204)
    compare.same("PUT", f"{BASE}/config", 400, json=sink(1, name="another"))
    kanal_patched, peer_patched = compare.same(
        "PATCH", f"{BASE}/config", 200, json={"tasks.max": "2", "errors.log.enable": None})
    for answer in (kanal_patched, peer_patched):
        assert "errors.log.enable" not in answer.body["config"]
        assert answer.body["config"]["tasks.max"] == "2"
    compare.same("PATCH", f"/connectors/missing-{unique}/config", 404,
                 json={"tasks.max": "1"})
    compare.eventually(f"{BASE}/status", running(2), "2 running tasks after the patch")

    # -- records flow: active topics and sink offsets ---------------------------------------
    produce(kafka, topic, [b"one", b"two", b"three"])
    compare.eventually(f"{BASE}/topics",
                       lambda body: list(body.values()) == [{"topics": [topic]}],
                       "the topic in use")
    kanal_topics, peer_topics = compare.same("GET", f"{BASE}/topics", 200)
    assert list(kanal_topics.body) == [kanal.connector]
    compare.same("PUT", f"{BASE}/topics/reset", 202)
    compare.eventually(f"{BASE}/topics", lambda body: list(body.values()) == [{"topics": []}],
                       "topics reset")
    compare.eventually(f"{BASE}/offsets", lambda body: body["offsets"] == [
        {"partition": {"kafka_topic": topic, "kafka_partition": 0},
         "offset": {"kafka_offset": 3}}], "committed sink offsets")
    compare.same("GET", f"{BASE}/offsets", 200)
    one_offset = {"offsets": [{"partition": {"kafka_topic": topic, "kafka_partition": 0},
                               "offset": {"kafka_offset": 1}}]}
    compare.same_body(*compare.same("PATCH", f"{BASE}/offsets", 400, json=one_offset))
    compare.same("DELETE", f"{BASE}/offsets", 400)

    # -- pause, resume, restart ------------------------------------------------------------------
    compare.same("PUT", f"{BASE}/pause", 202)
    compare.eventually(f"{BASE}/status", in_state("PAUSED"), "paused")
    compare.same("GET", f"{BASE}/status", 200)
    compare.same("PUT", f"{BASE}/resume", 202)
    compare.eventually(f"{BASE}/status", running(2), "resumed")
    compare.same("POST", f"{BASE}/restart", 204)
    compare.same("POST", f"{BASE}/restart", 202, params={"includeTasks": "true"})
    compare.eventually(f"{BASE}/status", running(2), "restarted")
    compare.same("POST", f"{BASE}/restart", 202, params={"onlyFailed": "true"})
    compare.same("POST", f"{BASE}/restart", 202,
                 params={"includeTasks": "true", "onlyFailed": "true"})
    compare.same("POST", f"{BASE}/tasks/0/restart", 204)
    compare.same("POST", f"{BASE}/tasks/9/restart", 404)
    compare.eventually(f"{BASE}/status", running(2), "restarted task")
    compare.same("GET", f"{BASE}/pause", 405)
    compare.same("PUT", f"{BASE}/pause", 415, content=b"now",
                 headers={"content-type": "text/plain"})

    # -- stop, then offsets may change -----------------------------------------------------------
    compare.same("PUT", f"{BASE}/stop", 204)
    compare.eventually(f"{BASE}/status", lambda body: body["connector"]["state"] == "STOPPED"
                       and body["tasks"] == [], "stopped")
    kanal_stopped, peer_stopped = compare.same("GET", BASE, 200)
    assert kanal_stopped.body["tasks"] == peer_stopped.body["tasks"] == []
    kanal_status, peer_status = compare.same("GET", f"{BASE}/status", 200)
    for status in (kanal_status.body, peer_status.body):  # worker ids and versions differ
        assert (status["connector"]["state"], status["tasks"], status["type"]) == \
            ("STOPPED", [], "sink")
    compare.same_body(*compare.same("GET", f"{BASE}/tasks", 200))
    # Apache answers 500 ("safely retried") while its stopped tasks still sit in the group
    for side in (kanal, peer):
        await_empty_group(kafka, f"connect-{side.connector}")
    compare.same_body(*compare.same("PATCH", f"{BASE}/offsets", 200, json=one_offset))
    kanal_read, peer_read = compare.same("GET", f"{BASE}/offsets", 200)
    assert kanal_read.body == peer_read.body == one_offset
    removal = {"offsets": [{"partition": {"kafka_topic": topic, "kafka_partition": 0},
                            "offset": None}]}
    compare.same("PATCH", f"{BASE}/offsets", 200, json=removal)
    kanal_read, peer_read = compare.same("GET", f"{BASE}/offsets", 200)
    assert kanal_read.body == peer_read.body == {"offsets": []}
    for bad_offsets in ({"offsets": []}, {},
                        {"offsets": [{"partition": {"kafka_topic": topic},
                                      "offset": {"kafka_offset": 1}}]},
                        {"offsets": [{"partition": {"kafka_topic": topic,
                                                    "kafka_partition": "first"},
                                      "offset": {"kafka_offset": 1}}]},
                        {"offsets": [{"partition": {"kafka_topic": topic, "kafka_partition": 0},
                                      "offset": {"position": 1}}]},
                        {"offsets": [{"offset": {"kafka_offset": 1}}]}):
        compare.same_body(*compare.same("PATCH", f"{BASE}/offsets", 400, json=bad_offsets))
    missing_topic = {"offsets": [{"partition": {"kafka_topic": f"missing-{unique}",
                                                "kafka_partition": 0},
                                  "offset": {"kafka_offset": 1}}]}
    kanal_missing, peer_missing = compare.both("PATCH", f"{BASE}/offsets", json=missing_topic)
    # Exception: Apache answers 500 to offsets for a topic that does not exist; that is bad
    # input, so Kanal answers 400.
    assert (kanal_missing.status, peer_missing.status) == (400, 500)
    compare.same_body(*compare.same("DELETE", f"{BASE}/offsets", 200))

    # -- offsets of a topic subscribed to but never written ----------------------------------
    # the sink's consumer creates the topic it subscribes to, as Java's does, so its offsets
    # can be set before any record exists (each side its own topic)
    def fresh(side: Side) -> str:
        return f"fresh-{side.name}-{unique}"
    compare.created(compare.both("PUT", f"{SUBSCRIBED_ONLY}/config", json=lambda side: {
        **sink_config(fresh(side), tmp_path / f"{side.name}-fresh.txt", 1)}), "-fresh")
    compare.eventually(f"{SUBSCRIBED_ONLY}/status", running(1), "running on a new topic")
    compare.same("PUT", f"{SUBSCRIBED_ONLY}/stop", 204)
    for side in (kanal, peer):
        await_empty_group(kafka, f"connect-{side.connector}-fresh")
    compare.same_body(*compare.same("PATCH", f"{SUBSCRIBED_ONLY}/offsets", 200, json=lambda side: {
        "offsets": [{"partition": {"kafka_topic": fresh(side), "kafka_partition": 0},
                     "offset": {"kafka_offset": 0}}]}))
    compare.same("DELETE", SUBSCRIBED_ONLY, 204)

    # -- plugins and validation --------------------------------------------------------------
    kanal_plugins, peer_plugins = compare.same("GET", "/connector-plugins", 200)
    # Plugin versions differ (Kanal's plugins are its own); the class names are Apache's.
    sink_class = "org.apache.kafka.connect.file.FileStreamSinkConnector"
    for answer in (kanal_plugins, peer_plugins):
        assert {"class": sink_class, "type": "sink"}.items() <= next(
            p for p in answer.body if p["class"] == sink_class).items()
    compare.same("GET", "/connector-plugins", 200, params={"connectorsOnly": "false"})
    compare.same("GET", "/connector-plugins/FileStreamSink/config", 200)
    compare.same("GET", f"/connector-plugins/Missing{unique}/config", 404)
    kanal_infos, peer_infos = compare.both(
        "PUT", "/connector-plugins/FileStreamSink/config/validate",
        json={"connector.class": "FileStreamSink", "tasks.max": "many", "topics": topic})
    assert kanal_infos.status == peer_infos.status == 200
    assert kanal_infos.body.keys() == peer_infos.body.keys()
    assert shape(kanal_infos.body["configs"][0]) == shape(peer_infos.body["configs"][0])
    for answer in (kanal_infos, peer_infos):
        tasks_max = next(c["value"] for c in answer.body["configs"]
                         if c["value"]["name"] == "tasks.max")
        assert tasks_max["errors"], answer.body
    compare.same("PUT", "/connector-plugins/FileStreamSink/config/validate", 400,
                 json={"connector.class": "FileStreamSource"})

    # -- loggers -----------------------------------------------------------------------------
    logger = f"kanal.compat.{unique}"
    kanal_set, peer_set = compare.same("PUT", f"/admin/loggers/{logger}", 200,
                                       json={"level": "DEBUG"})
    assert kanal_set.body == peer_set.body == [logger]
    kanal_level, peer_level = compare.same("GET", f"/admin/loggers/{logger}", 200)
    assert kanal_level.body["level"] == peer_level.body["level"] == "DEBUG"
    kanal_all, peer_all = compare.both("GET", "/admin/loggers")  # each has its own loggers
    assert kanal_all.status == peer_all.status == 200
    assert shape(kanal_all.body[logger]) == shape(peer_all.body[logger])
    assert shape(kanal_all.body["root"]) == shape(peer_all.body["root"])
    kanal_unchanged, peer_unchanged = compare.same("PUT", f"/admin/loggers/{logger}", 200,
                                                   json={"level": "debug"})
    assert kanal_unchanged.body == peer_unchanged.body == []
    compare.same("PUT", f"/admin/loggers/{logger}", 204, params={"scope": "cluster"},
                 json={"level": "INFO"})
    compare.same_body(*compare.same("PUT", f"/admin/loggers/{logger}", 404,
                                    json={"level": "LOUD"}))
    compare.same_body(*compare.same("PUT", f"/admin/loggers/{logger}", 400, json={}))
    compare.same_body(*compare.same("GET", f"/admin/loggers/{logger}.unknown", 404))

    # -- unknown connectors ------------------------------------------------------------------
    missing = f"/connectors/missing-{unique}"
    for method, path in (("GET", missing), ("GET", f"{missing}/config"),
                         ("GET", f"{missing}/status"), ("GET", f"{missing}/tasks"),
                         ("GET", f"{missing}/tasks/0/status"), ("GET", f"{missing}/offsets"),
                         ("PUT", f"{missing}/pause"), ("PUT", f"{missing}/resume"),
                         ("PUT", f"{missing}/stop"), ("POST", f"{missing}/restart"),
                         ("POST", f"{missing}/tasks/0/restart"), ("DELETE", missing),
                         ("DELETE", f"{missing}/offsets")):
        compare.same(method, path, 404)
    kanal_topics, peer_topics = compare.both("GET", f"{missing}/topics")
    # Exception: Apache answers 200 with no topics for a connector it does not know;
    # Kanal answers 404 like every other connector endpoint.
    assert (kanal_topics.status, peer_topics.status) == (404, 200)
    compare.same("GET", f"/nothing-{unique}", 404)

    # -- delete ------------------------------------------------------------------------------
    compare.same("DELETE", BASE, 204)
    compare.same("GET", BASE, 404)
    kanal_listed, peer_listed = compare.same("GET", "/connectors", 200)
    assert kanal.connector not in kanal_listed.body
    assert peer.connector not in peer_listed.body


def observed_by_third_party_clients(side: Side, kafka: str, topic: str,
                                    tmp_path: Path) -> dict[str, Any]:
    """What kafka-connect-api and kafka-connect-healthcheck see of one worker: a sink that
    runs, pauses and resumes, then one whose task fails on a record that is not JSON."""
    cluster = Cluster(Api(url=str(side.client.base_url).rstrip("/")))
    health = Health(cluster.api.url, None, ["FAILED"], None, 0, ["connector", "task"])
    seen: dict[str, Any] = {"version": cluster.version.split("-")[0],
                            "kafka_cluster": cluster.kafka_cluster}
    connector = Connector(cluster, f"{side.connector}-client")
    failing = Connector(cluster, f"{side.connector}-client-failing")
    # the peer is shared with other tests: judge the health of this test's connectors only
    health.get_connector_names = lambda: [name for name in (connector.name, failing.name)
                                          if name in cluster.connectors]
    try:
        connector.config = sink_config(topic, tmp_path / f"{side.name}-client.txt", 2)
        side.eventually(f"/connectors/{connector.name}/status", running(2), "running")
        seen["listed"] = connector.name in cluster.connectors
        seen["tasks"] = [(task.id, task.is_running(), sorted(task.config))
                         for task in connector.tasks]
        connector.pause()
        side.eventually(f"/connectors/{connector.name}/status", in_state("PAUSED"), "paused")
        seen["paused"] = connector.state
        connector.resume()
        side.eventually(f"/connectors/{connector.name}/status", running(2), "resumed")
        seen["healthy"] = health.get_health_result()

        failing.config = {**sink_config(topic, tmp_path / f"{side.name}-failing.txt", 1),
                          "value.converter": "org.apache.kafka.connect.json.JsonConverter"}
        side.eventually(f"/connectors/{failing.name}/status",
                        lambda body: [t["state"] for t in body["tasks"]] == ["FAILED"],
                        "the task failed on a record that is not JSON")
        result = health.get_health_result()
        seen["unhealthy"] = {**result, "failures": [
            {key: value for key, value in failure.items() if key not in ("worker_id", "trace")}
            | {"connector": failure["connector"].removeprefix(side.connector),
               "has_trace": bool(failure.get("trace"))}
            for failure in result["failures"]]}
    finally:
        connector.delete()
        failing.delete()
    seen["deleted"] = connector.name not in cluster.connectors
    return seen


def test_third_party_python_clients_see_the_same_as_with_apache(
        kanal_url: str, connect_peer: str, kafka: str, new_topic: Callable[..., str],
        unique: str, tmp_path: Path) -> None:
    topic = new_topic("rest-clients", 1)
    produce(kafka, topic, [b"one", b"two"])
    kanal = observed_by_third_party_clients(Side("kanal", kanal_url, f"clients-kanal-{unique}"),
                                            kafka, topic, tmp_path)
    peer = observed_by_third_party_clients(
        Side("apache", connect_peer, f"clients-apache-{unique}"), kafka, topic, tmp_path)
    assert kanal == peer
    assert peer["unhealthy"]["healthy"] is False and peer["healthy"]["healthy"] is True
