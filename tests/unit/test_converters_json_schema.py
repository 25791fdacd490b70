"""JsonSchemaConverter: Confluent's wire format and JsonSchemaData's schema mapping, against
the test registry and cross-checked with confluent-kafka's own JSONSerializer /
JSONDeserializer: what either writes, the other reads."""

from __future__ import annotations

import base64
import json
import struct
import uuid
from typing import Any

import pytest
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kanal_worker.api.errors import DataError
from kanal_worker.api.schema import DATE, Field, Schema, Type
from kanal_worker.api.schema import struct as struct_schema
from kanal_worker.converters.json_schema import (
    ENUM,
    ONE_OF,
    JsonSchemaConverter,
    to_connect_schema,
    to_json_schema,
)
from kanal_worker.converters.registry import RegistrySchema, SchemaReference
from tests.schema_registry import TestRegistry
from tests.schema_registry import confluent_client as _confluent
from tests.schema_registry import value_context as _context
from tests.unit.test_converters_avro import READING as AVRO_READING
from tests.unit.test_converters_avro import VALUE as AVRO_VALUE
from tests.unit.test_converters_avro import expected
from tests.unit.test_transforms_properties import schemas, values

COLOR = Schema(Type.STRING, parameters={ENUM: "", f"{ENUM}.red": "red", f"{ENUM}.green": "green"})
LABEL = Schema(Type.STRUCT, name=ONE_OF, fields=(
    Field(f"{ONE_OF}.field.0", 0, Schema(Type.STRING, optional=True)),
    Field(f"{ONE_OF}.field.1", 1, Schema(Type.INT64, optional=True))))
READING = AVRO_READING.with_(fields=(*AVRO_READING.fields, *(
    Field(name, len(AVRO_READING.fields) + i, schema) for i, (name, schema) in enumerate([
        ("ratio", Schema(Type.FLOAT32)),
        ("axles", Schema(Type.INT16)),
        ("odometer", Schema(Type.INT64)),
        ("moving", Schema(Type.BOOLEAN)),
        ("photo", Schema(Type.BYTES, optional=True)),
        ("color", COLOR),
        ("label", LABEL),
        ("place", struct_schema([("lat", Schema(Type.FLOAT64))], name="dev.kanal.Position",
                                optional=True))]))))
VALUE = {**AVRO_VALUE, "ratio": 0.5, "axles": 3, "odometer": 2**40, "moving": True,
         "photo": b"\x89PNG", "color": "green",
         "label": {f"{ONE_OF}.field.0": None, f"{ONE_OF}.field.1": 7}, "place": None}
JSON_VALUE = {"vehicle": "truck-7", "speed": 130.5, "lane": None,
              "at": 1714558530123, "day": 19844, "clock": 36930123,
              "fine": base64.b64encode((12050).to_bytes(2, "big")).decode(),
              "tags": {"fleet": "north"}, "counts": [{"key": 1, "value": 2}],
              "stops": ["depot", "port"], "position": {"lat": 52.5}, "ratio": 0.5,
              "axles": 3, "odometer": 2**40, "moving": True,
              "photo": base64.b64encode(b"\x89PNG").decode(), "color": "green", "label": 7,
              "place": None}

# a JSON Schema as Python and Java producers write them by hand
SHIPMENT = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Shipment", "type": "object",
    "properties": {
        "id": {"type": "string", "description": "the shipment"},
        "state": {"enum": ["PLANNED", "MOVING"]},
        "weight": {"type": ["number", "null"]},
        "label": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "origin": {"$ref": "#/definitions/Place"},
        "legs": {"type": "array", "items": {"type": "integer"}},
        "notes": {"type": "object", "additionalProperties": {"type": "string"},
                  "connect.type": "map"},
    },
    "required": ["id", "state", "label", "origin", "legs"],
    "definitions": {"Place": {"type": "object", "title": "Place",
                              "properties": {"city": {"type": "string"}}}},
}
SHIPMENT_VALUE = {"id": "s-1", "state": "MOVING", "weight": None, "label": "x-9",
                  "origin": {"city": "Hamburg"}, "legs": [1, 2], "notes": {"a": "b"}}


def _topic() -> str:
    return f"readings-{uuid.uuid4().hex[:10]}"


def converter(url: str, **config: str) -> JsonSchemaConverter:
    return JsonSchemaConverter({"schema.registry.url": url, **config}, False)


def _deserialize(url: str, data: bytes | None, topic: str) -> Any:
    return JSONDeserializer(None, schema_registry_client=_confluent(url))(data, _context(topic))


def test_wire_format_and_round_trip(schema_registry: TestRegistry) -> None:
    topic = _topic()
    data = converter(schema_registry.url).from_connect(topic, READING, VALUE)
    assert json.loads(schema_registry.framed(data, f"{topic}-value")) == JSON_VALUE
    assert len(schema_registry.state.subjects[f"{topic}-value"]) == 1
    back = converter(schema_registry.url).to_connect(topic, data)
    assert (back.schema, back.value) == (READING, VALUE)


def test_records_kanal_writes_are_read_by_confluents_deserializer(
        schema_registry: TestRegistry) -> None:
    """JSONDeserializer validates each record against the schema Kanal registered."""
    topic = _topic()
    data = converter(schema_registry.url).from_connect(topic, READING, VALUE)
    assert _deserialize(schema_registry.url, data, topic) == JSON_VALUE
    with_null = converter(schema_registry.url).from_connect(
        topic, READING, {**VALUE, "position": None, "photo": None, "lane": 2,
                         "place": {"lat": 1.0}})
    read = _deserialize(schema_registry.url, with_null, topic)
    assert (read["position"], read["place"], read["lane"]) == (None, {"lat": 1.0}, 2)


def test_records_confluents_serializer_writes_are_read_by_kanal(
        schema_registry: TestRegistry) -> None:
    topic = _topic()
    serializer = JSONSerializer(json.dumps(SHIPMENT), _confluent(schema_registry.url))
    read = converter(schema_registry.url).to_connect(
        topic, serializer(SHIPMENT_VALUE, _context(topic)))
    assert read.schema is not None and read.schema.name == "Shipment"
    fields = {f.name: f.schema for f in read.schema.fields}
    assert [f.name for f in read.schema.fields] == list(SHIPMENT["properties"])
    assert fields["id"] == Schema(Type.STRING, doc="the shipment")
    assert fields["state"].parameters == {ENUM: "", f"{ENUM}.PLANNED": "PLANNED",
                                          f"{ENUM}.MOVING": "MOVING"}
    assert fields["weight"] == Schema(Type.FLOAT64, optional=True)
    assert fields["label"].name == ONE_OF and not fields["label"].optional
    assert [f.schema.type for f in fields["label"].fields] == [Type.STRING, Type.INT64]
    assert fields["origin"].name == "Place" and fields["origin"].fields[0].name == "city"
    assert fields["legs"] == Schema(Type.ARRAY, value_schema=Schema(Type.INT64))
    assert fields["notes"].type == Type.MAP
    assert read.value == {**SHIPMENT_VALUE, "label": {f"{ONE_OF}.field.0": "x-9",
                                                      f"{ONE_OF}.field.1": None}}
    again = converter(schema_registry.url).from_connect(_topic(), read.schema, read.value)
    assert again is not None and json.loads(again[5:]) == SHIPMENT_VALUE


def test_non_required_properties_are_optional_when_asked(schema_registry: TestRegistry) -> None:
    topic = _topic()
    serializer = JSONSerializer(json.dumps(SHIPMENT), _confluent(schema_registry.url))
    data = serializer({k: v for k, v in SHIPMENT_VALUE.items() if k != "notes"},
                      _context(topic))
    with pytest.raises(DataError, match="notes"):
        converter(schema_registry.url).to_connect(topic, data)
    read = converter(schema_registry.url, **{"use.optional.for.nonrequired": "true"}
                     ).to_connect(topic, data)
    assert read.value["notes"] is None
    assert read.schema is not None and read.schema.field("notes").schema.optional  # type: ignore[union-attr]


def test_references_resolve_to_the_referenced_subjects(schema_registry: TestRegistry) -> None:
    client, topic = _confluent(schema_registry.url), _topic()
    place_subject = f"place-{uuid.uuid4().hex[:8]}"
    place = {"type": "object", "title": "Place", "properties": {"city": {"type": "string"}}}
    client.register_schema(place_subject, RegistrySchema(json.dumps(place), "JSON"))
    trip = {"type": "object", "title": "Trip", "properties": {
        "from": {"$ref": "place.json"}, "to": {"$ref": "place.json"}}}
    schema = RegistrySchema(json.dumps(trip), "JSON",
                            [SchemaReference("place.json", place_subject, 1)])
    value = {"from": {"city": "Bremen"}, "to": {"city": "Kiel"}}
    data = JSONSerializer(schema, client)(value, _context(topic))
    read = converter(schema_registry.url).to_connect(topic, data)
    assert read.value == value
    assert read.schema is not None
    assert [f.schema.name for f in read.schema.fields] == ["Place", "Place"]


def test_a_new_optional_field_under_backward_compatibility(
        schema_registry: TestRegistry) -> None:
    url, topic = schema_registry.url, _topic()
    kanal = converter(url)
    old = kanal.from_connect(topic, READING, VALUE)
    evolved = READING.with_(fields=(*READING.fields, Field(
        "carrier", len(READING.fields), Schema(Type.STRING, optional=True))))
    new = kanal.from_connect(topic, evolved, {**VALUE, "carrier": "rail"})
    assert len(schema_registry.state.subjects[f"{topic}-value"]) == 2
    assert _deserialize(url, new, topic)["carrier"] == "rail"
    assert kanal.to_connect(topic, old).value == VALUE
    assert kanal.to_connect(topic, new).value == {**VALUE, "carrier": "rail"}
    retyped = READING.with_(fields=tuple(
        f if f.name != "vehicle" else Field("vehicle", f.index, Schema(Type.INT32))
        for f in READING.fields))
    with pytest.raises(DataError, match="incompatible"):
        kanal.from_connect(topic, retyped, {**VALUE, "vehicle": 7})


def test_schemas_follow_confluents_json_schema_data_mapping() -> None:
    document = to_json_schema(READING)
    assert document["title"] == "dev.kanal.telemetry.Reading"
    assert (document["description"], document["connect.version"]) == ("One reading", 2)
    properties = document["properties"]
    assert properties["vehicle"] == {"type": "string", "connect.index": 0}
    assert properties["lane"] == {"oneOf": [{"type": "null"}, {
        "type": "integer", "connect.type": "int8"}], "connect.index": 2}
    assert properties["photo"]["oneOf"][1] == {"type": "string", "connect.type": "bytes"}
    assert properties["day"] == {"type": "integer", "connect.type": "int32",
                                 "title": DATE, "connect.version": 1, "connect.index": 4}
    assert properties["fine"]["connect.parameters"] == {"scale": "2"}
    assert properties["tags"]["connect.type"] == "map"
    assert properties["counts"]["items"]["properties"]["key"]["connect.index"] == 0
    assert properties["color"]["enum"] == ["red", "green"]
    assert properties["label"] == {"oneOf": [
        {"type": "string", "connect.index": 0},
        {"type": "integer", "connect.type": "int64", "connect.index": 1}],
        "connect.index": 17}
    assert to_connect_schema(json.loads(json.dumps(document))) == READING
    numeric = to_json_schema(READING, numeric_decimals=True)
    assert numeric["properties"]["fine"]["type"] == "number"


def test_numeric_decimals(schema_registry: TestRegistry) -> None:
    topic = _topic()
    kanal = converter(schema_registry.url, **{"decimal.format": "NUMERIC"})
    data = kanal.from_connect(topic, READING, VALUE)
    assert data is not None and b'"fine":120.50' in data
    assert kanal.to_connect(topic, data).value == VALUE


def test_bad_input_is_a_data_error_naming_the_fix(schema_registry: TestRegistry) -> None:
    kanal = converter(schema_registry.url)
    with pytest.raises(DataError, match="Unknown magic byte"):
        kanal.to_connect("t", b'{"speed": 80}')
    topic = _topic()
    data = kanal.from_connect(topic, READING, VALUE)
    assert data is not None
    with pytest.raises(DataError, match="Failed to deserialize JSON"):
        kanal.to_connect(topic, data[:5] + b"{not json")
    with pytest.raises(DataError, match="no schema with that id"):
        kanal.to_connect(topic, struct.pack(">bI", 0, 999999) + b"{}")
    avro_id = _confluent(schema_registry.url).register_schema(
        f"{_topic()}-value", RegistrySchema('{"type": "string"}', "AVRO"))
    with pytest.raises(DataError, match="not JSON Schema; use the converter"):
        kanal.to_connect(topic, struct.pack(">bI", 0, avro_id) + b'"x"')
    with pytest.raises(DataError, match="needs a schema"):
        kanal.from_connect(topic, None, {"a": 1})
    with pytest.raises(DataError, match="refers to itself"):
        to_connect_schema({"type": "object", "properties": {"next": {"$ref": "#"}}})


@settings(max_examples=40, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_round_trips_any_connect_schema_and_value(schema_registry: TestRegistry,
                                                  data: st.DataObject) -> None:
    schema = data.draw(schemas())
    value = data.draw(values(schema))
    topic = "json-round-trips"
    schema_registry.state.subject_compatibility[f"{topic}-value"] = "NONE"
    kanal = converter(schema_registry.url)
    encoded = kanal.from_connect(topic, schema, value)
    if encoded is None:
        assert value is None
        return
    back = kanal.to_connect(topic, encoded)
    assert back.value == expected(schema, value, float32=False)
    assert back.schema == schema
    _deserialize(schema_registry.url, encoded, topic)  # valid under its registered schema
