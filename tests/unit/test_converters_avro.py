"""AvroConverter: Confluent's wire format and AvroData's schema mapping, against the test
registry and cross-checked with confluent-kafka's own AvroSerializer / AvroDeserializer:
what either writes, the other reads."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import functools
import json
import struct
import uuid

import pytest
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kanal_worker.api.errors import ConfigError, DataError
from kanal_worker.api.schema import DATE, DECIMAL, TIME, TIMESTAMP, Field, Schema, Type
from kanal_worker.api.schema import struct as struct_schema
from kanal_worker.converters.avro import AvroConverter
from kanal_worker.converters.avro_data import ENUM, UNION, to_avro_schema, to_connect_schema
from kanal_worker.converters.registry import RegistrySchema, SchemaReference
from tests.schema_registry import TestRegistry
from tests.schema_registry import confluent_client as _confluent
from tests.schema_registry import value_context as _context
from tests.unit.test_transforms_properties import schemas, values

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
    ("stops", Schema(Type.ARRAY, value_schema=Schema(Type.STRING))),
    ("position", struct_schema([("lat", Schema(Type.FLOAT32))], optional=True)),
], name="dev.kanal.telemetry.Reading", version=2, doc="One reading")
VALUE = {"vehicle": "truck-7", "speed": 130.5, "lane": None,
         "at": dt.datetime(2024, 5, 1, 10, 15, 30, 123000, tzinfo=dt.UTC),
         "day": dt.date(2024, 5, 1), "clock": dt.time(10, 15, 30, 123000),
         "fine": decimal.Decimal("120.50"), "tags": {"fleet": "north"}, "counts": {1: 2},
         "stops": ["depot", "port"], "position": {"lat": 52.5}}

# an Avro schema as Java and Python producers write it: enum, unions, logical types
SHIPMENT = {
    "type": "record", "name": "Shipment", "namespace": "dev.kanal.freight",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "state", "type": {"type": "enum", "name": "State",
                                   "symbols": ["PLANNED", "MOVING", "DELIVERED"]}},
        {"name": "weight", "type": ["null", "double"], "default": None},
        {"name": "label", "type": ["string", "long"]},
        {"name": "origin", "type": ["null", {"type": "record", "name": "Place", "fields": [
            {"name": "city", "type": "string"}]}, "string"], "default": None},
        {"name": "due", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10,
                                   "scale": 2}},
        {"name": "legs", "type": {"type": "array", "items": "int"}},
        {"name": "notes", "type": {"type": "map", "values": "string"}},
    ]}
SHIPMENT_VALUE = {"id": "s-1", "state": "MOVING", "weight": None, "label": 42,
                  "origin": {"city": "Hamburg"},
                  "due": dt.datetime(2025, 1, 2, 3, 4, 5, 6000, tzinfo=dt.UTC),
                  "price": decimal.Decimal("19.99"), "legs": [1, 2], "notes": {"a": "b"}}


def _topic() -> str:
    return f"freight-{uuid.uuid4().hex[:10]}"


def converter(url: str, is_key: bool = False, **config: str) -> AvroConverter:
    return AvroConverter({"schema.registry.url": url, **config}, is_key)


def test_wire_format_is_magic_byte_schema_id_and_avro_binary(
        schema_registry: TestRegistry) -> None:
    topic = _topic()
    data = converter(schema_registry.url).from_connect(topic, READING, VALUE)
    payload = schema_registry.framed(data, f"{topic}-value")
    assert payload[:8] == b"\x0etruck-7"  # Avro binary: zig-zag length, then UTF-8
    back = converter(schema_registry.url).to_connect(topic, data)
    assert (back.schema, back.value) == (READING, VALUE)


def test_records_kanal_writes_are_read_by_confluents_deserializer(
        schema_registry: TestRegistry) -> None:
    topic = _topic()
    data = converter(schema_registry.url).from_connect(topic, READING, VALUE)
    read = AvroDeserializer(_confluent(schema_registry.url))(data, _context(topic))
    assert read == {**VALUE, "counts": [{"key": 1, "value": 2}]}


def test_records_confluents_serializer_writes_are_read_by_kanal(
        schema_registry: TestRegistry) -> None:
    topic = _topic()
    serializer = AvroSerializer(_confluent(schema_registry.url), json.dumps(SHIPMENT))
    for label, origin, field in ((42, {"city": "Hamburg"}, "Place"), ("x-9", "Kiel", "string")):
        value = {**SHIPMENT_VALUE, "label": label, "origin": origin}
        read = converter(schema_registry.url).to_connect(
            topic, serializer(value, _context(topic)))
        assert read.schema is not None
        fields = {f.name: f.schema for f in read.schema.fields}
        assert fields["state"].type == Type.STRING
        assert fields["state"].parameters == {
            ENUM: "dev.kanal.freight.State", f"{ENUM}.PLANNED": "PLANNED",
            f"{ENUM}.MOVING": "MOVING", f"{ENUM}.DELIVERED": "DELIVERED"}
        assert fields["label"].name == UNION and not fields["label"].optional
        assert [f.name for f in fields["label"].fields] == ["string", "long"]
        assert fields["origin"].name == UNION and fields["origin"].optional
        assert [f.name for f in fields["origin"].fields] == ["Place", "string"]
        assert read.value["label"] == {"string": label if isinstance(label, str) else None,
                                       "long": label if isinstance(label, int) else None}
        assert read.value["origin"] == {"Place": None, "string": None, field: origin}
        assert {k: v for k, v in read.value.items() if k not in ("label", "origin")} == {
            k: v for k, v in SHIPMENT_VALUE.items() if k not in ("label", "origin")}


def test_enums_and_unions_go_back_to_confluent_as_they_came(
        schema_registry: TestRegistry) -> None:
    """Read with Kanal, written again with enhanced.avro.schema.support: Confluent's
    deserializer sees the enum, the union branches and the values it wrote."""
    topic, out = _topic(), _topic()
    serializer = AvroSerializer(_confluent(schema_registry.url), json.dumps(SHIPMENT))
    enhanced = {"enhanced.avro.schema.support": "true"}
    read = converter(schema_registry.url, **enhanced).to_connect(
        topic, serializer(SHIPMENT_VALUE, _context(topic)))
    assert read.schema is not None
    written = converter(schema_registry.url, **enhanced).from_connect(
        out, read.schema, read.value)
    assert AvroDeserializer(_confluent(schema_registry.url))(written, _context(out)) == \
        SHIPMENT_VALUE
    avro = json.loads(_confluent(schema_registry.url).get_latest_version(
        f"{out}-value").schema.schema_str)
    types = {f["name"]: f["type"] for f in avro["fields"]}
    assert types["state"]["type"] == "enum"
    assert types["state"]["symbols"] == ["PLANNED", "MOVING", "DELIVERED"]
    assert types["label"] == ["string", "long"]


def test_a_new_optional_field_under_backward_compatibility(
        schema_registry: TestRegistry) -> None:
    topic = _topic()
    old = AvroSerializer(_confluent(schema_registry.url), json.dumps(SHIPMENT))
    old_data = old(SHIPMENT_VALUE, _context(topic))
    kanal = converter(schema_registry.url, **{"enhanced.avro.schema.support": "true"})
    first = kanal.to_connect(topic, old_data)
    assert first.schema is not None
    evolved = first.schema.with_(fields=(*first.schema.fields, Field(
        "carrier", len(first.schema.fields), Schema(Type.STRING, optional=True))))
    new_data = kanal.from_connect(topic, evolved, {**first.value, "carrier": "rail"})
    assert len(schema_registry.state.subjects[f"{topic}-value"]) == 2
    assert AvroDeserializer(_confluent(schema_registry.url))(new_data, _context(topic))[
        "carrier"] == "rail"
    assert kanal.to_connect(topic, old_data).value == first.value
    required = first.schema.with_(fields=(*first.schema.fields, Field(
        "driver", len(first.schema.fields), Schema(Type.STRING))))
    with pytest.raises(DataError, match="incompatible"):
        kanal.from_connect(topic, required, {**first.value, "driver": "x"})


def test_schemas_with_references_are_read(schema_registry: TestRegistry) -> None:
    place_subject, topic = f"place-{uuid.uuid4().hex[:8]}", _topic()
    client = _confluent(schema_registry.url)
    place = {"type": "record", "name": "Place", "namespace": "dev.kanal.geo",
             "fields": [{"name": "city", "type": "string"}]}
    client.register_schema(place_subject, RegistrySchema(json.dumps(place), "AVRO"))
    trip = {"type": "record", "name": "Trip", "namespace": "dev.kanal.geo", "fields": [
        {"name": "from", "type": "dev.kanal.geo.Place"},
        {"name": "to", "type": ["null", "dev.kanal.geo.Place"], "default": None}]}
    schema = RegistrySchema(json.dumps(trip), "AVRO",
                            [SchemaReference("dev.kanal.geo.Place", place_subject, 1)])
    serializer = AvroSerializer(client, schema)
    value = {"from": {"city": "Bremen"}, "to": {"city": "Kiel"}}
    read = converter(schema_registry.url).to_connect(topic, serializer(value, _context(topic)))
    assert read.value == value
    assert read.schema is not None and read.schema.fields[0].schema.name == "dev.kanal.geo.Place"


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


def test_enums_are_strings_unless_enhanced_schema_support() -> None:
    state = to_connect_schema(SHIPMENT).fields[1].schema
    assert to_avro_schema(state, metadata=False) == "string"
    enum = to_avro_schema(state, metadata=False, enhanced=True)
    assert (enum["type"], enum["name"], enum["namespace"]) == ("enum", "State",
                                                                "dev.kanal.freight")


def test_a_record_used_twice_is_defined_once_and_others_of_its_name_are_numbered(
        schema_registry: TestRegistry) -> None:
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
    topic = _topic()
    data = converter(schema_registry.url).from_connect(topic, trip, value)
    assert converter(schema_registry.url).to_connect(topic, data).value == value


def test_subject_name_strategies_and_registration_modes(schema_registry: TestRegistry) -> None:
    url, topic = schema_registry.url, _topic()
    record_named = converter(url, **{
        "value.subject.name.strategy":
            "io.confluent.kafka.serializers.subject.TopicRecordNameStrategy"})
    record_named.from_connect(topic, READING, VALUE)
    subject = f"{topic}-dev.kanal.telemetry.Reading"
    assert subject in schema_registry.state.subjects
    lookup_only = converter(url, **{"auto.register.schemas": "false"})
    with pytest.raises(DataError, match="not found"):
        lookup_only.from_connect(_topic(), READING, VALUE)
    latest = converter(url, **{"auto.register.schemas": "false", "use.latest.version": "true",
                               "value.subject.name.strategy": "TopicRecordNameStrategy"})
    data = latest.from_connect(topic, READING, VALUE)
    assert data is not None
    assert struct.unpack(">I", data[1:5])[0] == schema_registry.state.subjects[subject][-1]
    with pytest.raises(ConfigError):
        converter(url, **{"value.subject.name.strategy": "Nope"})


def test_use_latest_version_checks_compatibility_unless_told_not_to(
        schema_registry: TestRegistry) -> None:
    url, topic = schema_registry.url, _topic()
    converter(url).from_connect(topic, READING, VALUE)
    narrower = struct_schema([("vehicle", Schema(Type.INT32))], name="dev.kanal.Other")
    latest = {"auto.register.schemas": "false", "use.latest.version": "true"}
    with pytest.raises(DataError, match=r"latest\.compatibility\.strict=false"):
        converter(url, **latest).from_connect(topic, narrower, {"vehicle": 1})
    data = converter(url, **latest).from_connect(topic, READING, VALUE)
    assert converter(url).to_connect(topic, data).value == VALUE


def test_schemas_are_registered_once_per_schema_object(schema_registry: TestRegistry) -> None:
    avro, topic = converter(schema_registry.url), _topic()
    before = len(schema_registry.requests)
    for _ in range(100):
        avro.from_connect(topic, READING, VALUE)
    assert len(schema_registry.requests) == before + 1


def test_bad_bytes_are_data_errors(schema_registry: TestRegistry) -> None:
    avro = converter(schema_registry.url)
    with pytest.raises(DataError, match="Unknown magic byte"):
        avro.to_connect("t", b"\x01\x00\x00\x00\x01abc")
    with pytest.raises(DataError, match="too short"):
        avro.to_connect("t", b"\x00\x01")
    data = avro.from_connect(_topic(), READING, VALUE)
    assert data is not None
    with pytest.raises(DataError, match="Failed to deserialize Avro data"):
        avro.to_connect("t", data[:12])
    with pytest.raises(DataError, match="null value for field that is required"):
        avro.from_connect("t", READING, {**VALUE, "vehicle": None})


@settings(max_examples=40, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_round_trips_any_connect_schema_and_value(schema_registry: TestRegistry,
                                                  data: st.DataObject) -> None:
    schema = data.draw(schemas())
    value = data.draw(values(schema))
    avro = converter(schema_registry.url, **{"schemas.cache.config": "5"})
    topic = "round-trips"
    schema_registry.state.subject_compatibility[f"{topic}-value"] = "NONE"
    encoded = avro.from_connect(topic, schema, value)
    if encoded is None:
        assert value is None
        return
    back = avro.to_connect(topic, encoded)
    assert back.value == expected(schema, value, float32=True)
    assert converter(schema_registry.url).from_connect(topic, schema, value) == encoded
    if len(encoded) > 5:  # confluent-kafka refuses an empty payload (an empty record)
        AvroDeserializer(_confluent(schema_registry.url))(encoded, _context(topic))


def expected(schema: Schema, value: object, float32: bool) -> object:
    """What comes back: floats as floats, float32 values at float32 precision when the
    format stores them so (Avro's float; JSON carries them as written)."""
    if value is None:
        return None
    if schema.type == Type.FLOAT32 and float32 and isinstance(value, float):
        return struct.unpack("f", struct.pack("f", value))[0]
    if schema.type in (Type.FLOAT32, Type.FLOAT64) and isinstance(value, int | float):
        return float(value)
    if schema.type == Type.STRUCT and isinstance(value, dict):
        return {f.name: expected(f.schema, value.get(f.name), float32) for f in schema.fields}
    if schema.type == Type.ARRAY and isinstance(value, list):
        assert schema.value_schema is not None
        return [expected(schema.value_schema, v, float32) for v in value]
    if schema.type == Type.MAP and isinstance(value, dict):
        assert schema.value_schema is not None
        return {k: expected(schema.value_schema, v, float32) for k, v in value.items()}
    return value


@settings(max_examples=100, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=40))
def test_garbage_is_rejected_with_data_errors(schema_registry: TestRegistry,
                                              data: bytes) -> None:
    avro = _cached_converter(schema_registry.url)
    encoded = avro.from_connect("garbage", READING, VALUE)
    assert encoded is not None
    with contextlib.suppress(DataError):
        avro.to_connect("garbage", encoded[:5] + data)


@functools.cache
def _cached_converter(url: str) -> AvroConverter:
    return converter(url)


def test_field_objects_keep_their_order() -> None:
    schema = Schema(Type.STRUCT, fields=(Field("b", 0, Schema(Type.INT32)),
                                         Field("a", 1, Schema(Type.INT32))))
    assert [f["name"] for f in to_avro_schema(schema)["fields"]] == ["b", "a"]


def test_a_record_of_another_format_names_the_converter_to_use(
        schema_registry: TestRegistry) -> None:
    topic = _topic()
    schema_id = _confluent(schema_registry.url).register_schema(
        f"{topic}-value", RegistrySchema('{"type": "string"}', "JSON"))
    with pytest.raises(DataError, match="JSON, not Avro"):
        converter(schema_registry.url).to_connect(topic, struct.pack(">bI", 0, schema_id) + b"1")
