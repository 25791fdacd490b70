"""Predicates, ``predicate``/``negate`` in a chain, and the demo's speeding filter."""

from __future__ import annotations

import pytest

from kanal_worker.api.errors import ConfigError
from kanal_worker.api.records import Header, SinkRecord
from kanal_worker.api.schema import Schema, Type, struct
from kanal_worker.runtime.transforms import apply_chain, build_chain
from kanal_worker.transforms.predicates import (
    FieldValueMatches,
    HasHeaderKey,
    RecordIsTombstone,
    TopicNameMatches,
)

READING = struct([("vehicle", Schema(Type.STRING)), ("speed", Schema(Type.FLOAT64)),
                  ("position", struct([("lat", Schema(Type.FLOAT64))], optional=True))])


def reading(speed: float, topic: str = "vehicle.telemetry", schema: bool = True) -> SinkRecord:
    value = {"vehicle": "truck-7", "speed": speed, "position": {"lat": 52.5}}
    return SinkRecord(topic=topic, kafka_offset=0, value=value,
                      value_schema=READING if schema else None, headers=[Header("trace", "1")])


def test_apache_predicates() -> None:
    assert TopicNameMatches({"pattern": "vehicle\\..*"}).test(reading(1))
    assert not TopicNameMatches({"pattern": "vehicle"}).test(reading(1))
    assert HasHeaderKey({"name": "trace"}).test(reading(1))
    assert not HasHeaderKey({"name": "other"}).test(reading(1))
    assert RecordIsTombstone({}).test(SinkRecord(topic="t", kafka_offset=0, value=None))
    assert not RecordIsTombstone({}).test(reading(1))


@pytest.mark.parametrize(("config", "key"), [
    ({"pattern": "["}, "pattern"), ({"pattern": ""}, "pattern"), ({}, "pattern")])
def test_topic_name_matches_configuration(config: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        TopicNameMatches(config)
    assert raised.value.key == key


@pytest.mark.parametrize("schema", [True, False], ids=["struct", "schemaless"])
@pytest.mark.parametrize(("operator", "value", "speed", "expected"), [
    ("gt", "120", 130.5, True), ("gt", "120", 120, False), ("ge", "120", 120, True),
    ("lt", "50", 49.9, True), ("le", "50", 51, False), ("eq", "88", 88.0, True),
    ("ne", "88", 88.0, False), ("regex", "1[0-9]+\\.5", 130.5, True),
])
def test_field_value_matches(operator: str, value: str, speed: float, expected: bool,
                             schema: bool) -> None:
    predicate = FieldValueMatches({"field": "speed", "operator": operator, "value": value})
    assert predicate.test(reading(speed, schema=schema)) is expected


def test_field_value_matches_nested_text_and_missing_fields() -> None:
    assert FieldValueMatches({"field": "position.lat", "operator": "gt",
                              "value": "50"}).test(reading(1))
    assert FieldValueMatches({"field": "vehicle", "value": "truck-7"}).test(reading(1))
    assert not FieldValueMatches({"field": "nope", "operator": "ne",
                                  "value": "x"}).test(reading(1))
    assert not FieldValueMatches({"field": "speed", "operator": "gt", "value": "1"}).test(
        SinkRecord(topic="t", kafka_offset=0, value="not a map"))


def test_field_value_matches_configuration() -> None:
    with pytest.raises(ConfigError) as raised:
        FieldValueMatches({"field": "speed", "operator": "between", "value": "1"})
    assert raised.value.key == "operator"
    with pytest.raises(ConfigError) as raised:
        FieldValueMatches({"field": "speed", "operator": "regex", "value": "("})
    assert raised.value.key == "value"


def test_speeding_filter_keeps_only_speeding_records() -> None:
    chain = build_chain({
        "transforms": "onlySpeeding",
        "transforms.onlySpeeding.type": "org.apache.kafka.connect.transforms.Filter",
        "transforms.onlySpeeding.predicate": "isSpeeding",
        "transforms.onlySpeeding.negate": "true",
        "predicates": "isSpeeding",
        "predicates.isSpeeding.type": "FieldValueMatches",
        "predicates.isSpeeding.field": "speed",
        "predicates.isSpeeding.operator": "gt",
        "predicates.isSpeeding.value": "120",
    })
    kept = [r.value["speed"] for r in (apply_chain(chain, reading(s)) for s in (80, 121, 150))
            if r is not None]
    assert kept == [121, 150]
