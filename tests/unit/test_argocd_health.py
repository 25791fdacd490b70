"""The ArgoCD health checks (argocd/health/kanal.dev/*/health.lua), run in real Lua.

ArgoCD runs the health checks registered in argocd-cm in gopher-lua, a Lua 5.1, with
only the base, package and table libraries and a reduced ``os`` (``time``, ``date``):
no ``string`` and no ``math``. ``lupa`` embeds the reference Lua 5.1 and the scripts run
here with exactly those globals, over the cases of ``tests/argocd_health.py``;
tests/e2e/test_argocd_lua.py runs the same cases in ArgoCD itself.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from lupa import lua51

from tests.argocd_health import (
    HEALTH,
    KINDS,
    ROOT,
    Case,
    all_cases,
    documented_argocd_cm,
    reported,
    samples,
)

# What ArgoCD's Lua VM lacks (util/lua: base, package, table and a safe os only).
ABSENT = ("string", "math", "io", "debug", "coroutine")
SAFE_OS = ("time", "date")


def argocd_like_runtime() -> lua51.LuaRuntime:
    """A Lua 5.1 with the globals ArgoCD's VM has; strings have no methods either."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.execute('debug.setmetatable("", nil)')
    env = runtime.globals()
    for name in ABSENT:
        env[name] = None
    env.os = runtime.table_from({name: env.os[name] for name in SAFE_OS})
    return runtime


def run_health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """Run ``kind``'s health.lua on ``obj`` the way ArgoCD does: a global ``obj``."""
    runtime = argocd_like_runtime()
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute((HEALTH / kind / "health.lua").read_text())
    assert result is not None, "health.lua must return a table"
    out = {key: result[key] for key in ("status", "message")}
    assert isinstance(out["status"], str) and isinstance(out["message"], str), out
    return out


CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.kind}/{c.name}" for c in CASES])
def test_health_of_each_case(case: Case) -> None:
    assert case.obj["kind"] == case.kind
    assert reported(case, run_health(case.kind, case.obj)) == case.want


@pytest.mark.parametrize("kind", KINDS)
def test_samples_cover_every_health_status_and_every_file(kind: str) -> None:
    found = {case.want["status"] for case in samples(kind)}
    assert {"Healthy", "Degraded", "Progressing", "Suspended"} <= found
    used = {case.name for case in samples(kind)}
    files = {f"testdata/{p.name}" for p in (HEALTH / kind / "testdata").glob("*.yaml")}
    assert used == files, "every testdata file has a test and every test a file"


@pytest.mark.parametrize("script", ['return string.sub("TaskFailed", -6)',
                                    'return ("TaskFailed"):sub(-6)', "return math.max(1, 2)",
                                    'return io.open("/etc/hostname")'])
def test_what_argocd_lacks_fails_here_too(script: str) -> None:
    with pytest.raises(lua51.LuaError):
        argocd_like_runtime().execute(script)


def test_what_argocd_has_works_here() -> None:
    script = ('local t = {} table.insert(t, tostring(#"abc")) '
              'return table.concat(t) .. os.date("!%Y", 0)')
    assert argocd_like_runtime().execute(script) == "31970"


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
    for case in samples(kind):
        body = {k: v for k, v in case.obj.items() if k != "metadata"}
        assert schema_paths(schema, body) == [], f"{kind} {case.name}"


def test_docs_register_exactly_these_scripts() -> None:
    data = documented_argocd_cm()["data"]
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
        for name in ("io.", "os.", "require", "dofile", "loadstring", "debug.", "string.",
                     "math."):
            assert name not in text, f"{kind}/health.lua uses {name}"
