"""The CRDs in crds/ are exactly what the models generate, and structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kanal_operator.crds import crds, render, structural

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_crds_directory_matches_the_models() -> None:
    generated = {name: render(crd) for name, crd in crds().items()}
    on_disk = {path.name: path.read_text() for path in CRDS.glob("*.yaml")}
    assert on_disk == generated, "crds/ drifted from kanal_operator.models: run " \
        "`kanal crds --out-dir crds` and commit the result"


def _untyped(schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of schema nodes a structural schema does not allow."""
    bad = []
    if "type" not in schema and not schema.get("x-kubernetes-int-or-string"):
        bad.append(f"{path}: no type")
    for banned in ("$ref", "nullable", "anyOf", "allOf", "oneOf"):
        if banned in schema:
            bad.append(f"{path}: {banned}")
    if schema.get("additionalProperties") is False:
        bad.append(f"{path}: additionalProperties false")
    for name, sub in schema.get("properties", {}).items():
        bad += _untyped(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            bad += _untyped(schema[key], f"{path}[{key}]")
    return bad


def test_schemas_are_structural() -> None:
    for crd in crds().values():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert _untyped(schema) == []


def test_config_is_a_string_map_that_accepts_numbers() -> None:
    connector = crds()["connectors.kanal.dev.yaml"]
    spec = connector["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    config = spec["properties"]["config"]
    assert config["type"] == "object"
    assert config["additionalProperties"] == {"x-kubernetes-int-or-string": True}
    assert "x-kubernetes-preserve-unknown-fields" not in config


def test_subresources_printer_columns_and_names() -> None:
    connector = crds()["connectors.kanal.dev.yaml"]["spec"]
    version = connector["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.tasksMax", "statusReplicasPath": ".status.taskCount",
        "labelSelectorPath": ".status.selector"}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == \
        ["Cluster", "Class", "State", "Tasks", "Ready", "Age"]
    assert connector["names"]["shortNames"] == ["kctr"]
    assert connector["names"]["categories"] == ["kanal"]
    cluster = crds()["connectclusters.kanal.dev.yaml"]["spec"]
    assert cluster["names"]["shortNames"] == ["kcc"]
    assert cluster["versions"][0]["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"


def test_cel_rules_say_what_a_schema_cannot() -> None:
    text = yaml.safe_dump(crds()["connectors.kanal.dev.yaml"])
    assert "self == oldSelf" in text  # clusterRef is immutable
    assert "connector.class" in text and "tasks.max" in text


def test_optional_fields_lose_their_null_union() -> None:
    schema = {"$defs": {"Ref": {"type": "object", "title": "Ref",
                                "properties": {"name": {"type": "string", "title": "N"}}}},
              "type": "object",
              "properties": {"ref": {"anyOf": [{"$ref": "#/$defs/Ref"}, {"type": "null"}],
                                     "default": None, "description": "A\n   ref."}}}
    assert structural(schema) == {"type": "object", "properties": {"ref": {
        "type": "object", "properties": {"name": {"type": "string"}},
        "description": "A ref."}}}
