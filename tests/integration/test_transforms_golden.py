"""Kanal's transforms and predicates give what Apache Kafka Connect 4.3.1 gave.

``tests/golden/*.json`` hold the outputs a real Apache worker produced for each case
(recorded by ``dev/golden/record_peer_outputs.py``: FileStreamSource → the case's chain
→ JsonConverter with schemas and SimpleHeaderConverter → Kafka). This test feeds the same
lines through Kanal the way its source runtime does (FileStreamSource's records, the
chain, the same converters) and compares the bytes, parsed as JSON, with Apache's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kanal_worker.api.errors import ConfigError, DataError
from kanal_worker.api.java_text import to_float32
from kanal_worker.api.records import SourceRecord
from kanal_worker.api.schema import STRING
from kanal_worker.converters.json import JsonConverter
from kanal_worker.converters.simple import SimpleHeaderConverter
from kanal_worker.runtime.errors import java_exception_class
from kanal_worker.runtime.transforms import apply_chain, build_chain
from kanal_worker.runtime.validation import errors_of, validate

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
FIXTURES = sorted(p for p in GOLDEN.glob("*.json")
                  if isinstance(json.loads(p.read_text(encoding="utf-8")), dict))
"""The transform cases (other goldens beside them, e.g. JsonConverter's, are lists)."""


def load(path: Path) -> dict[str, Any]:
    fixture: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return fixture


def test_fixtures_exist() -> None:
    assert len(FIXTURES) >= 40, "run dev/golden/record_peer_outputs.py against dev/stack"


def connector(fixture: dict[str, Any]) -> dict[str, str]:
    return {"name": f"golden-{fixture['name']}",
            "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
            "topic": fixture["topic"], "file": "", **fixture["config"]}


def run_kanal(fixture: dict[str, Any]) -> tuple[list[dict[str, Any]], Exception | None]:
    """The records Kanal writes for the fixture's lines, and the error that stopped it."""
    chain = build_chain(fixture["config"])
    keys = JsonConverter({"schemas.enable": "true"}, True)
    values = JsonConverter({"schemas.enable": "true"}, False)
    headers = SimpleHeaderConverter({})
    outputs: list[dict[str, Any]] = []
    # Apache's FileStreamSource stamps records with the time it read them; replay that time
    stamps = [r["timestamp"] for r in fixture.get("outputs", [])]
    position = 0
    for line in fixture["lines"]:
        position += len(line.encode()) + 1
        record = SourceRecord(topic=fixture["topic"], value=line, value_schema=STRING,
                              timestamp=stamps[0] if stamps else None,
                              source_partition={"filename": "golden"},
                              source_offset={"position": position})
        try:
            out = apply_chain(chain, record)
            if out is None:
                continue
            key = keys.from_connect(out.topic, out.key_schema, out.key)
            value = values.from_connect(out.topic, out.value_schema, out.value)
            header_bytes = [[h.key, headers.from_connect_header(out.topic, h.key, h.schema,
                                                                h.value)] for h in out.headers]
        except (DataError, ConfigError) as exc:
            return outputs, exc
        outputs.append({
            "topic": out.topic,
            "key": None if key is None else key.decode(),
            "value": None if value is None else value.decode(),
            "headers": [[k, None if v is None else v.decode()] for k, v in header_bytes],
        })
    return outputs, None


JSON_TYPE_NAMES = {"float": "float32", "double": "float64"}
"""Apache's JsonConverter names FLOAT32 and FLOAT64 schemas "float" and "double"."""


def normalized(document: str | None) -> Any:
    """A JsonConverter envelope with float32 payloads rounded the way Java holds them, and
    floating point type names in one spelling (the converter's, not the transforms' concern:
    ``test_json_converter_spells_float_types_like_apache`` checks it)."""
    if document is None:
        return None
    parsed = json.loads(document)
    if isinstance(parsed, dict) and "schema" in parsed and "payload" in parsed:
        schema = _type_names(parsed["schema"])
        return {"schema": schema, "payload": _round_floats(schema, parsed["payload"])}
    return parsed


def _type_names(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: (JSON_TYPE_NAMES.get(v, v) if k == "type" else _type_names(v))
                for k, v in schema.items()}
    if isinstance(schema, list):
        return [_type_names(item) for item in schema]
    return schema


def _round_floats(schema: dict[str, Any] | None, value: Any) -> Any:
    if schema is None or value is None:
        return value
    if schema["type"] == "float32" and isinstance(value, int | float):
        return to_float32(float(value))
    if schema["type"] == "struct":
        fields = {f["field"]: f for f in schema.get("fields", [])}
        return {k: _round_floats(fields.get(k), v) for k, v in value.items()}
    if schema["type"] == "array":
        return [_round_floats(schema.get("items"), v) for v in value]
    return value


def comparable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"topic": r["topic"], "key": normalized(r["key"]), "value": normalized(r["value"]),
             "headers": [[k, _header(v)] for k, v in r["headers"]]} for r in records]


def _header(text: str | None) -> Any:
    """A map header is written in the map's order: Java's HashMap order is not Kanal's."""
    if text is not None and text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def messages(chain: list[dict[str, str]]) -> list[str]:
    return [_without_record_dump(c["message"]) for c in chain]


def _without_record_dump(message: str) -> str:
    """Apache appends Java's toString of a record to some messages; compare up to it."""
    head, marker, _ = message.partition(" on record: ")
    return head + marker if marker else message


@pytest.mark.parametrize("path", [p for p in FIXTURES if "outputs" in load(p)],
                         ids=lambda p: p.stem)
def test_records_match_apache(path: Path) -> None:
    fixture = load(path)
    outputs, error = run_kanal(fixture)
    assert comparable(outputs) == comparable(fixture["outputs"])
    apache_failure = fixture.get("failure")
    if apache_failure is None:
        assert error is None, f"Kanal failed where Apache did not: {error}"
        return
    assert error is not None, f"Apache failed with {apache_failure[-1]}, Kanal did not"
    assert _without_record_dump(str(error)) in messages(apache_failure)
    # what the dead-letter header names: the exception under "Tolerance exceeded"
    assert java_exception_class(error) == apache_failure[1]["exception"]


def _validation_cases() -> list[Path]:
    return [p for p in FIXTURES if load(p)["validate_errors"]]


@pytest.mark.parametrize("path", _validation_cases(), ids=lambda p: p.stem)
def test_validation_flags_the_keys_apache_flags(path: Path) -> None:
    fixture = load(path)
    kanal_errors = errors_of(validate(connector(fixture)))
    assert set(fixture["validate_errors"]) <= set(kanal_errors), kanal_errors
    with pytest.raises(ConfigError):
        build_chain(fixture["config"])


@pytest.mark.parametrize("path", [p for p in FIXTURES if load(p).get("start_failure")],
                         ids=lambda p: p.stem)
def test_mistakes_apache_finds_at_start_are_found_at_validation(path: Path) -> None:
    """Apache's validate accepts these and the task fails when it starts; Kanal's validate
    names each bad key (and building the chain fails the same way)."""
    fixture = load(path)
    kanal_errors = errors_of(validate(connector(fixture)))
    aliases = fixture["config"]["transforms"].split(",")
    for alias in aliases:
        assert any(key.startswith(f"transforms.{alias}.") for key in kanal_errors), alias
    with pytest.raises(ConfigError) as raised:
        build_chain(fixture["config"])
    assert raised.value.message in {c["message"] for c in fixture["start_failure"]}


def test_json_converter_spells_float_types_like_apache() -> None:
    fixture = load(GOLDEN / "extract-field-struct.json")
    outputs, _ = run_kanal(fixture)
    assert json.loads(outputs[0]["value"])["schema"] == \
        json.loads(fixture["outputs"][0]["value"])["schema"]
