"""Manifests of a ConnectCluster's workers: shapes, ownership, least privilege."""

from __future__ import annotations

from kanal_operator.builders import (
    Cluster,
    children,
    config_hash,
    config_map,
    deployment,
    role,
    selector,
    worker_properties,
)
from kanal_operator.models import ConnectClusterSpec
from kanal_worker.config.properties import parse_properties


def cluster(**spec: object) -> Cluster:
    values = {"bootstrapServers": "kafka:9092", **spec}
    return Cluster("telemetry", "data", "uid-1", ConnectClusterSpec.model_validate(values),
                   "kanal:test")


def test_every_child_is_owned_labelled_and_named_after_the_cluster() -> None:
    manifests = children(cluster(), ["azure-credentials"])
    kinds = [m["kind"] for m in manifests]
    assert kinds == ["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment",
                     "Service", "PodDisruptionBudget"]
    for manifest in manifests:
        metadata = manifest["metadata"]
        assert metadata["name"] == "telemetry-connect"
        assert metadata["namespace"] == "data"
        assert metadata["labels"]["kanal.dev/cluster"] == "telemetry"
        assert metadata["ownerReferences"] == [{
            "apiVersion": "kanal.dev/v1alpha1", "kind": "ConnectCluster", "name": "telemetry",
            "uid": "uid-1", "controller": True, "blockOwnerDeletion": True}]


def test_deployment_runs_kanal_worker_with_the_pod_identity() -> None:
    manifest = deployment(cluster(replicas=3), "abc")
    spec = manifest["spec"]
    assert spec["replicas"] == 3
    pod = spec["template"]
    assert pod["metadata"]["annotations"] == {"kanal.dev/config-hash": "abc"}
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    container = pod["spec"]["containers"][0]
    assert container["image"] == "kanal:test"
    assert container["command"][:2] == ["kanal", "worker"]
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", e.get("value"))
           for e in container["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace",
                   "POD_UID": "metadata.uid", "KANAL_CLUSTER": "telemetry"}
    assert {p["containerPort"] for p in container["ports"]} == {8083, 9404}
    assert pod["spec"]["serviceAccountName"] == "telemetry-connect"


def test_worker_configuration_keeps_secrets_as_placeholders() -> None:
    props = worker_properties(cluster(
        config={"offset.flush.interval.ms": 5000, "key.converter": "StringConverter"},
        kafka={"securityProtocol": "SASL_SSL",
               "tls": {"caSecret": {"name": "kafka-ca", "key": "ca.crt"}},
               "sasl": {"mechanism": "SCRAM-SHA-512", "username": "kanal",
                        "passwordSecret": {"name": "kafka-user", "key": "password"}}}))
    assert props["bootstrap.servers"] == "kafka:9092"
    assert props["offset.flush.interval.ms"] == "5000"
    assert props["offset.storage.topic"] == "kanal-data-telemetry-offsets"
    assert props["sasl.password"] == "${secret:kafka-user:password}"
    assert props["ssl.ca.location"] == "/etc/kanal/kafka-ca/ca.crt"
    text = config_map(cluster())["data"]["worker.properties"]
    assert parse_properties(text)["listeners"] == "http://0.0.0.0:8083"


def test_role_grants_only_the_referenced_secrets() -> None:
    rules = role(cluster(), ["b", "a", "a"])["rules"]
    secrets = [r for r in rules if r["resources"] == ["secrets"]]
    assert secrets == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                        "resourceNames": ["a", "b"]}]
    assert not any("status" in r for rule in rules for r in rule["resources"])
    # without references no Secret rule at all: empty resourceNames would mean every Secret
    assert all(r["resources"] != ["secrets"] for r in role(cluster(), [])["rules"])
    sasl = cluster(kafka={"securityProtocol": "SASL_PLAINTEXT", "sasl": {
        "username": "u", "passwordSecret": {"name": "kafka-user", "key": "pw"}}})
    granted = next(m for m in children(sasl, []) if m["kind"] == "Role")["rules"][-1]
    assert granted["resourceNames"] == ["kafka-user"]


def test_config_hash_follows_the_worker_configuration() -> None:
    first = config_hash(config_map(cluster()))
    assert first == config_hash(config_map(cluster()))
    assert first != config_hash(config_map(cluster(config={"offset.flush.interval.ms": 1})))


def test_selector_string() -> None:
    assert selector("x") == "app.kubernetes.io/component=worker,kanal.dev/cluster=x"
