"""DropHeaders, HeaderFrom, InsertHeader, RegexRouter and TimestampRouter."""

from __future__ import annotations

import datetime as dt

import pytest

from kanal_worker.api.errors import ConfigError, DataError
from kanal_worker.api.records import Header, SinkRecord
from kanal_worker.api.schema import DATE, Schema, Type, struct
from kanal_worker.transforms.headers import (
    DropHeaders,
    HeaderFromKey,
    HeaderFromValue,
    InsertHeader,
)
from kanal_worker.transforms.routers import RegexRouter, TimestampRouter

SCHEMA = struct([("id", Schema(Type.INT32)), ("name", Schema(Type.STRING, optional=True))])


def sink(value: object = None, schema: Schema | None = None, topic: str = "orders",
         timestamp: int | None = 1714558530123) -> SinkRecord:
    return SinkRecord(topic=topic, kafka_offset=1, key=value, key_schema=schema, value=value,
                      value_schema=schema, timestamp=timestamp,
                      headers=[Header("a", "1"), Header("b", "2"), Header("a", "3")])


def test_drop_headers_removes_every_header_of_those_names() -> None:
    out = DropHeaders({"headers": "a, missing"}).apply(sink())
    assert [(h.key, h.value) for h in out.headers] == [("b", "2")]
    with pytest.raises(ConfigError, match="Missing required"):
        DropHeaders({})


def test_header_from_move_drops_fields_from_struct_and_schema() -> None:
    out = HeaderFromValue({"fields": "id", "headers": "h_id", "operation": "move"}).apply(
        sink({"id": 1, "name": "x"}, SCHEMA))
    assert out.value == {"name": "x"}
    assert out.value_schema == struct([("name", Schema(Type.STRING, optional=True))])
    assert out.headers[-1] == Header("h_id", 1, Schema(Type.INT32))
    assert len(out.headers) == 4


def test_header_from_copy_schemaless_keeps_the_map() -> None:
    out = HeaderFromKey({"fields": "id,gone", "headers": "x,y", "operation": "copy"}).apply(
        sink({"id": 1}))
    assert out.key == {"id": 1}
    assert [(h.key, h.value, h.schema) for h in out.headers[-2:]] == [("x", 1, None),
                                                                      ("y", None, None)]


@pytest.mark.parametrize(("config", "key", "message"), [
    ({"fields": "a,b", "headers": "c", "operation": "copy"}, "headers",
     "'fields' config must have the same number of elements as 'headers' config."),
    ({"fields": "a", "headers": "c", "operation": "swap"}, "operation", None),
])
def test_header_from_configuration(config: dict[str, str], key: str, message: str | None) -> None:
    with pytest.raises(ConfigError) as raised:
        HeaderFromValue(config)
    assert raised.value.key == key
    if message:
        assert raised.value.message == message


@pytest.mark.parametrize(("literal", "schema", "value"), [
    ("42", Schema(Type.INT8), 42), ("300", Schema(Type.INT16), 300),
    ("true", Schema(Type.BOOLEAN), True), ("3.14", Schema(Type.FLOAT32), 3.14),
    ("hello world", Schema(Type.STRING), "hello world"), ("null", None, None),
    ("2024-05-01", Schema(Type.INT32, name=DATE, version=1), dt.date(2024, 5, 1)),
])
def test_insert_header_types_literals(literal: str, schema: Schema | None,
                                      value: object) -> None:
    out = InsertHeader({"header": "h", "value.literal": literal}).apply(sink())
    assert out.headers[-1] == Header("h", value, schema)


def test_regex_router_uses_java_replacements() -> None:
    router = RegexRouter({"regex": "(?<domain>[a-z]+)\\.(.*)", "replacement": "${domain}-$2"})
    assert router.apply(sink(topic="vehicle.speeding")).topic == "vehicle-speeding"
    assert router.apply(sink(topic="Vehicle.speeding")).topic == "Vehicle.speeding"
    escaped = RegexRouter({"regex": "(.*)", "replacement": "\\$$1"})
    assert escaped.apply(sink(topic="t")).topic == "$t"


@pytest.mark.parametrize(("config", "key"), [
    ({"regex": "(", "replacement": "x"}, "regex"),
    ({"regex": "a", "replacement": "$x"}, "replacement"),
    ({"regex": "a"}, "replacement"),
])
def test_regex_router_configuration(config: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        RegexRouter(config)
    assert raised.value.key == key


def test_timestamp_router_formats_the_record_time_in_utc() -> None:
    assert TimestampRouter({}).apply(sink()).topic == "orders-20240501"
    hourly = TimestampRouter({"topic.format": "${timestamp}/${topic}",
                              "timestamp.format": "yyyy-MM-dd'T'HH"})
    assert hourly.apply(sink()).topic == "2024-05-01T10/orders"
    with pytest.raises(DataError, match="Timestamp missing on record"):
        TimestampRouter({}).apply(sink(timestamp=None))
    with pytest.raises(ConfigError, match="Illegal pattern character 'q'"):
        TimestampRouter({"timestamp.format": "yyyyq"})
