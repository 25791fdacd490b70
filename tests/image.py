"""The image ``make image`` builds, for tests: ``dev/image.sh`` and what it reports.

The session fixture ``kanal_image`` (in ``tests.tools``) builds it once per run."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE_SH = ROOT / "dev" / "image.sh"


@dataclass(frozen=True)
class Image:
    """The image as pods and ``kind``/``ctr`` imports see it."""

    ref: str
    archive: Path


def image_sh(*args: str, env: dict[str, str] | None = None,
             timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    """``dev/image.sh ARGS`` (it installs podman when the machine has no builder)."""
    return subprocess.run([str(IMAGE_SH), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False, env=env)
