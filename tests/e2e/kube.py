"""Drive the real kube-apiserver like a user (kubectl) and run Kanal's processes locally.

No kubelet exists in ``dev/stack``: kube-controller-manager turns the worker Deployment
into Pending Pods, and each worker runs here as a ``kanal worker`` process with the
identity the Deployment gives its pod (name, namespace, uid) and the service account
token the pod would mount, so the workers' Role is exercised for real.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kanal_worker.config.properties import format_properties, parse_properties

KANAL = str(Path(sys.executable).parent / "kanal")
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "kubernetes"


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

    def config(self) -> tuple[Path, str]:
        """The worker configuration the pod would mount, with a local REST port."""
        data = self.kubectl.get("configmap", f"{self.cluster}-connect")["data"]
        values = parse_properties(data["worker.properties"])
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
