"""Kanal in real pods on the node of ``dev/stack up node``, installed the way a user does.

The image of ``make image`` is imported into the node's containerd, ``helm install``
puts the operator in a release namespace, and ConnectClusters and Connectors are applied
with kubectl: kubelet runs the operator and every worker as pods of that image. Pods
reach Kafka on its PODS listener and Azurite through the node's forward
(``dev/stack env node``). Tests and benchmarks share this.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dev.kube_local import Kubectl, example, wait_for
from dev.stack_env import ROOT, STACK, stack_env
from kanal_worker.cluster.protocol import (
    LABEL_CLUSTER,
    LABEL_COMPONENT,
    REPORT_ANNOTATION,
    WORKER_COMPONENT,
    WorkerReport,
)

CHART = ROOT / "helm" / "kanal"
IMAGE_SH = ROOT / "dev" / "image.sh"
WORKER_SELECTOR = "app.kubernetes.io/component=worker"
CRDS = ("connectclusters.kanal.dev", "connectors.kanal.dev")


def _run(*args: str | Path, timeout: float = 1800) -> str:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                            timeout=timeout, check=False, cwd=ROOT)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({result.returncode}):\n"
                             f"{result.stderr[-3000:]}")
    return result.stdout


def node_env() -> dict[str, str]:
    """Bring the node up (with k8s, Kafka and Azurite) and return ``dev/stack env``."""
    env = stack_env("node")
    if env.get("KANAL_NODE_READY") != "1":
        raise AssertionError("dev/stack up node returned, but the node is not Ready: "
                             "see `dev/stack logs node`")
    return env


def import_image() -> str:
    """Import the image of ``make image`` into the node (building it when needed) and
    return its reference."""
    archive = _run(IMAGE_SH, "archive").strip().splitlines()[-1]
    _run(STACK, "run", "node", "import", archive)
    return _run(IMAGE_SH, "ref").strip().splitlines()[-1]


def tag_image(reference: str, tag: str) -> str:
    """The node's image ``reference`` under another tag too (a release's new version)."""
    def full(name: str) -> str:  # how containerd names what a pod spec calls ``name``
        return name if "/" in name else f"docker.io/library/{name}"
    other = f"{reference.rsplit(':', 1)[0]}:{tag}"
    _run(STACK, "run", "node", "ctr", "images", "tag", "--force", full(reference), full(other))
    return other


def pod_diagnosis(kubectl: Kubectl, selector: str) -> str:
    """Why pods are not Ready: their waiting/terminated reasons, events and log tails."""
    lines: list[str] = []
    pods = kubectl.get("pods", selector=selector)["items"]
    for pod in pods:
        name = pod["metadata"]["name"]
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            for key in ("waiting", "terminated"):
                state = (status.get("state") or {}).get(key)
                if state:
                    lines.append(f"pod {name}: {key} {state.get('reason')}: "
                                 f"{state.get('message', '')}".rstrip())
        log = kubectl.run("logs", name, "--tail=15", "--all-containers", check=False)
        previous = kubectl.run("logs", name, "--tail=15", "--previous", check=False)
        lines.append(f"--- last log lines of {name}:\n{log.stdout or log.stderr}")
        if previous.returncode == 0:
            lines.append(f"--- its previous container:\n{previous.stdout}")
    events = kubectl.run("get", "events", "--sort-by=.lastTimestamp", check=False).stdout
    lines.append("--- events:\n" + "\n".join(events.splitlines()[-15:]))
    if any("ImagePull" in line or "ErrImageNeverPull" in line for line in lines):
        lines.append("fix: the image is not in the node's containerd: `make image`, then "
                     "`dev/stack run node import \"$(dev/image.sh archive)\"`")
    if any("CrashLoopBackOff" in line for line in lines):
        lines.append("fix: the container exits; its log above says why")
    if not pods:
        lines.append("no pod at all: is the node Ready (`dev/stack status node`) and did "
                     "the scheduler run (`dev/stack logs node`)?")
    return "\n".join(lines)


def wait_pods_ready(kubectl: Kubectl, selector: str, count: int, timeout: float) -> list[str]:
    """Names of ``count`` Ready pods (none terminating); on timeout, the diagnosis."""
    def ready() -> list[str] | None:
        names = [p["metadata"]["name"] for p in kubectl.get("pods", selector=selector)["items"]
                 if not p["metadata"].get("deletionTimestamp") and any(
                     c["type"] == "Ready" and c["status"] == "True"
                     for c in (p.get("status") or {}).get("conditions") or [])]
        return sorted(names) if len(names) == count else None
    try:
        found: list[str] = wait_for(ready, timeout, f"{count} Ready pod(s) {selector}", 0.5)
    except AssertionError as timeout_error:
        raise AssertionError(f"{timeout_error}\n{pod_diagnosis(kubectl, selector)}") from None
    return found


@dataclass
class Release:
    """A helm release of the chart and the namespace its workloads run in."""

    helm: Path
    name: str
    namespace: str
    """The release's (the operator's) namespace."""
    kubectl: Kubectl
    """kubectl in the workloads' namespace."""
    node: dict[str, str]
    image: str

    def helm_run(self, *args: str) -> str:
        return _run(self.helm, *args, "--kubeconfig", self.kubectl.kubeconfig,
                    "--namespace", self.namespace, timeout=600)

    def adopt_crds(self) -> None:
        """CRDs applied before with kubectl (``crds/``, as other tests on the shared
        control plane do) are adopted into this release the way Helm takes over existing
        objects: its ownership label and annotations. They stay after uninstall."""
        for crd in CRDS:
            if self.kubectl.run("get", "crd", crd, check=False).returncode != 0:
                continue
            self.kubectl.run("label", "crd", crd, "--overwrite",
                             "app.kubernetes.io/managed-by=Helm")
            self.kubectl.run("annotate", "crd", crd, "--overwrite",
                             f"meta.helm.sh/release-name={self.name}",
                             f"meta.helm.sh/release-namespace={self.namespace}")

    def install(self, image: str) -> str:
        """``helm install`` (or upgrade) to ``image``; returns helm's output."""
        repository, tag = image.rsplit(":", 1)
        self.image = image
        self.adopt_crds()
        return self.helm_run("upgrade", "--install", self.name, str(CHART),
                             "--create-namespace", "--wait", "--timeout", "180s",
                             "--set", f"image.repository={repository}",
                             "--set", f"image.tag={tag}", "--set", "image.pullPolicy=Never")

    def operator_pods(self) -> list[str]:
        operator = Kubectl(self.kubectl.binary, self.kubectl.kubeconfig, self.namespace)
        return wait_pods_ready(operator, "app.kubernetes.io/component=operator", 1, 180)

    def cluster(self, name: str, replicas: int, config: Mapping[str, Any]) -> dict[str, Any]:
        """``examples/kubernetes/cluster.yaml`` as ``name``, with Kafka at the address
        pods reach and ``config`` added to its worker configuration."""
        cluster = example("cluster.yaml")
        cluster["metadata"]["name"] = name
        cluster["spec"].update(replicas=replicas,
                               bootstrapServers=self.node["KANAL_NODE_KAFKA_BOOTSTRAP"],
                               imagePullPolicy="Never")
        cluster["spec"]["config"].update(config)
        return cluster

    def workers(self, cluster: str) -> str:
        return f"kanal.dev/cluster={cluster},{WORKER_SELECTOR}"

    def container_pid(self, pod: str) -> int:
        """Host pid of the pod's first container's main process (for a SIGKILL from
        outside, as the kernel's OOM killer or a crash would end it)."""
        status = self.kubectl.get("pod", pod)["status"]["containerStatuses"][0]
        container = status["containerID"].split("://", 1)[1]
        out = _run(STACK, "run", "node", "ctr", "tasks", "ls")
        for line in out.splitlines():
            fields = line.split()
            if fields and fields[0] == container:
                return int(fields[1])
        raise AssertionError(f"no containerd task {container} of pod {pod}:\n{out}")


@contextlib.contextmanager
def release(helm: Path, prefix: str) -> Iterator[Release]:
    """A node, the imported image and a release of the chart in ``<prefix>-system-<id>``
    (workloads in ``<prefix>-<id>``). On exit the workloads' namespace goes, then the
    release; the CRDs stay (the chart keeps them)."""
    node = node_env()
    image = import_image()
    suffix = uuid.uuid4().hex[:6]
    kubectl = Kubectl(node["KUBECTL"], node["KUBECONFIG"], f"{prefix}-{suffix}")
    installed = Release(helm, f"kanal-{suffix}", f"{prefix}-system-{suffix}", kubectl, node,
                        image)
    kubectl.run("create", "namespace", kubectl.namespace)
    try:
        yield installed
    finally:
        kubectl.run("delete", "connectors,connectclusters", "--all", "--wait=false",
                    check=False)
        with contextlib.suppress(AssertionError):  # the operator removes the finalizers
            wait_for(lambda: not kubectl.get("connectors,connectclusters")["items"], 60,
                     "the operator to finish deleting")
        for item in kubectl.get("connectors,connectclusters")["items"]:  # it is gone
            kubectl.run("patch", item["kind"].lower(), item["metadata"]["name"], "--type",
                        "merge", "-p", '{"metadata": {"finalizers": null}}', check=False)
        kubectl.run("delete", "namespace", kubectl.namespace, "--wait=false", check=False)
        subprocess.run([str(helm), "uninstall", installed.name, "--kubeconfig",
                        kubectl.kubeconfig, "--namespace", installed.namespace, "--wait",
                        "--timeout", "120s"], capture_output=True, check=False, timeout=180)
        kubectl.run("delete", "namespace", installed.namespace, "--wait=false", check=False)


def connector_tasks(kubectl: Kubectl, name: str) -> list[tuple[str, str | None]]:
    status = kubectl.status(name)
    return [(t["state"], t.get("worker")) for t in status.get("tasks") or []]


def all_running_elsewhere(kubectl: Kubectl, names: list[str], gone: str) -> bool:
    """Every task of ``names`` RUNNING on a worker other than ``gone``."""
    return all(tasks and all(state == "RUNNING" and worker not in (None, gone)
                             for state, worker in tasks)
               for tasks in (connector_tasks(kubectl, n) for n in names))


def time_failover(kubectl: Kubectl, names: list[str], victim: str,
                  kill: Callable[[], object]) -> float:
    """Seconds from ``kill()`` to every task of ``names`` RUNNING on another worker."""
    started = time.monotonic()
    kill()
    wait_for(lambda: all_running_elsewhere(kubectl, names, victim), 120,
             f"the tasks of {victim} RUNNING on another pod", 0.1)
    return time.monotonic() - started


def worker_reports(kubectl: Kubectl, cluster: str) -> dict[str, WorkerReport]:
    """What each worker of ``cluster`` publishes in its Lease: its tasks' states."""
    leases = kubectl.get("leases", selector=f"{LABEL_CLUSTER}={cluster},"
                         f"{LABEL_COMPONENT}={WORKER_COMPONENT}")["items"]
    return {lease["metadata"]["name"]: WorkerReport.from_json(
        (lease["metadata"].get("annotations") or {}).get(REPORT_ANNOTATION))
        for lease in leases}


def time_restart(kubectl: Kubectl, cluster: str, victim: str,
                 kill: Callable[[], object]) -> tuple[float, set[str]]:
    """Seconds from ``kill()`` of ``victim`` to each of its tasks RUNNING again in a new
    run (a task's ``since`` after the kill) on any worker, the restarted one included:
    a container the kubelet restarts in place comes back under the same name. Also
    returns the workers that run them then."""
    tasks = set(worker_reports(kubectl, cluster)[victim].tasks)
    assert tasks, f"{victim} runs no task"
    started, killed_at = time.monotonic(), time.time()
    kill()

    def again() -> set[str] | None:
        fresh = {(key, worker) for worker, report in worker_reports(kubectl, cluster).items()
                 for key, task in report.tasks.items()
                 if key in tasks and task.state == "RUNNING" and task.since > killed_at}
        return {worker for _, worker in fresh} if {key for key, _ in fresh} == tasks else None
    workers: set[str] = wait_for(again, 120, f"the tasks of {victim} RUNNING again", 0.1)
    return time.monotonic() - started, workers
