"""Start services of ``dev/stack`` and read the variables it exports, from Python."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "dev" / "stack"


def stack_env(*services: str, quiet: bool = False, start: bool = True) -> dict[str, str]:
    """Start ``services`` (idempotent; with ``start=False`` only install them) and return
    the variables ``dev/stack env`` exports."""
    subprocess.run([str(STACK), "up" if start else "install", *services], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL if quiet else None)
    out = subprocess.run([str(STACK), "env"], check=True, cwd=ROOT, capture_output=True,
                         text=True).stdout
    env: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env
