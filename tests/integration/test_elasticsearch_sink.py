"""ElasticsearchSinkConnector against the real broker and a real OpenSearch node.

Elasticsearch itself cannot be run here, so OpenSearch (``dev/stack up opensearch``)
stands for both: the connector uses only the bulk and index APIs the two share.
Documents are read back with opensearch-py after a refresh.
"""

from __future__ import annotations

import http.server
import logging
import os
import random
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from opensearchpy import NotFoundError, OpenSearch

from kanal_worker.config.loader import load_connector
from kanal_worker.connectors.telemetry import reading
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.standalone import StandaloneHerder
from kanal_worker.runtime.validation import errors_of, validate
from tests.conftest import stack_env
from tests.integration.blackout import BlackoutProxy
from tests.integration.standalone import (
    Standalone,
    wait_for,
    worker_properties,
    write_properties,
)
from tests.kafka_helpers import committed, consume_all, produce

pytestmark = pytest.mark.integration

RECORDS = int(os.environ.get("KANAL_ES_CRASH_RECORDS", "100000"))
"""Records of the SIGKILL run (~30 s for 100,000 here); KANAL_ES_CRASH_RECORDS sizes it."""
JSON = {"value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter"}
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPEED_MAPPING = {"mappings": {"properties": {"speed": {"type": "long"}}}}
"""An index where {"speed": "fast"} is a malformed document."""
CLASS = "io.confluent.connect.elasticsearch.ElasticsearchSinkConnector"


@pytest.fixture(scope="session")
def opensearch() -> str:
    """URL of the real OpenSearch node (started once per session)."""
    return stack_env("opensearch")["KANAL_OPENSEARCH_URL"]


@pytest.fixture(scope="session")
def client(opensearch: str) -> OpenSearch:
    return OpenSearch(hosts=[opensearch], timeout=60)


@pytest.fixture
def new_topic(new_topic: Callable[..., str], client: OpenSearch,
              unique: str) -> Iterator[Callable[..., str]]:
    """Topics whose indices and data streams are deleted after the test: a node holds
    at most 1,000 shards, and every test run makes new ones."""
    suffixes = [unique]

    def create(prefix: str = "t", partitions: int = 1) -> str:
        topic = new_topic(prefix, partitions)
        suffixes.append(topic.rsplit("-", 1)[-1])
        return topic

    yield create
    for suffix in suffixes:
        with suppress(NotFoundError):
            client.indices.delete_data_stream(name=f"*{suffix}")
        with suppress(NotFoundError):
            client.indices.delete_index_template(name=f"kanal-*{suffix}")
        client.indices.delete(index=f"*{suffix}*", params={"ignore_unavailable": "true"})


@contextmanager
def herder_running(kafka: str, name: str, config: dict[str, str]) -> Iterator[StandaloneHerder]:
    herder = StandaloneHerder({"bootstrap.servers": kafka, "offset.flush.interval.ms": "500",
                               "listeners": ""}, "test:8083", MemoryOffsetStore())
    herder.put_connector(name, {"connector.class": CLASS, "tasks.max": "1", **JSON, **config})
    try:
        yield herder
    finally:
        herder.stop_all()


def task(herder: StandaloneHerder, name: str) -> dict[str, Any]:
    state: dict[str, Any] = herder.connector_status(name)["tasks"][0]
    return state


def documents(client: OpenSearch, index: str) -> dict[str, dict[str, Any]]:
    if not client.indices.exists(index=index):
        return {}
    client.indices.refresh(index=index)
    hits = client.search(index=index, body={"query": {"match_all": {}}, "size": 1000})
    return {hit["_id"]: hit["_source"] for hit in hits["hits"]["hits"]}


def count(client: OpenSearch, index: str) -> int:
    if not client.indices.exists(index=index):
        return 0
    client.indices.refresh(index=index)
    return int(client.count(index=index)["count"])


def test_insert_with_keys_then_upsert_and_delete_on_tombstone(
        kafka: str, opensearch: str, client: OpenSearch, new_topic: Callable[..., str],
        unique: str) -> None:
    topic = new_topic("speeding")
    values = [{"vehicle": "v1", "speed": 131}, {"vehicle": "v2", "speed": 140},
              {"vehicle": "v1", "speed": 150}, None, {"vehicle": "v3", "speed": 99}]
    produce(kafka, topic, [orjson.dumps(v) if v is not None else None for v in values],
            keys=[b"v1", b"v2", b"v1", b"v2", b"v3"])
    config = {"topics": topic, "connection.url": opensearch, "key.ignore": "false",
              "schema.ignore": "true", "behavior.on.null.values": "delete"}
    with herder_running(kafka, f"es-{unique}", config) as herder:
        wait_for(lambda: committed(kafka, f"connect-es-{unique}", topic, 1)[0] == 5, 60,
                 "offsets committed")
        assert task(herder, f"es-{unique}")["state"] == "RUNNING"
    # the newest record of each key, v2 deleted by its tombstone, versions = offsets
    assert documents(client, topic) == {"v1": values[2], "v3": values[4]}
    assert client.get(index=topic, id="v1")["_version"] == 2
    # replaying from the start changes nothing: every older version is refused
    produce(kafka, topic, [orjson.dumps({"vehicle": "v3", "limit": 80})], keys=[b"v3"])
    upsert = {**config, "write.method": "upsert", "behavior.on.null.values": "ignore"}
    with herder_running(kafka, f"es-up-{unique}", upsert):
        wait_for(lambda: documents(client, topic).get("v3", {}).get("limit") == 80, 60,
                 "the upsert merged")
    merged = documents(client, topic)
    assert merged["v3"] == {"vehicle": "v3", "speed": 99, "limit": 80}
    assert merged["v1"] == values[2]


def test_key_ignore_writes_one_document_per_record_with_a_schema_mapping(
        kafka: str, opensearch: str, client: OpenSearch, new_topic: Callable[..., str],
        unique: str) -> None:
    topic = new_topic("readings")
    schema = {"type": "struct", "fields": [
        {"field": "vehicle", "type": "string"}, {"field": "speed", "type": "int32"},
        {"field": "at", "type": "int64", "name": "org.apache.kafka.connect.data.Timestamp"}]}
    produce(kafka, topic, [orjson.dumps({"schema": schema, "payload": {
        "vehicle": f"v{i}", "speed": 100 + i, "at": 1_700_000_000_000 + i}}) for i in range(20)])
    with herder_running(kafka, f"es-{unique}", {
            "topics": topic, "connection.url": opensearch, "key.ignore": "true",
            "value.converter.schemas.enable": "true"}):
        wait_for(lambda: count(client, topic) == 20, 60, "20 documents")
    docs = documents(client, topic)
    assert set(docs) == {f"{topic}+0+{i}" for i in range(20)}
    assert docs[f"{topic}+0+3"] == {"vehicle": "v3", "speed": 103, "at": 1_700_000_000_003}
    properties = client.indices.get_mapping(index=topic)[topic]["mappings"]["properties"]
    assert properties == {"vehicle": {"type": "text"}, "speed": {"type": "integer"},
                          "at": {"type": "date"}}


@pytest.mark.parametrize("behavior", ["ignore", "warn", "fail"])
def test_malformed_documents(kafka: str, opensearch: str, client: OpenSearch,
                             new_topic: Callable[..., str], unique: str,
                             behavior: str) -> None:
    topic = new_topic("malformed")
    client.indices.create(index=topic, body=SPEED_MAPPING)
    dlq = f"dlq-{unique}"
    produce(kafka, topic, [b'{"speed": 120}', b'{"speed": "fast"}', b'{"speed": 130}'])
    name = f"es-{behavior}-{unique}"
    config = {"topics": topic, "connection.url": opensearch, "key.ignore": "true",
              "behavior.on.malformed.documents": behavior, "batch.size": "1"}
    if behavior == "fail":
        config |= {"errors.tolerance": "all", "errors.deadletterqueue.topic.name": dlq,
                   "errors.deadletterqueue.topic.replication.factor": "1",
                   "errors.deadletterqueue.context.headers.enable": "true"}
    with herder_running(kafka, name, config) as herder:
        wait_for(lambda: committed(kafka, f"connect-{name}", topic, 1)[0] == 3, 60,
                 "offsets committed")
        assert task(herder, name)["state"] == "RUNNING"
    assert sorted(documents(client, topic)) == [f"{topic}+0+0", f"{topic}+0+2"]
    if behavior == "fail":
        (dead,) = consume_all(kafka, dlq, 1)
        assert dead.value() == b'{"speed": "fast"}'
        headers = dict(dead.headers() or [])
        assert b"mapper_parsing_exception" in headers["__connect.errors.exception.message"]


def test_malformed_document_fails_the_task_without_tolerance(
        kafka: str, opensearch: str, client: OpenSearch, new_topic: Callable[..., str],
        unique: str) -> None:
    topic = new_topic("malformed")
    client.indices.create(index=topic, body=SPEED_MAPPING)
    produce(kafka, topic, [b'{"speed": 120}', b'{"speed": "fast"}'])
    name = f"es-{unique}"
    with herder_running(kafka, name, {"topics": topic, "connection.url": opensearch,
                                      "key.ignore": "true", "batch.size": "1"}) as herder:
        wait_for(lambda: task(herder, name)["state"] == "FAILED", 60, "the task to fail")
        trace = task(herder, name)["trace"]
    assert "behavior.on.malformed.documents" in trace and "mapper_parsing_exception" in trace
    assert committed(kafka, f"connect-{name}", topic, 1)[0] < 2


def test_outage_is_retried_while_polling_and_commits_only_what_was_indexed(
        kafka: str, opensearch: str, client: OpenSearch, new_topic: Callable[..., str],
        unique: str) -> None:
    topic = new_topic("outage")
    target = urlsplit(opensearch)
    proxy = BlackoutProxy((target.hostname or "", target.port or 80)).start()
    produce(kafka, topic, [orjson.dumps({"n": i}) for i in range(50)])
    name = f"es-{unique}"
    config = {"topics": topic, "connection.url": proxy.url, "key.ignore": "true",
              "max.retries": "1"}
    with herder_running(kafka, name, config) as herder:
        wait_for(lambda: committed(kafka, f"connect-{name}", topic, 1)[0] == 50, 60,
                 "the first 50 indexed")
        proxy.stop()
        produce(kafka, topic, [orjson.dumps({"n": i}) for i in range(50, 100)])
        details: set[str] = set()
        outage_ends = time.monotonic() + 8
        while time.monotonic() < outage_ends:
            assert task(herder, name)["state"] == "RUNNING"
            details.add(herder.runners()[0].status.detail or "")
            time.sleep(0.5)
        assert committed(kafka, f"connect-{name}", topic, 1)[0] == 50
        shown = " ".join(details)
        assert "retrying write: cannot reach connection.url" in shown, details
        assert "check the URL and that the server is running" in shown
        proxy.start()
        wait_for(lambda: committed(kafka, f"connect-{name}", topic, 1)[0] == 100, 90,
                 "all records after the outage")
    proxy.stop()
    assert count(client, topic) == 100


def test_sigkill_three_times_keeps_one_document_per_record(
        tmp_path: Path, kafka: str, opensearch: str, client: OpenSearch,
        new_topic: Callable[..., str], unique: str) -> None:
    topic = new_topic("crash", 2)
    half = RECORDS // 2
    for partition in (0, 1):
        produce(kafka, topic, [orjson.dumps({"p": partition, "seq": s}) for s in range(half)],
                keys=[f"{partition}-{s}".encode() for s in range(half)], partition=partition)
    connector = write_properties(tmp_path / "es.properties", {
        "name": f"crash-{unique}", "connector.class": CLASS, "topics": topic,
        "connection.url": opensearch, "key.ignore": "false", "schema.ignore": "true",
        "batch.size": "500", **JSON})
    worker = worker_properties(tmp_path, kafka)
    log = tmp_path / "kanal.log"
    rng = random.Random(unique)
    for kill in range(1, 4):
        target = count(client, topic) + rng.randint(RECORDS // 10, RECORDS // 5)
        run = Standalone(worker, connector, log=log).start()
        wait_for(lambda: count(client, topic) >= target, 120,  # noqa: B023
                 f"{target} documents before kill {kill} (log: {log})")
        time.sleep(rng.uniform(0, 0.3))
        run.stop(signal.SIGKILL)
    run = Standalone(worker, connector, log=log).start()
    try:
        wait_for(lambda: count(client, topic) >= 2 * half, 180, f"every record (log: {log})")
        time.sleep(2)
    finally:
        assert run.stop() == 0
    assert count(client, topic) == 2 * half  # the distinct ids: nothing lost, none twice
    seqs = client.search(index=topic, body={"size": 0, "aggs": {
        "p": {"terms": {"field": "p"}, "aggs": {"n": {"cardinality": {"field": "seq"}}}}}})
    assert {b["key"]: b["doc_count"] for b in seqs["aggregations"]["p"]["buckets"]} == \
        {0: half, 1: half}


def indexed_and_committed(client: OpenSearch, kafka: str, group: str, topic: str
                          ) -> tuple[int, int]:
    """(documents, committed offset), the offset read first: as documents only grow, a
    commit ahead of the index shows as an offset above the count."""
    offset = max(committed(kafka, group, topic, 1)[0], 0)
    return count(client, topic), offset


def test_linger_holds_a_partial_batch_and_commits_only_what_is_indexed(
        kafka: str, opensearch: str, client: OpenSearch, new_topic: Callable[..., str],
        unique: str) -> None:
    topic = new_topic("linger")
    name = f"es-{unique}"
    group = f"connect-{name}"
    config = {"topics": topic, "connection.url": opensearch, "key.ignore": "true",
              "linger.ms": "10000", "batch.size": "10"}
    samples: list[tuple[int, int]] = []

    def sample() -> tuple[int, int]:
        samples.append(indexed_and_committed(client, kafka, group, topic))
        return samples[-1]

    with herder_running(kafka, name, config) as herder:
        wait_for(lambda: task(herder, name)["state"] == "RUNNING", 60, "the task to run")
        started = time.monotonic()
        for n in range(3):  # a trickle: one record a poll
            produce(kafka, topic, [orjson.dumps({"n": n})])
            time.sleep(0.6)
        while time.monotonic() - started < 6:
            assert sample() == (0, 0), "a partial batch went out before linger.ms"
            time.sleep(0.5)
        wait_for(lambda: sample() == (3, 3), 30, "the lingering records after linger.ms")
        assert time.monotonic() - started >= 9.5
        # batch.size records make a full request: it goes at once
        produce(kafka, topic, [orjson.dumps({"n": n}) for n in range(3, 13)])
        full = time.monotonic()
        wait_for(lambda: sample()[0] == 13, 30, "a full batch")
        assert time.monotonic() - full < 8, "a full batch waited for linger.ms"
        wait_for(lambda: sample() == (13, 13), 30, "its offsets committed")
    assert all(offset <= documents for documents, offset in samples), samples


def test_sigkill_while_records_linger_loses_none(
        tmp_path: Path, kafka: str, opensearch: str, client: OpenSearch,
        new_topic: Callable[..., str], unique: str) -> None:
    topic = new_topic("linger-kill")
    name = f"linger-kill-{unique}"
    produce(kafka, topic, [orjson.dumps({"n": n}) for n in range(5)])
    settings = {"name": name, "connector.class": CLASS, "topics": topic,
                "connection.url": opensearch, "key.ignore": "true", "batch.size": "100",
                "linger.ms": "600000", **JSON}
    connector = write_properties(tmp_path / "es.properties", settings)
    worker = worker_properties(tmp_path, kafka)
    log = tmp_path / "kanal.log"
    run = Standalone(worker, connector, log=log).start().wait_running()
    wait_for(lambda: run.logged(b"RUNNING: 5 records"), 60, f"the records taken (log: {log})")
    time.sleep(2)  # offset commits pass: none may cover the lingering records
    assert indexed_and_committed(client, kafka, f"connect-{name}", topic) == (0, 0)
    run.kill()
    write_properties(connector, {**settings, "linger.ms": "1"})
    run = Standalone(worker, connector, log=log).start()
    try:
        wait_for(lambda: indexed_and_committed(client, kafka, f"connect-{name}", topic)
                 == (5, 5), 90, f"the records after the restart (log: {log})")
    finally:
        assert run.stop() == 0


class Refusing(http.server.BaseHTTPRequestHandler):
    """A secured cluster refusing the credentials (401), or, with ``reads_only``, a user
    who may read but not write (403 on writes)."""

    reads_only = False
    authorizations: list[str] = []

    def _answer(self, writes: bool) -> None:
        self.authorizations.append(self.headers.get("Authorization", ""))
        if self.reads_only and not writes:
            status, body = 200, b'{"version":{"number":"2.19.6"}}'
        else:
            status = 403 if self.reads_only else 401
            body = (b'{"error":{"type":"security_exception","reason":"no permissions for '
                    b'[indices:data/write/bulk]"},"status":%d}' % status)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(writes=False)

    def do_HEAD(self) -> None:
        self._answer(writes=False)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer(writes=True)

    do_PUT = do_POST

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def refusing(reads_only: bool) -> Iterator[tuple[str, list[str]]]:
    """The URL of a ``Refusing`` server and the Authorization headers it received."""
    handler = type("Handler", (Refusing,), {"reads_only": reads_only, "authorizations": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler.authorizations
    finally:
        server.shutdown()


def test_a_user_who_may_not_write_fails_the_task_and_the_password_shows_nowhere(
        kafka: str, new_topic: Callable[..., str], unique: str,
        caplog: pytest.LogCaptureFixture) -> None:
    topic = new_topic("secured")
    produce(kafka, topic, [b'{"speed": 120}'])
    name = f"es-{unique}"
    password = f"canary-{unique}"
    caplog.set_level(logging.DEBUG)
    with refusing(reads_only=True) as (url, authorizations), herder_running(kafka, name, {
            "topics": topic, "connection.url": url, "key.ignore": "true",
            "connection.username": "reader", "connection.password": password}) as herder:
        wait_for(lambda: task(herder, name)["state"] == "FAILED", 60, "the task to fail")
        trace = task(herder, name)["trace"]
    assert "connection.username=reader may not write" in trace
    assert "grant it the index and bulk privileges" in trace
    assert any(a.startswith("Basic ") for a in authorizations)  # the password was sent
    assert password not in trace + caplog.text


def test_bad_input_errors_name_the_key_and_the_fix(opensearch: str) -> None:
    base = {"name": "bad", "connector.class": CLASS, "topics": "vehicle.speeding",
            "connection.url": opensearch, "key.ignore": "true"}

    def errors(**changes: str | None) -> dict[str, list[str]]:
        config = {**base, **{k.replace("_", "."): v for k, v in changes.items()}}
        return errors_of(validate({k: v for k, v in config.items() if v is not None}))

    assert errors() == {}
    unreachable = errors(connection_url="http://127.0.0.1:1")["connection.url"][0]
    assert "cannot reach connection.url=http://127.0.0.1:1" in unreachable
    assert "check the URL" in unreachable
    with refusing(reads_only=False) as (url, _):
        refused = errors(connection_url=url, connection_username="kanal",
                         connection_password="wrong")
    assert "refused the credentials" in refused["connection.password"][0]
    assert "set connection.username and connection.password" in refused["connection.password"][0]
    assert "cannot name the index" in errors(topics="Vehicle.Speeding")["topics"][0]
    assert "RegexRouter" in errors(topics="_speeding")["topics"][0]
    assert "set connection.password too" in errors(connection_username="kanal")[
        "connection.password"][0]
    assert "set key.ignore=false" in errors(behavior_on_null_values="delete")[
        "behavior.on.null.values"][0]
    assert "set data.stream.dataset" in errors(data_stream_type="logs")["data.stream.dataset"][0]
    assert "set key.ignore=true" in errors(data_stream_type="logs", data_stream_dataset="t",
                                           key_ignore="false")["key.ignore"][0]
    assert "Input should be 'insert' or 'upsert'" in errors(write_method="replace")[
        "write.method"][0]
    hidden = {c["value"]["name"]: c["value"]["value"]
              for c in validate({**base, "connection.username": "kanal",
                                 "connection.password": "s3cret"})["configs"]}
    assert hidden["connection.password"] == "[hidden]"


def test_invalid_index_name_fails_the_task_naming_topics(
        kafka: str, opensearch: str, new_topic: Callable[..., str], unique: str) -> None:
    topic = new_topic("Speeding")  # uppercase: no index can be named so
    produce(kafka, topic, [b'{"speed": 120}'])
    name = f"es-{unique}"
    with herder_running(kafka, name, {"topics.regex": "Speeding-" + topic.split("-")[1],
                                      "connection.url": opensearch,
                                      "key.ignore": "true"}) as herder:
        wait_for(lambda: task(herder, name)["state"] == "FAILED", 60, "the task to fail")
        trace = task(herder, name)["trace"]
    assert "topics: topic" in trace and "uppercase letters" in trace and "RegexRouter" in trace


def test_data_stream_gets_timestamped_documents(
        kafka: str, opensearch: str, client: OpenSearch, new_topic: Callable[..., str],
        unique: str) -> None:
    topic = new_topic("events")
    produce(kafka, topic, [orjson.dumps({"n": i}) for i in range(10)])
    stream = f"logs-telemetry-{topic}"
    with herder_running(kafka, f"es-{unique}", {
            "topics": topic, "connection.url": opensearch, "key.ignore": "true",
            "data.stream.type": "LOGS", "data.stream.dataset": "telemetry"}):
        wait_for(lambda: count(client, stream) == 10, 60, "10 documents in the stream")
    client.indices.refresh(index=stream)
    hits = client.search(index=stream, body={"size": 10})["hits"]["hits"]
    assert all(isinstance(hit["_source"]["@timestamp"], int) for hit in hits)
    assert sorted(hit["_source"]["n"] for hit in hits) == list(range(10))


@pytest.mark.parametrize("form", ["elasticsearch-sink.properties", "elasticsearch-sink.json",
                                  "elasticsearch-sink.yaml"])
def test_the_examples_index_the_speeding_events(
        kafka: str, opensearch: str, client: OpenSearch, new_topic: Callable[..., str],
        unique: str, form: str) -> None:
    example = load_connector(EXAMPLES / form)
    topic = new_topic("vehicle.telemetry")
    readings = [reading(7, seq, 20, 1_700_000_000_000, 1000) for seq in range(300)]
    produce(kafka, topic, [orjson.dumps(r) for r in readings])
    index = f"vehicle.speeding.{unique}"
    config = {**example.config, "topics": topic, "connection.url": opensearch,
              "transforms.index.regex": re.escape(topic), "transforms.index.replacement": index}
    for secured in ("connection.username", "connection.password"):
        config.pop(secured, None)  # the manifest's secured cluster; this node has no security
    speeding = sorted(r["seq"] for r in readings if r["speed_kmh"] > 120)
    with herder_running(kafka, f"es-{unique}", config):
        wait_for(lambda: count(client, index) == len(speeding), 60, "the speeding events")
        time.sleep(1)
    assert 0 < len(speeding) < 300
    assert sorted(doc["seq"] for doc in documents(client, index).values()) == speeding
