"""ProtobufConverter cross-checked against confluent-kafka's ProtobufSerializer and
ProtobufDeserializer, through the test schema registry and the real broker.

The peer's message classes are compiled at test time by protoc (grpcio-tools) from the
``.proto`` files below, or from the ``.proto`` text Kanal registered: nothing generated is
committed. Records either side writes are read by the other, for every Connect type.
"""

from __future__ import annotations

import datetime as dt
import decimal
import site
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2
from google.protobuf.message import Message

from dev.stack_env import stack_env
from kanal_worker.api import DataError, RetriableError, Schema, Type
from kanal_worker.api.schema import (
    BOOLEAN,
    BYTES,
    DATE,
    DECIMAL,
    FLOAT32,
    FLOAT64,
    INT8,
    INT16,
    INT32,
    INT64,
    STRING,
    TIME,
    TIMESTAMP,
    optional,
    struct,
)
from kanal_worker.config.properties import parse_properties
from kanal_worker.converters.protobuf import ProtobufConverter, encode_message_indexes
from kanal_worker.runtime.status import State
from tests.integration.standalone import wait_for
from tests.integration.storage_scenarios import herder_running, task_state
from tests.integration.test_s3_sink import Bucket, s3_settings
from tests.kafka_helpers import consume_all, produce
from tests.schema_registry import TestRegistry, confluent_client, value_context

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "s3-sink-protobuf.properties"

DECIMAL_PROTO = """syntax = "proto3";
package confluent.type;
message Decimal { bytes value = 1; uint32 precision = 2; int32 scale = 3; }
"""
COMMON_PROTO = """syntax = "proto3";
package shop.common;
message Money { string currency = 1; int64 cents = 2; }
"""
ORDER_PROTO = """syntax = "proto3";
package shop;

import "google/type/date.proto";
import "google/type/timeofday.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
import "confluent/type/decimal.proto";
import "shop/common.proto";

message Order {
  int32 id = 1;
  int64 big = 2;
  uint32 unsigned_small = 3;
  sint64 zigzag = 4;
  fixed32 fixed = 5;
  float ratio = 6;
  double price = 7;
  bool paid = 8;
  string customer = 9;
  bytes blob = 10;
  optional string note = 11;
  google.protobuf.StringValue coupon = 12;
  google.type.Date day = 13;
  google.type.TimeOfDay at = 14;
  google.protobuf.Timestamp created = 15;
  confluent.type.Decimal amount = 16;
  repeated string tags = 17;
  map<string, int32> counts = 18;
  map<string, Line> lines_by_sku = 19;
  repeated Line lines = 20;
  Status status = 21;
  oneof payment {
    string card = 22;
    int64 voucher = 23;
  }
  shop.common.Money total = 24;

  message Line { string sku = 1; int32 quantity = 2; }
  enum Status { NEW = 0; SHIPPED = 1; }
}
"""


def compile_proto(tmp: Path, files: dict[str, str]) -> dict[str, type[Message]]:
    """The message classes of ``files`` (import path → text), compiled by protoc into a
    pool of their own: what an application's generated code would hold."""
    for name, text in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)
    out = tmp / "set.pb"
    includes = [f"-I{p}" for p in site.getsitepackages()]
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp}", *includes,
                    f"--descriptor_set_out={out}", "--include_imports", *files],
                   check=True, capture_output=True)
    pool = descriptor_pool.DescriptorPool()
    classes: dict[str, type[Message]] = {}
    for proto in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file:
        file = pool.Add(proto)
        if proto.name in files:
            for name in file.message_types_by_name:
                classes[f"{proto.package}.{name}".lstrip(".")] = \
                    message_factory.GetMessageClass(pool.FindMessageTypeByName(
                        f"{proto.package}.{name}".lstrip(".")))
    return classes


@pytest.fixture
def registry_client(schema_registry: TestRegistry) -> SchemaRegistryClient:
    return confluent_client(schema_registry.url)


def converter(registry: TestRegistry, **config: str) -> ProtobufConverter:
    return ProtobufConverter({"schema.registry.url": registry.url, **config}, False)


def order_classes(tmp: Path) -> dict[str, type[Message]]:
    return compile_proto(tmp, {"confluent/type/decimal.proto": DECIMAL_PROTO,
                               "shop/common.proto": COMMON_PROTO, "shop/order.proto": ORDER_PROTO})


def full_order(classes: dict[str, type[Message]]) -> Message:
    order = classes["shop.Order"](
        id=-7, big=2**40, unsigned_small=4_000_000_000, zigzag=-5, fixed=9, ratio=0.5,
        price=12.25, paid=True, customer="ada", blob=b"\x00\xff", note="leave at door",
        tags=["a", "b"], counts={"x": 1, "y": 2}, status=1, voucher=77)
    order.coupon.value = "SAVE10"
    order.day.year, order.day.month, order.day.day = 2026, 2, 28
    order.at.hours, order.at.minutes, order.at.seconds, order.at.nanos = 13, 5, 7, 250_000_000
    order.created.seconds, order.created.nanos = 1_780_000_000, 123_000_000
    order.amount.value = (12345).to_bytes(2, "big")
    order.amount.precision, order.amount.scale = 5, 2
    order.lines_by_sku["s1"].quantity = 3
    order.lines_by_sku["s1"].sku = "s1"
    order.lines.add(sku="s2", quantity=4)
    order.total.currency, order.total.cents = "EUR", 999
    return order


def test_records_confluent_kafka_wrote_read_as_connect_data_for_every_type(
        tmp_path: Path, schema_registry: TestRegistry,
        registry_client: SchemaRegistryClient) -> None:
    topic = f"proto-read-{uuid.uuid4().hex[:8]}"
    classes = order_classes(tmp_path)
    serializer = ProtobufSerializer(classes["shop.Order"], registry_client)
    data = serializer(full_order(classes), value_context(topic))
    kanal = converter(schema_registry, **{"wrapper.for.nullables": "true"})

    read = kanal.to_connect(topic, data)

    assert read.schema is not None and read.schema.name == "Order"
    fields = {f.name: f.schema for f in read.schema.fields}
    assert fields["payment_0"].name == "io.confluent.connect.protobuf.Union.payment"
    assert fields["unsigned_small"].type == Type.INT64
    assert fields["unsigned_small"].parameters["io.confluent.connect.protobuf.Type"] == "uint32"
    assert fields["zigzag"].parameters["io.confluent.connect.protobuf.Type"] == "sint64"
    assert fields["day"].name == DATE and fields["at"].name == TIME
    assert fields["created"].name == TIMESTAMP and fields["amount"].name == DECIMAL
    assert fields["coupon"].type == Type.STRING and fields["coupon"].optional
    assert not fields["customer"].optional  # wrapper.for.nullables: scalars are required
    assert fields["counts"].type == Type.MAP and fields["lines"].type == Type.ARRAY
    assert fields["status"].parameters["io.confluent.connect.protobuf.Enum.SHIPPED"] == "1"
    assert fields["total"].name == "Money"
    assert read.value == {
        "payment_0": {"card": None, "voucher": 77},
        "id": -7, "big": 2**40, "unsigned_small": 4_000_000_000, "zigzag": -5, "fixed": 9,
        "ratio": 0.5, "price": 12.25, "paid": True, "customer": "ada", "blob": b"\x00\xff",
        "note": "leave at door", "coupon": "SAVE10", "day": dt.date(2026, 2, 28),
        "at": dt.time(13, 5, 7, 250_000),
        "created": dt.datetime(2026, 5, 28, 20, 26, 40, 123_000, tzinfo=dt.UTC),
        "amount": decimal.Decimal("123.45"), "tags": ["a", "b"], "counts": {"x": 1, "y": 2},
        "lines_by_sku": {"s1": {"sku": "s1", "quantity": 3}},
        "lines": [{"sku": "s2", "quantity": 4}], "status": "SHIPPED",
        "total": {"currency": "EUR", "cents": 999}}
    # the project import was registered as its own subject and followed as a reference
    assert "shop/common.proto" in registry_client.get_subjects()


EVERY_TYPE = struct([
    ("id", INT64), ("tiny", INT8), ("small", INT16), ("count", INT32), ("ratio", FLOAT32),
    ("price", FLOAT64), ("paid", BOOLEAN), ("customer", STRING), ("blob", BYTES),
    ("note", optional(STRING)),
    ("amount", Schema(Type.BYTES, name=DECIMAL, version=1, optional=True,
                      parameters={"scale": "2", "connect.decimal.precision": "9"})),
    ("day", Schema(Type.INT32, name=DATE, version=1, optional=True)),
    ("at", Schema(Type.INT32, name=TIME, version=1, optional=True)),
    ("created", Schema(Type.INT64, name=TIMESTAMP, version=1, optional=True)),
    ("tags", Schema(Type.ARRAY, value_schema=STRING, optional=True)),
    ("counts", Schema(Type.MAP, key_schema=STRING, value_schema=INT32, optional=True)),
    ("address", struct([("street", STRING), ("zip", INT32)], name="com.shop.Address",
                       optional=True)),
    ("status", Schema(Type.STRING, name="Status", optional=True, parameters={
        "io.confluent.connect.protobuf.Enum": "Status",
        "io.confluent.connect.protobuf.Enum.NEW": "0",
        "io.confluent.connect.protobuf.Enum.SHIPPED": "1"})),
    ("payment", Schema(Type.STRUCT, name="io.confluent.connect.protobuf.Union.payment",
                       optional=True, fields=struct([
                           ("card", Schema(Type.STRING, optional=True, parameters={
                               "io.confluent.connect.protobuf.Tag": "30"})),
                           ("voucher", Schema(Type.INT64, optional=True, parameters={
                               "io.confluent.connect.protobuf.Tag": "31"}))]).fields)),
], name="com.shop.Order")
EVERY_VALUE = {
    "id": 2**40, "tiny": -3, "small": 300, "count": -9, "ratio": 0.5, "price": 9.75,
    "paid": True, "customer": "ada", "blob": b"\x01\x02", "note": "n",
    "amount": decimal.Decimal("-123.45"), "day": dt.date(2026, 12, 6),
    "at": dt.time(23, 59, 58, 999_000),
    "created": dt.datetime(2026, 12, 6, 12, 0, 0, 5_000, tzinfo=dt.UTC),
    "tags": ["x"], "counts": {"k": 5}, "address": {"street": "Main", "zip": 12345},
    "status": "SHIPPED", "payment": {"card": "visa", "voucher": None}}


def compile_meta(tmp: Path, text: str) -> dict[str, type[Message]]:
    """The classes an application generates from ``text`` (a schema Kanal registered), with
    the Confluent files it imports beside it, as an application's build has them."""
    meta = ('syntax = "proto3";\npackage confluent;\nimport "google/protobuf/descriptor.proto";\n'
            "message Meta { string doc = 1; map<string, string> params = 2; "
            "repeated string tags = 3; }\n"
            "extend google.protobuf.FieldOptions { Meta field_meta = 1088; }\n")
    return compile_proto(tmp, {"confluent/meta.proto": meta,
                               "confluent/type/decimal.proto": DECIMAL_PROTO,
                               "kanal/registered.proto": text})


def test_records_kanal_wrote_read_by_confluent_kafka_for_every_type(
        tmp_path: Path, schema_registry: TestRegistry,
        registry_client: SchemaRegistryClient) -> None:
    topic = f"proto-write-{uuid.uuid4().hex[:8]}"
    kanal = converter(schema_registry)

    data = kanal.from_connect(topic, EVERY_TYPE, EVERY_VALUE)

    assert data is not None and data[0] == 0 and data[5] == 0  # magic byte, index array [0]
    classes = compile_meta(tmp_path, registry_client.get_latest_version(
        f"{topic}-value").schema.schema_str)
    order_class = classes["com.shop.Order"]
    order: Any = ProtobufDeserializer(order_class, {"use.deprecated.format": False},
                                      registry_client)(data, value_context(topic))
    assert (order.id, order.tiny, order.small, order.count) == (2**40, -3, 300, -9)
    assert (order.ratio, order.price, order.paid, order.customer, order.blob) == \
        (0.5, 9.75, True, "ada", b"\x01\x02")
    assert (order.day.year, order.day.month, order.day.day) == (2026, 12, 6)
    assert (order.at.hours, order.at.minutes, order.at.seconds, order.at.nanos) == \
        (23, 59, 58, 999_000_000)
    assert order.created.ToDatetime(dt.UTC) == dt.datetime(2026, 12, 6, 12, 0, 0, 5_000,
                                                           tzinfo=dt.UTC)
    assert int.from_bytes(order.amount.value, "big", signed=True) == -12345
    assert order.amount.scale == 2
    assert list(order.tags) == ["x"]
    assert {entry.key: entry.value for entry in order.counts} == {"k": 5}  # as Java writes maps
    assert (order.address.street, order.address.zip) == ("Main", 12345)
    assert order.status == 1 and order.WhichOneof("payment") == "card" and order.card == "visa"
    # and back through Kanal: the Connect schema keeps int8/int16 (connect.type), Decimal's
    # scale and precision and the union's tags
    again = kanal.to_connect(topic, data)
    assert again.value == {**_without(EVERY_VALUE, "payment"),
                           "payment_0": {"card": "visa", "voucher": None}}
    fields = {f.name: f.schema for f in again.schema.fields}  # type: ignore[union-attr]
    assert fields["tiny"].type == Type.INT8 and fields["small"].type == Type.INT16
    assert fields["amount"].parameters["connect.decimal.precision"] == "9"


def _without(value: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k != name}


def test_a_new_optional_field_under_backward_reads_old_and_new_records(
        tmp_path: Path, schema_registry: TestRegistry,
        registry_client: SchemaRegistryClient) -> None:
    topic = f"proto-evolve-{uuid.uuid4().hex[:8]}"
    v1 = 'syntax = "proto3";\npackage ev;\nmessage Reading { string id = 1; double speed = 2; }\n'
    v2 = v1.replace("double speed = 2;", "double speed = 2; optional string driver = 3;")
    old = compile_proto(tmp_path / "v1", {"ev/reading.proto": v1})["ev.Reading"]
    new = compile_proto(tmp_path / "v2", {"ev/reading.proto": v2})["ev.Reading"]
    assert schema_registry.state.level(f"{topic}-value") == "BACKWARD"
    first = ProtobufSerializer(old, registry_client)(old(id="a", speed=1.5), value_context(topic))
    second = ProtobufSerializer(new, registry_client)(new(id="b", speed=2.5, driver="d"),
                                                      value_context(topic))
    kanal = converter(schema_registry, **{"optional.for.nullables": "true"})

    read_old, read_new = kanal.to_connect(topic, first), kanal.to_connect(topic, second)

    assert read_old.value == {"id": "a", "speed": 1.5}
    assert read_new.value == {"id": "b", "speed": 2.5, "driver": "d"}
    driver = read_new.schema.field("driver")  # type: ignore[union-attr]
    assert driver is not None and driver.schema.optional
    assert registry_client.get_versions(f"{topic}-value") == [1, 2]
    # Kanal's own writes evolve the same way: the new optional field registers version 2
    base = struct([("id", STRING)], name="ev.Kanal")
    grown = struct([("id", STRING), ("driver", optional(STRING))], name="ev.Kanal")
    kanal_topic = f"{topic}-kanal"
    kanal.from_connect(kanal_topic, base, {"id": "x"})
    written = kanal.from_connect(kanal_topic, grown, {"id": "y", "driver": None})
    assert registry_client.get_versions(f"{kanal_topic}-value") == [1, 2]
    assert kanal.to_connect(kanal_topic, written).value == {"id": "y", "driver": None}
    # a field whose type changes is not BACKWARD compatible: the registry refuses it
    changed = struct([("id", INT64), ("driver", optional(STRING))], name="ev.Kanal")
    with pytest.raises(DataError, match="incompatible schema"):
        kanal.from_connect(kanal_topic, changed, {"id": 1})


def test_a_registry_that_is_down_is_retriable_and_nothing_is_cached_wrong(
        schema_registry: TestRegistry, registry_client: SchemaRegistryClient) -> None:
    topic = f"proto-down-{uuid.uuid4().hex[:8]}"
    data = ProtobufSerializer(wrappers_pb2.StringValue, registry_client)(
        wrappers_pb2.StringValue(value="kept"), value_context(topic))
    kanal = converter(schema_registry, **{"max.retries": "0"})
    with schema_registry.down(), pytest.raises(RetriableError, match="unreachable"):
        kanal.to_connect(topic, data)
    assert kanal.to_connect(topic, data).value == "kept"


def test_an_unknown_schema_id_and_a_record_without_the_magic_byte_are_data_errors(
        schema_registry: TestRegistry) -> None:
    kanal = converter(schema_registry)
    with pytest.raises(DataError, match="no schema with that id"):
        kanal.to_connect("t", b"\x00\x00\x0f\x42\x3f\x00\x08\x01")
    with pytest.raises(DataError, match="magic byte"):
        kanal.to_connect("t", b"\x08\x01")


@pytest.fixture
def s3_env() -> dict[str, str]:
    return stack_env("s3")


def test_protobuf_from_confluent_kafka_to_parquet_on_s3(
        tmp_path: Path, kafka: str, s3_env: dict[str, str], schema_registry: TestRegistry,
        registry_client: SchemaRegistryClient, unique: str) -> None:
    """Deliver 4: Protobuf written by confluent-kafka's serializer → Kanal with
    ProtobufConverter → S3 sink with ParquetFormat; the Parquet schema is the record's."""
    topic, name = f"proto-parquet-{unique}", f"proto-parquet-{unique}"
    classes = compile_proto(tmp_path, {"tel/reading.proto": """syntax = "proto3";
package tel;
import "google/protobuf/timestamp.proto";
message Reading {
  string vehicle = 1;
  double speed = 2;
  google.protobuf.Timestamp at = 3;
  repeated string alerts = 4;
  Position position = 5;
  message Position { double lat = 1; double lon = 2; }
}
"""})
    reading = classes["tel.Reading"]
    serializer = ProtobufSerializer(reading, registry_client)
    values = []
    for i in range(6):
        message: Any = reading(vehicle=f"v{i}", speed=80.5 + i, alerts=["fast"] * (i % 2))
        message.at.seconds = 1_780_000_000 + i
        message.position.lat, message.position.lon = 52.5, 13.4
        values.append(serializer(message, value_context(topic)))
    produce(kafka, topic, values)
    bucket = Bucket(s3_env, f"proto-{unique}")
    example = parse_properties(EXAMPLE.read_text())  # the example, on this test's services
    config = {**example, "topics": topic, "flush.size": "6",
              "value.converter.schema.registry.url": schema_registry.url,
              **s3_settings(s3_env, bucket)}
    with herder_running(kafka, name, config) as herder:
        wait_for(lambda: any(n.endswith(".parquet") for n in bucket.names()), 90,
                 "the Parquet file")
        assert task_state(herder, name)["state"] == State.RUNNING.value
    key = next(n for n in bucket.names() if n.endswith(".parquet"))
    path = tmp_path / "out.parquet"
    path.write_bytes(bucket.objects()[key])
    table = pq.read_table(path)
    print(f"s3://{bucket.name}/{key}\n{table.schema}\n{table.to_pylist()[:2]}")
    assert table.num_rows == 6
    assert table.schema.field("speed").type == "double"
    assert str(table.schema.field("at").type).startswith("timestamp[ms")
    assert table.schema.field("position").type.num_fields == 2
    rows = table.to_pylist()
    assert rows[1]["vehicle"] == "v1" and rows[1]["alerts"] == ["fast"]
    assert rows[0]["position"] == {"lat": 52.5, "lon": 13.4}



def errors_header(message: Any, name: str) -> str:
    return bytes(dict(message.headers())[f"__connect.errors.{name}"]).decode()


def readings(tmp: Path, registry_client: SchemaRegistryClient, topic: str) -> list[bytes]:
    reading = compile_proto(tmp, {"dlq/reading.proto": 'syntax = "proto3";\npackage dlq;\n'
                                  "message Reading { string vehicle = 1; int32 speed = 2; }\n"}
                            )["dlq.Reading"]
    serializer = ProtobufSerializer(reading, registry_client)
    return [serializer(reading(vehicle=f"v{i}", speed=i), value_context(topic)) for i in range(3)]


def test_unknown_schema_ids_and_missing_magic_bytes_go_to_the_dead_letter_queue(
        tmp_path: Path, kafka: str, new_topic: Any, schema_registry: TestRegistry,
        registry_client: SchemaRegistryClient) -> None:
    topic = new_topic("proto-dlq", 1)
    good = readings(tmp_path, registry_client, topic)
    unknown_id = b"\x00\x00\x0f\x42\x3f\x00" + good[0][6:]
    produce(kafka, topic, [good[0], unknown_id, good[1], b"plain text", good[2]])
    out, name, dlq = tmp_path / "out.txt", f"proto-dlq-{topic}", f"{topic}-dlq"
    with herder_running(kafka, name, {
            "connector.class": "FileStreamSink", "topics": topic, "file": str(out),
            "value.converter": "io.confluent.connect.protobuf.ProtobufConverter",
            "value.converter.schema.registry.url": schema_registry.url,
            "errors.tolerance": "all", "errors.deadletterqueue.topic.name": dlq,
            "errors.deadletterqueue.topic.replication.factor": "1",
            "errors.deadletterqueue.context.headers.enable": "true"}) as herder:
        wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == 3, 90,
                 "the three good records")
        assert task_state(herder, name)["state"] == State.RUNNING.value
    dead = consume_all(kafka, dlq, 2)
    assert [m.value() for m in dead] == [unknown_id, b"plain text"]
    assert [errors_header(m, "offset") for m in dead] == ["1", "3"]
    for message in dead:
        assert errors_header(message, "topic") == topic
        assert errors_header(message, "stage") == "VALUE_CONVERTER"
        assert errors_header(message, "class.name") == \
            "io.confluent.connect.protobuf.ProtobufConverter"
    assert "no schema with that id" in errors_header(dead[0], "exception.message")
    assert "magic byte" in errors_header(dead[1], "exception.message")
    assert "vehicle=v2" in out.read_text().splitlines()[2]


def test_a_record_without_the_magic_byte_fails_the_task_naming_where_it_is(
        tmp_path: Path, kafka: str, new_topic: Any, schema_registry: TestRegistry,
        registry_client: SchemaRegistryClient) -> None:
    topic = new_topic("proto-fail", 1)
    good = readings(tmp_path, registry_client, topic)
    produce(kafka, topic, [good[0], good[1], b"{\"json\": true}"])
    name = f"proto-fail-{topic}"
    with herder_running(kafka, name, {
            "connector.class": "FileStreamSink", "topics": topic,
            "file": str(tmp_path / "out.txt"),
            "value.converter": "io.confluent.connect.protobuf.ProtobufConverter",
            "value.converter.schema.registry.url": schema_registry.url}) as herder:
        wait_for(lambda: task_state(herder, name)["state"] == State.FAILED.value, 90,
                 "the task FAILED")
        trace = task_state(herder, name)["trace"]
    assert f"topic='{topic}', partition=0, offset=2" in trace
    assert "Unknown magic byte" in trace


NULLABLE = struct([("id", INT64), ("note", optional(STRING)), ("count", optional(INT32))],
                  name="nul.Row")


@pytest.mark.parametrize(("option", "note_type"), [
    ("wrapper.for.nullables", ".google.protobuf.StringValue"),
    ("optional.for.nullables", "optional string")])
def test_nullable_fields_written_by_kanal_keep_their_nulls_for_confluent_kafka(
        tmp_path: Path, schema_registry: TestRegistry, registry_client: SchemaRegistryClient,
        option: str, note_type: str) -> None:
    topic = f"proto-null-{uuid.uuid4().hex[:8]}"
    kanal = converter(schema_registry, **{option: "true"})
    written = [kanal.from_connect(topic, NULLABLE, {"id": 1, "note": None, "count": None}),
               kanal.from_connect(topic, NULLABLE, {"id": 2, "note": "", "count": 0})]
    text = registry_client.get_latest_version(f"{topic}-value").schema.schema_str
    assert f"{note_type} note = 2;" in text
    row_class = compile_meta(tmp_path, text)["nul.Row"]
    deserializer = ProtobufDeserializer(row_class, {}, registry_client)
    absent, empty = (deserializer(data, value_context(topic)) for data in written)
    assert not absent.HasField("note") and not absent.HasField("count")
    assert empty.HasField("note") and empty.HasField("count")
    assert [kanal.to_connect(topic, data).value for data in written] == [
        {"id": 1, "note": None, "count": None}, {"id": 2, "note": "", "count": 0}]


def test_primitive_values_are_wrapper_messages_both_ways(
        schema_registry: TestRegistry, registry_client: SchemaRegistryClient) -> None:
    topic = f"proto-primitive-{uuid.uuid4().hex[:8]}"
    kanal = converter(schema_registry)
    data = kanal.from_connect(topic, INT32, 42)
    # as Java does: the registered schema is wrappers.proto, the index array points at
    # Int32Value (the fifth message). confluent-kafka's deserializer cannot take a
    # registered well-known file (its pool holds one already), so the bytes are read here.
    assert data is not None and data[5:7] == encode_message_indexes([4]) == b"\x02\x08"
    assert wrappers_pb2.Int32Value.FromString(data[7:]).value == 42
    assert registry_client.get_latest_version(f"{topic}-value").schema.schema_str \
        .startswith('syntax = "proto3";\npackage google.protobuf;')
    theirs = ProtobufSerializer(wrappers_pb2.StringValue, registry_client)(
        wrappers_pb2.StringValue(value="hello"), value_context(f"{topic}-2"))
    assert kanal.to_connect(topic, theirs).value == "hello"
    assert kanal.to_connect(topic, theirs).schema == STRING


def test_use_latest_version_writes_with_the_schema_confluent_kafka_registered(
        tmp_path: Path, schema_registry: TestRegistry,
        registry_client: SchemaRegistryClient) -> None:
    topic = f"proto-latest-{uuid.uuid4().hex[:8]}"
    reading = compile_proto(tmp_path, {"lv/reading.proto": 'syntax = "proto3";\npackage lv;\n'
                                       "message Reading { string vehicle = 1; "
                                       "int32 speed = 2; map<string, string> tags = 3; }\n"}
                            )["lv.Reading"]
    ProtobufSerializer(reading, registry_client)(reading(vehicle="v0"), value_context(topic))
    kanal = converter(schema_registry, **{"auto.register.schemas": "false",
                                          "use.latest.version": "true",
                                          "latest.compatibility.strict": "false"})
    schema = struct([("vehicle", STRING), ("speed", INT32),
                     ("tags", Schema(Type.MAP, key_schema=STRING, value_schema=STRING))],
                    name="lv.Reading")

    data = kanal.from_connect(topic, schema, {"vehicle": "v1", "speed": 90, "tags": {"a": "b"}})

    read: Any = ProtobufDeserializer(reading, {}, registry_client)(data, value_context(topic))
    assert (read.vehicle, read.speed, dict(read.tags)) == ("v1", 90, {"a": "b"})
    assert registry_client.get_versions(f"{topic}-value") == [1]


def test_keys_use_the_key_subject_and_record_name_strategies(
        tmp_path: Path, schema_registry: TestRegistry,
        registry_client: SchemaRegistryClient) -> None:
    topic = f"proto-key-{uuid.uuid4().hex[:8]}"
    key_schema = struct([("vehicle", STRING)], name="keys.VehicleKey")
    kanal_key = ProtobufConverter({"schema.registry.url": schema_registry.url}, True)
    by_record = ProtobufConverter({
        "schema.registry.url": schema_registry.url, "key.subject.name.strategy":
            "io.confluent.kafka.serializers.subject.RecordNameStrategy"}, True)

    data = kanal_key.from_connect(topic, key_schema, {"vehicle": "v7"})
    by_record.from_connect(topic, key_schema, {"vehicle": "v8"})

    subjects = registry_client.get_subjects()
    assert f"{topic}-key" in subjects and "keys.VehicleKey" in subjects
    key_class = compile_meta(tmp_path, registry_client.get_latest_version(
        f"{topic}-key").schema.schema_str)["keys.VehicleKey"]
    read: Any = ProtobufDeserializer(key_class, {}, registry_client)(
        data, SerializationContext(topic, MessageField.KEY))
    assert read.vehicle == "v7"
