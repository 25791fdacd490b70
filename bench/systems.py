"""The systems under test: ``kanal standalone`` as a subprocess, and Apache Kafka Connect
workers driven through their REST API."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.env import KANAL
from bench.measure import cpu_seconds, memory_mb
from dev.stack_env import ROOT, STACK
from kanal_worker.config.properties import format_properties

KANAL_WORKER_DEFAULTS = {
    "key.converter": "org.apache.kafka.connect.storage.StringConverter",
    "value.converter": "org.apache.kafka.connect.json.JsonConverter",
    "value.converter.schemas.enable": "false",
    "offset.flush.interval.ms": "1000",
    "listeners": "",
    "kanal.progress.log.interval.ms": "0",
}
"""Kanal's worker for the data benchmarks: Apache's peer commits every second too."""


class Kanal:
    """One ``kanal standalone`` process with its files under ``workdir``."""

    def __init__(self, workdir: Path, bootstrap: str, connectors: list[Mapping[str, str]],
                 worker: Mapping[str, str] | None = None,
                 python_args: list[str] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        values = {"bootstrap.servers": bootstrap,
                  "offset.storage.file.filename": str(workdir / "offsets.json"),
                  **KANAL_WORKER_DEFAULTS, **(worker or {})}
        worker_file = workdir / "worker.properties"
        worker_file.write_text(format_properties(values))
        files = []
        for i, connector in enumerate(connectors):
            path = workdir / f"connector-{i}.properties"
            path.write_text(format_properties(dict(connector)))
            files.append(str(path))
        prefix = python_args or []
        self.args = [*prefix, KANAL, "standalone", str(worker_file), *files]
        self.log = workdir / "kanal.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> Kanal:
        with open(self.log, "ab") as log:
            self.started = time.monotonic()
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.workdir,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def peak_rss_mb(self) -> float:
        return memory_mb(self.pid, "VmHWM")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class RestError(RuntimeError):
    pass


def rest(url: str, method: str = "GET", body: Any = None, timeout: float = 30) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        raise RestError(f"{method} {url}: {exc.code} {exc.read()[:500]!r}") from None
    return json.loads(payload) if payload else None


class ConnectWorker:
    """A Kafka Connect worker (Apache's or Kanal's) reached over its REST API."""

    def __init__(self, url: str, pid: int | None) -> None:
        self.url = url.rstrip("/")
        self.pid = pid

    def connectors(self) -> list[str]:
        names: list[str] = rest(f"{self.url}/connectors")
        return names

    def create(self, name: str, config: Mapping[str, str]) -> None:
        rest(f"{self.url}/connectors", "POST", {"name": name, "config": dict(config)})

    def status(self, name: str) -> dict[str, Any] | None:
        try:
            status: dict[str, Any] = rest(f"{self.url}/connectors/{name}/status", timeout=10)
            return status
        except (RestError, OSError):
            return None

    def delete(self, name: str, timeout: float = 60) -> None:
        try:
            rest(f"{self.url}/connectors/{name}", "DELETE")
        except RestError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and name in self.connectors():
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid) if self.pid else 0.0

    def rss_mb(self) -> float:
        return memory_mb(self.pid) if self.pid else 0.0


def peer_pid() -> int | None:
    """The pid of the ``dev/stack`` Apache Connect JVM."""
    out = subprocess.run([str(STACK), "status", "connect"], capture_output=True, text=True,
                         cwd=ROOT).stdout
    found = re.search(r"pid=(\d+)", out)
    return int(found.group(1)) if found else None


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Records the group committed on ``topic`` (the sum of its committed offsets)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "log_level": 0})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)],
                                     timeout=10)
    except Exception:
        return 0
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in offsets)


def wait_committed(bootstrap: str, group: str, topic: str, partitions: int, target: int,
                   timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if committed(bootstrap, group, topic, partitions) >= target:
            return True
        time.sleep(0.5)
    return False


def delete_groups(bootstrap: str, *groups: str, timeout: float = 0) -> None:
    """Delete ``groups``, retrying for up to ``timeout`` seconds those the broker refuses
    because members remain (a task still stopping, the session of a killed or static
    member)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    pending = set(groups)
    deadline = time.monotonic() + timeout
    while pending:
        for group, future in admin.delete_consumer_groups(sorted(pending),
                                                          request_timeout=10).items():
            try:
                future.result(15)
            except Exception as exc:  # a group that never formed is fine
                if isinstance(exc, KafkaException) and \
                        exc.args[0].code() == KafkaError.NON_EMPTY_GROUP:
                    continue
            pending.discard(group)
        if pending and time.monotonic() < deadline:
            time.sleep(1)
        else:
            return
