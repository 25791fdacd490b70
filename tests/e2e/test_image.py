"""The image, built for real by ``make image`` (``dev/image.sh``) with Docker or podman.

The first run builds it (a few minutes, plus installing podman on a machine with no
builder); later runs reuse it while the sources are unchanged. The image contract the
chart relies on is checked by running it: uid 10001, a read-only root filesystem, no
capabilities, and exactly the dependencies of requirements.lock.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from packaging.markers import Marker

from kanal_worker import __version__
from tests.image import Image, image_sh

pytest_plugins = ["tests.tools"]
pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parents[2]
# What the chart's pod security context enforces.
LOCKED_DOWN = ("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
               "--security-opt", "no-new-privileges")


def run(image: Image, *args: str, entrypoint: str | None = None) -> str:
    options = [*LOCKED_DOWN, *(["--entrypoint", entrypoint] if entrypoint else [])]
    result = image_sh("run", *options, image.ref, *args, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_reference_is_the_worker_version(kanal_image: Image) -> None:
    assert kanal_image.ref == f"kanal:{__version__}"


def test_runs_as_uid_10001_on_a_read_only_root(kanal_image: Image) -> None:
    assert run(kanal_image, "-u", entrypoint="id").strip() == "10001"
    assert "operator" in run(kanal_image, "--help")
    assert "Run as a ConnectCluster worker" in run(kanal_image, "worker", "--help")
    assert "Usage" in run(kanal_image, "operator", "--help")


def test_the_archive_names_the_image_as_containerd_and_kind_resolve_it(
        kanal_image: Image) -> None:
    with tarfile.open(kanal_image.archive) as archive:
        (manifest,) = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(archive.extractfile(manifest["Config"]))  # type: ignore[arg-type]
    assert manifest["RepoTags"] == [f"docker.io/library/{kanal_image.ref}"]
    assert config["config"]["User"] == "10001:10001"
    assert config["config"]["Entrypoint"] == ["kanal"]


def locked_pins() -> set[str]:
    """name==version of every requirements.lock entry that applies on Linux CPython."""
    pins = set()
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = re.match(r"([A-Za-z0-9_.-]+)==([^\s;\\]+)\s*(?:;([^\\]+))?", line)
        if match and (match[3] is None or Marker(match[3]).evaluate(
                {"sys_platform": "linux", "platform_python_implementation": "CPython",
                 "implementation_name": "cpython"})):
            pins.add(f"{normalize(match[1])}=={match[2]}")
    return pins


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_installs_exactly_the_lock_file(kanal_image: Image) -> None:
    listed = run(kanal_image, "-m", "pip", "list", "--format=freeze",
                 entrypoint="/opt/kanal/bin/python")
    installed = {normalize(n) + "==" + v for n, _, v in
                 (line.partition("==") for line in listed.split())}
    installed -= {p for p in installed if p.startswith("pip==")}
    assert installed == locked_pins() | {f"kanal=={__version__}"}


def test_a_failed_build_says_what_failed_shows_the_log_and_the_fix() -> None:
    result = image_sh("build", env=dict(os.environ, PYTHON_IMAGE="localhost/no-such-base:0"),
                      timeout=600)
    assert result.returncode != 0
    assert f"build of kanal:{__version__} failed" in result.stderr
    assert "---- last" in result.stderr and "no-such-base" in result.stderr
    assert "fix: " in result.stderr


def test_a_machine_without_a_builder_or_apt_is_told_what_to_install(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "mkdir", "flock", "id"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    result = subprocess.run([str(bin_dir / "bash"), str(ROOT / "dev" / "image.sh"), "build"],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={"PATH": str(bin_dir), "HOME": str(tmp_path),
                                 "KANAL_CACHE": str(tmp_path / "cache")})
    assert result.returncode != 0
    assert "install Docker or podman" in result.stderr or "apt-get install" in result.stderr


def test_an_unknown_builder_is_named() -> None:
    result = image_sh("build", env=dict(os.environ, KANAL_BUILDER="nerdctl"), timeout=60)
    assert result.returncode != 0
    assert "KANAL_BUILDER=nerdctl: use docker or podman" in result.stderr
