"""The Helm chart: lint, render in every mode, and check what the manifests promise.

helm is built once from the Go module proxy by ``dev/tools.sh`` (cached). The RBAC
checks derive what the operator needs from the operator's own manifest builders
(``kanal_operator.builders``), not from a list kept by hand.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kanal_operator.builders import Cluster, children
from kanal_operator.models import ConnectClusterSpec

pytest_plugins = ["tests.tools"]
# the first test builds helm when $KANAL_CACHE has none yet (about 10 minutes on 2 cores)
pytestmark = pytest.mark.timeout(1800)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "kanal"
NAMESPACE = "kanal-system"
Manifest = dict[str, Any]
Render = Callable[..., list[Manifest]]

PLURALS = {"ServiceAccount": "serviceaccounts", "Role": "roles", "RoleBinding": "rolebindings",
           "ConfigMap": "configmaps", "Deployment": "deployments", "Service": "services",
           "PodDisruptionBudget": "poddisruptionbudgets", "Secret": "secrets"}
APPLY_VERBS = {"get", "create", "patch"}
"""Server-side apply of a new object needs create and patch (kanal_operator.kube.Api)."""
WATCHED = {("apps", "deployments"), ("coordination.k8s.io", "leases"),
           ("kanal.dev", "connectors"), ("kanal.dev", "connectclusters")}
"""What kopf watches (kanal_operator.handlers)."""


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, check=False,
                          cwd=ROOT, timeout=120)


def set_args(values: dict[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


@pytest.fixture(scope="module")
def render(helm: Path) -> Render:
    def template(**values: str) -> list[Manifest]:
        result = run_helm(helm, "template", "kanal", str(CHART), "--namespace", NAMESPACE,
                          *set_args(values))
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return template


def of_kind(manifests: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def named(manifests: Iterable[Manifest], kind: str, name: str) -> Manifest:
    (found,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def allows(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(group in rule.get("apiGroups", []) and resource in rule.get("resources", [])
               and (verb in rule.get("verbs", []) or "*" in rule.get("verbs", []))
               and not rule.get("resourceNames")
               for rule in rules)


def sample_cluster() -> Cluster:
    spec = ConnectClusterSpec.model_validate({
        "replicas": 3, "bootstrapServers": "kafka:9093",
        "kafka": {"securityProtocol": "SASL_SSL",
                  "tls": {"caSecret": {"name": "kafka-ca", "key": "ca.crt"}},
                  "sasl": {"username": "kanal",
                           "passwordSecret": {"name": "kafka-user", "key": "password"}}}})
    return Cluster("telemetry", "telemetry", "uid-1", spec, "kanal:0.1.0")


def operator_rules(manifests: list[Manifest], mode: str) -> list[dict[str, Any]]:
    kind = "ClusterRole" if mode == "cluster" else "Role"
    roles = [m for m in of_kind(manifests, kind) if m["metadata"]["name"].endswith("-operator")]
    assert roles, f"no operator {kind}"
    return [rule for role in roles for rule in role["rules"]]


# -- lint and generated files ---------------------------------------------------------


@pytest.mark.parametrize("values", [
    {},
    {"watchNamespaces": "{team-a,team-b}"},
    {"metrics.serviceMonitor.enabled": "true", "networkPolicy.enabled": "true",
     "networkPolicy.apiServerCIDRs": "{10.96.0.1/32}"},
    {"crds.install": "false", "rbac.aggregateToDefaultRoles": "false",
     "metrics.enabled": "false", "image.digest": "sha256:" + "a" * 64},
], ids=["defaults", "namespaced", "monitoring", "minimal"])
def test_helm_lint_strict(helm: Path, values: dict[str, str]) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), *set_args(values))
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_files_match_their_sources() -> None:
    """CRD copies = crds/, README table and schema descriptions = values.yaml comments."""
    result = subprocess.run([sys.executable, str(ROOT / "dev" / "sync_chart.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_every_value_has_a_schema_entry() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        assert node, f"{path} is missing from values.schema.json"
        if isinstance(value, dict) and "properties" in node:
            for key, sub in value.items():
                walk(sub, node["properties"].get(key, {}), f"{path}.{key}".lstrip("."))
        else:
            assert "description" in node, f"{path}: no description in values.schema.json"
    walk(values, schema, "")


@pytest.mark.parametrize("values, error", [
    ({"operator.logFormat": "xml"}, "logFormat"),
    ({"watchNamespaces": "{Not_A_Namespace}"}, "watchNamespaces"),
    ({"image.digest": "latest"}, "digest"),
    ({"operatr.replicas": "2"}, "operatr"),
])
def test_schema_rejects_bad_values(helm: Path, values: dict[str, str], error: str) -> None:
    result = run_helm(helm, "template", "kanal", str(CHART), *set_args(values))
    assert result.returncode != 0 and error in result.stderr, result.stderr


# -- CRDs ----------------------------------------------------------------------------


def test_crds_are_the_generated_ones_and_survive_uninstall(render: Render) -> None:
    crds = {m["metadata"]["name"]: m for m in of_kind(render(), "CustomResourceDefinition")}
    generated = {p.name.removesuffix(".yaml"): yaml.safe_load(p.read_text())
                 for p in (ROOT / "crds").glob("*.yaml")}
    assert set(crds) == set(generated) == {"connectclusters.kanal.dev", "connectors.kanal.dev"}
    for name, crd in crds.items():
        assert crd["spec"] == generated[name]["spec"], f"{name} differs from crds/"
        annotations = crd["metadata"]["annotations"]
        assert annotations["helm.sh/resource-policy"] == "keep"
        assert "Delete=false" in annotations["argocd.argoproj.io/sync-options"]
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert not of_kind(render(**{"crds.install": "false"}), "CustomResourceDefinition")
    unkept = of_kind(render(**{"crds.keep": "false"}), "CustomResourceDefinition")
    assert all("helm.sh/resource-policy" not in (c["metadata"].get("annotations") or {})
               for c in unkept)


# -- the operator Deployment -----------------------------------------------------------


def test_operator_deployment_is_locked_down(render: Render) -> None:
    deployment = named(render(), "Deployment", "kanal-operator")
    assert deployment["metadata"]["namespace"] == NAMESPACE
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["kanal", "operator"]
    assert container["image"] == "kanal:0.1.0"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert pod["serviceAccountName"] == "kanal"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KANAL_WORKER_IMAGE"] == "kanal:0.1.0"
    assert env["KANAL_METRICS_PORT"] == "9404"
    assert "POD_NAMESPACE" in env
    assert container["args"] == ["--liveness=http://0.0.0.0:8080/healthz",
                                 "--log-level=INFO", "--json-logs"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9404}
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert container["resources"]["limits"]["memory"]


def test_operator_arguments_are_options_kanal_operator_has() -> None:
    """Every option the chart passes exists on `kanal operator` (kanal_operator.cli)."""
    import typer

    from kanal_operator.cli import operator

    app = typer.Typer()
    app.command()(operator)
    options = {opt for param in typer.main.get_command(app).params for opt in param.opts}
    template = (CHART / "templates" / "deployment.yaml").read_text()
    passed = set(re.findall(r"^\s*- (--[a-z-]+)", template, re.MULTILINE))
    assert passed and passed <= options, passed - options


def test_image_digest_and_worker_image(render: Render) -> None:
    digest = "sha256:" + "b" * 64
    manifests = render(**{"image.repository": "registry.local/kanal", "image.digest": digest,
                          "workerImage": "registry.local/kanal-worker:1"})
    (container,) = named(manifests, "Deployment", "kanal-operator")["spec"]["template"][
        "spec"]["containers"]
    assert container["image"] == f"registry.local/kanal@{digest}"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KANAL_WORKER_IMAGE"] == "registry.local/kanal-worker:1"


def test_every_namespaced_object_lands_in_the_release_namespace(render: Render) -> None:
    cluster_scoped = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for manifest in render(**{"metrics.serviceMonitor.enabled": "true",
                              "networkPolicy.enabled": "true"}):
        if manifest["kind"] in cluster_scoped:
            assert "namespace" not in manifest["metadata"], manifest["metadata"]["name"]
        else:
            assert manifest["metadata"]["namespace"] == NAMESPACE, manifest["kind"]


# -- RBAC ----------------------------------------------------------------------------


def test_cluster_wide_mode_uses_a_cluster_role(render: Render) -> None:
    manifests = render()
    role = named(manifests, "ClusterRole", "kanal-operator")
    binding = named(manifests, "ClusterRoleBinding", "kanal-operator")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kanal",
                                    "namespace": NAMESPACE}]
    operator_roles = [m for m in of_kind(manifests, "Role")
                      if m["metadata"]["name"] == "kanal-operator"]
    assert not operator_roles


def test_namespaced_mode_uses_a_role_per_namespace(render: Render) -> None:
    manifests = render(watchNamespaces="{team-a,team-b}")
    assert not [m for m in of_kind(manifests, "ClusterRole")
                if m["metadata"]["name"] == "kanal-operator"]
    roles = {m["metadata"]["namespace"] for m in of_kind(manifests, "Role")
             if m["metadata"]["name"] == "kanal-operator"}
    bindings = {m["metadata"]["namespace"] for m in of_kind(manifests, "RoleBinding")
                if m["metadata"]["name"] == "kanal-operator"}
    assert roles == bindings == {"team-a", "team-b"}
    deployment = named(manifests, "Deployment", "kanal-operator")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["--namespace=team-a", "--namespace=team-b"]
    # what every mode needs outside the watched namespaces
    crd_reader = named(manifests, "ClusterRole", "kanal-crd-reader")
    assert crd_reader["rules"] == [{"apiGroups": ["apiextensions.k8s.io"],
                                    "resources": ["customresourcedefinitions"],
                                    "verbs": ["get", "list", "watch"]}]


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_operator_may_manage_everything_it_creates(render: Render, mode: str) -> None:
    manifests = render() if mode == "cluster" else render(watchNamespaces="{telemetry}")
    rules = operator_rules(manifests, mode)
    created = children(sample_cluster(), ["azure-credentials"])
    kinds = {m["kind"] for m in created}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "ServiceAccount",
            "Role", "RoleBinding"} <= kinds
    for manifest in created:
        group = manifest["apiVersion"].rpartition("/")[0]
        for verb in APPLY_VERBS:
            assert allows(rules, group, PLURALS[manifest["kind"]], verb), (
                f"operator may not {verb} {manifest['kind']}")
    for group, resource in WATCHED:
        for verb in ("get", "list", "watch", "patch"):
            assert allows(rules, group, resource, verb), (resource, verb)
    for resource in ("connectclusters", "connectors"):
        assert allows(rules, "kanal.dev", f"{resource}/status", "patch")
    assert allows(rules, "kanal.dev", "connectclusters/finalizers", "update")
    assert allows(rules, "coordination.k8s.io", "leases", "delete"), "stale worker Leases"
    for verb in ("create", "patch"):
        assert allows(rules, "", "events", verb)


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_operator_holds_every_permission_it_grants_workers(render: Render, mode: str) -> None:
    """Kubernetes refuses a Role that grants more than its creator holds (no escalate)."""
    manifests = render() if mode == "cluster" else render(watchNamespaces="{telemetry}")
    rules = operator_rules(manifests, mode)
    (worker_role,) = [m for m in children(sample_cluster(), ["azure-credentials"])
                      if m["kind"] == "Role"]
    for rule in worker_role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert allows(rules, group, resource, verb), (group, resource, verb)


def test_operator_rbac_is_least_privilege(render: Render) -> None:
    rules = operator_rules(render(), "cluster")
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule
    for verb in ("create", "update", "patch", "delete"):
        assert not allows(rules, "", "secrets", verb), f"operator may {verb} secrets"
    for verb in ("list", "watch"):
        assert not allows(rules, "", "secrets", verb), f"operator may {verb} secrets"
    for group, resource in [("", "pods"), ("", "namespaces"), ("apps", "replicasets")]:
        assert not any(allows(rules, group, resource, v) for v in APPLY_VERBS), resource
    for child in ("configmaps", "services", "serviceaccounts"):
        assert not allows(rules, "", child, "delete"), "children go with their owner (GC)"
    assert not allows(rules, "kanal.dev", "connectclusters", "delete")
    assert not allows(rules, "kanal.dev", "connectors/scale", "patch")
    assert not allows(rules, "rbac.authorization.k8s.io", "clusterroles", "create")


def test_aggregated_view_and_edit_roles(render: Render) -> None:
    manifests = render()
    view = named(manifests, "ClusterRole", "kanal-view")
    edit = named(manifests, "ClusterRole", "kanal-edit")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"]
    assert allows(view["rules"], "kanal.dev", "connectors", "list")
    assert not allows(view["rules"], "kanal.dev", "connectors", "patch")
    assert allows(edit["rules"], "kanal.dev", "connectors", "patch")
    assert allows(edit["rules"], "kanal.dev", "connectors/scale", "patch")
    assert not allows(edit["rules"], "kanal.dev", "connectors/status", "patch"), (
        "status is the operator's to write")
    off = render(**{"rbac.aggregateToDefaultRoles": "false"})
    assert not [m for m in of_kind(off, "ClusterRole")
                if m["metadata"]["name"] in ("kanal-view", "kanal-edit")]


def test_no_rbac_when_disabled(render: Render) -> None:
    kinds = {m["kind"] for m in render(**{"rbac.create": "false",
                                          "rbac.aggregateToDefaultRoles": "false"})}
    assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


# -- metrics, ServiceMonitor, NetworkPolicy -------------------------------------------


def test_metrics_service_by_default_and_no_optional_objects(render: Render) -> None:
    manifests = render()
    service = named(manifests, "Service", "kanal-operator-metrics")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9404,
                                         "targetPort": "metrics", "protocol": "TCP"}]
    deployment = named(manifests, "Deployment", "kanal-operator")
    assert service["spec"]["selector"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items())
    assert not of_kind(manifests, "ServiceMonitor")
    assert not of_kind(manifests, "NetworkPolicy")
    off = render(**{"metrics.enabled": "false"})
    assert not of_kind(off, "Service")
    env = {e["name"]: e.get("value") for e in named(off, "Deployment", "kanal-operator")[
        "spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KANAL_METRICS_PORT"] == "0"


def test_service_monitors_for_operator_and_workers(render: Render) -> None:
    manifests = render(**{"metrics.serviceMonitor.enabled": "true",
                          "metrics.serviceMonitor.labels.release": "prometheus"})
    operator = named(manifests, "ServiceMonitor", "kanal-operator")
    assert operator["metadata"]["labels"]["release"] == "prometheus"
    service = named(manifests, "Service", "kanal-operator-metrics")
    assert operator["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items())
    assert operator["spec"]["endpoints"][0]["port"] == "metrics"
    workers = named(manifests, "ServiceMonitor", "kanal-workers")
    # the labels the operator puts on every worker Service (kanal_operator.builders)
    worker_service = next(m for m in children(sample_cluster(), []) if m["kind"] == "Service")
    assert workers["spec"]["selector"]["matchLabels"].items() <= (
        worker_service["metadata"]["labels"].items())
    assert "metrics" in {p["name"] for p in worker_service["spec"]["ports"]}
    assert workers["spec"]["namespaceSelector"] == {"any": True}
    namespaced = render(**{"metrics.serviceMonitor.enabled": "true"},
                        watchNamespaces="{team-a}")
    assert named(namespaced, "ServiceMonitor", "kanal-workers")["spec"][
        "namespaceSelector"] == {"matchNames": ["team-a"]}


def test_network_policy_allows_only_dns_api_and_scrapes(render: Render) -> None:
    manifests = render(**{"networkPolicy.enabled": "true",
                          "networkPolicy.apiServerCIDRs": "{10.96.0.1/32}"})
    policy = named(manifests, "NetworkPolicy", "kanal-operator")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    deployment = named(manifests, "Deployment", "kanal-operator")
    assert spec["podSelector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items())
    ingress_ports = {p["port"] for rule in spec["ingress"] for p in rule["ports"]}
    assert ingress_ports == {"health", "metrics"}
    egress_ports = {p["port"] for rule in spec["egress"] for p in rule["ports"]}
    assert egress_ports == {443, 6443, 53}
    api_rule = next(r for r in spec["egress"] if any(p["port"] == 443 for p in r["ports"]))
    assert api_rule["to"] == [{"ipBlock": {"cidr": "10.96.0.1/32"}}]
