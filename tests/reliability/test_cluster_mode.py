"""Cluster mode under hostile conditions, on the real kube-apiserver and Kafka.

The operator and the workers run as local processes, as in tests/e2e (there is no
kubelet); workers authenticate with their ServiceAccount's token, so what they may do
is what the Role the operator wrote grants.

- ``${secret:...}`` canaries reach the tasks and nothing else: not status, events,
  ConfigMaps, Leases, logs or any REST answer.
- The workers' Role is least privilege (``kubectl auth can-i`` as their account).
- The operator killed in the middle of reconciling: no duplicate objects, no lost
  status.
- A worker started while Kafka is unreachable says so, and serves once Kafka is back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from kubernetes.client import AppsV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException
from kubernetes.config import new_client_from_config

from dev.kube_local import (
    KANAL,
    Kubectl,
    Process,
    Workers,
    example,
    ready,
    service_account_kubeconfig,
    wait_for,
)
from dev.stack_env import ROOT
from tests.kafka_helpers import consume_all, produce
from tests.reliability.faults import blob_count, container_client, log
from tests.reliability.test_secrets import get_everything, leaks

pytestmark = pytest.mark.e2e

CLUSTER = "reliable"
CHILD = f"{CLUSTER}-connect"
LABEL = "kanal.dev/cluster"


@dataclass
class Env:
    kubectl: Kubectl
    namespace: str
    operator: Process
    workers: Workers
    tmp: Path
    stack: dict[str, str]
    kube: dict[str, str]


def start_operator(kube: dict[str, str], namespace: str, tmp: Path) -> Process:
    return Process([KANAL, "operator", "--namespace", namespace],
                   {**os.environ, "KUBECONFIG": kube["KUBECONFIG"], "KANAL_METRICS_PORT": "0",
                    "PYTHONUNBUFFERED": "1"}, tmp / "operator.log").start()


def cluster_manifest(name: str, bootstrap: str) -> dict[str, Any]:
    cluster = example("cluster.yaml")
    cluster["metadata"]["name"] = name
    cluster["spec"]["replicas"] = 1
    cluster["spec"]["bootstrapServers"] = bootstrap
    cluster["spec"]["config"]["offset.flush.interval.ms"] = 1000
    return cluster


@pytest.fixture(scope="module")
def env(kube: dict[str, str], stack: dict[str, str],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("cluster-mode")
    namespace = f"kanal-rel-{uuid.uuid4().hex[:6]}"
    kubectl = Kubectl(kube["KUBECTL"], kube["KUBECONFIG"], namespace)
    kubectl.run("apply", "--server-side", "--force-conflicts",
                "--field-manager=kanal-reliability-tests", "-f", str(ROOT / "crds"))
    kubectl.run("wait", "--for", "condition=established", "--timeout", "30s",
                "crd/connectors.kanal.dev", "crd/connectclusters.kanal.dev")
    kubectl.run("create", "namespace", namespace)
    operator = start_operator(kube, namespace, tmp)
    kubectl.apply(cluster_manifest(CLUSTER, stack["KANAL_BOOTSTRAP_SERVERS"]))
    wait_for(lambda: kubectl.exists("serviceaccount", CHILD), 30, "the workers' account")
    token = service_account_kubeconfig(kubectl, CHILD, tmp / "worker.kubeconfig")
    workers = Workers(kubectl, CLUSTER, tmp, token)
    environment = Env(kubectl, namespace, operator, workers, tmp, stack, kube)
    try:
        for pod in workers.pods(1):
            workers.start(pod)
        wait_for(lambda: ready(kubectl.get("connectcluster", CLUSTER).get("status") or {})
                 == ("True", "WorkersReady"), 90, "a heartbeating worker")
        yield environment
    finally:
        kubectl.run("delete", "connectors,connectclusters", "--all", "--timeout", "60s",
                    check=False)
        workers.stop_all()
        environment.operator.stop()
        kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)
        for path in sorted(tmp.glob("*.log")):
            print(f"----- {path.name} (last lines)")
            print("\n".join(path.read_text(errors="replace").splitlines()[-15:]))


def connector_state(kubectl: Kubectl, name: str) -> dict[str, Any]:
    return kubectl.status(name)


# -- secrets -------------------------------------------------------------------------


def test_secret_placeholders_reach_tasks_and_nothing_else(env: Env) -> None:
    kubectl, stack = env.kubectl, env.stack
    canaries = {"azure key": stack["AZURITE_ACCOUNT_KEY"],
                "wrong azure key": f"CanaryWrongKey{uuid.uuid4().hex}=="}
    kubectl.run("create", "secret", "generic", "canary-azure",
                f"--from-literal=account-key={canaries['azure key']}")
    kubectl.run("create", "secret", "generic", "canary-wrong",
                f"--from-literal=account-key={canaries['wrong azure key']}")
    topic = f"canary.{env.namespace}"
    produce(stack["KANAL_BOOTSTRAP_SERVERS"], topic,
            [orjson.dumps({"id": i}) for i in range(40)])
    container = f"canary-{uuid.uuid4().hex[:10]}"
    for name, secret in (("canary-ok", "canary-azure"), ("canary-bad", "canary-wrong")):
        sink = example("azure-blob-sink.yaml")
        sink["metadata"]["name"] = name
        sink["spec"]["clusterRef"] = {"name": CLUSTER}
        sink["spec"]["tasksMax"] = 1
        sink["spec"]["config"].update({
            "topics": topic, "azblob.account.name": stack["AZURITE_ACCOUNT_NAME"],
            "azblob.account.key": f"${{secret:{secret}:account-key}}",
            "store.url": stack["AZURITE_BLOB_ENDPOINT"],
            "azblob.container.name": container if name == "canary-ok" else f"{container}-x",
            "flush.size": 10, "rotate.schedule.interval.ms": -1,
            "partitioner.class": "DefaultPartitioner"})
        for key in ("timestamp.extractor", "timestamp.field", "errors.tolerance",
                    "errors.deadletterqueue.topic.name"):
            sink["spec"]["config"].pop(key, None)
        kubectl.apply(sink)
    blobs = container_client(stack["AZURITE_CONNECTION_STRING"], container)
    try:
        wait_for(lambda: blob_count(blobs) >= 4, 120, "blobs written with the Secret's key")
        failed = wait_for(lambda: (s := kubectl.status("canary-bad")) and any(
            t.get("state") == "FAILED" for t in s.get("tasks") or []) and s, 120,
            "the task with the wrong key to fail")
        assert "trace" in orjson.dumps(failed).decode()
        texts = {
            "objects": kubectl.run("get", "connectors,connectclusters,configmaps,leases,roles,"
                                   "rolebindings,services,deployments,events", "-o",
                                   "yaml").stdout,
            "operator log": env.operator.log.read_text(errors="replace"),
        }
        for pod, process in env.workers:
            texts[f"worker {pod} log"] = process.log.read_text(errors="replace")
            for path, body in get_everything(process.url):
                texts[f"worker {pod} {path}"] = body
        assert any("FAILED" in text for text in texts.values())
        problems = {where: found for where, text in texts.items()
                    if (found := leaks(text, canaries))}
        assert problems == {}, orjson.dumps(problems, option=orjson.OPT_INDENT_2).decode()
    finally:
        kubectl.run("delete", "connector", "canary-ok", "canary-bad", check=False)
        blobs.delete_container()


def test_cluster_over_sasl_scram_with_the_password_in_a_secret(env: Env) -> None:
    """spec.kafka.sasl against the broker's SCRAM listener: the worker authenticates with
    the password from the Secret, which stays out of the ConfigMap, status and logs."""
    kubectl, stack = env.kubectl, env.stack
    password = stack["KANAL_KAFKA_SASL_PASSWORD"]
    kubectl.run("create", "secret", "generic", "kafka-scram",
                f"--from-literal=password={password}")
    name = "scram"
    cluster = cluster_manifest(name, stack["KANAL_KAFKA_SASL_BOOTSTRAP"])
    cluster["spec"]["kafka"] = {
        "securityProtocol": "SASL_PLAINTEXT",
        "sasl": {"mechanism": stack["KANAL_KAFKA_SASL_MECHANISM"],
                 "username": stack["KANAL_KAFKA_SASL_USERNAME"],
                 "passwordSecret": {"name": "kafka-scram", "key": "password"}}}
    kubectl.apply(cluster)
    wait_for(lambda: kubectl.exists("serviceaccount", f"{name}-connect"), 30, "the account")
    token = service_account_kubeconfig(kubectl, f"{name}-connect", env.tmp / "scram.kubeconfig")
    workers = Workers(kubectl, name, env.tmp, token)
    topic = f"scram.{env.namespace}"
    try:
        for pod in workers.pods(1):
            workers.start(pod)
        wait_for(lambda: ready(kubectl.get("connectcluster", name).get("status") or {})
                 == ("True", "WorkersReady"), 90, "the worker to authenticate and serve")
        generator = example("telemetry-generator.yaml")
        generator["metadata"]["name"] = "scram-gen"
        generator["spec"]["clusterRef"] = {"name": name}
        generator["spec"]["config"].update(topic=topic, count=500, rate=1000)
        kubectl.apply(generator)
        wait_for(lambda: len(consume_all(stack["KANAL_BOOTSTRAP_SERVERS"], topic, 500,
                                         timeout=5)) >= 500, 120, "500 records over SCRAM")
        texts = {"objects": kubectl.run("get", "connectors,connectclusters,configmaps,"
                                        "leases,events", "-o", "yaml").stdout,
                 "operator log": env.operator.log.read_text(errors="replace")}
        for pod_name, process in workers:
            texts[f"worker {pod_name} log"] = process.log.read_text(errors="replace")
        assert "${secret:kafka-scram:password}" in texts["objects"], \
            "the ConfigMap holds the placeholder"
        problems = {where: found for where, text in texts.items()
                    if (found := leaks(text, {"scram password": password}))}
        assert problems == {}, problems
    finally:
        kubectl.run("delete", "connector", "scram-gen", "--wait=false", check=False)
        workers.stop_all()
        kubectl.run("delete", "connectcluster", name, "--wait=false", check=False)


# -- RBAC ------------------------------------------------------------------------------


def can(env: Env, who: str, verb: str, resource: str, name: str = "",
        namespace: str | None = None) -> bool:
    resource, _, sub = resource.partition("/")
    args = ["auth", "can-i", verb, f"{resource}/{name}" if name else resource,
            f"--as={who}", "-n", namespace or env.namespace]
    if sub:
        args.append(f"--subresource={sub}")
    return env.kubectl.run(*args, check=False).stdout.strip() == "yes"


def test_workers_role_is_least_privilege(env: Env) -> None:
    worker = f"system:serviceaccount:{env.namespace}:{CHILD}"
    env.kubectl.run("create", "secret", "generic", "unrelated-secret",
                    "--from-literal=password=not-for-workers", check=False)
    allowed = [("get", "connectors.kanal.dev"), ("watch", "connectors.kanal.dev"),
               ("create", "connectors.kanal.dev"),  # the REST API writes Connectors
               ("update", "leases.coordination.k8s.io"), ("list", "leases.coordination.k8s.io")]
    denied = [
        ("patch", "connectors.kanal.dev/status"),  # the operator is the only status writer
        ("update", "connectclusters.kanal.dev"), ("delete", "connectclusters.kanal.dev"),
        ("patch", "connectclusters.kanal.dev/status"),
        ("list", "secrets"), ("watch", "secrets"), ("create", "secrets"),
        ("get", "configmaps"), ("update", "configmaps"), ("create", "pods"),
        ("create", "pods/exec"), ("delete", "pods"), ("patch", "deployments.apps"),
        ("create", "roles.rbac.authorization.k8s.io"),
        ("create", "rolebindings.rbac.authorization.k8s.io"),
        ("escalate", "roles.rbac.authorization.k8s.io"),
        ("bind", "roles.rbac.authorization.k8s.io"), ("impersonate", "serviceaccounts"),
        ("create", "serviceaccounts/token"), ("create", "events"),
    ]
    wrong = [f"{verb} {resource}" for verb, resource in allowed
             if not can(env, worker, verb, resource)]
    wrong += [f"{verb} {resource} (should be denied)" for verb, resource in denied
              if can(env, worker, verb, resource)]
    assert not can(env, worker, "get", "secrets", "unrelated-secret"), \
        "workers read only the Secrets their connectors reference"
    assert not can(env, worker, "get", "connectors.kanal.dev", namespace="default"), \
        "the workers' rights end at their namespace"
    assert not can(env, worker, "list", "nodes", namespace="default")
    assert wrong == [], wrong


# -- the operator killed mid-reconcile --------------------------------------------------


CHILD_KINDS = ("deployments.apps", "services", "configmaps", "serviceaccounts",
               "poddisruptionbudgets.policy", "roles.rbac.authorization.k8s.io",
               "rolebindings.rbac.authorization.k8s.io")


def children(env: Env, cluster: str) -> dict[str, list[str]]:
    found = {}
    for kind in CHILD_KINDS:
        items = env.kubectl.get(kind, selector=f"{LABEL}={cluster}")["items"]
        found[kind] = sorted(item["metadata"]["name"] for item in items)
    return found


def first_child_exists(env: Env, cluster: str, kind: str) -> Callable[[], bool]:
    """A fast probe (the Kubernetes client, ~10 ms) for one child of ``cluster``."""
    api = new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=env.kube["KUBECONFIG"])
    core, apps = CoreV1Api(api), AppsV1Api(api)
    readers = {"serviceaccount": core.read_namespaced_service_account,
               "configmap": core.read_namespaced_config_map,
               "deployment": apps.read_namespaced_deployment}

    def exists() -> bool:
        try:
            readers[kind](f"{cluster}-connect", env.namespace)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True
    return exists


def warmed_up(operator: Process) -> bool:
    return "Initial authentication has finished" in operator.log.read_text(errors="replace")


def test_operator_killed_mid_reconcile_leaves_no_duplicates_and_loses_no_status(
        env: Env) -> None:
    """SIGKILL the operator the moment its first, fourth and fifth child of a new
    ConnectCluster exists (the ServiceAccount, the ConfigMap, the Deployment: the
    others are still to come, the status not yet written), then start it again."""
    kubectl = env.kubectl
    kills: list[str] = []
    partial: list[int] = []
    for round_number, trigger in enumerate(("serviceaccount", "configmap", "deployment")):
        name = f"restarted-{round_number}"
        wait_for(lambda: warmed_up(env.operator), 60, "the operator to start")
        time.sleep(2)  # idle: the running cluster is reconciled
        probe = first_child_exists(env, name, trigger)
        kubectl.apply(cluster_manifest(name, env.stack["KANAL_BOOTSTRAP_SERVERS"]))
        generator = example("telemetry-generator.yaml")
        generator["metadata"]["name"] = f"{name}-gen"
        generator["spec"]["clusterRef"] = {"name": name}
        wait_for(probe, 60, f"{name}'s {trigger}", interval=0.005)
        assert env.operator.popen is not None
        env.operator.popen.send_signal(signal.SIGKILL)
        env.operator.popen.wait(30)
        made = children(env, name)
        partial.append(sum(map(len, made.values())))
        status = kubectl.get("connectcluster", name).get("status") or {}
        kills.append(f"at the {trigger}: {sum(map(len, made.values()))}/7 children, "
                     f"status {'written' if status else 'not written'}")
        kubectl.apply(generator)  # arrives while no operator runs
        env.operator = start_operator(env.kube, env.namespace, env.tmp)

        def settled(cluster: str = name) -> bool:
            body = kubectl.get("connectcluster", cluster)
            status = body.get("status") or {}
            return (status.get("observedGeneration") == body["metadata"]["generation"]
                    and ready(status) is not None)
        wait_for(settled, 90, f"{name}'s status after the operator restart")
        made = children(env, name)
        assert all(len(names) == 1 for names in made.values()), made

        def planned(connector: str = f"{name}-gen") -> bool:
            body = kubectl.get("connector", connector)
            status = body.get("status") or {}
            return (status.get("observedGeneration") == body["metadata"]["generation"]
                    and ready(status) is not None)
        wait_for(planned, 90, f"{name}-gen's status after the operator restart")
    log("operator kills: " + "; ".join(kills))
    assert min(partial) < len(CHILD_KINDS), "a kill should leave the reconcile half done"
    assert kubectl.get("connectcluster", CLUSTER)["status"]["readyReplicas"] == 1, \
        "the cluster that was running keeps its worker"
    for round_number in range(3):
        kubectl.run("delete", "connector", f"restarted-{round_number}-gen", "--wait=false",
                    check=False)
        kubectl.run("delete", "connectcluster", f"restarted-{round_number}", "--wait=false",
                    check=False)


# -- Kafka away when a worker starts ----------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to the broker while ``up``; refuses connections while
    down (Kafka unreachable for whoever bootstraps through it)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self.server: socket.socket | None = None
        self.threads: list[threading.Thread] = []

    def up(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self.server = server
        thread = threading.Thread(target=self._accept, args=(server,), daemon=True)
        thread.start()

    def down(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def test_worker_started_while_kafka_is_unreachable_recovers(env: Env) -> None:
    kubectl = env.kubectl
    host, port = env.stack["KANAL_BOOTSTRAP_SERVERS"].split(":")
    proxy = TcpProxy((host, int(port)))
    name = "late-kafka"
    kubectl.apply(cluster_manifest(name, f"127.0.0.1:{proxy.port}"))
    wait_for(lambda: kubectl.exists("serviceaccount", f"{name}-connect"), 30, "the account")
    token = service_account_kubeconfig(kubectl, f"{name}-connect", env.tmp / "late.kubeconfig")
    workers = Workers(kubectl, name, env.tmp, token)
    pod = workers.pods(1)[0]
    process = workers.start(pod)
    try:
        time.sleep(20)  # Kafka is unreachable all this while
        status = kubectl.get("connectcluster", name).get("status") or {}
        kept_trying = process.alive
        kanal_lines = [line for line in process.log.read_text(errors="replace").splitlines()
                       if not line.startswith("%")]  # librdkafka's own lines aside
        log(f"worker without Kafka: alive={kept_trying}, cluster Ready={ready(status)}; "
            f"last lines: {kanal_lines[-2:]}")
        assert ready(status) != ("True", "WorkersReady"), "no Kafka, not ready"
        names_brokers = any(f"127.0.0.1:{proxy.port}" in line for line in kanal_lines)
        proxy.up()
        assert kept_trying, "the worker waits for Kafka instead of exiting"
        assert names_brokers, "the worker says which brokers it waits for"
        wait_for(lambda: ready(kubectl.get("connectcluster", name).get("status") or {})
                 == ("True", "WorkersReady"), 120, "the worker to serve once Kafka is back")
    finally:
        workers.stop_all()
        proxy.down()
        kubectl.run("delete", "connectcluster", name, "--wait=false", check=False)
