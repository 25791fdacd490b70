"""The cases Kanal's ArgoCD health checks (argocd/health/kanal.dev/*/health.lua) must pass.

Every sample of a kind's ``health_test.yaml`` (ArgoCD's ``resource_customizations`` test
layout), plus variations of them, each with the health ArgoCD must report. The same
cases run in two Lua VMs: the reference Lua 5.1 (tests/unit, fast) and gopher-lua inside
ArgoCD itself (tests/e2e/test_argocd_lua.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
HEALTH = ROOT / "argocd" / "health" / "kanal.dev"
KINDS = {"Connector": "connectors.kanal.dev.yaml",
         "ConnectCluster": "connectclusters.kanal.dev.yaml"}


@dataclass(frozen=True)
class Case:
    kind: str
    name: str
    obj: dict[str, Any]
    want: dict[str, str]
    """The health ArgoCD reports: ``status`` and, unless left out, ``message``."""


def samples(kind: str) -> list[Case]:
    """The samples of ``kind``'s ``health_test.yaml``, named by their input file."""
    spec = yaml.safe_load((HEALTH / kind / "health_test.yaml").read_text())
    return [Case(kind, test["inputPath"],
                 yaml.safe_load((HEALTH / kind / test["inputPath"]).read_text()),
                 dict(test["healthStatus"]))
            for test in spec["tests"]]


def sample(kind: str, name: str) -> dict[str, Any]:
    """A deep copy of the object of ``testdata/<name>.yaml``."""
    for case in samples(kind):
        if case.name == f"testdata/{name}.yaml":
            return copy.deepcopy(case.obj)
    raise KeyError(name)


def _variations() -> list[Case]:
    paused = sample("Connector", "suspended-paused")
    paused["status"]["tasks"][1]["state"] = "FAILED"
    planning = sample("Connector", "degraded-invalid-configuration")
    ready = planning["status"]["conditions"][0]
    ready["reason"], ready["message"] = "ConnectorFailed", "planning tasks failed: boom"
    no_conditions = sample("Connector", "healthy")
    del no_conditions["status"]["conditions"]
    starting = sample("Connector", "progressing-no-workers")
    starting["status"]["conditions"][0].update(
        reason="Progressing", message="1/2 task(s) RUNNING; waiting for task(s) 1 UNASSIGNED")
    cases = [
        Case("Connector", "a failed task degrades even a paused connector", paused,
             {"status": "Degraded"}),
        Case("Connector", "a connector whose planning failed is degraded", planning,
             {"status": "Degraded", "message": "ConnectorFailed: planning tasks failed: boom"}),
        Case("Connector", "a connector without conditions waits", no_conditions,
             {"status": "Progressing", "message": "Waiting for the connector's tasks to run"}),
        Case("Connector", "tasks starting are progress", starting,
             {"status": "Progressing",
              "message": "1/2 task(s) RUNNING; waiting for task(s) 1 UNASSIGNED"}),
    ]
    for kind in KINDS:
        newer = sample(kind, "healthy")
        newer["metadata"]["generation"] += 1
        cases.append(Case(kind, "ready without the latest generation is never healthy", newer,
                          {"status": "Progressing"}))
    return cases


def all_cases() -> list[Case]:
    return [case for kind in KINDS for case in samples(kind)] + _variations()


def documented_argocd_cm() -> dict[str, Any]:
    """The argocd-cm ConfigMap that docs/argocd.md tells users to apply."""
    text = (ROOT / "docs" / "argocd.md").read_text()
    block = next(b.split("\n", 1)[1] for b in text.split("```")[1::2]
                 if b.startswith("yaml") and "kind: ConfigMap" in b)
    document = yaml.safe_load(block)
    assert isinstance(document, dict)
    return document


def reported(case: Case, health: dict[str, str]) -> dict[str, str]:
    """``health`` reduced to the keys the case checks."""
    return {key: health.get(key, "") for key in case.want}
