"""B6: the AvroConverter against confluent-kafka's AvroDeserializer (the Python limit) and
Apache's JsonConverter on the equivalent JSON.

The workload's readings are written once more as Avro by confluent-kafka's
AvroSerializer into ``bench.avro.<count>`` (same keys, same partitions), with the schema
in the test tree's schema registry, served from this process for the step (no
Confluent-compatible registry can be installed here). Kanal's FileStreamSink reads that
topic with the AvroConverter and writes each record's Struct as a line; ``python -m
bench.raw avro-consume`` consumes it and decodes every record with AvroDeserializer; the
Apache peer's FileStreamSink reads the JSON workload with JsonConverter
(``schemas.enable=false``) and writes each map as a line.
"""

from __future__ import annotations

import json
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from bench.measure import Sample, run_raw
from bench.sinks import JSON, STRING, FileSinkVariant, apache_file_sink, kanal_file_sink
from bench.systems import ConnectWorker
from bench.workload import Workload, records
from tests.schema_registry import TestRegistry, confluent_client

BENCH = "B6 avro converter"
AVRO_CONVERTER = "io.confluent.connect.avro.AvroConverter"
READING = {"type": "record", "name": "Reading", "namespace": "dev.kanal.telemetry",
           "fields": [{"name": "vehicle_id", "type": "string"},
                      {"name": "timestamp", "type": "long"},
                      {"name": "speed_kmh", "type": "double"},
                      {"name": "fuel_level", "type": "double"},
                      {"name": "lat", "type": "double"},
                      {"name": "lon", "type": "double"},
                      {"name": "seq", "type": "long"}]}


def avro_topic(bootstrap: str, workload: Workload, registry_url: str) -> Workload:
    """The workload's readings as Avro in a fresh topic (the registry is new each time, so
    the schema ids of an older topic would mean nothing to it)."""
    topic = f"bench.avro.{workload.records}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic in admin.list_topics(timeout=10).topics:
        admin.delete_topics([topic])[topic].result(30)
    admin.create_topics([NewTopic(topic, workload.partitions, 1)])[topic].result(30)
    serialize = AvroSerializer(confluent_client(registry_url), json.dumps(READING))
    context = SerializationContext(topic, MessageField.VALUE)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "batch.size": 1_000_000, "compression.type": "lz4"})
    value_bytes = key_bytes = 0
    for seq, (key, value) in enumerate(records(workload.records)):
        data = serialize(json.loads(value), context)
        assert data is not None
        value_bytes += len(data)
        key_bytes += len(key)
        while True:
            try:
                producer.produce(topic, value=data, key=key, partition=seq % workload.partitions)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise RuntimeError(f"could not produce the Avro workload to {topic}")
    return Workload(topic, workload.records, workload.partitions, value_bytes, key_bytes)


def b6(workload: Workload, bootstrap: str, run: int, workdir: Path,
       peer: ConnectWorker | None) -> list[Sample]:
    registry = TestRegistry().start()
    try:
        avro = avro_topic(bootstrap, workload, registry.url)
        variant = FileSinkVariant(
            "avro", kanal={"key.converter": STRING, "value.converter": AVRO_CONVERTER,
                           "value.converter.schema.registry.url": registry.url},
            apache={"key.converter": STRING, "value.converter": JSON,
                    "value.converter.schemas.enable": "false"},
            doc="Avro records decoded by the AvroConverter (Kanal) / the same readings as "
                "JSON decoded by JsonConverter (Apache), written as lines")
        samples = [kanal_file_sink(avro, bootstrap, run, variant, workdir,
                                   bench=BENCH)]
        raw = Sample(BENCH, "avro", "AvroDeserializer", run, avro.records)
        samples.append(run_raw(raw, "bench.raw", ["avro-consume", bootstrap, avro.topic,
                                                  str(avro.records), registry.url],
                               avro.timeout))
        if peer is not None:
            samples.append(apache_file_sink(workload, bootstrap, run, variant, workdir, peer,
                                            bench=BENCH))
        return samples
    finally:
        registry.stop()
