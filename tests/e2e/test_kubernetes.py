"""Kanal on a real kube-apiserver (etcd, RBAC, kube-controller-manager) and real Kafka.

The operator and the workers run here as processes (there is no kubelet): workers take
the names and uids of the Pods the Deployment gets, and authenticate with their
ServiceAccount's token, so the Role the operator writes is what they really have.
The tests run in order and share one ConnectCluster, like an operator's day.
"""

from __future__ import annotations

import copy
import json
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from azure.storage.blob import BlobServiceClient
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient, NewTopic

from dev.kube_local import (
    Kubectl,
    Process,
    Workers,
    example,
    local_cluster,
    ready,
    task_states,
    wait_for,
)
from kanal_worker.connectors.telemetry import reading
from tests.kafka_helpers import produce

pytestmark = pytest.mark.e2e

CLUSTER = "telemetry"
CHILD = f"{CLUSTER}-connect"
START = 1_714_543_200_000  # 2024-05-01T06:00Z: one hourly folder
GENERATOR = "telemetry-generator"
SINK = "telemetry-file-sink"


@dataclass
class Env:
    kubectl: Kubectl
    workers: Workers
    operator: Process
    tmp: Path
    kafka: str
    topic: str
    sink_file: Path
    controller_manager: bool
    """Whether kube-controller-manager runs (it made real Pods for the Deployment)."""


@pytest.fixture(scope="module")
def env(kube: dict[str, str], kafka: str,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("kubernetes")
    namespace = f"kanal-e2e-{uuid.uuid4().hex[:6]}"
    topic = f"vehicle.telemetry.{namespace}"
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    with local_cluster(kube, kafka, tmp, CLUSTER, namespace=namespace,
                       worker_config={"offset.flush.interval.ms": 1000},
                       show_logs=True) as cluster:
        yield Env(cluster.kubectl, cluster.workers, cluster.operator, tmp, kafka, topic,
                  tmp / "telemetry.jsonl", cluster.controller_manager)


def connector_ready(env: Env, name: str, reason: str = "Running") -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status = env.kubectl.status(name)
        return status if ready(status) == ("True", reason) else None
    found: dict[str, Any] = wait_for(check, 90, f"{name} Ready ({reason})")
    return found


def sequences(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [orjson.loads(line)["seq"] for line in path.read_bytes().splitlines() if line]


# -- the API server guards the contract --------------------------------------------------


def test_invalid_manifests_are_rejected_with_a_readable_message(env: Env) -> None:
    bad = example("file-sink.yaml")
    bad["metadata"]["name"] = "bad"
    bad["spec"].update(tasksMax=0, state="runing")
    result = env.kubectl.apply(bad, check=False)
    assert result.returncode != 0
    assert "spec.tasksMax" in result.stderr and "greater than or equal to 1" in result.stderr
    assert 'Unsupported value: "runing"' in result.stderr
    duplicated = example("file-sink.yaml")
    duplicated["metadata"]["name"] = "duplicated"
    duplicated["spec"]["config"]["connector.class"] = "FileStreamSink"
    result = env.kubectl.apply(duplicated, check=False)
    assert "set the connector class in spec.class" in result.stderr
    cluster = example("cluster.yaml")
    del cluster["spec"]["bootstrapServers"]
    cluster["metadata"]["name"] = "x" * 56
    result = env.kubectl.apply(cluster, check=False)
    assert "spec.bootstrapServers: Required value" in result.stderr


def test_connect_cluster_creates_owned_workloads(env: Env) -> None:
    kubectl = env.kubectl
    owner = kubectl.get("connectcluster", CLUSTER)
    for kind in ("deployment", "service", "configmap", "serviceaccount", "role",
                 "rolebinding", "poddisruptionbudget"):
        child = kubectl.get(kind, CHILD)
        assert child["metadata"]["labels"]["kanal.dev/cluster"] == CLUSTER
        references = child["metadata"]["ownerReferences"]
        assert [(r["kind"], r["name"], r["uid"], r["controller"]) for r in references] == \
            [("ConnectCluster", CLUSTER, owner["metadata"]["uid"], True)]
    service = kubectl.get("service", CHILD)
    assert {p["port"] for p in service["spec"]["ports"]} == {8083, 9404}
    container = kubectl.get("deployment", CHILD)["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["kanal", "worker"]
    assert {e["name"] for e in container["env"]} >= {"POD_NAME", "POD_NAMESPACE"}
    status = kubectl.get("connectcluster", CLUSTER)["status"]
    assert status["readyReplicas"] == 2
    assert sorted(status["workers"]) == sorted(name for name, _ in env.workers)
    assert "org.apache.kafka.connect.file.FileStreamSinkConnector" in \
        {p["class"] for p in status["plugins"]}
    assert status["observedGeneration"] == owner["metadata"]["generation"]
    scale = json.loads(kubectl.run(
        "get", "--raw", f"/apis/kanal.dev/v1alpha1/namespaces/{kubectl.namespace}/"
        f"connectclusters/{CLUSTER}/scale").stdout)
    assert scale["spec"]["replicas"] == 2 and "kanal.dev/cluster" in scale["status"]["selector"]


# -- a pipeline ---------------------------------------------------------------------------


def test_records_flow_from_generator_to_file(env: Env) -> None:
    generator = example("telemetry-generator.yaml")
    generator["spec"]["config"].update(topic=env.topic, rate=100)
    sink = example("file-sink.yaml")
    sink["spec"]["tasksMax"] = 2
    sink["spec"]["config"].update(topics=env.topic, file=str(env.sink_file))
    env.kubectl.apply(generator, sink)
    for name in (GENERATOR, SINK):
        status = connector_ready(env, name)
        assert status["taskSummary"] == "2/2"
        assert {state for state, _ in task_states(status)} == {"RUNNING"}
        assert {worker for _, worker in task_states(status)} == \
            {name for name, _ in env.workers}  # balanced: one task per worker
    wait_for(lambda: set(range(1000)) <= set(sequences(env.sink_file)), 60,
             "the first 1000 readings in the file")
    table = env.kubectl.run("get", "connectors").stdout
    assert table.split()[:6] == ["NAME", "CLUSTER", "CLASS", "STATE", "TASKS", "AGE"]
    assert "RUNNING" in table and "2/2" in table


def test_a_killed_worker_s_tasks_run_elsewhere_within_seconds(env: Env) -> None:
    sink = env.kubectl.status(SINK)
    victim = next(worker for _, worker in task_states(sink) if worker)
    process = env.workers.processes[victim]
    started = time.monotonic()
    process.stop(signal.SIGKILL)

    def moved() -> bool:
        states = [s for name in (GENERATOR, SINK) for s in task_states(env.kubectl.status(name))]
        return all(state == "RUNNING" and worker not in (None, victim)
                   for state, worker in states)
    wait_for(moved, 60, "the tasks of the killed worker RUNNING elsewhere", interval=0.1)
    elapsed = time.monotonic() - started
    print(f"\nFAILOVER: tasks of SIGKILLed worker {victim} RUNNING elsewhere after "
          f"{elapsed:.1f}s")
    assert elapsed < 30
    events = env.kubectl.run("get", "events", "--field-selector",
                             f"involvedObject.name={SINK}").stdout
    assert "TaskReassigned" in events
    env.workers.start(next(p for p in env.workers.pods(2) if p.name == victim))

    def rebalanced() -> bool:  # the restarted worker gets its share back
        return all({state for state, _ in task_states(s)} == {"RUNNING"} and
                   len({worker for _, worker in task_states(s)}) == 2
                   for s in (env.kubectl.status(GENERATOR), env.kubectl.status(SINK)))
    wait_for(rebalanced, 90, "one task of each connector per worker again")
    # no reading is lost: stop the source, ask for its offsets, compare with the file
    env.kubectl.patch("connector", GENERATOR, {"spec": {"state": "stopped"}})
    connector_ready(env, GENERATOR, "Stopped")
    nonce = uuid.uuid4().hex
    env.kubectl.patch("connector", GENERATOR,
                      {"spec": {"offsets": {"nonce": nonce, "action": "list"}}})
    listed = wait_for(lambda: (o := env.kubectl.status(GENERATOR).get("offsets") or {})
                      .get("nonce") == nonce and o.get("state") == "Succeeded" and o, 60,
                      "the source offsets")
    ends = {entry["partition"]["task"]: entry["offset"]["next"] for entry in listed["offsets"]}
    expected = {seq for task, end in ends.items() for seq in range(task, end, 2)}
    wait_for(lambda: expected <= set(sequences(env.sink_file)), 60,
             "every produced reading in the file")
    seen = sequences(env.sink_file)
    print(f"FAILOVER: {len(expected)} readings produced, {len(seen) - len(set(seen))} "
          "duplicates in the (at-least-once) file sink")


def group_settled(env: Env, group: str) -> bool:
    """The sink's consumer group is stable with one partition per task (the group may
    still move partitions for a few seconds after its tasks moved between workers)."""
    admin = AdminClient({"bootstrap.servers": env.kafka})
    described = admin.describe_consumer_groups([group])[group].result(10)
    assigned = [len(m.assignment.topic_partitions) for m in described.members]
    return bool(described.state == ConsumerGroupState.STABLE and assigned == [1, 1])


def test_pause_resume_and_stop(env: Env) -> None:
    kubectl = env.kubectl
    kubectl.patch("connector", GENERATOR, {"spec": {"state": "running"}})
    connector_ready(env, GENERATOR)
    wait_for(lambda: group_settled(env, f"connect-{SINK}"), 60, "a settled consumer group",
             interval=1)
    kubectl.patch("connector", SINK, {"spec": {"state": "paused"}})
    status = connector_ready(env, SINK, "Paused")
    assert status["state"] == "PAUSED"
    assert {state for state, _ in task_states(status)} == {"PAUSED"}
    time.sleep(2)
    size = env.sink_file.stat().st_size
    time.sleep(3)
    assert env.sink_file.stat().st_size == size  # paused: nothing written
    kubectl.patch("connector", SINK, {"spec": {"state": "running"}})
    connector_ready(env, SINK)
    wait_for(lambda: env.sink_file.stat().st_size > size, 30, "the file to grow again")
    kubectl.patch("connector", SINK, {"spec": {"state": "stopped"}})
    status = connector_ready(env, SINK, "Stopped")
    assert (status["state"], status["taskSummary"], status.get("tasks")) == \
        ("STOPPED", "0/0", None)
    kubectl.patch("connector", SINK, {"spec": {"state": "running"}})
    connector_ready(env, SINK)


def test_restart_through_a_nonce_happens_once(env: Env) -> None:
    before = {t["id"]: t for t in env.kubectl.status(SINK)["tasks"]}
    env.kubectl.patch("connector", SINK,
                      {"spec": {"restart": {"nonce": "first", "includeTasks": True}}})

    def restarted() -> dict[str, Any] | None:
        status = env.kubectl.status(SINK)
        done = (status.get("restart") or {}).get("nonce") == "first" and \
            ready(status) == ("True", "Running")
        return status if done else None
    status = wait_for(restarted, 60, "the restart")
    assert status["restart"]["tasks"] == [0, 1]
    assert [t["epoch"] for t in status["tasks"]] == [before[t["id"]]["epoch"] + 1
                                                     for t in status["tasks"]]
    env.kubectl.apply(env.kubectl.get("connector", SINK))  # re-applying changes nothing
    time.sleep(2)
    assert [t["epoch"] for t in env.kubectl.status(SINK)["tasks"]] == \
        [t["epoch"] for t in status["tasks"]]


def test_a_restarted_operator_restarts_no_task(env: Env) -> None:
    before = {name: env.kubectl.status(name)["tasks"] for name in (GENERATOR, SINK)}

    def stops() -> int:
        return sum(p.log.read_text(errors="replace").count("stops here")
                   for _, p in env.workers)
    stopped = stops()
    env.operator.stop(signal.SIGKILL)
    env.operator.start()
    time.sleep(10)  # several reconciles of every connector
    assert stops() == stopped  # no task was stopped, not even for a moment
    for name, tasks in before.items():
        status = env.kubectl.status(name)
        assert ready(status) == ("True", "Running")
        assert [(t["worker"], t["token"]) for t in status["tasks"]] == \
            [(t["worker"], t["token"]) for t in tasks]


def test_an_invalid_configuration_is_reported_not_crash_looped(env: Env) -> None:
    broken = example("file-sink.yaml")
    broken["metadata"]["name"] = "broken"
    broken["spec"]["config"] = {"topics": env.topic, "errors.tolerance": "maybe"}
    env.kubectl.apply(broken)
    status = wait_for(lambda: (s := env.kubectl.status("broken")) and
                      ready(s) == ("False", "InvalidConfiguration") and s, 60,
                      "InvalidConfiguration")
    assert {e["key"] for e in status["errors"]} == {"errors.tolerance"}
    assert status.get("tasks") is None
    assert env.operator.alive
    assert ready(env.kubectl.status(SINK)) == ("True", "Running")  # others unaffected
    env.kubectl.run("delete", "connector", "broken")


def test_a_failed_task_runs_again_once_its_configuration_is_fixed(env: Env) -> None:
    """What a GitOps revert does: a change that makes the task FAIL, then the previous
    configuration applied again; the task runs again under it."""
    good = example("file-sink.yaml")
    good["metadata"]["name"] = "reverted"
    good["spec"]["config"].update(topics=env.topic, file=str(env.tmp / "reverted.jsonl"))
    env.kubectl.apply(good)
    connector_ready(env, "reverted")
    folder = env.tmp / "a-folder"  # valid (it exists, it is writable); opening it fails
    folder.mkdir()
    broken = copy.deepcopy(good)
    broken["spec"]["config"]["file"] = str(folder)
    env.kubectl.apply(broken)
    # as long as a GitOps tool takes to notice: the operator restarted it meanwhile
    wait_for(lambda: any(task["restarts"] >= 2 and task["state"] == "FAILED"
                         for task in env.kubectl.status("reverted").get("tasks") or []),
             90, "the task to FAIL after two automatic restarts")
    env.kubectl.apply(good)
    try:
        status = connector_ready(env, "reverted")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {env.kubectl.status('reverted')}") from None
    assert {state for state, _ in task_states(status)} == {"RUNNING"}
    env.kubectl.run("delete", "connector", "reverted")


def test_secrets_are_read_by_workers_only_and_rotation_reaches_tasks(env: Env) -> None:
    kubectl = env.kubectl
    first, second = env.tmp / "secret-a.jsonl", env.tmp / "secret-b.jsonl"
    kubectl.run("create", "secret", "generic", "sink-target",
                f"--from-literal=path={first}")
    sink = example("file-sink.yaml")
    sink["metadata"]["name"] = "secret-sink"
    sink["spec"]["config"].update(topics=env.topic, file="${secret:sink-target:path}")
    kubectl.apply(sink)
    connector_ready(env, "secret-sink")
    assert kubectl.get("role", CHILD)["rules"][-1]["resourceNames"] == ["sink-target"]
    wait_for(lambda: first.exists() and first.stat().st_size > 0, 60, "the first file")
    text = json.dumps(kubectl.get("connector", "secret-sink")) + \
        kubectl.run("get", "events").stdout
    assert str(first) not in text  # the placeholder only, never the value
    kubectl.patch("secret", "sink-target", {"stringData": {"path": str(second)}})
    wait_for(lambda: second.exists() and second.stat().st_size > 0, 60,
             "the rotated Secret to reach the task")


def test_offsets_of_a_stopped_connector_are_altered_and_reset(env: Env) -> None:
    kubectl = env.kubectl

    def request(name: str, action: str, **extra: Any) -> dict[str, Any]:
        nonce = uuid.uuid4().hex
        kubectl.patch("connector", name, {"spec": {"offsets": {
            "nonce": nonce, "action": action, **extra}}})
        result: dict[str, Any] = wait_for(
            lambda: (o := kubectl.status(name).get("offsets") or {}).get("nonce") == nonce
            and o.get("state") in ("Succeeded", "Failed") and o, 90, f"offsets {action}")
        return result

    running = request(GENERATOR, "reset")
    assert running["state"] == "Failed" and "stopped" in running["message"]
    kubectl.patch("connector", GENERATOR, {"spec": {"state": "stopped"}})
    connector_ready(env, GENERATOR, "Stopped")
    partition = {"generator": "vehicle-telemetry", "task": 0}
    altered = request(GENERATOR, "alter", offsets=[
        {"partition": partition, "offset": {"next": 0, "start": 1}}])
    assert altered["state"] == "Succeeded", altered
    listed = request(GENERATOR, "list")
    assert {"partition": partition, "offset": {"next": 0, "start": 1}} in listed["offsets"]
    assert request(GENERATOR, "reset")["state"] == "Succeeded"
    assert request(GENERATOR, "list").get("offsets") is None
    kubectl.patch("connector", SINK, {"spec": {"state": "stopped"}})
    connector_ready(env, SINK, "Stopped")
    sink_offsets = request(SINK, "list")["offsets"]
    # the group is connect-<name>: names are unique per Kafka cluster, as in Kafka Connect
    assert env.topic in {o["partition"]["kafka_topic"] for o in sink_offsets}
    reset = request(SINK, "reset")  # waits for the static members' sessions to end
    assert reset["state"] == "Succeeded", reset
    assert request(SINK, "list").get("offsets") is None


def test_rest_api_acts_on_connector_resources(env: Env) -> None:
    url = next(p.url for _, p in env.workers if p.alive)
    with httpx.Client(base_url=url, timeout=30) as rest:
        assert GENERATOR in rest.get("/connectors").json()
        created = rest.post("/connectors", json={"name": "rest-sink", "config": {
            "connector.class": "FileStreamSink", "tasks.max": "1", "topics": env.topic,
            "file": str(env.tmp / "rest.jsonl")}})
        assert created.status_code == 201, created.text
        made = env.kubectl.get("connector", "rest-sink")
        assert made["spec"]["clusterRef"]["name"] == CLUSTER
        assert made["spec"]["class"] == "FileStreamSink"
        connector_ready(env, "rest-sink")
        status = rest.get("/connectors/rest-sink/status").json()
        assert status["tasks"][0]["state"] == "RUNNING"
        assert rest.put("/connectors/rest-sink/pause").status_code == 202
        assert env.kubectl.get("connector", "rest-sink")["spec"]["state"] == "paused"
        assert rest.delete("/connectors/rest-sink").status_code == 204
    wait_for(lambda: not env.kubectl.exists("connector", "rest-sink"), 60, "deletion")


def test_azure_blob_sink_example_is_exactly_once_across_a_failover(
        env: Env, azurite: str) -> None:
    """The seed's pipeline from examples/kubernetes/azure-blob-sink.yaml, its account key
    in a Secret; a worker is SIGKILLed mid-run and no record is lost or duplicated."""
    kubectl = env.kubectl
    account = dict(p.split("=", 1) for p in azurite.split(";") if "=" in p)
    kubectl.run("create", "secret", "generic", "azure-credentials",
                f"--from-literal=account-key={account['AccountKey']}")
    topic = f"vehicle.speeding.{kubectl.namespace}"
    admin = AdminClient({"bootstrap.servers": env.kafka})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    per_partition = 5000  # a multiple of flush.size: every file completes
    for partition in (0, 1):
        produce(env.kafka, topic, [orjson.dumps({**reading(7, seq, 10, START, 100),
                                                 "partition": partition})
                                   for seq in range(per_partition)], partition=partition)
    sink = example("azure-blob-sink.yaml")
    container = f"telemetry-{uuid.uuid4().hex[:8]}"
    sink["spec"]["config"].update({
        "topics": topic, "azblob.account.name": account["AccountName"],
        "store.url": account["BlobEndpoint"], "azblob.container.name": container,
        "flush.size": 500, "errors.deadletterqueue.topic.name": f"{topic}.dlq",
        # The example's wall-clock rotation is at-least-once after a crash (a slow run
        # may cut a file before the kill and the replay elsewhere): files end by count.
        "rotate.schedule.interval.ms": -1})
    kubectl.apply(sink)
    status = connector_ready(env, "azure-blob-sink")
    assert "account-key" not in json.dumps(status) and account["AccountKey"] not in \
        json.dumps(kubectl.get("connector", "azure-blob-sink"))
    blobs = BlobServiceClient.from_connection_string(azurite).get_container_client(container)

    def written() -> list[bytes]:
        if not blobs.exists():
            return []
        return [blobs.download_blob(b.name).readall() for b in blobs.list_blobs()]
    wait_for(lambda: len(written()) >= 2, 60, "the first files")
    victim = next(worker for _, worker in task_states(status) if worker)
    env.workers.processes[victim].stop(signal.SIGKILL)
    wait_for(lambda: sum(data.count(b"\n") for data in written()) >= 2 * per_partition, 120,
             "every record in a file")
    time.sleep(3)  # a straggling duplicate would show up now
    records = [orjson.loads(line) for data in written() for line in data.splitlines()]
    keys = [(r["partition"], r["seq"]) for r in records]
    assert len(keys) == len(set(keys)), "duplicates"
    assert set(keys) == {(p, s) for p in (0, 1) for s in range(per_partition)}, "losses"
    env.workers.start(next(p for p in env.workers.pods(2) if p.name == victim))
    kubectl.run("delete", "connector", "azure-blob-sink", "--timeout", "60s")


def test_deleting_a_connector_stops_its_tasks(env: Env) -> None:
    env.kubectl.run("delete", "connector", "secret-sink", "--timeout", "60s")
    leases = env.kubectl.get("leases", selector=f"kanal.dev/cluster={CLUSTER}")["items"]
    reports = [lease["metadata"]["annotations"]["kanal.dev/report"] for lease in leases]
    assert leases and not any('"secret-sink/' in report for report in reports)


def test_deleting_the_cluster_cascades(env: Env) -> None:
    kubectl = env.kubectl
    kubectl.run("delete", "connectcluster", CLUSTER, "--timeout", "60s")
    status = wait_for(lambda: (s := kubectl.status(SINK)) and
                      ready(s) == ("False", "ClusterNotFound") and s, 60, "ClusterNotFound")
    assert status["state"] == "UNASSIGNED"
    if env.controller_manager:  # its garbage collector follows the ownerReferences
        wait_for(lambda: not any(kubectl.exists(kind, CHILD) for kind in (
            "deployment", "service", "configmap", "role", "poddisruptionbudget")), 90,
            "the children to be collected")
    else:  # no garbage collector here: the ownerReferences are what makes it happen
        references = kubectl.get("deployment", CHILD)["metadata"]["ownerReferences"]
        assert references[0]["kind"] == "ConnectCluster"
