"""Kanal in Kubernetes mode on the real kube-apiserver of ``dev/stack``, without a kubelet.

kube-controller-manager turns the worker Deployment into Pending Pods, and each worker
runs here as a ``kanal worker`` process with the identity the Deployment gives its pod
(name, namespace, uid) and the service account token the pod would mount, so the
workers' Role is exercised for real. The operator runs as a ``kanal operator`` process.
Tests and benchmarks drive it like a user would: with kubectl.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka.admin import AdminClient

from dev.stack_env import ROOT
from kanal_worker.config.properties import format_properties, parse_properties

KANAL = str(Path(sys.executable).parent / "kanal")
EXAMPLES = ROOT / "examples" / "kubernetes"
LOCAL_PROCESS_IMAGE = "kanal.invalid/worker-runs-as-a-local-process:never"
"""An image no node has: the worker pods of a local cluster never start."""


def wait_for(condition: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.2) -> Any:
    """Poll ``condition`` until it returns something truthy; that value is returned."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Kubectl:
    binary: str
    kubeconfig: str
    namespace: str

    def run(self, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, "--kubeconfig", self.kubeconfig, "-n", self.namespace, *args],
            input=stdin, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def apply(self, *documents: dict[str, Any], check: bool = True,
              ) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "-f", "-", stdin=yaml.safe_dump_all(documents), check=check)

    def get(self, kind: str, name: str | None = None, selector: str | None = None,
            ) -> dict[str, Any]:
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        if selector:
            args += ["-l", selector]
        result = json.loads(self.run(*args).stdout)
        assert isinstance(result, dict)
        return result

    def exists(self, kind: str, name: str) -> bool:
        return self.run("get", kind, name, check=False).returncode == 0

    def patch(self, kind: str, name: str, patch: dict[str, Any]) -> None:
        self.run("patch", kind, name, "--type", "merge", "-p", json.dumps(patch))

    def status(self, name: str) -> dict[str, Any]:
        status = self.get("connector", name).get("status") or {}
        assert isinstance(status, dict)
        return status


def example(name: str) -> dict[str, Any]:
    """A manifest of ``examples/kubernetes``."""
    document = yaml.safe_load((EXAMPLES / name).read_text())
    assert isinstance(document, dict)
    return document


def ready(status: dict[str, Any]) -> tuple[str, str] | None:
    for condition in status.get("conditions") or []:
        if condition["type"] == "Ready":
            return condition["status"], condition["reason"]
    return None


def task_states(status: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(t["state"], t.get("worker")) for t in status.get("tasks") or []]


@dataclass
class Process:
    """A ``kanal`` subprocess with its log file."""

    args: list[str]
    env: dict[str, str]
    log: Path
    url: str = ""
    """The REST API of a worker."""
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        handle = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.popen = subprocess.Popen(self.args, stdout=handle, stderr=subprocess.STDOUT,
                                      env=self.env, start_new_session=True)
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        if self.popen is None or self.popen.poll() is not None:
            return None if self.popen is None else self.popen.returncode
        self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(10)


@dataclass
class Pod:
    name: str
    uid: str | None


@dataclass
class Workers:
    """Worker processes standing in for the pods of a ConnectCluster's Deployment."""

    kubectl: Kubectl
    cluster: str
    tmp: Path
    kubeconfig: str
    processes: dict[str, Process] = field(default_factory=dict)

    def pods(self, count: int) -> list[Pod]:
        """The Deployment's pods (made by kube-controller-manager), or made-up names when
        no controller manager runs."""
        selector = f"kanal.dev/cluster={self.cluster},app.kubernetes.io/component=worker"

        def listed() -> list[Pod]:
            items = self.kubectl.get("pods", selector=selector)["items"]
            return [Pod(p["metadata"]["name"], p["metadata"]["uid"]) for p in items
                    if not p["metadata"].get("deletionTimestamp")]
        try:
            found = wait_for(lambda: len(listed()) >= count and listed(), 20, "worker pods")
        except AssertionError:
            return [Pod(f"{self.cluster}-connect-local-{i}", None) for i in range(count)]
        return sorted(found, key=lambda p: p.name)[:count]

    def properties(self) -> dict[str, str]:
        """The worker configuration the operator wrote for the pods."""
        data = self.kubectl.get("configmap", f"{self.cluster}-connect")["data"]
        return parse_properties(data["worker.properties"])

    def config(self) -> tuple[Path, str]:
        """The worker configuration the pod would mount, with a local REST port."""
        values = self.properties()
        url = f"http://127.0.0.1:{free_port()}"
        values["listeners"] = url
        values["kanal.metrics.port"] = "0"
        path = self.tmp / f"worker-{len(self.processes)}.properties"
        path.write_text(format_properties(values))
        return path, url

    def start(self, pod: Pod) -> Process:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "POD_NAME": pod.name,
               "POD_NAMESPACE": self.kubectl.namespace, "KANAL_CLUSTER": self.cluster,
               "PYTHONUNBUFFERED": "1"}
        if pod.uid:
            env["POD_UID"] = pod.uid
        config, url = self.config()
        process = Process([KANAL, "worker", "--config", str(config)], env,
                          self.tmp / f"{pod.name}.log", url).start()
        self.processes[pod.name] = process
        return process

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.stop(timeout=30)

    def __iter__(self) -> Iterator[tuple[str, Process]]:
        return iter(list(self.processes.items()))


def service_account_kubeconfig(kubectl: Kubectl, account: str, path: Path) -> str:
    """A kubeconfig that authenticates as ``account`` (what a pod would mount)."""
    token = kubectl.run("create", "token", account, "--duration", "2h").stdout.strip()
    admin = yaml.safe_load(Path(kubectl.kubeconfig).read_text())
    cluster = admin["clusters"][0]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {
            "cluster": cluster["name"], "user": account, "namespace": kubectl.namespace}}],
        "current-context": account,
    }))
    return str(path)


@dataclass
class LocalCluster:
    """A ConnectCluster, the operator reconciling it and its worker processes."""

    kubectl: Kubectl
    name: str
    operator: Process
    workers: Workers
    controller_manager: bool
    """Whether kube-controller-manager runs (it made real Pods for the Deployment)."""

    def workers_ready(self) -> bool:
        status = self.kubectl.get("connectcluster", self.name).get("status") or {}
        return ready(status) == ("True", "WorkersReady")


def start_operator(kube: Mapping[str, str], namespace: str, tmp: Path,
                   ) -> tuple[Kubectl, Process]:
    """The CRDs applied, ``namespace`` created and a ``kanal operator`` for it running."""
    kubectl = Kubectl(kube["KUBECTL"], kube["KUBECONFIG"], namespace)
    kubectl.run("apply", "--server-side", "--force-conflicts", "--field-manager=kanal-local",
                "-f", str(ROOT / "crds"))
    kubectl.run("wait", "--for", "condition=established", "--timeout", "30s",
                "crd/connectors.kanal.dev", "crd/connectclusters.kanal.dev")
    kubectl.run("create", "namespace", namespace)
    operator = Process([KANAL, "operator", "--namespace", namespace],
                       {**os.environ, "KUBECONFIG": kube["KUBECONFIG"],
                        "KANAL_METRICS_PORT": "0", "PYTHONUNBUFFERED": "1"},
                       tmp / "operator.log").start()
    return kubectl, operator


def start_workers(kubectl: Kubectl, cluster: str, tmp: Path, replicas: int,
                  ) -> tuple[Workers, list[Pod]]:
    """Worker processes for the pods of the ConnectCluster ``cluster`` (already applied),
    with the token of the ServiceAccount the operator made for them."""
    account = f"{cluster}-connect"
    wait_for(lambda: kubectl.exists("serviceaccount", account), 30, "the workers' account")
    token = service_account_kubeconfig(kubectl, account, tmp / "worker.kubeconfig")
    workers = Workers(kubectl, cluster, tmp, token)
    pods = workers.pods(replicas)
    for pod in pods:
        workers.start(pod)
    return workers, pods


@contextlib.contextmanager
def local_cluster(kube: Mapping[str, str], bootstrap: str, tmp: Path, name: str, *,
                  namespace: str, replicas: int = 2,
                  worker_config: Mapping[str, Any] | None = None,
                  show_logs: bool = False) -> Iterator[LocalCluster]:
    """``examples/kubernetes/cluster.yaml`` as ``name`` in a new ``namespace`` (the CRDs
    applied first), an operator for that namespace and ``replicas`` heartbeating workers.

    ``kube`` holds ``KUBECTL`` and ``KUBECONFIG`` (``dev/stack env``). On exit the
    connectors and the cluster are deleted while the operator still runs (it removes
    their finalizers once the tasks stopped), then the processes stop, the namespace and
    the workers' offsets topic go. ``show_logs`` prints the end of every process's log
    then, for a failing test.
    """
    kubectl, operator = start_operator(kube, namespace, tmp)
    workers: Workers | None = None
    offsets_topic: str | None = None
    try:
        cluster = example("cluster.yaml")
        cluster["metadata"]["name"] = name
        cluster["spec"]["replicas"] = replicas
        cluster["spec"]["bootstrapServers"] = bootstrap
        # The processes stand in for the Deployment's pods: where a node runs pods
        # (dev/stack up node), those pods must not run a second worker of the same name.
        cluster["spec"].update(image=LOCAL_PROCESS_IMAGE, imagePullPolicy="Never")
        cluster["spec"]["config"].update(worker_config or {})
        kubectl.apply(cluster)
        workers, pods = start_workers(kubectl, name, tmp, replicas)
        offsets_topic = workers.properties().get("offset.storage.topic")
        local = LocalCluster(kubectl, name, operator, workers, any(pod.uid for pod in pods))
        wait_for(local.workers_ready, 90, f"{replicas} heartbeating worker(s)")
        yield local
    finally:
        kubectl.run("delete", "connectors,connectclusters", "--all", "--timeout", "60s",
                    check=False)
        if workers is not None:
            workers.stop_all()
        operator.stop()
        kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)
        if offsets_topic:
            admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until it answered
            with contextlib.suppress(Exception):
                admin.delete_topics([offsets_topic])[offsets_topic].result(30)
        if show_logs:
            for log in sorted(tmp.glob("*.log")):
                print(f"----- {log.name} (last lines)")
                print("\n".join(log.read_text(errors="replace").splitlines()[-15:]))
