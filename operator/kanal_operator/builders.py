"""Pure functions from a ``ConnectCluster`` to the manifests of its workers.

Nothing here talks to the API server: each function returns a plain manifest that the
operator applies (server-side apply, so re-applying an unchanged manifest is a no-op
and a hand-edited child is put back). All children are owned by the ConnectCluster,
so deleting it deletes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kanal_operator.models import ConnectClusterSpec
from kanal_worker.cluster.protocol import (
    API_VERSION,
    LABEL_CLUSTER,
    LABEL_COMPONENT,
    WORKER_COMPONENT,
    secret_refs,
)
from kanal_worker.config.properties import format_properties

REST_PORT = 8083
METRICS_PORT = 9404
CONFIG_DIR = "/etc/kanal"
CONFIG_FILE = "worker.properties"
CA_DIR = "/etc/kanal/kafka-ca"
CONFIG_HASH_ANNOTATION = "kanal.dev/config-hash"
MANAGED_BY = "kanal-operator"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Cluster:
    """What the builders need to know about one ConnectCluster."""

    name: str
    namespace: str
    uid: str
    spec: ConnectClusterSpec
    default_image: str

    @property
    def child_name(self) -> str:
        """Name of every child object (Deployment, Service, Role, ...)."""
        return f"{self.name}-connect"

    @property
    def image(self) -> str:
        return self.spec.image or self.default_image


def selector_labels(cluster: str) -> dict[str, str]:
    """Labels that select the worker pods of ``cluster`` (Deployment, Service, PDB)."""
    return {LABEL_CLUSTER: cluster, LABEL_COMPONENT: WORKER_COMPONENT}


def selector(cluster: str) -> str:
    """``selector_labels`` as the label-selector string of a scale subresource."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(cluster).items()))


def labels(cluster: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "kanal",
        "app.kubernetes.io/instance": cluster,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **selector_labels(cluster),
    }


def _metadata(cluster: Cluster, **extra: Any) -> dict[str, Any]:
    return {
        "name": cluster.child_name,
        "namespace": cluster.namespace,
        "labels": labels(cluster.name),
        "ownerReferences": [{
            "apiVersion": API_VERSION,
            "kind": "ConnectCluster",
            "name": cluster.name,
            "uid": cluster.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }],
        **extra,
    }


def worker_properties(cluster: Cluster) -> dict[str, str]:
    """The workers' configuration: Kafka Connect keys, with secrets as placeholders only."""
    spec = cluster.spec
    props = {
        "bootstrap.servers": spec.bootstrap_servers,
        "group.id": f"kanal-{cluster.namespace}-{cluster.name}",
        "offset.storage.topic": f"kanal-{cluster.namespace}-{cluster.name}-offsets",
        "listeners": f"http://0.0.0.0:{REST_PORT}",
    }
    kafka = spec.kafka
    if kafka is not None:
        props["security.protocol"] = kafka.security_protocol
        if kafka.tls is not None and kafka.tls.ca_secret is not None:
            props["ssl.ca.location"] = f"{CA_DIR}/{kafka.tls.ca_secret.key}"
        if kafka.sasl is not None:
            secret = kafka.sasl.password_secret
            props["sasl.mechanism"] = kafka.sasl.mechanism
            props["sasl.username"] = kafka.sasl.username
            props["sasl.password"] = f"${{secret:{secret.name}:{secret.key}}}"
    props.update(spec.config or {})
    return dict(sorted(props.items()))


def config_map(cluster: Cluster) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(cluster),
        "data": {CONFIG_FILE: format_properties(worker_properties(cluster))},
    }


def config_hash(config_map: Manifest) -> str:
    """Changes whenever the worker configuration does; in the pod template it rolls the
    workers so they read the new configuration."""
    text = "".join(f"{k}\0{v}\0" for k, v in sorted(config_map["data"].items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def service_account(cluster: Cluster) -> Manifest:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(cluster)}


def role(cluster: Cluster, secrets: Iterable[str]) -> Manifest:
    """Least privilege for workers: read Connectors (and write them through the REST API),
    own a Lease (and list their peers' for the REST API's active topics), and get only the
    Secrets their configurations reference.

    Workers never write Connector status: the operator is its only writer.
    """
    rules: list[dict[str, Any]] = [
        {"apiGroups": ["kanal.dev"], "resources": ["connectors"],
         "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "verbs": ["get", "list", "create", "update", "patch", "delete"]},
    ]
    names = sorted(set(secrets))
    if names:  # an empty resourceNames would grant every Secret
        rules.append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                      "resourceNames": names})
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": _metadata(cluster), "rules": rules}


def role_binding(cluster: Cluster) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(cluster),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": cluster.child_name},
        "subjects": [{"kind": "ServiceAccount", "name": cluster.child_name,
                      "namespace": cluster.namespace}],
    }


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def deployment(cluster: Cluster, config_hash: str) -> Manifest:
    spec = cluster.spec
    # the root filesystem is read-only: /tmp is the one writable place (file sinks,
    # staged uploads)
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": cluster.child_name}},
        {"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"}]
    if spec.kafka is not None and spec.kafka.tls is not None and spec.kafka.tls.ca_secret:
        ca = spec.kafka.tls.ca_secret
        volumes.append({"name": "kafka-ca", "secret": {
            "secretName": ca.name, "items": [{"key": ca.key, "path": ca.key}]}})
        mounts.append({"name": "kafka-ca", "mountPath": CA_DIR, "readOnly": True})
    container: dict[str, Any] = {
        "name": "worker",
        "image": cluster.image,
        "command": ["kanal", "worker", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"],
        "env": [
            _field_env("POD_NAME", "metadata.name"),
            _field_env("POD_NAMESPACE", "metadata.namespace"),
            _field_env("POD_UID", "metadata.uid"),
            {"name": "KANAL_CLUSTER", "value": cluster.name},
        ],
        "ports": [{"name": "rest", "containerPort": REST_PORT},
                  {"name": "metrics", "containerPort": METRICS_PORT}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": "rest"},
                           "periodSeconds": 5},
        "volumeMounts": mounts,
        "securityContext": {"allowPrivilegeEscalation": False, "privileged": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    if spec.resources is not None:
        container["resources"] = spec.resources.dump()
    match = selector_labels(cluster.name)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(cluster),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": match},
            "template": {
                "metadata": {"labels": labels(cluster.name),
                             "annotations": {CONFIG_HASH_ANNOTATION: config_hash}},
                "spec": {
                    "serviceAccountName": cluster.child_name,
                    # a stopping worker flushes, commits and releases its Lease first
                    "terminationGracePeriodSeconds": 60,
                    "securityContext": {"runAsNonRoot": True,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "affinity": {"podAntiAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [{
                            "weight": 100,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": match}}}]}},
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def service(cluster: Cluster) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(cluster),
        "spec": {
            "selector": selector_labels(cluster.name),
            "ports": [
                {"name": "rest", "port": REST_PORT, "targetPort": "rest"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"},
            ],
        },
    }


def pod_disruption_budget(cluster: Cluster) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(cluster),
        "spec": {"maxUnavailable": 1,
                 "selector": {"matchLabels": selector_labels(cluster.name)}},
    }


def children(cluster: Cluster, connector_secrets: Iterable[str]) -> list[Manifest]:
    """Every object the workers of ``cluster`` need, in the order to apply them.

    ``connector_secrets`` are the Secrets the cluster's Connectors reference; the
    worker configuration's own references are added here.
    """
    settings = config_map(cluster)
    secrets = set(connector_secrets) | secret_refs(worker_properties(cluster))
    return [
        service_account(cluster),
        role(cluster, secrets),
        role_binding(cluster),
        settings,
        deployment(cluster, config_hash(settings)),
        service(cluster),
        pod_disruption_budget(cluster),
    ]
