"""Kanal in Kubernetes mode for B4: the operator and two cluster-mode workers on the real
kube-apiserver of ``dev/stack``, either run as local processes (``dev/kube_local.py``) or
as pods of the image that the kubelet of ``dev/stack up node`` runs after a ``helm
install`` (``dev/kube_pods.py``); connectors are created the way a user does it, with
``kubectl apply`` of a ``Connector``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from kubernetes.client import CustomObjectsApi
from kubernetes.config import new_client_from_config

from bench.systems import delete_groups
from dev.kube_local import Kubectl, LocalCluster, local_cluster, ready, task_states, wait_for
from dev.kube_pods import Release, release, wait_pods_ready
from dev.stack_env import ROOT
from kanal_worker.cluster.protocol import CONNECTORS, GROUP, VERSION

WORKERS = 2
CLUSTER = "bench"
STATIC_SESSION_S = 10
"""Cluster-mode sink consumers are static group members (``kanal.consumer.static.membership``): the
broker keeps it for its session timeout after its task stopped, and refuses to delete
the group until then."""


class ConnectorHost:
    """A ConnectCluster of WORKERS workers, driven like a Connect worker: ``create`` is a
    ``kubectl apply`` of a ``Connector``, ``delete`` a ``kubectl delete`` that returns
    once the operator saw the tasks stop."""

    def __init__(self, kubectl: Kubectl, cluster: str, bootstrap: str, scratch: Path) -> None:
        self.kubectl = kubectl
        self.cluster = cluster
        self.bootstrap = bootstrap
        """Kafka as this machine reaches it (the producer and probes of the bench)."""
        self.scratch = scratch
        """Where the workers may write files."""
        self.groups: list[str] = []
        # status is polled every 100-200 ms while a failover is timed: a kubectl process
        # per poll would compete for the CPU with the workers being measured
        self.api = CustomObjectsApi(new_client_from_config(  # type: ignore[no-untyped-call]
            kubectl.kubeconfig))

    def create(self, name: str, config: Mapping[str, str]) -> None:
        rest = dict(config)
        self.kubectl.apply({
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Connector",
            "metadata": {"name": name},
            "spec": {"clusterRef": {"name": self.cluster},
                     "class": rest.pop("connector.class"),
                     "tasksMax": int(rest.pop("tasks.max", "1")), "config": rest}})

    def delete(self, name: str) -> None:
        self.kubectl.run("delete", "connector", name, "--timeout", "60s", check=False)
        self.groups.append(f"connect-{name}")

    def tasks(self, name: str) -> list[tuple[str, str | None]]:
        """(state, worker) of each task, from the Connector's status."""
        body = cast(dict[str, Any], self.api.get_namespaced_custom_object(
            GROUP, VERSION, self.kubectl.namespace, CONNECTORS, name,
            _request_timeout=5))
        return task_states(body.get("status") or {})

    def workers_ready(self) -> bool:
        status = self.kubectl.get("connectcluster", self.cluster).get("status") or {}
        return ready(status) == ("True", "WorkersReady")

    def kill(self, worker: str) -> None:
        raise NotImplementedError

    def revive(self) -> None:
        raise NotImplementedError


class KanalCluster(ConnectorHost):
    """Workers as local processes."""

    def __init__(self, local: LocalCluster, bootstrap: str, scratch: Path) -> None:
        super().__init__(local.kubectl, local.name, bootstrap, scratch)
        self.local = local

    def kill(self, worker: str) -> None:
        self.local.workers.processes[worker].stop(signal.SIGKILL)

    def revive(self) -> None:
        """Start again the workers killed before, and wait until all heartbeat."""
        workers = self.local.workers
        for pod in workers.pods(WORKERS):
            if not workers.processes[pod.name].alive:
                workers.start(pod)
        wait_for(self.local.workers_ready, 90, f"{WORKERS} heartbeating workers")


class PodCluster(ConnectorHost):
    """Workers as pods of the image, run by the node's kubelet."""

    def __init__(self, installed: Release, bootstrap: str) -> None:
        super().__init__(installed.kubectl, CLUSTER, bootstrap, Path("/tmp"))
        self.installed = installed

    def kill(self, worker: str) -> None:
        """SIGKILL of the worker process in its container (the kubelet restarts it)."""
        os.kill(self.installed.container_pid(worker), signal.SIGKILL)

    def revive(self) -> None:
        wait_pods_ready(self.kubectl, self.installed.workers(CLUSTER), WORKERS, 180)
        wait_for(self.workers_ready, 90, f"{WORKERS} heartbeating worker pods")


@contextlib.contextmanager
def kanal_cluster(kube: Mapping[str, str], bootstrap: str, workdir: Path,
                  worker_config: Mapping[str, str] | None = None) -> Iterator[KanalCluster]:
    """A fresh namespace with the operator and WORKERS workers (``worker_config`` added to
    the ConnectCluster's), removed on exit with the consumer groups of every connector it
    ran."""
    suffix = uuid.uuid4().hex[:6]
    tmp = workdir / f"kubernetes-{suffix}"
    tmp.mkdir(parents=True)
    cluster: KanalCluster | None = None
    try:
        with local_cluster(kube, bootstrap, tmp, CLUSTER, namespace=f"kanal-bench-{suffix}",
                           replicas=WORKERS,
                           worker_config={"offset.flush.interval.ms": "1000",
                                          **(worker_config or {})}) as local:
            cluster = KanalCluster(local, bootstrap, tmp)
            yield cluster
    finally:
        if cluster is not None:
            delete_groups(bootstrap, *cluster.groups, timeout=3 * STATIC_SESSION_S)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def pod_cluster(bootstrap: str) -> Iterator[PodCluster]:
    """``helm install`` of the chart with the image on the node of ``dev/stack up node``
    and a ConnectCluster of WORKERS worker pods; all removed on exit."""
    helm = subprocess.run([str(ROOT / "dev" / "tools.sh"), "path", "helm"], check=True,
                          capture_output=True, text=True).stdout.split()[-1]
    cluster: PodCluster | None = None
    try:
        with release(Path(helm), "kanal-bench") as installed:
            installed.install(installed.image)
            installed.operator_pods()
            installed.kubectl.apply(installed.cluster(
                CLUSTER, WORKERS, {"offset.flush.interval.ms": "1000"}))
            cluster = PodCluster(installed, bootstrap)
            cluster.revive()
            yield cluster
    finally:
        if cluster is not None:
            delete_groups(bootstrap, *cluster.groups, timeout=3 * STATIC_SESSION_S)
