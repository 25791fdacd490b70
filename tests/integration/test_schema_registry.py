"""Registry-backed converters in running connectors, on the real broker: a registry that
goes down (the task backs off, says so, loses nothing), records the registry cannot
explain (dead-letter queue with headers), wrong credentials and bad settings (named by
key, secrets hidden), and pipelines writing Parquet whose schema is the record's (read
back with pyarrow from a real S3 server)."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import re
import ssl
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer

from dev.stack_env import stack_env
from kanal_worker.api import ConfigError, RetriableError, Schema, Type
from kanal_worker.converters.avro import AvroConverter
from kanal_worker.runtime.herder import InvalidConfigError
from kanal_worker.runtime.standalone import StandaloneHerder
from kanal_worker.runtime.status import State
from kanal_worker.runtime.validation import errors_of, mask, validate
from tests.integration.standalone import (
    Standalone,
    in_process_herder,
    line_count,
    wait_for,
    worker_properties,
    write_properties,
)
from tests.integration.test_s3_sink import Bucket, herder_running, s3, s3_settings
from tests.kafka_helpers import committed, consume_all, produce
from tests.schema_registry import TestRegistry, confluent_client, value_context

pytestmark = pytest.mark.integration
__all__ = ["s3"]  # the S3 server fixture, used here too

AVRO = "io.confluent.connect.avro.AvroConverter"
JSON_SCHEMA = "io.confluent.connect.json.JsonSchemaConverter"
READING = {"type": "record", "name": "Reading", "namespace": "dev.kanal.fleet", "fields": [
    {"name": "n", "type": "long"},
    {"name": "vehicle", "type": "string"},
    {"name": "speed", "type": "double"},
    {"name": "lane", "type": ["null", "int"], "default": None},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "fine", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9,
                              "scale": 2}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "position", "type": ["null", {"type": "record", "name": "Position", "fields": [
        {"name": "lat", "type": "double"}, {"name": "lon", "type": "double"}]}],
     "default": None}]}
JSON_READING = {"title": "dev.kanal.fleet.Reading", "type": "object", "properties": {
    "n": {"type": "integer", "connect.type": "int64"},
    "vehicle": {"type": "string"},
    "speed": {"type": "number"},
    "lane": {"oneOf": [{"type": "null"}, {"type": "integer", "connect.type": "int8"}]},
    "at": {"type": "integer", "title": "org.apache.kafka.connect.data.Timestamp",
           "connect.type": "int64"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "position": {"oneOf": [{"type": "null"}, {"type": "object", "title": "Position",
                                               "properties": {"lat": {"type": "number"},
                                                              "lon": {"type": "number"}}}]}},
    "required": ["n", "vehicle", "speed", "at", "tags"]}
AT = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)


def reading(n: int) -> dict[str, Any]:
    return {"n": n, "vehicle": f"VH-{n % 13}", "speed": 80 + n % 50 + 0.5,
            "lane": None if n % 4 == 0 else n % 4, "at": AT + dt.timedelta(seconds=n),
            "fine": decimal.Decimal(n) / 100, "tags": ["radar", f"zone-{n % 3}"],
            "position": None if n % 5 == 0 else {"lat": 53.5, "lon": 10.0 + n / 1000}}


def json_reading(n: int) -> dict[str, Any]:
    value = reading(n)
    del value["fine"]
    return {**value, "at": int(value["at"].timestamp() * 1000)}


def avro_records(url: str, topic: str, count: int) -> list[bytes | None]:
    serializer = AvroSerializer(confluent_client(url), json.dumps(READING))
    return [serializer(reading(n), value_context(topic)) for n in range(count)]


@pytest.fixture
def herder(kafka: str) -> Iterator[StandaloneHerder]:
    with in_process_herder(kafka, "StringConverter") as worker:
        yield worker


def file_sink(topic: str, out: Path, registry_url: str, **extra: str) -> dict[str, str]:
    return {"connector.class": "FileStreamSink", "topics": topic, "file": str(out),
            "value.converter": AVRO, "value.converter.schema.registry.url": registry_url,
            "value.converter.max.retries": "1", "value.converter.retries.wait.ms": "50",
            **extra}


def written_numbers(out: Path) -> list[int]:
    return [int(re.search(rb"\bn=(\d+)", line)[1])  # type: ignore[index]
            for line in out.read_bytes().splitlines()]


def test_a_registry_that_is_down_is_retried_with_backoff_and_nothing_is_lost(
        kafka: str, new_topic: Callable[..., str], herder: StandaloneHerder,
        schema_registry: TestRegistry, tmp_path: Path) -> None:
    topic, out = new_topic("sr-down", 1), tmp_path / "out.txt"
    produce(kafka, topic, avro_records(schema_registry.url, topic, 500))
    name = f"sr-down-{topic}"
    with schema_registry.down():
        herder.put_connector(name, file_sink(topic, out, schema_registry.url))
        details: set[str] = set()

        def retrying() -> bool:
            details.add(herder.runners()[0].status.detail or "" if herder.runners() else "")
            return any("retrying converting records" in d for d in details)
        wait_for(retrying, 60, "the status to say the conversion is retried")
        time.sleep(2)  # a few backoffs while the registry stays away
        assert herder.connector_status(name)["tasks"][0]["state"] == State.RUNNING
        assert line_count(out) == 0
    assert any("unreachable" in d and "schema.registry.url" in d for d in details), details
    wait_for(lambda: line_count(out) >= 500, 90, "every record after the registry is back")
    wait_for(lambda: committed(kafka, f"connect-{name}", topic, 1) == {0: 500}, 60,
             "offsets committed")
    assert sorted(written_numbers(out)) == list(range(500))
    assert not (herder.runners()[0].status.detail or "").startswith("retrying")


def test_a_worker_file_with_schema_registry_url_runs_unchanged_through_an_outage(
        kafka: str, new_topic: Callable[..., str], schema_registry: TestRegistry,
        tmp_path: Path) -> None:
    """``kanal standalone`` with the converter in the worker file, as a
    connect-standalone.properties has it; records of a schema the worker has not read yet
    arrive while the registry is away."""
    topic, out = new_topic("sr-worker", 1), tmp_path / "out.txt"
    produce(kafka, topic, avro_records(schema_registry.url, topic, 200))
    evolved = {**READING, "fields": [*READING["fields"], {
        "name": "note", "type": ["null", "string"], "default": None}]}
    serializer = AvroSerializer(confluent_client(schema_registry.url), json.dumps(evolved))
    later = [serializer({**reading(n), "note": "late"}, value_context(topic))
             for n in range(200, 400)]
    worker = worker_properties(tmp_path, kafka, **{
        "value_converter": AVRO, "value_converter_schema_registry_url": schema_registry.url,
        "value_converter_max_retries": "0"})
    sink = write_properties(tmp_path / "sink.properties", {
        "name": f"sink-{topic}", "connector.class": "FileStreamSink", "topics": topic,
        "file": str(out)})
    run = Standalone(worker, sink, log=tmp_path / "kanal.log").start()
    try:
        wait_for(lambda: line_count(out) >= 200, 90, "the records of the first schema")
        with schema_registry.down():
            produce(kafka, topic, later)
            wait_for(lambda: run.logged(b"converting records failed"), 60,
                     "the worker to log its retries")
            assert line_count(out) == 200
        wait_for(lambda: line_count(out) >= 400, 90, "every record after the outage")
    finally:
        assert run.stop() == 0
    assert sorted(written_numbers(out)) == list(range(400))
    assert out.read_bytes().count(b"note=late") == 200


def test_records_the_registry_cannot_explain_go_to_the_dead_letter_queue(
        kafka: str, new_topic: Callable[..., str], herder: StandaloneHerder,
        schema_registry: TestRegistry, tmp_path: Path) -> None:
    topic, out = new_topic("sr-dlq", 1), tmp_path / "out.txt"
    good = avro_records(schema_registry.url, topic, 10)
    unknown_id = struct.pack(">bI", 0, 987_654) + b"\x02"
    plain_json = b'{"n": 99}'
    produce(kafka, topic, [*good[:4], unknown_id, *good[4:8], plain_json, *good[8:]])
    dlq = f"{topic}-dlq"
    name = f"sr-dlq-{topic}"
    herder.put_connector(name, file_sink(
        topic, out, schema_registry.url, **{
            "errors.tolerance": "all", "errors.deadletterqueue.topic.name": dlq,
            "errors.deadletterqueue.topic.replication.factor": "1",
            "errors.deadletterqueue.context.headers.enable": "true"}))
    wait_for(lambda: line_count(out) >= 10, 60, "the good records")
    dead = consume_all(kafka, dlq, 2, timeout=60)
    assert sorted(written_numbers(out)) == list(range(10))
    assert [m.value() for m in dead] == [unknown_id, plain_json]
    headers = [{k: v.decode() for k, v in m.headers() or []} for m in dead]
    for header, offset in zip(headers, ("4", "9"), strict=True):
        assert header["__connect.errors.topic"] == topic
        assert header["__connect.errors.offset"] == offset
        assert header["__connect.errors.stage"] == "VALUE_CONVERTER"
        assert header["__connect.errors.class.name"] == AVRO
        assert header["__connect.errors.exception.class.name"] == \
            "org.apache.kafka.connect.errors.DataException"
    assert "no schema with that id" in headers[0]["__connect.errors.exception.message"]
    assert "Unknown magic byte" in headers[1]["__connect.errors.exception.message"]
    assert herder.connector_status(name)["tasks"][0]["state"] == State.RUNNING


def test_wrong_credentials_fail_the_task_naming_the_key_even_with_tolerance_all(
        kafka: str, new_topic: Callable[..., str], herder: StandaloneHerder,
        schema_registry: TestRegistry, tmp_path: Path) -> None:
    topic = new_topic("sr-auth", 1)
    produce(kafka, topic, avro_records(schema_registry.url, topic, 3))
    name = f"sr-auth-{topic}"
    dlq = f"{topic}-dlq"
    config = file_sink(topic, tmp_path / "out.txt", schema_registry.url, **{
        "value.converter.basic.auth.credentials.source": "USER_INFO",
        "value.converter.basic.auth.user.info": "fleet:not-the-password",
        "errors.tolerance": "all", "errors.deadletterqueue.topic.name": dlq,
        "errors.deadletterqueue.topic.replication.factor": "1"})
    with schema_registry.requiring(users={"fleet": "s3cret"}):
        herder.put_connector(name, config)
        wait_for(lambda: herder.connector_status(name)["tasks"][0]["state"] == State.FAILED,
                 60, "the task FAILED")
    trace = herder.connector_status(name)["tasks"][0]["trace"]
    assert "basic.auth.user.info" in trace and "HTTP 401" in trace
    # a wrong setting is no record's fault: none went to the dead-letter queue
    assert consume_all(kafka, dlq, 1, timeout=5) == []
    assert committed(kafka, f"connect-{name}", topic, 1)[0] <= 0  # nothing consumed for good
    shown = json.dumps([herder.connector_status(name), mask(herder.connector_config(name))])
    assert "not-the-password" not in shown  # what GET /connectors/... shows


@pytest.fixture(scope="module")
def tls_registry(kafka: str) -> Iterator[TestRegistry]:
    """A registry on https asking for client certificates, with the stack's TLS material
    (its certificate is for 127.0.0.1, signed by the stack's CA)."""
    tls = stack_env("kafka")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls["KANAL_KAFKA_SSL_CA"])
    directory = Path(tls["KANAL_KAFKA_SSL_CA"]).parent
    context.load_cert_chain(directory / "broker.pem", directory / "broker.key")
    context.verify_mode = ssl.CERT_REQUIRED
    server = TestRegistry(tls=context).start()
    yield server
    server.stop()


def test_an_https_registry_with_a_java_trust_store_and_a_client_certificate(
        tls_registry: TestRegistry, tmp_path: Path) -> None:
    tls = stack_env("kafka")
    directory = Path(tls["KANAL_KAFKA_SSL_CA"]).parent
    client = tmp_path / "client.pem"
    client.write_bytes((directory / "client.pem").read_bytes()
                       + (directory / "client.key").read_bytes())
    topic = f"sr-tls-{uuid.uuid4().hex[:8]}"
    for store in ("truststore.p12", "truststore.jks"):
        converter = AvroConverter({
            "schema.registry.url": tls_registry.url,
            "schema.registry.ssl.truststore.location": str(directory / store),
            "schema.registry.ssl.truststore.password": tls["KANAL_KAFKA_SSL_PASSWORD"],
            "schema.registry.ssl.keystore.location": str(client)}, False)
        data = converter.from_connect(topic, Schema(Type.STRING), store)
        assert converter.to_connect(topic, data).value == store
    pkcs12 = AvroConverter({
        "schema.registry.url": tls_registry.url,
        "schema.registry.ssl.truststore.location": str(directory / "truststore.p12"),
        "schema.registry.ssl.truststore.password": tls["KANAL_KAFKA_SSL_PASSWORD"],
        "schema.registry.ssl.keystore.location": str(directory / "client.p12"),
        "schema.registry.ssl.keystore.password": tls["KANAL_KAFKA_SSL_PASSWORD"]}, False)
    data = pkcs12.from_connect(topic, Schema(Type.STRING), "pkcs12 key store")
    assert pkcs12.to_connect(topic, data).value == "pkcs12 key store"
    with pytest.raises(ConfigError, match=r"schema\.registry\.ssl\.keystore\.password"):
        AvroConverter({"schema.registry.url": tls_registry.url,
                       "schema.registry.ssl.keystore.location": str(directory / "client.p12"),
                       "schema.registry.ssl.keystore.password": "wrong"},
                      False).from_connect(topic, Schema(Type.STRING), "x")
    untrusting = AvroConverter({"schema.registry.url": tls_registry.url, "max.retries": "0",
                                "schema.registry.ssl.keystore.location": str(client)}, False)
    with pytest.raises(RetriableError, match="unreachable"):
        untrusting.from_connect(topic, Schema(Type.STRING), "x")


def test_bad_converter_settings_are_named_by_key_in_validate() -> None:
    config = {"connector.class": "FileStreamSink", "name": "sr", "topics": "t",
              "file": "/tmp/sr.txt", "value.converter": JSON_SCHEMA,
              "value.converter.schema.registry.url": "registry:8081",
              "value.converter.value.subject.name.strategy": "com.example.MyStrategy",
              "value.converter.basic.auth.user.info": "fleet:s3cret"}
    infos = validate(config)
    errors = errors_of(infos)
    assert "http:// or https://" in errors["value.converter.schema.registry.url"][0]
    assert "TopicNameStrategy" in errors["value.converter.value.subject.name.strategy"][0]
    assert "s3cret" not in json.dumps(infos)
    assert mask(config)["value.converter.basic.auth.user.info"] == "[hidden]"


# -- Parquet whose schema is the record's -------------------------------------------------


def parquet_pipeline(kafka: str, s3: dict[str, str], topic: str, unique: str,
                     records: list[bytes | None], converter: dict[str, str]) -> pa.Table:
    """``records`` through the S3 sink with ParquetFormat; the files read back as one table."""
    produce(kafka, topic, records)
    bucket = Bucket(s3, f"sr-parquet-{unique}")
    name = f"sr-parquet-{unique}"
    config = {"topics": topic, "format.class": "ParquetFormat", "flush.size": "50",
              "key.converter": "org.apache.kafka.connect.storage.StringConverter",
              **converter, **s3_settings(s3, bucket)}
    with herder_running(kafka, name, config):
        wait_for(lambda: len(bucket.names()) >= len(records) // 50, 90, "the Parquet files")
    files = bucket.objects()
    assert all(key.endswith(".snappy.parquet") for key in files), list(files)
    tables = [pq.read_table(io.BytesIO(data)) for _, data in sorted(files.items())]
    return pa.concat_tables(tables)


def test_avro_records_become_parquet_with_their_schema(
        kafka: str, s3: dict[str, str], new_topic: Callable[..., str], unique: str,
        schema_registry: TestRegistry) -> None:
    topic = new_topic("sr-avro-parquet", 1)
    table = parquet_pipeline(kafka, s3, topic, unique,
                             avro_records(schema_registry.url, topic, 200), {
                                 "value.converter": AVRO,
                                 "value.converter.schema.registry.url": schema_registry.url})
    schema = table.schema
    assert schema.field("n").type == pa.int64() and not schema.field("n").nullable
    assert schema.field("lane").type == pa.int32() and schema.field("lane").nullable
    assert schema.field("at").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("fine").type == pa.decimal128(9, 2)
    assert schema.field("tags").type == pa.list_(pa.string())
    assert schema.field("position").type == pa.struct([
        pa.field("lat", pa.float64(), nullable=False),
        pa.field("lon", pa.float64(), nullable=False)])
    rows = sorted(table.to_pylist(), key=lambda row: row["n"])
    assert rows == [reading(n) for n in range(200)]


def test_json_schema_records_become_parquet_with_their_schema(
        kafka: str, s3: dict[str, str], new_topic: Callable[..., str], unique: str,
        schema_registry: TestRegistry) -> None:
    topic = new_topic("sr-json-parquet", 1)
    serializer = JSONSerializer(json.dumps(JSON_READING), confluent_client(schema_registry.url))
    records: list[bytes | None] = [serializer(json_reading(n), value_context(topic))
                                   for n in range(200)]
    table = parquet_pipeline(kafka, s3, topic, unique, records, {
        "value.converter": JSON_SCHEMA,
        "value.converter.schema.registry.url": schema_registry.url})
    schema = table.schema
    assert schema.field("n").type == pa.int64() and not schema.field("n").nullable
    assert schema.field("lane").type == pa.int8() and schema.field("lane").nullable
    assert schema.field("speed").type == pa.float64()
    assert schema.field("at").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("tags").type == pa.list_(pa.string())
    assert schema.field("position").type == pa.struct([
        pa.field("lat", pa.float64(), nullable=False),
        pa.field("lon", pa.float64(), nullable=False)])
    rows = sorted(table.to_pylist(), key=lambda row: row["n"])
    expected = [reading(n) for n in range(200)]
    for row in expected:
        del row["fine"]
    assert rows == expected


def test_a_connector_with_an_unknown_strategy_is_refused_naming_the_key(
        herder: StandaloneHerder) -> None:
    with pytest.raises(InvalidConfigError) as refused:
        herder.put_connector("sr-bad-strategy", {
            "connector.class": "FileStreamSink", "topics": "sr-bad", "file": "/tmp/sr-bad",
            "value.converter": AVRO, "value.converter.schema.registry.url": "http://r:8081",
            "value.converter.value.subject.name.strategy": "com.example.MyStrategy"})
    [message] = refused.value.errors["value.converter.value.subject.name.strategy"]
    assert message.startswith("unknown subject name strategy com.example.MyStrategy; use one "
                              "of io.confluent.kafka.serializers.subject.TopicNameStrategy")
