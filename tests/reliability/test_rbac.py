"""The operator's rights as the Helm chart grants them: what it needs, and a list of
things an attacker holding its token must still not be able to do.

The chart is rendered with ``helm template`` and its RBAC applied to the real API
server; every check is ``kubectl auth can-i --as=system:serviceaccount:<ns>:<sa>``
(tests/e2e/test_helm_apply.py checks the children it creates; this is the deny list).
The workers' Role is checked in test_cluster_mode.py.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from dev.stack_env import ROOT
from tests.tools import tool

pytestmark = pytest.mark.e2e

RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def kubectl(kube: dict[str, str], *args: str, stdin: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([kube["KUBECTL"], *args], input=stdin, capture_output=True,
                          text=True, timeout=60, env={"KUBECONFIG": kube["KUBECONFIG"],
                                                      "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def release(kube: dict[str, str]) -> Iterator[dict[str, str]]:
    """A cluster-wide release's RBAC, applied; its names."""
    suffix = uuid.uuid4().hex[:6]
    names = {"release": f"kanal-rbac-{suffix}", "namespace": f"kanal-rbac-{suffix}",
             "watched": f"rbac-team-{suffix}"}
    rendered = subprocess.run(
        [str(tool("helm")), "template", names["release"], str(ROOT / "helm" / "kanal"),
         "--namespace", names["namespace"]], capture_output=True, text=True, timeout=300)
    assert rendered.returncode == 0, rendered.stderr
    rbac: list[dict[str, Any]] = [d for d in yaml.safe_load_all(rendered.stdout)
                                  if d and d["kind"] in RBAC_KINDS]
    for namespace in (names["namespace"], names["watched"]):
        assert kubectl(kube, "create", "namespace", namespace).returncode == 0
    applied = kubectl(kube, "apply", "--server-side", "--field-manager=kanal-rbac-tests",
                      "-f", "-", stdin=yaml.safe_dump_all(rbac))
    assert applied.returncode == 0, applied.stderr
    names["account"] = f"system:serviceaccount:{names['namespace']}:{names['release']}"
    yield names
    kubectl(kube, "delete", "namespace", names["namespace"], names["watched"], "--wait=false")
    for kind in ("clusterrolebinding", "clusterrole"):
        kubectl(kube, "delete", kind, "-l", f"app.kubernetes.io/instance={names['release']}",
                "--ignore-not-found")


def can(kube: dict[str, str], who: str, verb: str, resource: str, namespace: str) -> bool:
    resource, _, sub = resource.partition("/")
    args = ["auth", "can-i", verb, resource, f"--as={who}", "-n", namespace]
    if sub:
        args.append(f"--subresource={sub}")
    return kubectl(kube, *args).stdout.strip() == "yes"


NEEDED = [
    ("watch", "connectors.kanal.dev"), ("patch", "connectors.kanal.dev/status"),
    ("patch", "connectclusters.kanal.dev/status"), ("create", "deployments.apps"),
    ("patch", "deployments.apps"), ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "poddisruptionbudgets.policy"), ("create", "events"),
    ("delete", "leases.coordination.k8s.io"),
    ("get", "secrets"),  # by name, only so the workers' Role may name them (RBAC rule)
]
FORBIDDEN = [
    # Secrets: never listed, watched or written (get by name only, see above)
    ("list", "secrets"), ("watch", "secrets"), ("create", "secrets"), ("update", "secrets"),
    ("delete", "secrets"),
    # no workload of its own making beyond the Deployment it owns
    ("create", "pods"), ("create", "pods/exec"), ("create", "pods/portforward"),
    ("delete", "deployments.apps"), ("create", "daemonsets.apps"),
    ("create", "statefulsets.apps"), ("create", "jobs.batch"), ("create", "cronjobs.batch"),
    # no way to raise its own rights
    ("escalate", "roles.rbac.authorization.k8s.io"),
    ("bind", "roles.rbac.authorization.k8s.io"),
    ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("impersonate", "users"), ("impersonate", "serviceaccounts"), ("impersonate", "groups"),
    ("create", "serviceaccounts/token"),
    ("create", "certificatesigningrequests.certificates.k8s.io"),
    # cluster plumbing
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "namespaces"), ("create", "namespaces"), ("get", "nodes"),
    ("create", "mutatingwebhookconfigurations.admissionregistration.k8s.io"),
    ("create", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
    ("delete", "configmaps"), ("delete", "services"),
    ("update", "connectclusters.kanal.dev"),  # users own the spec
]


def test_operator_has_what_it_needs(kube: dict[str, str], release: dict[str, str]) -> None:
    missing = [f"{verb} {resource}" for verb, resource in NEEDED
               if not can(kube, release["account"], verb, resource, release["watched"])]
    assert missing == []


def test_operator_cannot_do_what_it_does_not_need(kube: dict[str, str],
                                                  release: dict[str, str]) -> None:
    granted = [f"{verb} {resource}" for verb, resource in FORBIDDEN
               if can(kube, release["account"], verb, resource, release["watched"])]
    assert granted == [], f"the operator's account may {granted}"


def test_operator_cannot_bind_itself_a_powerful_role(kube: dict[str, str],
                                                     release: dict[str, str]) -> None:
    """It creates RoleBindings for its workers; RBAC's escalation check must still stop
    a RoleBinding to a role it does not itself hold (``admin``)."""
    attempt = kubectl(kube, "create", "rolebinding", "take-over", "--clusterrole=admin",
                      f"--serviceaccount={release['namespace']}:{release['release']}",
                      "-n", release["watched"], f"--as={release['account']}",
                      "--dry-run=server")
    assert attempt.returncode != 0
    assert "forbidden" in attempt.stderr.lower()
    assert "escalat" in attempt.stderr.lower() or "attempting to grant" in attempt.stderr


def test_chart_grants_no_wildcards() -> None:
    rendered = subprocess.run([str(tool("helm")), "template", "kanal",
                               str(ROOT / "helm" / "kanal")], capture_output=True, text=True,
                              timeout=300)
    assert rendered.returncode == 0, rendered.stderr
    wildcards = [
        f"{doc['kind']} {doc['metadata']['name']}: {rule}"
        for doc in yaml.safe_load_all(rendered.stdout) if doc and "rules" in doc
        for rule in doc["rules"]
        if "*" in rule.get("verbs", []) + rule.get("resources", []) + rule.get("apiGroups", [])]
    assert wildcards == []


