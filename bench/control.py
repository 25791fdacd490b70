"""B4, the control plane: how long from ``POST /connectors`` to the first record in the
file, and from SIGKILL of a worker to its partitions being consumed again.

Failover is measured the same way for every system: a producer keeps 2 partitions busy
(500 records/s), a 2-task FileStreamSink consumes them, one worker is killed, and the
clock stops when the committed offset of every partition has moved past where it was at
the kill (the killed worker's partitions included). Apache runs as two extra distributed
workers of their own group (started here, on other ports); Kanal standalone has no
second worker, so its figure is kill → restarted process (what a Deployment or systemd
does) → consuming again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench.env import HOST, Stack
from bench.measure import LineCounter
from bench.sinks import APACHE_FILE_SINK, STRING, VARIANTS
from bench.systems import ConnectWorker, Kanal, RestError, delete_groups, rest
from bench.workload import Workload
from kanal_worker.config.properties import format_properties

FAILOVER_PARTITIONS = 2
FAILOVER_RATE = 500
KANAL_REST_PORT = 18390
APACHE_PORTS = (18391, 18392)
APACHE_DEFAULT_DELAY_S = 300


def _wait(condition: Callable[[], bool], timeout: float, interval: float = 0.05
          ) -> float | None:
    """Seconds until ``condition()`` held, or None after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(Exception):
            if condition():
                return time.monotonic() - started
        time.sleep(interval)
    return None


# -- POST /connectors → first record ------------------------------------------------------

def first_record(worker: ConnectWorker, workload: Workload, bootstrap: str, workdir: Path,
                 system: str, config: dict[str, str]) -> float | None:
    name = f"bench-{system}-first-{uuid.uuid4().hex[:8]}"
    out = workdir / f"{name}.out"
    counter = LineCounter(out)
    try:
        started = time.monotonic()
        worker.create(name, {"connector.class": APACHE_FILE_SINK, "tasks.max": "1",
                             "topics": workload.topic, "file": str(out), **config})
        waited = _wait(lambda: counter() > 0, 120, 0.01)
        return None if waited is None else time.monotonic() - started
    finally:
        worker.delete(name)
        out.unlink(missing_ok=True)
        delete_groups(bootstrap, f"connect-{name}")


def kanal_rest_worker(env: Stack, workdir: Path) -> tuple[Kanal, ConnectWorker]:
    """``kanal standalone`` with its REST API on KANAL_REST_PORT (one stopped connector,
    because the command wants at least one)."""
    idle = {"name": "bench-idle", "connector.class": APACHE_FILE_SINK, "topics": "bench.idle",
            "file": os.devnull}
    kanal = Kanal(workdir / f"kanal-rest-{uuid.uuid4().hex[:6]}", env.bootstrap, [],
                  worker={"listeners": f"http://{HOST}:{KANAL_REST_PORT}"})
    idle_file = kanal.workdir / "idle.json"
    idle_file.write_text(json.dumps({"name": idle.pop("name"), "config": idle,
                                     "initial_state": "STOPPED"}))
    kanal.args.append(str(idle_file))
    kanal.start()
    url = f"http://{HOST}:{KANAL_REST_PORT}"
    if _wait(lambda: rest(url + "/") is not None, 60, 0.1) is None:
        kanal.stop()
        raise RuntimeError(f"Kanal's REST API did not answer on {url}: {kanal.tail(5)}")
    return kanal, ConnectWorker(url, kanal.pid)


# -- failover ----------------------------------------------------------------------------

class Load:
    """A steady trickle of readings into a fresh topic, in a thread."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.topic = f"bench.failover.{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(self.topic, FAILOVER_PARTITIONS, 1)])[self.topic].result(30)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        n = 0
        started = time.monotonic()
        while not self.stop_event.is_set():
            due = int((time.monotonic() - started) * FAILOVER_RATE)
            while n < due:
                producer.produce(self.topic, value=b'{"seq":%d}' % n,
                                 partition=n % FAILOVER_PARTITIONS)
                n += 1
            producer.poll(0)
            time.sleep(0.01)
        producer.flush(10)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(15)
        with contextlib.suppress(Exception):
            AdminClient({"bootstrap.servers": self.bootstrap}).delete_topics(
                [self.topic])[self.topic].result(30)


class Offsets:
    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.partitions = [TopicPartition(topic, p) for p in range(FAILOVER_PARTITIONS)]
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "log_level": 0})

    def now(self) -> list[int]:
        return [tp.offset for tp in self.consumer.committed(self.partitions, timeout=5)]

    def all_past(self, marks: list[int]) -> bool:
        return all(o > m for o, m in zip(self.now(), marks, strict=True))

    def close(self) -> None:
        self.consumer.close()


def _java_command(peer_pid: int) -> tuple[str, str, list[str]]:
    """The Apache peer's java, classpath and JVM options, to start more workers alike."""
    argv = Path(f"/proc/{peer_pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    args = [a.decode() for a in argv]
    java = os.readlink(f"/proc/{peer_pid}/exe")
    classpath = args[args.index("-cp") + 1]
    options = [a for a in args[1:args.index("-cp")] if not a.startswith("-Dlog4j")
               and not a.startswith("-Dkanal.service")]
    return java, classpath, options


class ApachePair:
    """Two Apache Connect distributed workers of a group of their own."""

    def __init__(self, bootstrap: str, peer_pid: int, workdir: Path,
                 delay_ms: int | None) -> None:
        self.id = uuid.uuid4().hex[:8]
        self.dir = workdir / f"apache-pair-{self.id}"
        self.dir.mkdir(parents=True)
        self.bootstrap = bootstrap
        self.topics = [f"_bench-{self.id}-{kind}" for kind in ("configs", "offsets", "status")]
        java, classpath, options = _java_command(peer_pid)
        log4j = self.dir / "log4j2.xml"
        log4j.write_text(
            '<?xml version="1.0" encoding="UTF-8"?><Configuration status="WARN"><Appenders>'
            f'<File name="F" fileName="{self.dir}/connect.log"><PatternLayout '
            'pattern="[%d] %p %m (%c)%n"/></File></Appenders><Loggers><Root level="WARN">'
            '<AppenderRef ref="F"/></Root></Loggers></Configuration>')
        self.processes: list[subprocess.Popen[bytes]] = []
        self.urls = []
        for port in APACHE_PORTS:
            values = {
                "bootstrap.servers": bootstrap, "group.id": f"bench-failover-{self.id}",
                "listeners": f"http://{HOST}:{port}", "rest.advertised.host.name": HOST,
                "rest.advertised.port": str(port), "key.converter": STRING,
                "value.converter": STRING, "config.storage.topic": self.topics[0],
                "offset.storage.topic": self.topics[1], "status.storage.topic": self.topics[2],
                "config.storage.replication.factor": "1",
                "offset.storage.replication.factor": "1",
                "status.storage.replication.factor": "1", "offset.flush.interval.ms": "1000",
                "plugin.discovery": "service_load"}
            if delay_ms is not None:
                values["scheduled.rebalance.max.delay.ms"] = str(delay_ms)
            props = self.dir / f"worker-{port}.properties"
            props.write_text(format_properties(values))
            with open(self.dir / f"worker-{port}.out", "ab") as log:
                self.processes.append(subprocess.Popen(
                    [java, *options, f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath,
                     "org.apache.kafka.connect.cli.ConnectDistributed", str(props)],
                    stdout=log, stderr=subprocess.STDOUT))
            self.urls.append(f"http://{HOST}:{port}")

    def ready(self, timeout: float = 180) -> bool:
        return _wait(lambda: all(rest(url + "/connectors") is not None for url in self.urls),
                     timeout, 0.5) is not None

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        with contextlib.suppress(Exception):
            admin = AdminClient({"bootstrap.servers": self.bootstrap})
            for future in admin.delete_topics(self.topics).values():
                future.result(30)
        shutil.rmtree(self.dir, ignore_errors=True)


def apache_failover(env: Stack, peer_pid: int, workdir: Path, delay_ms: int | None
                    ) -> dict[str, Any]:
    pair = ApachePair(env.bootstrap, peer_pid, workdir, delay_ms)
    name = f"bench-failover-{pair.id}"
    result: dict[str, Any] = {"system": "apache", "scheduled.rebalance.max.delay.ms":
                              "default (300000)" if delay_ms is None else delay_ms}
    try:
        if not pair.ready():
            return {**result, "error": "Apache workers did not start"}
        with Load(env.bootstrap) as load:
            rest(f"{pair.urls[0]}/connectors", "POST", {"name": name, "config": {
                "connector.class": APACHE_FILE_SINK, "tasks.max": "2", "topics": load.topic,
                "file": str(pair.dir / "out.txt")}})

            def spread() -> bool:
                status = rest(f"{pair.urls[0]}/connectors/{name}/status")
                tasks = status["tasks"]
                return (len(tasks) == 2 and all(t["state"] == "RUNNING" for t in tasks)
                        and len({t["worker_id"] for t in tasks}) == 2)
            if _wait(spread, 120, 0.5) is None:
                return {**result, "error": "tasks never ran on both workers"}
            offsets = Offsets(env.bootstrap, f"connect-{name}", load.topic)
            try:
                _wait(lambda: min(offsets.now()) > 0, 30)
                marks = offsets.now()
                victim, survivor = pair.processes[1], pair.urls[0]
                survivor_id = survivor.removeprefix("http://")
                killed = time.monotonic()
                victim.send_signal(signal.SIGKILL)
                limit = 60 + (APACHE_DEFAULT_DELAY_S if delay_ms is None else delay_ms / 1000)

                def running_on_survivor() -> bool:
                    tasks = rest(f"{survivor}/connectors/{name}/status")["tasks"]
                    return all(t["state"] == "RUNNING" and t["worker_id"] == survivor_id
                               for t in tasks)
                running = _wait(running_on_survivor, limit, 0.2)
                result["tasks_running_s"] = running
                flowing = _wait(lambda: offsets.all_past(marks),
                                max(1.0, limit - (time.monotonic() - killed)), 0.2)
                if flowing is not None:
                    result["consuming_again_s"] = time.monotonic() - killed
            finally:
                offsets.close()
            with contextlib.suppress(RestError, OSError):
                rest(f"{pair.urls[0]}/connectors/{name}", "DELETE")
    finally:
        pair.close()
        delete_groups(env.bootstrap, f"connect-{name}")
    return result


def kanal_restart_failover(env: Stack, workdir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"system": "kanal standalone (restart)"}
    with Load(env.bootstrap) as load:
        name = f"bench-failover-{uuid.uuid4().hex[:8]}"
        connector = {"name": name, "connector.class": APACHE_FILE_SINK, "tasks.max": "2",
                     "topics": load.topic, "file": str(workdir / f"{name}.out"),
                     **VARIANTS["passthrough"].kanal}
        first = Kanal(workdir / name, env.bootstrap, [connector])
        offsets = Offsets(env.bootstrap, f"connect-{name}", load.topic)
        second: Kanal | None = None
        try:
            first.start()
            if _wait(lambda: min(offsets.now()) > 0, 60) is None:
                return {**result, "error": "Kanal never committed: " + first.tail(5)}
            marks = offsets.now()
            killed = time.monotonic()
            first.stop(signal.SIGKILL)
            second = Kanal(workdir / name, env.bootstrap, [connector]).start()
            if _wait(lambda: offsets.all_past(marks), 120, 0.2) is not None:
                result["consuming_again_s"] = time.monotonic() - killed
        finally:
            offsets.close()
            first.stop()
            if second is not None:
                second.stop()
            shutil.rmtree(workdir / name, ignore_errors=True)
            (workdir / f"{name}.out").unlink(missing_ok=True)
            delete_groups(env.bootstrap, f"connect-{name}")
    return result


def b4(workload: Workload, env: Stack, peer: ConnectWorker | None, workdir: Path, runs: int,
       full_apache_default: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"first_record_s": {}, "failover": []}
    firsts: dict[str, list[float]] = {"kanal": [], "apache": []}
    kanal, kanal_rest = kanal_rest_worker(env, workdir)
    try:
        for _ in range(runs):
            for system, worker in (("kanal", kanal_rest), ("apache", peer)):
                if worker is None:
                    continue
                config = VARIANTS["passthrough"].kanal if system == "kanal" else \
                    VARIANTS["passthrough"].apache
                seconds = first_record(worker, workload, env.bootstrap, workdir, system,
                                       config)
                if seconds is not None:
                    firsts[system].append(seconds)
    finally:
        kanal.stop()
        shutil.rmtree(kanal.workdir, ignore_errors=True)
    out["first_record_s"] = {k: {"median": statistics.median(v), "runs": v}
                             for k, v in firsts.items() if v}
    for _ in range(runs):
        out["failover"].append(kanal_restart_failover(env, workdir))
        if peer is not None and peer.pid:
            out["failover"].append(apache_failover(env, peer.pid, workdir, 0))
    if peer is not None and peer.pid and full_apache_default:
        out["failover"].append(apache_failover(env, peer.pid, workdir, None))
    out["kanal_kubernetes"] = (
        "not measured: the operator-driven failover (worker pods, task reassignment) needs "
        "the operator and cluster workers running against dev/stack k8s; see bench/README.md")
    return out


def describe(b4_result: dict[str, Any]) -> str:
    if "error" in b4_result:
        return f"B4 failed: {b4_result['error']}"
    lines = ["B4 control plane (seconds, medians)"]
    for system, figures in b4_result.get("first_record_s", {}).items():
        lines.append(f"  POST /connectors -> first record, {system}: {figures['median']:.2f}")
    groups: dict[str, list[float]] = {}
    for item in b4_result.get("failover", []):
        label = item["system"]
        delay = item.get("scheduled.rebalance.max.delay.ms")
        if delay is not None:
            label += f", scheduled.rebalance.max.delay.ms={delay}"
        value = item.get("consuming_again_s")
        if value is not None:
            groups.setdefault(label, []).append(value)
        else:
            groups.setdefault(label, [])
    for label, values in groups.items():
        shown = f"{statistics.median(values):.1f}" if values else "did not recover"
        lines.append(f"  SIGKILL -> consuming again, {label}: {shown} ({len(values)} run(s))")
    lines.append(f"  Kanal in Kubernetes: {b4_result.get('kanal_kubernetes', '')}")
    return "\n".join(lines)
