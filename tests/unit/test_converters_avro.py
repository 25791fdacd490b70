"""AvroConverter: Confluent's wire format and AvroData's schema mapping, round trips.

No Confluent-compatible schema registry can run here (Confluent's is not on Maven Central,
Apicurio publishes no runnable jar there, Karapace is not on PyPI), so the registry is an
in-memory one behind the converter's ``SchemaRegistry`` protocol.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kanal_worker.api.errors import ConfigError, DataError
from kanal_worker.api.schema import DATE, DECIMAL, TIME, TIMESTAMP, Field, Schema, Type
from kanal_worker.api.schema import struct as struct_schema
from kanal_worker.converters.avro import (
    AvroConverter,
    HttpSchemaRegistry,
    to_avro_schema,
    to_connect_schema,
)
from tests.unit.test_transforms_properties import schemas, values


class MemoryRegistry:
    """Ids per distinct schema text, subjects as lists of versions, like a registry."""

    def __init__(self) -> None:
        self.schemas: list[str] = []
        self.subjects: dict[str, list[int]] = {}

    def register(self, subject: str, schema: str) -> int:
        if schema not in self.schemas:
            self.schemas.append(schema)
        schema_id = self.schemas.index(schema) + 1
        versions = self.subjects.setdefault(subject, [])
        if schema_id not in versions:
            versions.append(schema_id)
        return schema_id

    def lookup(self, subject: str, schema: str) -> int:
        schema_id = self.schemas.index(schema) + 1 if schema in self.schemas else None
        if schema_id is None or schema_id not in self.subjects.get(subject, []):
            raise DataError(f"Schema not found under subject {subject}")
        return schema_id

    def latest(self, subject: str) -> tuple[int, str]:
        schema_id = self.subjects[subject][-1]
        return schema_id, self.schemas[schema_id - 1]

    def schema(self, schema_id: int) -> str:
        return self.schemas[schema_id - 1]


READING = struct_schema([
    ("vehicle", Schema(Type.STRING)),
    ("speed", Schema(Type.FLOAT64)),
    ("lane", Schema(Type.INT8, optional=True)),
    ("at", Schema(Type.INT64, name=TIMESTAMP, version=1)),
    ("day", Schema(Type.INT32, name=DATE, version=1)),
    ("clock", Schema(Type.INT32, name=TIME, version=1)),
    ("fine", Schema(Type.BYTES, name=DECIMAL, version=1, parameters={"scale": "2"})),
    ("tags", Schema(Type.MAP, key_schema=Schema(Type.STRING), value_schema=Schema(Type.STRING))),
    ("counts", Schema(Type.MAP, key_schema=Schema(Type.INT32), value_schema=Schema(Type.INT64))),
    ("position", struct_schema([("lat", Schema(Type.FLOAT32))], optional=True)),
], name="dev.kanal.telemetry.Reading", version=2, doc="One reading")
VALUE = {"vehicle": "truck-7", "speed": 130.5, "lane": None,
         "at": dt.datetime(2024, 5, 1, 10, 15, 30, 123000, tzinfo=dt.UTC),
         "day": dt.date(2024, 5, 1), "clock": dt.time(10, 15, 30, 123000),
         "fine": decimal.Decimal("120.50"), "tags": {"fleet": "north"}, "counts": {1: 2},
         "position": {"lat": 52.5}}


def converter(registry: MemoryRegistry, **config: str) -> AvroConverter:
    return AvroConverter({"schema.registry.url": "http://registry:8081", **config}, False,
                         registry=registry)


def test_wire_format_is_magic_byte_schema_id_and_avro_binary() -> None:
    registry = MemoryRegistry()
    data = converter(registry).from_connect("vehicle.speeding", READING, VALUE)
    assert data is not None
    assert struct.unpack(">bI", data[:5]) == (0, 1)
    assert registry.subjects == {"vehicle.speeding-value": [1]}
    back = converter(registry).to_connect("vehicle.speeding", data)
    assert back.value == VALUE
    assert back.schema == READING


def test_schemas_follow_confluents_avro_data_mapping() -> None:
    avro = to_avro_schema(READING)
    assert avro["type"] == "record"
    assert (avro["namespace"], avro["name"]) == ("dev.kanal.telemetry", "Reading")
    assert avro["connect.name"] == "dev.kanal.telemetry.Reading"
    assert avro["connect.version"] == 2
    fields = {f["name"]: f for f in avro["fields"]}
    assert fields["lane"] == {"name": "lane", "type": ["null", {"type": "int",
                                                               "connect.type": "int8"}],
                              "default": None}
    assert fields["at"]["type"]["logicalType"] == "timestamp-millis"
    assert fields["fine"]["type"]["logicalType"] == "decimal"
    assert fields["fine"]["type"]["scale"] == 2
    assert fields["tags"]["type"]["type"] == "map"
    assert fields["counts"]["type"]["items"]["name"] == "MapEntry"
    assert fields["position"]["type"][1]["name"] == "ConnectDefault"
    assert to_avro_schema(Schema(Type.STRING, optional=True)) == ["null", "string"]
    assert to_connect_schema(json.loads(json.dumps(avro))) == READING


def test_a_record_used_twice_is_defined_once_and_others_of_its_name_are_numbered() -> None:
    place = struct_schema([("lat", Schema(Type.FLOAT64))], name="dev.kanal.Place")
    other_place = struct_schema([("name", Schema(Type.STRING))], name="dev.kanal.Place")
    trip = struct_schema([("start", place), ("end", place), ("via", other_place),
                          ("legs", Schema(Type.MAP, key_schema=Schema(Type.INT32),
                                          value_schema=place))], name="dev.kanal.Trip")
    avro = to_avro_schema(trip)
    fields = {f["name"]: f["type"] for f in avro["fields"]}
    assert fields["start"]["name"] == "Place" and fields["end"] == "dev.kanal.Place"
    assert fields["via"]["name"] == "Place2"
    assert fields["legs"]["items"]["fields"][1]["type"] == "dev.kanal.Place"
    value = {"start": {"lat": 1.0}, "end": {"lat": 2.0}, "via": {"name": "x"},
             "legs": {1: {"lat": 3.0}}}
    registry = MemoryRegistry()
    data = converter(registry).from_connect("trips", trip, value)
    assert converter(registry).to_connect("trips", data).value == value


def test_subject_name_strategies_and_registration_modes() -> None:
    registry = MemoryRegistry()
    record_named = converter(registry, **{
        "value.subject.name.strategy":
            "io.confluent.kafka.serializers.subject.TopicRecordNameStrategy"})
    record_named.from_connect("t", READING, VALUE)
    assert list(registry.subjects) == ["t-dev.kanal.telemetry.Reading"]
    lookup_only = converter(registry, **{"auto.register.schemas": "false"})
    with pytest.raises(DataError, match="Schema not found"):
        lookup_only.from_connect("other", READING, VALUE)
    latest = converter(registry, **{"auto.register.schemas": "false",
                                    "use.latest.version": "true",
                                    "value.subject.name.strategy": "TopicRecordNameStrategy"})
    data = latest.from_connect("t", READING, VALUE)
    assert data is not None and data[1:5] == b"\x00\x00\x00\x01"
    with pytest.raises(ConfigError):
        converter(registry, **{"value.subject.name.strategy": "Nope"})


def test_schemas_are_registered_once_per_schema_object() -> None:
    registry = MemoryRegistry()
    calls = {"n": 0}
    register = registry.register

    def counting(subject: str, schema: str) -> int:
        calls["n"] += 1
        return register(subject, schema)
    registry.register = counting  # type: ignore[method-assign]
    avro = converter(registry)
    for _ in range(100):
        avro.from_connect("t", READING, VALUE)
    assert calls["n"] == 1


def test_bad_bytes_are_data_errors() -> None:
    avro = converter(MemoryRegistry())
    with pytest.raises(DataError, match="Unknown magic byte"):
        avro.to_connect("t", b"\x01\x00\x00\x00\x01abc")
    with pytest.raises(DataError, match="too short"):
        avro.to_connect("t", b"\x00\x01")
    data = avro.from_connect("t", READING, VALUE)
    assert data is not None
    with pytest.raises(DataError, match="Failed to deserialize Avro data"):
        avro.to_connect("t", data[:12])
    with pytest.raises(DataError, match="null value for field that is required"):
        avro.from_connect("t", READING, {**VALUE, "vehicle": None})


def test_registry_credentials_come_from_the_url_or_user_info() -> None:
    from_url = HttpSchemaRegistry("https://alice:s%3Dcret@registry:8081/base/,http://other", None)
    assert from_url.base == "https://registry:8081/base"
    assert from_url.auth == "Basic YWxpY2U6cz1jcmV0"
    explicit = HttpSchemaRegistry("http://registry:8081", "bob:pw")
    assert explicit.auth == "Basic Ym9iOnB3"


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_round_trips_any_connect_schema_and_value(data: st.DataObject) -> None:
    schema = data.draw(schemas())
    value = data.draw(values(schema))
    avro = converter(MemoryRegistry())
    encoded = avro.from_connect("t", schema, value)
    if encoded is None:
        assert value is None
        return
    back = avro.to_connect("t", encoded)
    assert back.value == _expected(schema, value)


def _expected(schema: Schema, value: object) -> object:
    """What comes back: float32 values at float32 precision."""
    if value is None:
        return None
    if schema.type == Type.FLOAT32 and isinstance(value, float):
        return struct.unpack("f", struct.pack("f", value))[0]
    if schema.type == Type.STRUCT and isinstance(value, dict):
        return {f.name: _expected(f.schema, value.get(f.name)) for f in schema.fields}
    if schema.type == Type.ARRAY and isinstance(value, list):
        assert schema.value_schema is not None
        return [_expected(schema.value_schema, v) for v in value]
    if schema.type == Type.MAP and isinstance(value, dict):
        assert schema.value_schema is not None
        return {k: _expected(schema.value_schema, v) for k, v in value.items()}
    return value


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=40))
def test_garbage_is_rejected_with_data_errors(data: bytes) -> None:
    registry = MemoryRegistry()
    avro = converter(registry)
    avro.from_connect("t", READING, VALUE)
    with contextlib.suppress(DataError):
        avro.to_connect("t", b"\x00\x00\x00\x00\x01" + data)


def test_field_objects_keep_their_order() -> None:
    schema = Schema(Type.STRUCT, fields=(Field("b", 0, Schema(Type.INT32)),
                                         Field("a", 1, Schema(Type.INT32))))
    assert [f["name"] for f in to_avro_schema(schema)["fields"]] == ["b", "a"]
