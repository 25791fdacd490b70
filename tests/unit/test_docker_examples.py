"""Docker Compose example and kind script, checked without a Docker engine.

Their runtime tests are in ``tests/e2e/test_docker_runtime.py`` and run only where
``docker info`` answers.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kanal_worker.config.properties import load_properties

pytest_plugins = ["tests.tools"]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "examples" / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yaml"
SCRIPTS = [ROOT / "dev" / "kind-e2e.sh", ROOT / "dev" / "tools.sh", ROOT / "dev" / "image.sh"]
KANAL = "import sys; from kanal_worker.cli import main; sys.argv[0] = 'kanal'; main()"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_compose_runs_kafka_azurite_and_kanal(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "azurite", "kanal"}
    kafka_image = services["kafka"]["image"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka_image), kafka_image
    env = services["kafka"]["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"], "KRaft, no ZooKeeper"
    assert not any("ZOOKEEPER" in key for key in env)
    assert re.search(r"azurite:\d+\.\d+\.\d+$", services["azurite"]["image"])
    for service in services.values():
        assert ":latest" not in service.get("image", ""), "pinned images only"


def test_kanal_service_runs_like_in_kubernetes(compose: dict[str, Any]) -> None:
    kanal = compose["services"]["kanal"]
    assert (COMPOSE_DIR / kanal["build"]["context"] / kanal["build"]["dockerfile"]).is_file()
    assert kanal["command"][0] == "standalone"
    assert kanal["read_only"] is True and "/tmp" in kanal["tmpfs"]
    assert kanal["user"].split(":")[0] == "10001"
    assert kanal["cap_drop"] == ["ALL"]
    assert {"kafka", "azurite"} <= set(kanal["depends_on"])
    assert all(dep["condition"] == "service_healthy" for dep in kanal["depends_on"].values())
    for service in ("kafka", "azurite"):
        assert "healthcheck" in compose["services"][service], f"{service} needs a healthcheck"


def test_mounted_files_exist_and_every_file_passed_is_mounted(compose: dict[str, Any]) -> None:
    kanal = compose["services"]["kanal"]
    mounts: dict[str, Path] = {}
    for volume in kanal["volumes"]:
        source, target, *_ = volume.split(":")
        assert source.startswith("./"), volume
        path = COMPOSE_DIR / source
        assert path.is_file(), f"{volume}: {path} does not exist"
        mounts[target] = path
    passed = [arg for arg in kanal["command"][1:] if arg.startswith("/")]
    assert passed and all(arg in mounts for arg in passed), (passed, list(mounts))
    assert all(path in {mounts[arg] for arg in passed} for path in mounts.values()), (
        "every mounted file is used")


def test_named_volumes_are_declared_and_used(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = {volume.split(":")[0] for service in compose["services"].values()
            for volume in service.get("volumes", []) if not volume.startswith(".")}
    assert used == declared


def test_published_ports_are_unique_and_match_the_configuration(
        compose: dict[str, Any]) -> None:
    published: list[str] = []
    for service in compose["services"].values():
        for port in service.get("ports", []):
            host, _, container = str(port).partition(":")
            assert host and container, port
            published.append(host)
    assert len(published) == len(set(published)), published
    kanal_ports = {str(p).split(":")[1] for p in compose["services"]["kanal"]["ports"]}
    worker = load_properties(COMPOSE_DIR / "worker.properties")
    assert worker["listeners"].rsplit(":", 1)[1] in kanal_ports
    assert worker["kanal.metrics.port"] in kanal_ports


def test_connector_files_point_at_the_compose_services(compose: dict[str, Any]) -> None:
    worker = load_properties(COMPOSE_DIR / "worker.properties")
    host, port = worker["bootstrap.servers"].split(":")
    assert host in compose["services"]
    assert f"PLAINTEXT://{host}:{port}" in compose["services"]["kafka"]["environment"][
        "KAFKA_ADVERTISED_LISTENERS"]
    assert worker["offset.storage.file.filename"].startswith("/tmp/"), "read-only rootfs"
    sink = load_properties(COMPOSE_DIR / "azure-blob-sink.properties")
    assert sink["store.url"].startswith("http://azurite:10000/")
    key = sink["azblob.account.key"]
    assert key.startswith("${env:"), "the key comes from the environment"
    assert key[len("${env:"):-1] in compose["services"]["kanal"]["environment"]
    generator = load_properties(COMPOSE_DIR / "telemetry-generator.properties")
    assert sink["topics"] == generator["transforms.speeding.replacement"]


def test_compose_connectors_validate() -> None:
    """``kanal validate`` accepts every connector file the compose worker runs."""
    for name in ("telemetry-generator.properties", "azure-blob-sink.properties"):
        result = subprocess.run([sys.executable, "-c", KANAL, "validate",
                                 str(COMPOSE_DIR / name)], capture_output=True, text=True,
                                check=False, env=dict(os.environ, AZURITE_ACCOUNT_KEY="x"))
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_scripts_parse_and_pass_shellcheck(script: Path, shellcheck: Path) -> None:
    assert script.stat().st_mode & 0o111, f"{script.name} is not executable"
    subprocess.run(["bash", "-n", str(script)], check=True)
    result = subprocess.run([str(shellcheck), "--severity=style", str(script)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_kind_script_does_what_its_header_says() -> None:
    text = (ROOT / "dev" / "kind-e2e.sh").read_text()
    for step in ("dev/image.sh", "load image-archive", "upgrade --install",
                 "examples/kubernetes", "--for=condition=Ready connectors"):
        assert step in text, step
    assert "image.pullPolicy=Never" in text, "the loaded image, never a registry pull"
