"""B4, the control plane: how long from creating a connector (``POST /connectors``, or
``kubectl apply`` of a ``Connector`` in Kubernetes mode) to the first record in the file,
and from SIGKILL of a worker to its partitions being consumed again.

Failover is measured the same way for every system: a producer keeps 2 partitions busy
(500 records/s), a 2-task FileStreamSink consumes them, one worker is killed, and the
clock stops when the committed offset of every partition has moved past where it was at
the kill (the killed worker's partitions included). Apache runs as two extra distributed
workers of their own group (started here, on other ports); Kanal in Kubernetes mode as
two cluster-mode workers and the operator (``bench/kubernetes.py``); Kanal standalone has
no second worker, so its figure is kill → restarted process (what a Deployment or
systemd does) → consuming again.
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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from confluent_kafka import Consumer, ConsumerGroupState, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench.env import HOST, Stack
from bench.kubernetes import ConnectorHost, kanal_cluster, pod_cluster
from bench.measure import LineCounter
from bench.report import median_range
from bench.sinks import APACHE_FILE_SINK, PASSTHROUGH_VARIANT, STRING, VARIANTS
from bench.systems import ConnectWorker, Kanal, RestError, delete_groups, rest
from bench.workload import Workload
from kanal_worker.config.properties import format_properties

FAILOVER_PARTITIONS = 2
FAILOVER_RATE = 500
KANAL_REST_PORT = 18390
APACHE_PORTS = (18391, 18392)
APACHE_DEFAULT_DELAY_S = 300
FAILOVER_TARGET_S = 10
GROUP_DELETE_S = 50
"""Longer than Apache's consumer session (45 s): a killed member stays that long."""
STANDALONE, KUBERNETES, APACHE = "kanal standalone", "kanal kubernetes", "apache"
CREATED_BY = {STANDALONE: "POST /connectors", KUBERNETES: "kubectl apply",
              APACHE: "POST /connectors"}
RESTARTED = f"{STANDALONE} (restart)"
TWO_WORKERS = f"{KUBERNETES} (2 workers)"
DYNAMIC = f"{KUBERNETES} (2 workers, dynamic membership)"
PODS = f"{KUBERNETES} (2 worker pods)"
DYNAMIC_MEMBERSHIP = {"kanal.consumer.static.membership": "false"}
"""Worker setting of the ConnectCluster of DYNAMIC. As shipped, cluster-mode sink
consumers are static members: a task's replacement joins the group with the killed
consumer's ``group.instance.id`` and takes its partitions at once; dynamic members wait
for the group to expire the killed member's session (6 s)."""


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


def _recovery(running: Callable[[], bool], interval: float, offsets: Offsets,
              marks: list[int], killed: float, limit: float) -> dict[str, float | None]:
    """After a kill at ``killed``: seconds until ``running()`` held (tasks RUNNING on a
    live worker, polled every ``interval``), and from the kill until every partition's
    committed offset moved past ``marks`` (absent when that took longer than ``limit``)."""
    result: dict[str, float | None] = {"tasks_running_s": _wait(running, limit, interval)}
    flowing = _wait(lambda: offsets.all_past(marks),
                    max(1.0, limit - (time.monotonic() - killed)), 0.2)
    if flowing is not None:
        result["consuming_again_s"] = time.monotonic() - killed
    return result


# -- connector created → first record -----------------------------------------------------

class Connectors(Protocol):
    """Where connectors are created: a Connect REST API, or a Kanal ConnectCluster."""

    def create(self, name: str, config: Mapping[str, str]) -> None: ...

    def delete(self, name: str) -> None: ...


def first_record(worker: Connectors, workload: Workload, bootstrap: str, workdir: Path,
                 system: str, config: dict[str, str]) -> float | None:
    """Seconds from the request that creates the connector (its REST call, or the
    ``kubectl apply`` process) to the first line in its file."""
    name = f"bench-{system.replace(' ', '-')}-first-{uuid.uuid4().hex[:8]}"
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
        delete_groups(bootstrap, f"connect-{name}", timeout=GROUP_DELETE_S)


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
        # a client dropped before the answer purges its request: keep it referenced
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        with contextlib.suppress(Exception):
            admin.delete_topics([self.topic])[self.topic].result(30)


class Offsets:
    """The sink's consumer group, seen from outside: committed offsets and members."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.group = group
        self.partitions = [TopicPartition(topic, p) for p in range(FAILOVER_PARTITIONS)]
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "log_level": 0})
        self.admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})

    def now(self) -> list[int]:
        return [tp.offset for tp in self.consumer.committed(self.partitions, timeout=5)]

    def settled(self) -> bool:
        """Stable with one partition per task. A task that runs is not enough: a
        cooperative group may still be moving a partition to it, and a kill then would
        take nothing away."""
        group = self.admin.describe_consumer_groups([self.group])[self.group].result(10)
        owned = sorted(len(m.assignment.topic_partitions) for m in group.members)
        return bool(group.state == ConsumerGroupState.STABLE
                    and owned == [1] * FAILOVER_PARTITIONS)

    def steady(self, timeout: float) -> bool:
        """Every partition committed at least once, the group settled."""
        return _wait(lambda: min(self.now()) > 0 and self.settled(), timeout, 0.2) is not None

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
    result: dict[str, Any] = {"system": APACHE, "scheduled.rebalance.max.delay.ms":
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
                if not offsets.steady(60):
                    return {**result, "error": "the consumer group never settled"}
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
                result.update(_recovery(running_on_survivor, 0.2, offsets, marks, killed,
                                        limit))
            finally:
                offsets.close()
            with contextlib.suppress(RestError, OSError):
                rest(f"{pair.urls[0]}/connectors/{name}", "DELETE")
    finally:
        pair.close()
        delete_groups(env.bootstrap, f"connect-{name}", timeout=GROUP_DELETE_S)
    return result


def kanal_restart_failover(env: Stack, workdir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"system": RESTARTED}
    with Load(env.bootstrap) as load:
        name = f"bench-failover-{uuid.uuid4().hex[:8]}"
        connector = {"name": name, "connector.class": APACHE_FILE_SINK, "tasks.max": "2",
                     "topics": load.topic, "file": str(workdir / f"{name}.out"),
                     **VARIANTS[PASSTHROUGH_VARIANT].config}
        first = Kanal(workdir / name, env.bootstrap, [connector])
        offsets = Offsets(env.bootstrap, f"connect-{name}", load.topic)
        second: Kanal | None = None
        try:
            first.start()
            if not offsets.steady(60):
                return {**result, "error": "the consumer group never settled: " + first.tail(5)}
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
            delete_groups(env.bootstrap, f"connect-{name}", timeout=GROUP_DELETE_S)
    return result


def kanal_kubernetes_failover(cluster: ConnectorHost, system: str) -> dict[str, Any]:
    """The operator moves the tasks of a worker whose Lease expired to the live one."""
    result: dict[str, Any] = {"system": system}
    try:
        cluster.revive()  # the worker killed by the previous run
    except AssertionError as exc:
        return {**result, "error": str(exc)}
    with Load(cluster.bootstrap) as load:
        name = f"bench-failover-{uuid.uuid4().hex[:8]}"
        out = cluster.scratch / f"{name}.out"
        offsets = Offsets(cluster.bootstrap, f"connect-{name}", load.topic)
        try:
            cluster.create(name, {"connector.class": APACHE_FILE_SINK, "tasks.max": "2",
                                  "topics": load.topic, "file": str(out),
                                  **VARIANTS[PASSTHROUGH_VARIANT].config})

            def spread() -> bool:
                tasks = cluster.tasks(name)
                return (len(tasks) == 2 and all(state == "RUNNING" for state, _ in tasks)
                        and len({worker for _, worker in tasks}) == 2)
            if _wait(spread, 120, 0.5) is None:
                return {**result, "error": "tasks never ran on both workers"}
            if not offsets.steady(60):
                return {**result, "error": "the consumer group never settled"}
            marks = offsets.now()
            victim = cluster.tasks(name)[0][1]
            assert victim is not None
            killed = time.monotonic()
            cluster.kill(victim)
            limit = 60

            def running_elsewhere() -> bool:
                tasks = cluster.tasks(name)
                return len(tasks) == 2 and all(state == "RUNNING" and worker not in (None, victim)
                                               for state, worker in tasks)
            result.update(_recovery(running_elsewhere, 0.1, offsets, marks, killed, limit))
        finally:
            offsets.close()
            cluster.delete(name)
            out.unlink(missing_ok=True)
    return result


def b4(workload: Workload, env: Stack, peer: ConnectWorker | None, workdir: Path, runs: int,
       full: bool) -> dict[str, Any]:
    """``full`` adds Apache with its default rebalance delay (5+ minutes) and Kanal in
    Kubernetes mode with dynamic group membership."""
    out: dict[str, Any] = {"first_record_s": {}, "failover": []}
    firsts: dict[str, list[float]] = {system: [] for system in CREATED_BY}
    with contextlib.ExitStack() as resources:
        clusters: dict[str, ConnectorHost] = {}
        if env.kube is not None:
            variants = {TWO_WORKERS: {}, **({DYNAMIC: DYNAMIC_MEMBERSHIP} if full else {})}
            try:
                for system, config in variants.items():
                    clusters[system] = resources.enter_context(
                        kanal_cluster(env.kube, env.bootstrap, workdir, config))
            except Exception as exc:  # Standalone and Apache are still worth measuring
                out["kubernetes_error"] = f"{type(exc).__name__}: {exc}"
            try:
                clusters[PODS] = resources.enter_context(pod_cluster(env.bootstrap))
            except Exception as exc:
                out["pods_error"] = f"{type(exc).__name__}: {exc}"
        kanal, kanal_rest = kanal_rest_worker(env, workdir)
        try:
            for _ in range(runs):
                hosts: list[tuple[str, Connectors | None, dict[str, str]]] = [
                    (STANDALONE, kanal_rest, VARIANTS[PASSTHROUGH_VARIANT].config),
                    (KUBERNETES, clusters.get(TWO_WORKERS), VARIANTS[PASSTHROUGH_VARIANT].config),
                    (APACHE, peer, VARIANTS[PASSTHROUGH_VARIANT].config)]
                for system, host, config in hosts:
                    if host is None:
                        continue
                    seconds = first_record(host, workload, env.bootstrap, workdir, system,
                                           config)
                    if seconds is not None:
                        firsts[system].append(seconds)
        finally:
            kanal.stop()
            shutil.rmtree(kanal.workdir, ignore_errors=True)
        out["first_record_s"] = {system: {"created_by": CREATED_BY[system],
                                          "median": statistics.median(values),
                                          "runs": values, "attempts": runs}
                                 for system, values in firsts.items() if values}
        for run in range(1, runs + 1):
            items = [kanal_restart_failover(env, workdir)]
            items += [kanal_kubernetes_failover(cluster, system)
                      for system, cluster in clusters.items()]
            if peer is not None and peer.pid:
                items.append(apache_failover(env, peer.pid, workdir, 0))
            out["failover"] += [{**item, "run": run} for item in items]
    if peer is not None and peer.pid and full:
        out["failover"].append(apache_failover(env, peer.pid, workdir, None))
    return out


def _label(item: dict[str, Any]) -> str:
    if item["system"] == APACHE:
        delay = item.get("scheduled.rebalance.max.delay.ms")
        return f"{APACHE} (2 workers), scheduled.rebalance.max.delay.ms={delay}"
    return str(item["system"])


def rows(b4_result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per measurement and system: the seconds of every run that got there."""
    out: list[dict[str, Any]] = []
    for system, first in b4_result.get("first_record_s", {}).items():
        out.append({"what": "created -> first record",
                    "system": f"{system}, {first['created_by']}",
                    "seconds": first["runs"], "runs": first["attempts"], "failed": []})
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in b4_result.get("failover", []):
        groups.setdefault(_label(item), []).append(item)
    for label, items in groups.items():
        if any("tasks_running_s" in i for i in items):  # a restarted standalone has none
            out.append({"what": "SIGKILL -> tasks RUNNING again", "system": label,
                        "seconds": [i["tasks_running_s"] for i in items
                                    if i.get("tasks_running_s") is not None],
                        "runs": len(items), "failed": []})
        out.append({"what": "SIGKILL -> consuming again", "system": label,
                    "seconds": [i["consuming_again_s"] for i in items
                                if "consuming_again_s" in i],
                    "runs": len(items),
                    "failed": sorted({i.get("error", "did not recover") for i in items
                                      if "consuming_again_s" not in i})})
    return out


def targets(b4_result: dict[str, Any]) -> list[dict[str, Any]]:
    """The failover target of Kubernetes mode, and how it compares with Apache."""
    failover = b4_result.get("failover", [])
    by_run: dict[int, dict[str, float]] = {}
    for item in failover:
        if "run" in item and "consuming_again_s" in item:
            by_run.setdefault(item["run"], {})[item["system"]] = item["consuming_again_s"]
    out: list[dict[str, Any]] = []
    for system in (TWO_WORKERS, DYNAMIC, PODS):
        seconds = [item["consuming_again_s"] for item in failover
                   if item["system"] == system and "consuming_again_s" in item]
        if seconds:
            median = statistics.median(seconds)
            out.append({"what": f"B4 {system}: SIGKILL -> consuming again, seconds",
                        "ratio": median, "target": f"<= {FAILOVER_TARGET_S}",
                        "met": median <= FAILOVER_TARGET_S})
        ratios = [mine[system] / mine[APACHE] for mine in by_run.values()
                  if system in mine and mine.get(APACHE)]
        if ratios:
            ratio = statistics.median(ratios)
            out.append({"what": f"B4 {system} / Apache (delay 0): failover seconds",
                        "ratio": ratio, "target": "(lower is better)", "met": ratio <= 1})
    return out


def describe(b4_result: dict[str, Any]) -> str:
    if "error" in b4_result:
        return f"B4 failed: {b4_result['error']}"
    found = rows(b4_result)
    lines = ["B4 control plane, seconds: median (min-max)"]
    what_width = max((len(r["what"]) for r in found), default=0)
    system_width = max((len(r["system"]) for r in found), default=0)
    for r in found:
        failed = f"  failed: {'; '.join(r['failed'])}" if r["failed"] else ""
        lines.append(f"  {r['what'].ljust(what_width)}  {r['system'].ljust(system_width)}  "
                     f"{median_range(r['seconds'])}  [{len(r['seconds'])}/{r['runs']} run(s)]"
                     f"{failed}")
    if "kubernetes_error" in b4_result:
        lines.append(f"  Kanal in Kubernetes mode not measured: {b4_result['kubernetes_error']}")
    if "pods_error" in b4_result:
        lines.append(f"  Kanal in worker pods not measured: {b4_result['pods_error']}")
    return "\n".join(lines)
