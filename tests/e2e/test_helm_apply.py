"""The chart against the real kube-apiserver of ``dev/stack``.

The CRDs and the RBAC are applied for real; the rest is validated by the API server with
``--dry-run=server`` (admission, schemas, defaulting). Then the operator's
ServiceAccount is impersonated to create, as a dry run, exactly what the operator
creates for a ConnectCluster (``kanal_operator.builders.children``): this is where a
missing permission, or a worker Role granting more than the operator holds (RBAC
escalation prevention), would be refused.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kanal_operator.builders import Cluster, children
from kanal_operator.models import ConnectClusterSpec

pytest_plugins = ["tests.tools"]
# the first test builds helm when $KANAL_CACHE has none yet (about 10 minutes on 2 cores)
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "kanal"
Kubectl = Callable[..., subprocess.CompletedProcess[str]]
Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def kubectl(kube: dict[str, str]) -> Kubectl:
    env = dict(os.environ, KUBECONFIG=kube["KUBECONFIG"])

    def run(*args: str, stdin: str | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([kube["KUBECTL"], *args], input=stdin, env=env, text=True,
                                capture_output=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result
    return run


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:6]
    return {"release": f"kanal-e2e-{suffix}", "namespace": f"kanal-system-{suffix}",
            "watched": f"telemetry-{suffix}", "other": f"elsewhere-{suffix}"}


@pytest.fixture(scope="module")
def namespaces(kubectl: Kubectl, names: dict[str, str]) -> Iterator[dict[str, str]]:
    created = [names["namespace"], names["watched"], names["other"]]
    for namespace in created:
        kubectl("create", "namespace", namespace)
    yield names
    kubectl("delete", "namespace", *created, "--wait=false", "--ignore-not-found", check=False)
    for kind in ("clusterrolebinding", "clusterrole"):
        kubectl("delete", kind, "-l", f"app.kubernetes.io/instance={names['release']}",
                "--ignore-not-found", check=False)


def render(helm: Path, names: dict[str, str], *values: str) -> list[Manifest]:
    args = [str(helm), "template", names["release"], str(CHART),
            "--namespace", names["namespace"]]
    for value in values:
        args += ["--set", value]
    result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def dump(manifests: list[Manifest]) -> str:
    return yaml.safe_dump_all(manifests, sort_keys=False)


def split(manifests: list[Manifest], *kinds: str) -> tuple[list[Manifest], list[Manifest]]:
    chosen = [m for m in manifests if m["kind"] in kinds]
    return chosen, [m for m in manifests if m["kind"] not in kinds]


RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def install_crds(kubectl: Kubectl, manifests: list[Manifest]) -> None:
    crds, _ = split(manifests, "CustomResourceDefinition")
    assert len(crds) == 2
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=kanal-chart-e2e",
            "-f", "-", stdin=dump(crds))
    for crd in crds:
        kubectl("wait", "--for=condition=Established", "--timeout=60s",
                f"crd/{crd['metadata']['name']}")


def operator_account(names: dict[str, str]) -> str:
    return f"system:serviceaccount:{names['namespace']}:{names['release']}"


def worker_children(namespace: str) -> list[Manifest]:
    spec = ConnectClusterSpec.model_validate({
        "replicas": 2, "bootstrapServers": "kafka:9093",
        "kafka": {"securityProtocol": "SASL_SSL",
                  "tls": {"caSecret": {"name": "kafka-ca", "key": "ca.crt"}},
                  "sasl": {"username": "kanal",
                           "passwordSecret": {"name": "kafka-user", "key": "password"}}}})
    cluster = Cluster("telemetry", namespace, str(uuid.uuid4()), spec, "kanal:0.1.0")
    return children(cluster, ["azure-credentials"])


def can(kubectl: Kubectl, who: str, verb: str, resource: str, namespace: str) -> bool:
    """``resource`` may name a subresource: ``connectors.kanal.dev/status``."""
    resource, _, sub = resource.partition("/")
    args = ["auth", "can-i", verb, resource, "-n", namespace, f"--as={who}"]
    if sub:
        args.append(f"--subresource={sub}")
    return kubectl(*args, check=False).stdout.strip() == "yes"


def eventually_can(kubectl: Kubectl, who: str, verb: str, resource: str, namespace: str,
                   timeout: float = 30) -> bool:
    """``can``, waiting for RBAC caches and ClusterRole aggregation (a controller)."""
    deadline = time.monotonic() + timeout
    while not can(kubectl, who, verb, resource, namespace):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def create_as(kubectl: Kubectl, who: str, namespace: str, manifests: list[Manifest]) -> None:
    """Server-side apply, in order, as ``who`` (the operator applies its children so).

    Not a dry run: a RoleBinding is checked against the Role it binds, which must exist,
    and the API server's RBAC cache may not have seen a Role created a moment ago (it
    answers NotFound then), so the apply is repeated, as the operator's retry would.
    """
    deadline = time.monotonic() + 30
    while True:
        result = kubectl("apply", "--server-side", "--field-manager=kanal-operator",
                         f"--as={who}", "-n", namespace, "-f", "-", stdin=dump(manifests),
                         check=False)
        if result.returncode == 0:
            return
        if "NotFound" not in result.stderr or time.monotonic() > deadline:
            raise AssertionError(f"applying the workers' objects as {who}:\n{result.stderr}")
        time.sleep(0.5)


def test_cluster_wide_release(helm: Path, kubectl: Kubectl,
                              namespaces: dict[str, str]) -> None:
    manifests = render(helm, namespaces)
    install_crds(kubectl, manifests)
    _, rest = split(manifests, "CustomResourceDefinition")
    rbac, workloads = split(rest, *RBAC_KINDS)
    kubectl("apply", "--server-side", "--field-manager=kanal-chart-e2e", "-f", "-",
            stdin=dump(rbac))
    kubectl("apply", "--dry-run=server", "-f", "-", stdin=dump(workloads))

    operator, watched = operator_account(namespaces), namespaces["watched"]
    assert can(kubectl, operator, "patch", "connectors.kanal.dev/status", watched)
    assert can(kubectl, operator, "create", "deployments.apps", namespaces["other"])
    assert can(kubectl, operator, "list", "customresourcedefinitions", "default")
    assert not can(kubectl, operator, "create", "secrets", watched)
    assert not can(kubectl, operator, "list", "secrets", watched)
    assert not can(kubectl, operator, "get", "pods", watched)
    assert can(kubectl, operator, "watch", "pods", watched)  # why a worker pod is stuck
    assert not can(kubectl, operator, "delete", "pods", watched)
    assert can(kubectl, operator, "delete", "leases.coordination.k8s.io", watched)

    # exactly what the operator creates for a ConnectCluster, as the operator
    create_as(kubectl, operator, watched, worker_children(watched))


def test_resources_validate_and_the_operator_writes_their_status(
        helm: Path, kubectl: Kubectl, namespaces: dict[str, str]) -> None:
    install_crds(kubectl, render(helm, namespaces))
    watched = namespaces["watched"]
    cluster = {"apiVersion": "kanal.dev/v1alpha1", "kind": "ConnectCluster",
               "metadata": {"name": "telemetry", "namespace": watched},
               "spec": {"replicas": 2, "bootstrapServers": "kafka:9092"}}
    connector = {"apiVersion": "kanal.dev/v1alpha1", "kind": "Connector",
                 "metadata": {"name": "azure-blob-sink", "namespace": watched},
                 "spec": {"clusterRef": {"name": "telemetry"},
                          "class": "AzureBlobStorageSinkConnector", "tasksMax": 2,
                          "config": {"topics": "vehicle.speeding", "flush.size": 1000}}}
    kubectl("apply", "--server-side", "--field-manager=kanal-chart-e2e", "-f", "-",
            stdin=dump([cluster, connector]))
    status = ('{"status": {"observedGeneration": 1, "state": "UNASSIGNED", "conditions": '
              '[{"type": "Ready", "status": "False", "reason": "NoWorkers", "message": '
              '"no live worker", "lastTransitionTime": "2026-11-20T10:00:00Z"}]}}')
    # give the operator's ServiceAccount its rights (cluster-wide release)
    rbac, _ = split(render(helm, namespaces), *RBAC_KINDS)
    kubectl("apply", "--server-side", "--field-manager=kanal-chart-e2e", "-f", "-",
            stdin=dump(rbac))
    kubectl("patch", "connector", "azure-blob-sink", "-n", watched, "--subresource=status",
            "--type=merge", "-p", status, f"--as={operator_account(namespaces)}")
    scale = kubectl("get", "--raw",
                    f"/apis/kanal.dev/v1alpha1/namespaces/{watched}/connectors/"
                    "azure-blob-sink/scale").stdout
    assert yaml.safe_load(scale)["spec"]["replicas"] == 2
    # a user with the built-in "edit" role (aggregated) may scale but not write status
    user = "jane"
    kubectl("create", "rolebinding", "jane-edit", "--clusterrole=edit", f"--user={user}",
            "-n", watched)
    assert eventually_can(kubectl, user, "patch", "connectors.kanal.dev/scale", watched)
    assert eventually_can(kubectl, user, "create", "connectclusters.kanal.dev", watched)
    assert can(kubectl, "view-only", "get", "connectors.kanal.dev", watched) is False
    assert not can(kubectl, user, "patch", "connectors.kanal.dev/status", watched)


def test_namespaced_release(helm: Path, kubectl: Kubectl,
                            namespaces: dict[str, str]) -> None:
    names = dict(namespaces, release=namespaces["release"] + "-ns")
    manifests = render(helm, names, f"watchNamespaces={{{names['watched']}}}",
                       "crds.install=false", "rbac.aggregateToDefaultRoles=false")
    assert not split(manifests, "CustomResourceDefinition")[0]
    rbac, workloads = split(manifests, *RBAC_KINDS)
    assert not [m for m in rbac if m["kind"] == "ClusterRole"
                and m["metadata"]["name"].endswith("-operator")]
    try:
        kubectl("apply", "--server-side", "--field-manager=kanal-chart-e2e", "-f", "-",
                stdin=dump(rbac))
        kubectl("apply", "--dry-run=server", "-f", "-", stdin=dump(workloads))
        operator = operator_account(names)
        assert can(kubectl, operator, "create", "deployments.apps", names["watched"])
        assert not can(kubectl, operator, "create", "deployments.apps", names["other"])
        assert not can(kubectl, operator, "get", "secrets", names["other"])
        create_as(kubectl, operator, names["watched"], worker_children(names["watched"]))
        refused = kubectl("apply", "--server-side", f"--as={operator}", "-n",
                          names["other"], "-f", "-",
                          stdin=dump(worker_children(names["other"])), check=False)
        assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()
    finally:
        for kind in ("clusterrolebinding", "clusterrole"):
            kubectl("delete", kind, "-l", f"app.kubernetes.io/instance={names['release']}",
                    "--ignore-not-found", check=False)


def test_optional_objects_pass_admission(helm: Path, kubectl: Kubectl,
                                         namespaces: dict[str, str]) -> None:
    manifests = render(helm, namespaces, "networkPolicy.enabled=true",
                       "networkPolicy.apiServerCIDRs={10.96.0.1/32}",
                       "metrics.serviceMonitor.enabled=true", "crds.install=false")
    monitors, rest = split(manifests, "ServiceMonitor")
    assert len(monitors) == 2
    served = kubectl("api-resources", "--api-group=monitoring.coreos.com", "-o", "name").stdout
    if "servicemonitors" in served:  # the Prometheus Operator's CRDs are installed
        rest += monitors
    assert split(rest, "NetworkPolicy")[0]
    kubectl("apply", "--dry-run=server", "-f", "-", stdin=dump(rest))
