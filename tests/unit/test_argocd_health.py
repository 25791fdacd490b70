"""The ArgoCD health checks (argocd/health/kanal.dev/*/health.lua), run in real Lua.

ArgoCD runs resource health checks in gopher-lua, a Lua 5.1, with only the base,
table, string and math libraries; ``lupa`` embeds the reference Lua 5.1 and the
scripts run here with the same globals removed. Each kind's ``health_test.yaml`` has
ArgoCD's own test layout (``resource_customizations``), so the same files work with
ArgoCD's test harness.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

ROOT = Path(__file__).resolve().parents[2]
HEALTH = ROOT / "argocd" / "health" / "kanal.dev"
KINDS = {"Connector": "connectors.kanal.dev.yaml",
         "ConnectCluster": "connectclusters.kanal.dev.yaml"}
UNSAFE = ("io", "os", "require", "dofile", "loadfile", "load", "loadstring", "module",
          "package", "debug", "collectgarbage")


def run_health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """Run ``kind``'s health.lua on ``obj`` the way ArgoCD does: a global ``obj``."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    env = runtime.globals()
    for name in UNSAFE:
        env[name] = None
    env.obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute((HEALTH / kind / "health.lua").read_text())
    assert result is not None, "health.lua must return a table"
    out = {key: result[key] for key in ("status", "message")}
    assert isinstance(out["status"], str) and isinstance(out["message"], str), out
    return out


def cases(kind: str) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    spec = yaml.safe_load((HEALTH / kind / "health_test.yaml").read_text())
    out = []
    for test in spec["tests"]:
        path = HEALTH / kind / test["inputPath"]
        out.append((test["inputPath"], yaml.safe_load(path.read_text()),
                    dict(test["healthStatus"])))
    return out


ALL = [(kind, name, obj, want) for kind in KINDS for name, obj, want in cases(kind)]


@pytest.mark.parametrize("kind, name, obj, want", ALL,
                         ids=[f"{kind}/{name}" for kind, name, _, _ in ALL])
def test_health_of_each_sample(kind: str, name: str, obj: dict[str, Any],
                               want: dict[str, str]) -> None:
    assert obj["kind"] == kind
    assert run_health(kind, obj) == want


@pytest.mark.parametrize("kind", KINDS)
def test_samples_cover_every_health_status_and_every_file(kind: str) -> None:
    found = {want["status"] for _, _, want in cases(kind)}
    assert {"Healthy", "Degraded", "Progressing", "Suspended"} <= found
    used = {name for name, _, _ in cases(kind)}
    files = {f"testdata/{p.name}" for p in (HEALTH / kind / "testdata").glob("*.yaml")}
    assert used == files, "every testdata file has a test and every test a file"


def schema_paths(schema: dict[str, Any], obj: Any, where: str = "") -> list[str]:
    """Keys of ``obj`` that the CRD's structural schema does not declare."""
    if not isinstance(obj, dict | list) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(obj, list):
        items = schema.get("items", {})
        return [p for i, v in enumerate(obj) for p in schema_paths(items, v, f"{where}[{i}]")]
    props = schema.get("properties")
    if props is None:
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return [p for k, v in obj.items() for p in schema_paths(extra, v, f"{where}.{k}")]
        return []
    unknown = [f"{where}.{k}" for k in obj if k not in props]
    return unknown + [p for k, v in obj.items() if k in props
                      for p in schema_paths(props[k], v, f"{where}.{k}")]


@pytest.mark.parametrize("kind", KINDS)
def test_samples_use_only_fields_the_crd_declares(kind: str) -> None:
    """A renamed status field must break this test, not silently every ArgoCD app."""
    crd = yaml.safe_load((ROOT / "crds" / KINDS[kind]).read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for name, obj, _ in cases(kind):
        body = {k: v for k, v in obj.items() if k != "metadata"}
        assert schema_paths(schema, body) == [], f"{kind} {name}"


def sample(kind: str, name: str) -> dict[str, Any]:
    for path, obj, _ in cases(kind):
        if path == f"testdata/{name}.yaml":
            return copy.deepcopy(obj)
    raise KeyError(name)


def test_a_failed_task_degrades_even_a_paused_connector() -> None:
    obj = sample("Connector", "suspended-paused")
    obj["status"]["tasks"][1]["state"] = "FAILED"
    assert run_health("Connector", obj)["status"] == "Degraded"


def test_a_connector_whose_planning_failed_is_degraded() -> None:
    obj = sample("Connector", "degraded-invalid-configuration")
    ready = obj["status"]["conditions"][0]
    ready["reason"], ready["message"] = "ConnectorFailed", "planning tasks failed: boom"
    assert run_health("Connector", obj) == {
        "status": "Degraded", "message": "ConnectorFailed: planning tasks failed: boom"}


def test_ready_without_the_latest_generation_is_never_healthy() -> None:
    for kind in KINDS:
        obj = sample(kind, "healthy")
        obj["metadata"]["generation"] += 1
        assert run_health(kind, obj)["status"] == "Progressing"


def test_a_connector_without_conditions_waits() -> None:
    obj = sample("Connector", "healthy")
    del obj["status"]["conditions"]
    assert run_health("Connector", obj) == {
        "status": "Progressing", "message": "Waiting for the connector's tasks to run"}


def test_docs_register_exactly_these_scripts() -> None:
    text = (ROOT / "docs" / "argocd.md").read_text()
    block = next(b.split("\n", 1)[1] for b in text.split("```")[1::2]
                 if b.startswith("yaml") and "kind: ConfigMap" in b)
    data = yaml.safe_load(block)["data"]
    for kind in KINDS:
        key = f"resource.customizations.health.kanal.dev_{kind}"
        assert data[key] == (HEALTH / kind / "health.lua").read_text(), key


def test_example_application_points_at_the_chart_and_the_manifests() -> None:
    apps = list(yaml.safe_load_all((ROOT / "examples" / "argocd" / "application.yaml")
                                   .read_text()))
    paths = {app["spec"]["source"]["path"] for app in apps}
    assert paths == {"helm/kanal", "examples/kubernetes"}
    assert (ROOT / "helm" / "kanal" / "Chart.yaml").exists()
    for app in apps:
        assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
        assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]


def test_the_scripts_use_no_library_argocd_lacks() -> None:
    for kind in KINDS:
        text = (HEALTH / kind / "health.lua").read_text()
        for name in ("io.", "os.", "require", "dofile", "loadstring", "debug."):
            assert name not in text, f"{kind}/health.lua uses {name}"
