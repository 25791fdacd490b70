"""Property-based requests, generated from the OpenAPI document a live Kanal serves.

The worker is a real ``kanal standalone`` process with one running connector. Every
operation gets valid and invalid inputs; each answer must be documented (status code,
content type, body schema) and none may be a 5xx, hang or crash the worker.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from kanal_worker.rest.app import create_app
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.standalone import StandaloneHerder
from tests.integration.standalone import (
    Standalone,
    wait_for,
    worker_properties,
    write_properties,
)

pytestmark = pytest.mark.integration

REQUEST_TIMEOUT = 30.0
LIVE_CONNECTOR = "fuzz-lines"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def kanal_url(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("rest-fuzz")
    url = f"http://127.0.0.1:{free_port()}"
    worker = worker_properties(tmp, kafka, listeners=url)
    lines = tmp / "lines.txt"
    lines.write_text("one\ntwo\n")
    source = write_properties(tmp / "source.properties", {
        "name": LIVE_CONNECTOR, "connector.class": "FileStreamSource", "file": str(lines),
        "topic": f"fuzz-lines-{time.time_ns()}"})
    run = Standalone(worker, source, log=tmp / "kanal.log").start()
    try:
        wait_for(lambda: answers(url), 60, f"the REST API on {url}")
        yield url
        assert run.process is not None and run.process.poll() is None, "the worker crashed"
    finally:
        assert run.stop() == 0, (tmp / "kanal.log").read_text()[-3000:]


@pytest.fixture(scope="module")
def kanal_schema(kanal_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{kanal_url}/openapi.json")


def operations() -> list[tuple[str, str, GenerationMode, str | None]]:
    """Every operation of the document (built by the same code the worker serves), with
    valid inputs, with invalid ones when it takes any, and against the live connector."""
    app = create_app(StandaloneHerder({}, "collect:0", MemoryOffsetStore()))
    found = []
    for path, methods in app.openapi()["paths"].items():
        for method, operation in methods.items():
            found += [(method.upper(), path, mode, None) for mode in GenerationMode
                      if mode.is_positive or can_be_invalid(operation)]
            if "{connector}" in path:
                found.append((method.upper(), path, GenerationMode.POSITIVE, LIVE_CONNECTOR))
    return found


def can_be_invalid(operation: dict[str, Any]) -> bool:
    """Whether some input breaks the schema (any text is a valid name in a path)."""
    return "requestBody" in operation or any(
        parameter["schema"].get("type") not in ("string", "array")
        for parameter in operation.get("parameters", []))


@pytest.mark.parametrize(("method", "path", "mode", "connector"), operations())
def test_every_answer_is_documented_and_never_5xx(
        kanal_schema: schemathesis.BaseSchema, method: str, path: str, mode: GenerationMode,
        connector: str | None) -> None:
    operation = kanal_schema[path][method]
    fixed = {"connector": connector} if connector else None

    @given(case=operation.as_strategy(mode, path_parameters=fixed))
    @settings(max_examples=8, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def answer(case: schemathesis.Case) -> None:
        started = time.monotonic()
        # Positive-data acceptance is not asked for: like Apache's, the API answers 400 to
        # schema-valid requests the herder refuses (an invalid connector configuration, a
        # logger level that does not exist), which no schema can express.
        case.call_and_validate(timeout=REQUEST_TIMEOUT,
                               excluded_checks=[checks.positive_data_acceptance])
        assert time.monotonic() - started < REQUEST_TIMEOUT

    answer()


def test_the_worker_still_serves_after_the_fuzzing(kanal_url: str) -> None:
    assert httpx.get(f"{kanal_url}/connectors", timeout=10).status_code == 200


def test_the_document_is_served_with_every_endpoint(kanal_url: str) -> None:
    paths = httpx.get(f"{kanal_url}/openapi.json", timeout=10).json()["paths"]
    assert set(paths) >= {
        "/", "/health", "/connectors", "/connectors/{connector}",
        "/connectors/{connector}/config", "/connectors/{connector}/status",
        "/connectors/{connector}/tasks", "/connectors/{connector}/tasks/{task}/status",
        "/connectors/{connector}/restart", "/connectors/{connector}/tasks/{task}/restart",
        "/connectors/{connector}/pause", "/connectors/{connector}/resume",
        "/connectors/{connector}/stop", "/connectors/{connector}/topics",
        "/connectors/{connector}/topics/reset", "/connectors/{connector}/offsets",
        "/connector-plugins", "/connector-plugins/{plugin}/config",
        "/connector-plugins/{plugin}/config/validate", "/admin/loggers",
        "/admin/loggers/{logger}"}
    for operations in paths.values():
        for operation in operations.values():
            assert "422" not in operation["responses"]  # invalid input is 400, as in Apache
