"""Kanal in real pods: a user's day one on the node of ``dev/stack up node``.

The image of ``make image`` runs as the operator and the workers, started by a real
kubelet through containerd: ``helm install`` of the chart, ``kubectl apply`` of
``examples/kubernetes`` (only the values a user sets for their own cluster change: the
Kafka address, the storage account, the topics), records flowing generator -> Kafka ->
Azure Blob (Azurite) exactly once across killed pods, scaling, a ``helm upgrade`` and
``helm uninstall``. The tests run in order and share one release.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from confluent_kafka import Producer

from dev.kube_local import Kubectl, example, ready, wait_for
from dev.kube_pods import (
    Release,
    connector_tasks,
    pod_diagnosis,
    release,
    tag_image,
    time_failover,
    time_restart,
    wait_pods_ready,
    worker_reports,
)
from kanal_worker.cluster.protocol import task_key

pytest_plugins = ["tests.tools"]
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

CLUSTER = "telemetry"
GENERATOR = "telemetry-generator"
SINK = "azure-blob-sink"
FILE_SINK = "telemetry-file-sink"
CONNECTORS = [GENERATOR, SINK, FILE_SINK]
HOUR = 3_600_000
CLOSINGS = itertools.count(1)
"""Closing readings go ever later hours: each ends the sets the one before opened."""


@dataclass
class Day:
    release: Release
    kubectl: Kubectl
    topic: str
    blobs: ContainerClient
    account_key: str
    kafka: str


@pytest.fixture(scope="module")
def day(helm: Path, azurite: str, kafka: str) -> Iterator[Day]:
    with release(helm, "pods") as installed:
        account = dict(p.split("=", 1) for p in azurite.split(";") if "=" in p)
        container = f"telemetry-{uuid.uuid4().hex[:8]}"
        blobs = BlobServiceClient.from_connection_string(azurite).get_container_client(
            container)
        yield Day(installed, installed.kubectl, f"vehicle.telemetry.{installed.kubectl.namespace}",
                  blobs, account["AccountKey"], kafka)


def worker_pods(day: Day, count: int) -> list[str]:
    return wait_pods_ready(day.kubectl, day.release.workers(CLUSTER), count, 240)


def connector_ready(day: Day, name: str, reason: str = "Running") -> dict[str, object]:
    def check() -> dict[str, object] | None:
        status = day.kubectl.status(name)
        return status if ready(status) == ("True", reason) else None
    found: dict[str, object] = wait_for(check, 120, f"{name} Ready ({reason})", 0.5)
    return found


def blob_sequences(day: Day) -> list[int]:
    """The generator's readings in Azure Blob (closing readings left out)."""
    if not day.blobs.exists():
        return []
    return [seq for blob in day.blobs.list_blobs()
            for line in day.blobs.download_blob(blob.name).readall().splitlines()
            if (seq := orjson.loads(line)["seq"]) >= 0]


def close_open_sets(day: Day) -> None:
    """A reading hours later than any before, in every partition: the sink cuts files
    by count and by record time only (what it keeps exactly once across crashes), so
    the last readings of a stopped generator reach storage only when their file set
    ends, as a new hour's reading ends it."""
    producer = Producer({"bootstrap.servers": day.kafka})
    partitions = producer.list_topics(day.topic, timeout=30).topics[day.topic].partitions
    closing = {"seq": -1, "timestamp": int(time.time() * 1000) + (1000 + next(CLOSINGS)) * HOUR}
    for partition in partitions:
        producer.produce(day.topic, orjson.dumps(closing), partition=partition)
    assert producer.flush(60) == 0


def delivered(day: Day) -> tuple[set[int], list[int]]:
    """Stop the generator, read the offsets of its tasks (what it produced), and wait
    until Azure Blob holds every one of those readings; then run it again. Returns what
    was produced and every reading found in Azure Blob."""
    kubectl = day.kubectl
    kubectl.patch("connector", GENERATOR, {"spec": {"state": "stopped"}})
    connector_ready(day, GENERATOR, "Stopped")
    nonce = uuid.uuid4().hex
    kubectl.patch("connector", GENERATOR,
                  {"spec": {"offsets": {"nonce": nonce, "action": "list"}}})
    listed = wait_for(lambda: (o := kubectl.status(GENERATOR).get("offsets") or {})
                      .get("nonce") == nonce and o.get("state") == "Succeeded" and o, 60,
                      "the generator's offsets")
    ends = {entry["partition"]["task"]: entry["offset"]["next"] for entry in listed["offsets"]}
    expected = {seq for task, end in ends.items() for seq in range(task, end, 2)}
    assert expected
    close_open_sets(day)

    def complete() -> list[int] | None:
        seen = blob_sequences(day)
        return seen if set(seen) >= expected else None
    try:  # a sink task that just moved waits for its consumer group first
        seen: list[int] = wait_for(complete, 180, f"all {len(expected)} readings in Azure "
                                   "Blob", 1)
    except AssertionError as timeout:
        missing = sorted(expected - set(blob_sequences(day)))
        raise AssertionError(f"{timeout}: {len(missing)} missing, from {missing[:10]}; "
                             f"{ {n: kubectl.status(n).get('tasks') for n in CONNECTORS} }"
                             ) from None
    kubectl.patch("connector", GENERATOR, {"spec": {"state": "running"}})
    connector_ready(day, GENERATOR)
    return expected, seen


def assert_exactly_once(day: Day) -> None:
    expected, seen = delivered(day)
    assert len(seen) == len(set(seen)), f"{len(seen) - len(set(seen))} duplicates"
    assert set(seen) == expected


# -- helm install ------------------------------------------------------------------------


def test_helm_install_runs_the_operator_in_a_pod(day: Day) -> None:
    output = day.release.install(day.release.image)
    print(f"\n$ helm install {day.release.name} helm/kanal ...\n{output}")
    for crd in ("connectclusters.kanal.dev", "connectors.kanal.dev"):
        day.kubectl.run("get", "crd", crd)
    (operator,) = day.release.operator_pods()
    pod = Kubectl(day.kubectl.binary, day.kubectl.kubeconfig, day.release.namespace).get(
        "pod", operator)
    assert pod["spec"]["containers"][0]["image"] == day.release.image
    assert pod["status"]["containerStatuses"][0]["ready"] is True


def test_a_cluster_whose_image_does_not_exist_says_why_it_is_not_ready(day: Day) -> None:
    kubectl = day.kubectl
    cluster = day.release.cluster("no-image", 1, {})
    cluster["spec"]["image"] = "kanal:does-not-exist"
    kubectl.apply(cluster)

    def not_ready() -> dict[str, str] | None:
        status = kubectl.get("connectcluster", "no-image").get("status") or {}
        condition = next((c for c in status.get("conditions") or []
                          if c["type"] == "Ready"), None)
        return condition if condition and condition["reason"] == "ErrImageNeverPull" else None
    condition = wait_for(not_ready, 120, "Ready=False naming the missing image", 1)
    assert condition["status"] == "False"
    assert 'image "kanal:does-not-exist" is not present' in condition["message"]
    diagnosis = pod_diagnosis(kubectl, day.release.workers("no-image"))
    assert "ErrImageNeverPull" in diagnosis and "dev/stack run node import" in diagnosis
    kubectl.run("delete", "connectcluster", "no-image", "--timeout", "60s")


# -- the examples ------------------------------------------------------------------------


def test_examples_run_in_worker_pods_and_records_arrive_exactly_once(day: Day) -> None:
    kubectl = day.kubectl
    kubectl.run("create", "secret", "generic", "azure-credentials",
                f"--from-literal=account-key={day.account_key}")
    cluster = day.release.cluster(CLUSTER, 2, {"offset.flush.interval.ms": 1000,
                                               "exactly.once.source.support": "enabled"})
    generator = example("telemetry-generator.yaml")
    generator["spec"]["config"].update(topic=day.topic, rate=100)
    sink = example("azure-blob-sink.yaml")
    sink["spec"]["config"].update({
        "topics": day.topic, "azblob.account.name": "devstoreaccount1",
        "store.url": day.release.node["KANAL_NODE_AZURITE_BLOB_ENDPOINT"],
        "azblob.container.name": day.blobs.container_name, "flush.size": 500,
        # exactly once across crashes and zombie pods needs the cuts of a replay to fall
        # where the first run's did: by count and record time, not the wall clock
        "rotate.schedule.interval.ms": -1, "rotate.interval.ms": HOUR,
        "errors.deadletterqueue.topic.name": f"{day.topic}.dlq"})
    file_sink = example("file-sink.yaml")
    file_sink["spec"]["config"].update(topics=day.topic)
    kubectl.apply(cluster, generator, sink, file_sink)
    pods = worker_pods(day, 2)
    for name in CONNECTORS:
        connector_ready(day, name)
    table = kubectl.run("get", "connectors").stdout
    print(f"\n$ kubectl get connectors\n{table}")
    header, *rows = [line.split() for line in table.splitlines()]
    assert header == ["NAME", "CLUSTER", "CLASS", "STATE", "TASKS", "AGE"]
    for name, cluster_name, _, state, tasks, _ in rows:
        status = kubectl.status(name)
        assert (cluster_name, state, tasks) == (CLUSTER, status["state"], status["taskSummary"])
        assert state == "RUNNING"
        assert {worker for _, worker in connector_tasks(kubectl, name)} <= set(pods)
    try:
        wait_for(lambda: len(blob_sequences(day)) >= 1000, 120, "readings in Azure Blob", 1)
    except AssertionError as timeout:
        statuses = {name: kubectl.status(name) for name in CONNECTORS}
        raise AssertionError(f"{timeout}\n{statuses}\n"
                             f"{pod_diagnosis(kubectl, day.release.workers(CLUSTER))}") from None
    assert_exactly_once(day)


# -- failover ----------------------------------------------------------------------------


def test_a_sigkilled_worker_process_s_tasks_run_again(day: Day) -> None:
    """The worker process in its container is SIGKILLed from outside (as the kernel's
    OOM killer would): the kubelet restarts the container in place, under the same pod
    name, and its tasks run again, there or on the other pod."""
    kubectl = day.kubectl
    victim = next(worker for _, worker in connector_tasks(kubectl, SINK) if worker)
    pid = day.release.container_pid(victim)
    elapsed, workers = time_restart(kubectl, CLUSTER, victim,
                                    lambda: os.kill(pid, signal.SIGKILL))
    print(f"\nFAILOVER: worker process of pod {victim} SIGKILLed; its tasks RUNNING again "
          f"(on {', '.join(sorted(workers))}) after {elapsed:.1f}s")
    status = wait_for(lambda: (s := kubectl.get("pod", victim)["status"]
                               ["containerStatuses"][0])["restartCount"] >= 1 and s, 60,
                      f"the kubelet restarting {victim}'s container")
    assert status["lastState"]["terminated"]["exitCode"] == 137  # killed by SIGKILL
    worker_pods(day, 2)
    assert_exactly_once(day)


# -- scale -------------------------------------------------------------------------------


def test_scaling_the_cluster_spreads_tasks_and_brings_them_back(day: Day) -> None:
    kubectl = day.kubectl
    kubectl.run("scale", "connectcluster", CLUSTER, "--replicas=3")
    pods = worker_pods(day, 3)

    def spread() -> bool:
        workers = {w for name in CONNECTORS for state, w in connector_tasks(kubectl, name)
                   if state == "RUNNING"}
        return workers == set(pods)
    wait_for(spread, 120, "tasks on all 3 worker pods", 0.5)
    kubectl.run("scale", "connectcluster", CLUSTER, "--replicas=2")
    pods = worker_pods(day, 2)

    def back() -> bool:
        return all({state for state, _ in connector_tasks(kubectl, name)} == {"RUNNING"} and
                   {w for _, w in connector_tasks(kubectl, name)} <= set(pods)
                   for name in CONNECTORS)
    wait_for(back, 120, "every task RUNNING on the 2 remaining pods", 0.5)
    assert_exactly_once(day)


# -- helm upgrade --------------------------------------------------------------------------


def test_an_operator_restart_restarts_no_task(day: Day) -> None:
    operator = Kubectl(day.kubectl.binary, day.kubectl.kubeconfig, day.release.namespace)
    (before,) = day.release.operator_pods()
    runs = wait_for(lambda: settled_runs(day), 60, "every task running where assigned", 1)
    operator.run("rollout", "restart", "deployment", f"{day.release.name}-operator")
    wait_for(lambda: day.release.operator_pods() != [before], 180, "a new operator pod", 1)
    for name in CONNECTORS:
        connector_ready(day, name)
    assert task_runs(day) == runs


def task_runs(day: Day) -> dict[tuple[str, int], tuple[str, str]]:
    """Each task's run (its token: a new one restarts the task) and its worker."""
    return {(name, task["id"]): (task["token"], task["worker"]) for name in CONNECTORS
            for task in day.kubectl.status(name)["tasks"]}


def settled_runs(day: Day) -> dict[tuple[str, int], tuple[str, str]] | None:
    """``task_runs`` once every task runs, with its token, on the worker it is assigned
    to, as that worker reports (the status may lag behind a move)."""
    runs = task_runs(day)
    reports = worker_reports(day.kubectl, CLUSTER)
    for (name, task), (token, worker) in runs.items():
        report = reports.get(worker)
        found = report.tasks.get(task_key(name, task)) if report else None
        if found is None or found.state != "RUNNING" or found.token != token:
            return None
    return runs


def test_helm_upgrade_to_a_new_image_tag_restarts_pods_and_keeps_records_exactly_once(
        day: Day) -> None:
    kubectl = day.kubectl
    before = {p["metadata"]["uid"] for p in kubectl.get(
        "pods", selector=day.release.workers(CLUSTER))["items"]}
    upgraded = tag_image(day.release.image, f"upgrade-{uuid.uuid4().hex[:6]}")
    print(day.release.install(upgraded))
    day.release.operator_pods()

    def rolled() -> bool:
        pods = kubectl.get("pods", selector=day.release.workers(CLUSTER))["items"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        return len(live) == 2 and all(
            p["spec"]["containers"][0]["image"] == upgraded and
            p["metadata"]["uid"] not in before for p in live)
    wait_for(rolled, 240, "the worker pods rolled to the new image", 1)
    worker_pods(day, 2)
    for name in CONNECTORS:
        connector_ready(day, name)
    assert_exactly_once(day)


# -- pod security --------------------------------------------------------------------------


def test_pods_run_unprivileged_as_non_root_on_a_read_only_root(day: Day) -> None:
    kubectl = day.kubectl
    operator = Kubectl(kubectl.binary, kubectl.kubeconfig, day.release.namespace)
    pods = [(operator, operator.get("pods")["items"][0]["metadata"]["name"]),
            (kubectl, worker_pods(day, 2)[0])]
    for where, pod in pods:
        identity = where.run("exec", pod, "--", "id", "-u").stdout.strip()
        assert identity != "0"
        status = where.run("exec", pod, "--", "cat", "/proc/1/status").stdout
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        assert fields["CapEff"].strip() == "0000000000000000", fields["CapEff"]
        assert fields["NoNewPrivs"].strip() == "1"
        written = where.run("exec", pod, "--", "touch", "/kanal-written", check=False)
        assert written.returncode != 0 and "Read-only file system" in written.stderr


# -- secrets -------------------------------------------------------------------------------


def test_a_changed_secret_reaches_the_running_task_and_never_shows(day: Day) -> None:
    kubectl = day.kubectl
    first, second = (f"/tmp/canary-{uuid.uuid4().hex}.jsonl" for _ in range(2))
    kubectl.run("create", "secret", "generic", "sink-target", f"--from-literal=path={first}")
    sink = example("file-sink.yaml")
    sink["metadata"]["name"] = "secret-sink"
    sink["spec"]["config"].update(topics=day.topic, file="${secret:sink-target:path}")
    kubectl.apply(sink)
    connector_ready(day, "secret-sink")

    def written(path: str) -> bool:
        workers = {w for _, w in connector_tasks(kubectl, "secret-sink") if w}
        return any(kubectl.run("exec", pod, "--", "test", "-s", path,
                               check=False).returncode == 0 for pod in workers)
    wait_for(lambda: written(first), 60, f"the task in its pod writing {first}", 1)
    kubectl.patch("secret", "sink-target", {"stringData": {"path": second}})
    wait_for(lambda: written(second), 90, "the changed Secret reaching the running task", 1)
    shown = [kubectl.run("describe", "connectors").stdout,
             kubectl.run("get", "connectors", "-o", "json").stdout,
             kubectl.run("get", "events", "-o", "json").stdout]
    for namespace in (kubectl, Kubectl(kubectl.binary, kubectl.kubeconfig,
                                       day.release.namespace)):
        for pod in namespace.get("pods")["items"]:
            shown.append(namespace.run("logs", pod["metadata"]["name"], "--all-containers",
                                       check=False).stdout)
    for secret in (first, second, day.account_key):
        assert not [text for text in shown if secret in text]
    kubectl.run("delete", "connector", "secret-sink", "--timeout", "60s")


def test_a_force_deleted_worker_pod_s_tasks_run_on_the_other_pod(day: Day) -> None:
    """A force-deleted pod's container may still run for a moment (the API object is
    gone before the kubelet stopped it): whatever it still writes, it writes under the
    names and with the contents its successor writes, so every record is there once."""
    kubectl = day.kubectl
    victim = next(worker for _, worker in connector_tasks(kubectl, SINK) if worker)
    elapsed = time_failover(kubectl, CONNECTORS, victim, lambda: kubectl.run(
        "delete", "pod", victim, "--grace-period=0", "--force"))
    print(f"\nFAILOVER: pod {victim} force-deleted; its tasks RUNNING on the other pod "
          f"after {elapsed:.1f}s")
    worker_pods(day, 2)  # the Deployment's replacement
    assert_exactly_once(day)


# -- helm uninstall ------------------------------------------------------------------------


def test_helm_uninstall_keeps_the_crds_and_removes_the_workloads(day: Day) -> None:
    kubectl = day.kubectl
    operator = Kubectl(kubectl.binary, kubectl.kubeconfig, day.release.namespace)
    print(day.release.helm_run("uninstall", day.release.name, "--wait", "--timeout", "120s"))
    wait_for(lambda: not operator.get("pods")["items"], 120, "the operator pod gone", 1)
    assert not operator.get("deployments")["items"]
    for crd in ("connectclusters.kanal.dev", "connectors.kanal.dev"):
        kubectl.run("get", "crd", crd)
    assert kubectl.get("connectors")["items"]  # the user's resources stay with the CRDs
