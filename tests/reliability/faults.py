"""Fault injection and bookkeeping for the reliability suite, against the real stack.

Faults are real: workers are ``kanal standalone`` processes killed with SIGKILL, the
broker is stopped and started with ``dev/stack``, Azurite (in memory: a restart would
lose every blob) is frozen with SIGSTOP and thawed with SIGCONT, or cut off from one
worker by a ``FaultProxy`` in front of it (other users of the shared Azurite go on).
Nothing is mocked.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from azure.storage.blob import ContainerClient
from confluent_kafka import KafkaError, Message, Producer

from dev.stack_env import ROOT, STACK
from tests.integration.standalone import Standalone

KANAL_RUN = Path(os.environ.get("KANAL_RUN", Path.home() / ".cache" / "kanal" / "run"))


def log(message: str) -> None:
    """Progress lines with a wall-clock stamp (pytest -s shows them; timings are
    reported, never asserted)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------ the stack


def stack(*args: str) -> None:
    subprocess.run([str(STACK), *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def restart_broker() -> float:
    """``dev/stack down kafka && dev/stack up kafka`` (data persists); seconds taken."""
    started = time.monotonic()
    stack("down", "kafka")
    stack("up", "kafka")
    return time.monotonic() - started


def azurite_pid() -> int:
    return int((KANAL_RUN / "azurite" / "azurite.pid").read_text().strip())


_frozen: set[int] = set()


def _thaw_all() -> None:
    """Never leave Azurite frozen for the next test (or the next engineer)."""
    for pid in list(_frozen):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        _frozen.discard(pid)


atexit.register(_thaw_all)


@contextlib.contextmanager
def azurite_frozen() -> Iterator[int]:
    """Azurite stops answering (connections hang, as in a network partition) until the
    block ends; its in-memory blobs survive."""
    pid = azurite_pid()
    _frozen.add(pid)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)
        _frozen.discard(pid)


class AzuriteOutage:
    """Azurite frozen for ``seconds`` on a background thread."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.thread = threading.Thread(target=self._run, name="azurite-outage", daemon=True)

    def _run(self) -> None:
        with azurite_frozen():
            time.sleep(self.seconds)

    def start(self) -> AzuriteOutage:
        self.thread.start()
        return self

    def join(self) -> None:
        self.thread.join()


class FaultProxy:
    """A TCP proxy on a free local port forwarding to ``target`` until ``cut``: then
    open connections are dropped and new ones accepted but never answered, as in a
    network partition (clients wait for their timeouts), until ``restore``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.connected = threading.Event()
        self.connected.set()
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, name="fault-proxy", daemon=True).start()

    def cut(self) -> None:
        self.connected.clear()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self.connected.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self.lock:
            self.sockets.add(client)
        try:
            if not self.connected.is_set():
                self.connected.wait()  # blackholed: never answered during the cut
                return
            with socket.create_connection(self.target) as upstream:
                with self.lock:
                    self.sockets.add(upstream)
                try:
                    self._pump(client, upstream)
                finally:
                    with self.lock:
                        self.sockets.discard(upstream)
        except OSError:
            pass
        finally:
            with self.lock:
                self.sockets.discard(client)
            client.close()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            while self.connected.is_set():
                for key, _ in selector.select(0.5):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(65536)
                    if not data:
                        return
                    peers[source].sendall(data)


# ------------------------------------------------------------------ workers


class Workers:
    """Several ``kanal standalone`` processes running the same connectors (a sink's
    tasks then share the consumer group ``connect-<name>``)."""

    def __init__(self, tmp: Path, worker_files: list[Path], connectors: list[Path]) -> None:
        self.tmp = tmp
        self.processes = [Standalone(worker, *connectors, log=tmp / f"worker-{i}.log")
                          for i, worker in enumerate(worker_files)]
        self.kills = 0

    def start(self) -> Workers:
        for process in self.processes:
            process.start()
        return self

    def kill(self, index: int) -> None:
        """SIGKILL: no flush, no commit, no leaving the group."""
        self.processes[index].kill()
        self.kills += 1

    def restart(self, index: int) -> None:
        self.processes[index].start()

    def alive(self) -> list[bool]:
        return [p.process is not None and p.process.poll() is None for p in self.processes]

    def stop(self) -> list[int]:
        codes = []
        for process in self.processes:
            assert process.process is not None
            if process.process.poll() is None:
                process.process.send_signal(signal.SIGINT)
        for process in self.processes:
            assert process.process is not None
            try:
                codes.append(process.process.wait(90))
            except subprocess.TimeoutExpired:
                process.process.kill()
                codes.append(-9)
        return codes

    def logs(self) -> str:
        return "".join(p.log.read_text(errors="replace") for p in self.processes
                       if p.log.exists())


# ------------------------------------------------------------------ producing


@dataclass
class Delivery:
    delivered: int = 0
    errors: list[str] = field(default_factory=list)


class BackgroundProducer:
    """Produces ``count`` JSON records ``{"id": i, ...}`` spread evenly over the
    partitions (record i goes to partition i % partitions) at about ``rate`` records
    per second, with an idempotent producer, so broker restarts neither lose nor
    duplicate any of them."""

    def __init__(self, bootstrap: str, topic: str, count: int, partitions: int,
                 rate: float) -> None:
        self.bootstrap, self.topic, self.count = bootstrap, topic, count
        self.partitions, self.rate = partitions, rate
        self.delivery = Delivery()
        self.thread = threading.Thread(target=self._run, name="producer", daemon=True)
        self.error: BaseException | None = None

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.delivery.delivered += 1
        else:
            self.delivery.errors.append(str(error))

    def _run(self) -> None:
        try:
            self._produce()
        except BaseException as exc:  # reported by join()
            self.error = exc

    def _produce(self) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                             "linger.ms": 20, "message.timeout.ms": 600000,
                             "compression.type": "lz4", "log_level": 3})
        started = time.monotonic()
        base = int(time.time() * 1000)
        for i in range(self.count):
            value = orjson.dumps({"id": i, "vehicle": f"v-{i % 97}", "speed": (i * 7) % 180,
                                  "timestamp": base + i})
            while True:
                try:
                    producer.produce(self.topic, value=value, key=str(i).encode(),
                                     partition=i % self.partitions,
                                     on_delivery=self._delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
            if i % 1000 == 999:
                producer.poll(0)
                ahead = (i + 1) / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        remaining = producer.flush(600)
        if remaining:
            raise AssertionError(f"{remaining} records not acknowledged by the broker")

    def start(self) -> BackgroundProducer:
        self.thread.start()
        return self

    def join(self, timeout: float) -> Delivery:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"producer still running after {timeout}s")
        if self.error is not None:
            raise self.error
        return self.delivery


# ------------------------------------------------------------------ blob storage


def container_client(connection_string: str, name: str) -> ContainerClient:
    return ContainerClient.from_connection_string(connection_string, name)


def blob_ids(container: ContainerClient, field_name: str = "id") -> tuple[Counter[int], int]:
    """How often each id appears across every blob of the container, and the number of
    blobs (JSON lines files)."""
    ids: Counter[int] = Counter()
    blobs = 0
    for blob in container.list_blobs():
        data = container.download_blob(blob.name).readall()
        blobs += 1
        for line in data.splitlines():
            if line:
                ids[orjson.loads(line)[field_name]] += 1
    return ids, blobs


def blob_count(container: ContainerClient) -> int:
    """Blobs in the container (0 while it does not exist). Block blobs appear only with
    their commit, so a listed blob is a complete file."""
    try:
        return sum(1 for _ in container.list_blobs())
    except Exception:
        return 0


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               interval: float = 1.0) -> float:
    """Poll ``condition``; seconds it took. Raises AssertionError on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def duplicates_and_missing(ids: Counter[int], count: int) -> tuple[dict[int, int], list[int]]:
    duplicated = {i: n for i, n in ids.items() if n > 1}
    missing = [i for i in range(count) if ids.get(i, 0) == 0]
    return duplicated, missing


def summary(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())
