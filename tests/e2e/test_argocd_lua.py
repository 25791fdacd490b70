"""Kanal's health checks in ArgoCD's own Lua VM (gopher-lua), over tests/argocd_health.py.

``argocd admin settings resource-overrides health`` is ArgoCD's command for trying a
health customization: it reads argocd-cm from a file the way the controller reads it
from the cluster, and runs the script through the same code as the application
controller (gitops-engine's GetResourceHealth, util/lua: a global ``obj``, only the
base, package and table libraries and a safe ``os``, a returned table with status and
message). The argocd-cm used is the one docs/argocd.md gives users.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from dev.stack_env import stack_env
from tests.argocd_health import Case, all_cases, documented_argocd_cm, reported, sample

# the first run builds argo-cd when $KANAL_CACHE has none yet (tens of minutes on 2 cores)
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(5400)]

CASES = all_cases()


@pytest.fixture(scope="module")
def argocd() -> str:
    """The ``argocd`` CLI of the ArgoCD that dev/stack runs (built, not started)."""
    return stack_env("argocd", start=False)["ARGOCD_BIN"]


@pytest.fixture(scope="module")
def argocd_cm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("argocd") / "argocd-cm.yaml"
    path.write_text(yaml.safe_dump(documented_argocd_cm()))
    return path


def argocd_health(argocd: str, argocd_cm: Path, obj: dict[str, object],
                  tmp: Path) -> dict[str, str]:
    """The health ArgoCD computes for ``obj`` with ``argocd_cm``'s customizations."""
    resource = tmp / "resource.yaml"
    resource.write_text(yaml.safe_dump(obj))
    result = subprocess.run(
        [argocd, "admin", "settings", "resource-overrides", "health", str(resource),
         "--argocd-cm-path", str(argocd_cm)],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"ArgoCD could not assess the health:\n{result.stderr}"
    health = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key in ("STATUS", "MESSAGE"):
            health[key.lower()] = value
    assert "status" in health, f"no health from ArgoCD:\n{result.stdout}"
    return health


@pytest.mark.parametrize("case", CASES, ids=[f"{c.kind}/{c.name}" for c in CASES])
def test_argocd_reports_the_health_of_each_case(argocd: str, argocd_cm: Path, case: Case,
                                                tmp_path: Path) -> None:
    assert reported(case, argocd_health(argocd, argocd_cm, case.obj, tmp_path)) == case.want


def test_a_script_using_the_string_library_fails_in_argocd(
        argocd: str, argocd_cm: Path, tmp_path: Path) -> None:
    """What the reference Lua tolerates and ArgoCD does not: the unit tests' VM must
    refuse it too (tests/unit/test_argocd_health.py)."""
    config = yaml.safe_load(argocd_cm.read_text())
    config["data"]["resource.customizations.health.kanal.dev_Connector"] = (
        'return {status = "Healthy", message = string.lower("RUNNING")}')
    changed = tmp_path / "argocd-cm.yaml"
    changed.write_text(yaml.safe_dump(config))
    with pytest.raises(AssertionError, match="attempt to index a non-table object"):
        argocd_health(argocd, changed, sample("Connector", "healthy"), tmp_path)
