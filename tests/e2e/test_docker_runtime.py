"""The Docker Compose pipeline and the kind script, run for real where Docker runs.

Both need a Docker engine; without one (``docker info`` fails, as on the development
machines and CI here) they are skipped and their static checks in
``tests/unit/test_docker_examples.py`` and ``tests/unit/test_dockerfile.py`` stand in.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from tests.tools import docker_engine

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "examples" / "compose" / "docker-compose.yaml"
AZURITE = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
           "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
           "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;")
NO_ENGINE = docker_engine()
needs_docker = pytest.mark.skipif(NO_ENGINE is not None, reason=NO_ENGINE or "")


def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "compose", "-f", str(COMPOSE), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800, check=check)


@pytest.fixture
def pipeline() -> Iterator[None]:
    compose("up", "--build", "--detach", "--wait", "--wait-timeout", "600")
    try:
        yield
    finally:
        compose("down", "--volumes", "--remove-orphans", check=False)


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@needs_docker
@pytest.mark.usefixtures("pipeline")
def test_compose_pipeline_moves_speeding_readings_to_blobs() -> None:
    deadline = time.monotonic() + 300
    states: object = None
    while time.monotonic() < deadline:
        states = get_json("http://127.0.0.1:8083/connectors?expand=status")
        assert isinstance(states, dict)
        if all(entry["status"]["connector"]["state"] == "RUNNING"
               and all(t["state"] == "RUNNING" for t in entry["status"]["tasks"])
               for entry in states.values()) and len(states) == 2:
            break
        time.sleep(2)
    else:
        raise AssertionError(f"connectors not RUNNING: {states}")
    with urllib.request.urlopen("http://127.0.0.1:9404/metrics", timeout=10) as response:
        metrics = response.read().decode()
    deadline = time.monotonic() + 300
    while 'kanal_task_records_out_total{connector="azure-blob-sink"' not in metrics:
        assert time.monotonic() < deadline, "no sink metrics"
        time.sleep(2)
        with urllib.request.urlopen("http://127.0.0.1:9404/metrics", timeout=10) as r:
            metrics = r.read().decode()
    service = BlobServiceClient.from_connection_string(AZURITE)
    container = service.get_container_client("telemetry")
    deadline = time.monotonic() + 300
    blobs: list[str] = []
    while not blobs:
        assert time.monotonic() < deadline, "no blob written"
        time.sleep(2)
        if container.exists():
            blobs = [b.name for b in container.list_blobs(name_starts_with="topics/")]
    assert all(re.match(r"topics/vehicle\.speeding/year=\d{4}/month=\d\d/day=\d\d/hour=\d\d/",
                        name) for name in blobs), blobs[:5]


@needs_docker
def test_kind_script_brings_the_example_to_ready() -> None:
    script = ROOT / "dev" / "kind-e2e.sh"
    try:
        subprocess.run([str(script), "up"], cwd=ROOT, check=True, timeout=3600)
    finally:
        subprocess.run([str(script), "down"], cwd=ROOT, check=False, timeout=600)
