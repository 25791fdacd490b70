"""Run ``kanal standalone`` as a user would: a subprocess with files on disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from kanal_worker.config.properties import format_properties
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.standalone import StandaloneHerder

KANAL = str(Path(sys.executable).parent / "kanal")


def write_properties(path: Path, values: dict[str, str]) -> Path:
    path.write_text(format_properties(values))
    return path


def worker_properties(tmp: Path, bootstrap: str, **extra: str) -> Path:
    values = {
        "bootstrap.servers": bootstrap,
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.storage.StringConverter",
        "offset.storage.file.filename": str(tmp / "offsets.json"),
        "offset.flush.interval.ms": "1000",
        "listeners": "",
        "kanal.progress.log.interval.ms": "2000",
    }
    values.update({k.replace("_", "."): v for k, v in extra.items()})
    return write_properties(tmp / "worker.properties", values)


class Standalone:
    def __init__(self, worker: Path, *connectors: Path, log: Path) -> None:
        self.log = log
        self.args = [KANAL, "standalone", str(worker), *map(str, connectors)]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Standalone:
        self.started_at = self.log.stat().st_size if self.log.exists() else 0
        handle = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(self.args, stdout=handle, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self

    def logged(self, text: bytes) -> bool:
        """This run of the worker has logged ``text``."""
        return text in self.log.read_bytes()[self.started_at:]

    def wait_running(self, timeout: float = 60) -> Standalone:
        """Wait for the worker's "running" line (its signal handlers are in place)."""
        wait_for(lambda: self.logged(b"Ctrl-C stops cleanly"), timeout, "the worker to run")
        return self

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@contextmanager
def in_process_herder(kafka: str, value_converter: str) -> Iterator[StandaloneHerder]:
    """A standalone herder in the test's process (offsets in memory), stopped after."""
    herder = StandaloneHerder({"bootstrap.servers": kafka,
                               "key.converter": "StringConverter",
                               "value.converter": value_converter,
                               "value.converter.schemas.enable": "false",
                               "offset.flush.interval.ms": "1000"},
                              "test:8083", MemoryOffsetStore())
    try:
        yield herder
    finally:
        herder.stop_all()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def line_count(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
