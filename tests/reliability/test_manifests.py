"""Invalid ``Connector``/``ConnectCluster`` manifests are rejected by the real API server
with a message that names the field.

The corpus is ``manifests/*.yaml``: one invalid object per file, its ``# expect:``
lines are fragments the error must contain (the field path and what is wrong), its
``# secret:`` lines values the error must not echo. The CRDs are ``crds/`` as
``kanal crds`` generates them.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev.stack_env import ROOT

pytestmark = pytest.mark.e2e

MANIFESTS = sorted((Path(__file__).parent / "manifests").glob("*.yaml"))


def kubectl(kube: dict[str, str], *args: str, stdin: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([kube["KUBECTL"], *args], input=stdin, capture_output=True,
                          text=True, timeout=60, env={"KUBECONFIG": kube["KUBECONFIG"],
                                                      "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def namespace(kube: dict[str, str]) -> Iterator[str]:
    crds = sorted((ROOT / "crds").glob("*.yaml"))
    assert len(crds) >= 2, "crds/ should hold the Connector and ConnectCluster CRDs"
    for crd in crds:
        applied = kubectl(kube, "apply", "--server-side", "--force-conflicts",
                          "--field-manager=kanal-reliability-tests", "-f", str(crd))
        assert applied.returncode == 0, applied.stderr
    established = kubectl(kube, "wait", "--for=condition=Established", "--timeout=60s",
                          "crd/connectors.kanal.dev", "crd/connectclusters.kanal.dev")
    assert established.returncode == 0, established.stderr
    name = f"rel-manifests-{uuid.uuid4().hex[:6]}"
    created = kubectl(kube, "create", "namespace", name)
    assert created.returncode == 0, created.stderr
    yield name
    kubectl(kube, "delete", "namespace", name, "--wait=false")


def expectations(manifest: Path, marker: str) -> list[str]:
    prefix = f"# {marker}:"
    return [line[len(prefix):].strip() for line in manifest.read_text().splitlines()
            if line.startswith(prefix)]


def test_the_corpus_is_complete() -> None:
    kinds = {path.name.split("-")[0] for path in MANIFESTS}
    assert kinds == {"connector", "cluster"}
    assert len(MANIFESTS) >= 25
    for manifest in MANIFESTS:
        assert expectations(manifest, "expect"), f"{manifest.name} has no '# expect:' line"


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[m.stem for m in MANIFESTS])
def test_invalid_manifest_is_rejected_naming_the_field(kube: dict[str, str], namespace: str,
                                                       manifest: Path) -> None:
    applied = kubectl(kube, "apply", "-n", namespace, "-f", str(manifest))
    message = applied.stderr.strip()
    assert applied.returncode != 0, f"{manifest.name} was accepted: {applied.stdout}"
    for fragment in expectations(manifest, "expect"):
        assert fragment in message, f"{manifest.name}: {fragment!r} not in:\n{message}"
    for secret in expectations(manifest, "secret"):
        assert secret not in message
    kind = "connectclusters" if manifest.name.startswith("cluster") else "connectors"
    listed = kubectl(kube, "get", f"{kind}.kanal.dev", "-n", namespace, "-o", "name")
    assert listed.stdout.strip() == "", "nothing may be stored"


def test_cluster_ref_is_immutable(kube: dict[str, str], namespace: str) -> None:
    manifest = """
apiVersion: kanal.dev/v1alpha1
kind: Connector
metadata: {name: immutable-ref}
spec:
  clusterRef: {name: %s}
  class: FileStreamSink
  config: {topics: t, file: /tmp/out.txt}
"""
    created = kubectl(kube, "apply", "-n", namespace, "-f", "-", stdin=manifest % "telemetry")
    assert created.returncode == 0, created.stderr
    moved = kubectl(kube, "apply", "-n", namespace, "-f", "-", stdin=manifest % "other")
    assert moved.returncode != 0
    assert "spec.clusterRef" in moved.stderr
    assert "clusterRef is immutable" in moved.stderr
    kept = kubectl(kube, "get", "connectors.kanal.dev", "immutable-ref", "-n", namespace,
                   "-o", "jsonpath={.spec.clusterRef.name}")
    assert kept.stdout == "telemetry"
