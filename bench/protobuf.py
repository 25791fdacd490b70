"""B6 (Protobuf): records in Confluent's Protobuf wire format read by Kanal's
ProtobufConverter, against confluent-kafka's ``ProtobufDeserializer`` on the same records.

The workload's readings are written as a ``Reading`` message by confluent-kafka's
``ProtobufSerializer`` into a fresh topic, with schemas in the test schema registry (no
Confluent-compatible registry can be installed here; it speaks Confluent's REST API and
answers from memory). Kanal: FileStreamSink with ProtobufConverter (each record's struct
becomes one line), timed on the lines. Raw: one process consuming the topic in batches of
2,000 and deserializing every value with ``ProtobufDeserializer``, the Python limit.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.measure import Sample, run_raw
from bench.registry import serving
from bench.sinks import STRING, FileSinkVariant, kanal_file_sink
from bench.workload import PARTITIONS, SEED, START_MS, STEP_MS, VEHICLES, Workload
from kanal_worker.connectors.telemetry import reading

BENCH = "B6 protobuf"
READING_PROTO = """syntax = "proto3";
package bench;
import "google/protobuf/timestamp.proto";
message Reading {
  string vehicle_id = 1;
  google.protobuf.Timestamp timestamp = 2;
  double speed_kmh = 3;
  double fuel_level = 4;
  double lat = 5;
  double lon = 6;
}
"""


def reading_class() -> Any:
    """The ``Reading`` message class, compiled by protoc as an application's build would."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    with tempfile.TemporaryDirectory(prefix="bench-proto-") as work:
        Path(work, "reading.proto").write_text(READING_PROTO)
        out = Path(work, "set.pb")
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{work}",
                        f"--descriptor_set_out={out}", "--include_imports", "reading.proto"],
                       check=True, capture_output=True)
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    pool = descriptor_pool.DescriptorPool()
    for proto in files:
        pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.Reading"))


def produce_readings(bootstrap: str, registry_url: str, topic: str, count: int) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    message_class = reading_class()
    serializer = ProtobufSerializer(message_class, SchemaRegistryClient({"url": registry_url}))
    context = SerializationContext(topic, MessageField.VALUE)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50,
                         "compression.type": "lz4"})
    for seq in range(count):
        value = reading(SEED, seq, VEHICLES, START_MS, STEP_MS)
        message = message_class(vehicle_id=value["vehicle_id"], speed_kmh=value["speed_kmh"],
                                fuel_level=value["fuel_level"], lat=value["lat"],
                                lon=value["lon"])
        message.timestamp.FromMilliseconds(value["timestamp"])
        while True:
            try:
                producer.produce(topic, key=value["vehicle_id"].encode(),
                                 value=serializer(message, context))
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(120) == 0


def b6(workload: Workload, bootstrap: str, run: int, workdir: Path) -> list[Sample]:
    with serving() as url:
        topic = f"bench.protobuf.{uuid.uuid4().hex[:8]}"
        produce_readings(bootstrap, url, topic, workload.records)
        protobuf = dataclasses.replace(workload, topic=topic)
        raw = Sample(BENCH, "readings", "confluent-kafka", run, workload.records,
                     note="ProtobufDeserializer per record")
        raw = run_raw(raw, "bench.raw", ["deserialize-protobuf", bootstrap, topic,
                                         str(workload.records), url], workload.timeout)
        variant = FileSinkVariant(
            "readings", {"key.converter": STRING, "value.converter":
                         "io.confluent.connect.protobuf.ProtobufConverter",
                         "value.converter.schema.registry.url": url},
            "ProtobufConverter, each struct one line of a file")
        kanal = kanal_file_sink(protobuf, bootstrap, run, variant, workdir, bench=BENCH)
        return [raw, kanal]
