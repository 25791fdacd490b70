"""Secrets leak nowhere: logs (DEBUG, librdkafka's debug output included), every GET
endpoint of the REST API, validation answers, task traces, offsets.

Canaries (values found nowhere else) are put where users put secrets:
- ``azblob.account.key`` as a plain value (the Azurite key: it must work),
- ``azblob.account.key`` through ``${env:...}``,
- ``azblob.account.key`` that is wrong, so the task fails and its trace is shown,
- ``consumer.override.sasl.jaas.config`` (a Kafka client secret in a connector).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from kanal_worker.config.properties import load_properties
from tests.integration.standalone import KANAL, Standalone, worker_properties, write_properties
from tests.kafka_helpers import produce
from tests.reliability.faults import blob_count, container_client, wait_until

pytestmark = pytest.mark.integration

PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fragments(secret: str) -> list[str]:
    """The secret and long pieces of it (a truncated or partly masked leak counts)."""
    size = min(16, len(secret))
    return sorted({secret, secret[:size], secret[-size:]})


def leaks(text: str, secrets: dict[str, str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, secret in secrets.items():
        hits = [piece for piece in fragments(secret) if piece in text]
        if hits:
            index = text.find(hits[0])
            found[name] = [text[max(0, index - 200):index + 60]]
    return found


def get_everything(base: str) -> Iterator[tuple[str, str]]:
    """Every GET endpoint the server documents, with every value its path parameters
    can take here: (path, body)."""
    with httpx.Client(base_url=base, timeout=30) as client:
        spec = client.get("/openapi.json").json()
        connectors = client.get("/connectors").json()
        loggers = list(client.get("/admin/loggers").json())
        plugin_names = [p["class"] for p in client.get("/connector-plugins",
                                                        params={"connectorsOnly": "false"}
                                                        ).json()]
        values: dict[str, list[str]] = {"connector": connectors, "task": ["0"],
                                        "plugin": plugin_names, "logger": loggers}
        expansions = [{}, {"expand": "status"}, {"expand": "info"}]
        for template, methods in spec["paths"].items():
            if "get" not in methods:
                continue
            names = re.findall(r"{(\w+)}", template)
            for name in names:
                assert name in values, f"no values for path parameter {name} of {template}"
            paths = [template]
            for name in names:
                paths = [p.replace(f"{{{name}}}", v) for p in paths for v in values[name]]
            for path in paths:
                for params in expansions if template == "/connectors" else [{}]:
                    answer = client.get(path, params=params)
                    yield f"GET {path} {params or ''} -> {answer.status_code}", answer.text


@pytest.fixture
def canaries(stack: dict[str, str]) -> dict[str, str]:
    return {"azure key": stack["AZURITE_ACCOUNT_KEY"],
            "wrong azure key": f"CanaryWrongKey{uuid.uuid4().hex}==",
            "jaas password": f"canary-jaas-{uuid.uuid4().hex}"}


def azure_sink(tmp: Path, stack: dict[str, str], name: str, topic: str, key: str,
               **extra: str) -> Path:
    return write_properties(tmp / f"{name}.properties", {
        "name": name, "connector.class": "AzureBlobStorageSinkConnector", "topics": topic,
        "azblob.account.name": stack["AZURITE_ACCOUNT_NAME"], "azblob.account.key": key,
        "store.url": stack["AZURITE_BLOB_ENDPOINT"], "azblob.container.name": name,
        "format.class": "JsonFormat", "flush.size": "10",
        "partitioner.class": "DefaultPartitioner", **extra})


def test_canary_secrets_appear_in_no_log_rest_answer_trace_or_offset(
        tmp_path: Path, stack: dict[str, str], canaries: dict[str, str],
        topic_factory: Callable[[str, int], str]) -> None:
    kafka = stack["KANAL_BOOTSTRAP_SERVERS"]
    topic = topic_factory("canary", 1)
    suffix = uuid.uuid4().hex[:8]
    names = {"plain": f"canary-plain-{suffix}", "env": f"canary-env-{suffix}",
             "wrong": f"canary-wrong-{suffix}"}
    port = free_port()
    worker = worker_properties(tmp_path, kafka, **{
        "listeners": f"http://127.0.0.1:{port}",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "config.providers": "env",
        "config.providers.env.class":
            "org.apache.kafka.common.config.provider.EnvVarConfigProvider",
        # hostile: librdkafka's own debug output, configuration dump included
        "consumer.debug": "conf,security,broker"})
    jaas = f'{PLAIN_MODULE} required username="canary" password="{canaries["jaas password"]}";'
    connectors = [
        azure_sink(tmp_path, stack, names["plain"], topic, canaries["azure key"],
                   **{"consumer.override.sasl.jaas.config": jaas}),
        azure_sink(tmp_path, stack, names["env"], topic, "${env:KANAL_CANARY_AZURE_KEY}"),
        azure_sink(tmp_path, stack, names["wrong"], topic, canaries["wrong azure key"]),
    ]
    produce(kafka, topic, [orjson.dumps({"id": i, "speed": i}) for i in range(100)])
    run = Standalone(worker, *connectors, log=tmp_path / "kanal.log")
    run.args.append("--log-level=DEBUG")
    os.environ["KANAL_CANARY_AZURE_KEY"] = canaries["azure key"]
    try:
        run.start()
    finally:
        del os.environ["KANAL_CANARY_AZURE_KEY"]
    base = f"http://127.0.0.1:{port}"
    answers: list[tuple[str, str]] = []
    try:
        for name in ("plain", "env"):
            blobs = container_client(stack["AZURITE_CONNECTION_STRING"], names[name])
            wait_until(lambda blobs=blobs: blob_count(blobs) >= 10, 90,  # type: ignore[misc]
                       f"{name} connector's blobs")

        def wrong_failed() -> bool:
            try:
                status = httpx.get(f"{base}/connectors/{names['wrong']}/status").json()
            except httpx.HTTPError:
                return False
            return any(t["state"] == "FAILED" for t in status.get("tasks", []))
        wait_until(wrong_failed, 90, "the connector with the wrong key to fail")
        answers = list(get_everything(base))
        for path in connectors:
            with httpx.Client(base_url=base, timeout=30) as client:
                answer = client.put("/connector-plugins/AzureBlobStorageSinkConnector/config/"
                                    "validate", json=load_properties(path))
                answers.append((f"PUT validate {path.name} -> {answer.status_code}",
                                answer.text))
    finally:
        assert run.stop() == 0
    assert len(answers) > 20, "the REST API should document many GET endpoints"
    assert any(names["wrong"] in path and "status" in path and "trace" in body
               for path, body in answers), "the failed task's trace should be shown"
    problems: dict[str, Any] = {}
    for request, body in answers:
        found = leaks(body, canaries)
        if found:
            problems[request] = found
    log_text = run.log.read_text(errors="replace")
    assert "sasl.password = [redacted]" in log_text, "librdkafka's config dump ran"
    for where, text in (("log", log_text),
                        ("offsets file", (tmp_path / "offsets.json").read_text())):
        found = leaks(text, canaries)
        if found:
            problems[where] = found
    validated = subprocess.run([KANAL, "validate", str(connectors[0])], capture_output=True,
                               text=True, timeout=60)
    found = leaks(validated.stdout + validated.stderr, canaries)
    if found:
        problems["kanal validate"] = found
    assert problems == {}, "secrets leaked:\n" + orjson.dumps(
        problems, option=orjson.OPT_INDENT_2).decode()


def test_secret_leak_detector_detects(tmp_path: Path) -> None:
    """The detector itself: a leak, a truncated leak and no leak."""
    secret = "canary-" + uuid.uuid4().hex
    assert leaks(f"x {secret} y", {"s": secret})
    assert leaks(f"key={secret[:16]}...", {"s": secret})
    assert not leaks("nothing here " + time.strftime("%c"), {"s": secret})
