"""CustomResourceDefinitions rendered from the pydantic models.

The API server needs *structural* schemas: every node typed, no ``$ref``, no
``nullable``, no ``anyOf`` for optionality. ``structural`` turns pydantic's JSON Schema
into that form; everything a schema cannot say (immutability, mutually exclusive keys)
rides along as CEL ``x-kubernetes-validations`` declared on the models.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import BaseModel

from kanal_operator.models import (
    ConnectClusterSpec,
    ConnectClusterStatus,
    ConnectorSpec,
    ConnectorStatus,
)
from kanal_worker.cluster.protocol import CLUSTERS, CONNECTORS, GROUP, VERSION

CATEGORY = "kanal"
_KEPT = {"type", "description", "default", "enum", "minimum", "maximum", "minLength",
         "maxLength", "pattern", "format", "items", "properties", "required",
         "additionalProperties", "minItems", "maxItems"}


def structural(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> dict[str, Any]:
    """A pydantic JSON Schema in the structural form Kubernetes accepts."""
    defs = schema.get("$defs", {}) if defs is None else defs
    node = dict(schema)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**target, **node}
    if "anyOf" in node:  # Optional[X]: the API server says "absent", not null
        variants = [v for v in node.pop("anyOf") if v.get("type") != "null"]
        if len(variants) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {variants}")
        node = {**structural(variants[0], defs), **node}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if node.get("default", 0) is None:
        del node["default"]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-"):
            out[key] = value
        elif key not in _KEPT:
            continue
        elif key == "description":
            out[key] = _plain(value)
        elif key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = structural(value, defs)
        else:
            out[key] = value
    return out


def _plain(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("``", "`")).strip()


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return structural(model.model_json_schema(by_alias=True, mode="validation"))


def _column(name: str, path: str, kind: str = "string", priority: int = 0,
            description: str = "") -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": kind, "jsonPath": path}
    if priority:
        column["priority"] = priority
    if description:
        column["description"] = description
    return column


READY = '.status.conditions[?(@.type=="Ready")].status'


def _definition(kind: str, plural: str, short_names: list[str], spec: type[BaseModel],
                status: type[BaseModel], columns: list[dict[str, Any]],
                scale: dict[str, str], root_rules: list[dict[str, str]]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "description": _plain(spec.__doc__ or kind),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": _schema(spec),
            "status": _schema(status),
        },
    }
    if root_rules:
        schema["x-kubernetes-validations"] = root_rules
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}",
                     "labels": {"app.kubernetes.io/name": "kanal",
                                "app.kubernetes.io/part-of": "kanal"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                      "singular": kind.lower(), "shortNames": short_names,
                      "categories": [CATEGORY]},
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": schema},
                "subresources": {"status": {}, "scale": scale},
                "additionalPrinterColumns": columns,
            }],
        },
    }


def connect_cluster_crd() -> dict[str, Any]:
    return _definition(
        "ConnectCluster", CLUSTERS, ["kcc"], ConnectClusterSpec, ConnectClusterStatus,
        [_column("Desired", ".spec.replicas", "integer"),
         _column("Workers", ".status.readyReplicas", "integer",
                 description="Workers that heartbeat"),
         _column("Ready", READY),
         _column("Bootstrap", ".spec.bootstrapServers", priority=1),
         _column("Age", ".metadata.creationTimestamp", "date")],
        {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
         "labelSelectorPath": ".status.selector"},
        # children are named <name>-connect and must stay valid DNS labels (63)
        [{"rule": "size(self.metadata.name) <= 55",
          "message": "ConnectCluster names are limited to 55 characters"}])


def connector_crd() -> dict[str, Any]:
    return _definition(
        "Connector", CONNECTORS, ["kctr"], ConnectorSpec, ConnectorStatus,
        [_column("Cluster", ".spec.clusterRef.name"),
         _column("Class", ".spec.class"),
         _column("State", ".status.state"),
         _column("Tasks", ".status.taskSummary", description="Ready tasks / planned tasks"),
         _column("Ready", READY, priority=1),
         _column("Age", ".metadata.creationTimestamp", "date")],
        {"specReplicasPath": ".spec.tasksMax", "statusReplicasPath": ".status.taskCount",
         "labelSelectorPath": ".status.selector"},
        [])


def crds() -> dict[str, dict[str, Any]]:
    """Every CRD by its file name in ``crds/``."""
    return {f"{crd['metadata']['name']}.yaml": crd
            for crd in (connect_cluster_crd(), connector_crd())}


def render(crd: dict[str, Any]) -> str:
    header = "# Generated by `kanal crds` from kanal_operator.models; do not edit.\n"
    return header + yaml.safe_dump(crd, sort_keys=False, width=100, allow_unicode=True)
