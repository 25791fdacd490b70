"""S3SinkConnector against the real broker and a real S3 server (versitygw).

Connectors run through Kanal's runtime: an in-process ``StandaloneHerder`` or a
``kanal standalone`` subprocess that the crash test kills with SIGKILL. Objects are
read back with boto3 and each format's standard reader.

Big runs: ``KANAL_S3_CRASH_RECORDS`` (records of the SIGKILL test, default 20,000;
the issue's check is 100,000) and ``KANAL_S3_OUTAGE_S`` (seconds the store is away,
default 15; the issue's check is 60).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import orjson
import pytest

from dev.stack_env import stack_env
from kanal_worker.runtime.standalone import StandaloneHerder
from kanal_worker.runtime.status import State
from kanal_worker.runtime.validation import errors_of, validate
from tests.integration import storage_scenarios
from tests.integration.blackout import BlackoutProxy
from tests.integration.refusing_proxy import RefusingProxy
from tests.integration.standalone import (
    KANAL,
    wait_for,
    write_properties,
)
from tests.integration.storage_data import (
    ENVELOPE_SCHEMA,
    HOURLY,
    JSON_VALUES,
    assert_hourly_files,
    json_lines,
    produce_seed_readings,
    read_back,
    speeding,
)
from tests.integration.storage_scenarios import (
    each_record_reads_back,
    first_write_fails,
    keys_and_headers_match_their_values_through_a_sigkill,
    line_total,
    outage_loses_and_duplicates_nothing,
    sigkills_keep_every_record_exactly_once,
    task_state,
)
from tests.kafka_helpers import committed, produce

pytestmark = pytest.mark.integration

CRASH_RECORDS = int(os.environ.get("KANAL_S3_CRASH_RECORDS", "20000"))
OUTAGE_S = float(os.environ.get("KANAL_S3_OUTAGE_S", "15"))
CONNECTOR = "io.confluent.connect.s3.S3SinkConnector"


@pytest.fixture(scope="session")
def s3() -> dict[str, str]:
    """Endpoint and credentials of the real S3 server."""
    return stack_env("s3")


class Bucket:
    """A fresh bucket of the test's own, read with boto3."""

    def __init__(self, s3: dict[str, str], name: str) -> None:
        self.name = name
        self.client = boto3.client(
            "s3", endpoint_url=s3["KANAL_S3_ENDPOINT"], region_name=s3["KANAL_S3_REGION"],
            aws_access_key_id=s3["KANAL_S3_ACCESS_KEY"],
            aws_secret_access_key=s3["KANAL_S3_SECRET_KEY"])
        self.client.create_bucket(Bucket=name)

    def names(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return [entry["Key"] for page in pages for entry in page.get("Contents", [])]

    def objects(self) -> dict[str, bytes]:
        return {key: self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
                for key in self.names()}


def s3_settings(s3: dict[str, str], bucket: Bucket, store_url: str | None = None
                ) -> dict[str, str]:
    """The Confluent keys for the local server (what a user would write)."""
    return {"s3.bucket.name": bucket.name, "s3.region": s3["KANAL_S3_REGION"],
            "store.url": store_url or s3["KANAL_S3_ENDPOINT"],
            "aws.access.key.id": s3["KANAL_S3_ACCESS_KEY"],
            "aws.secret.access.key": s3["KANAL_S3_SECRET_KEY"]}


@contextmanager
def herder_running(kafka: str, name: str, config: dict[str, str]) -> Iterator[StandaloneHerder]:
    with storage_scenarios.herder_running(kafka, name, {"connector.class": CONNECTOR,
                                                        **config}) as herder:
        yield herder


def test_seed_vehicle_speeding_to_hourly_folders(kafka: str, s3: dict[str, str],
                                                 new_topic: Callable[..., str],
                                                 unique: str) -> None:
    """The seed's pipeline: speeding events as JSON, one folder per hour, record by record."""
    topic = new_topic("vehicle.speeding", 2)
    produced = produce_seed_readings(kafka, topic)
    name = f"s3-sink-{unique}"
    bucket = Bucket(s3, f"telemetry-{unique}")
    with herder_running(kafka, name, {"topics": topic, "format.class": "JsonFormat",
                                      "flush.size": "100", **s3_settings(s3, bucket),
                                      **JSON_VALUES, **HOURLY}):
        wait_for(lambda: line_total(bucket) >= 1200, 90, "1200 records in objects")
        wait_for(lambda: committed(kafka, f"connect-{name}", topic, 2) == {0: 600, 1: 600}, 30,
                 "offsets committed")
    assert_hourly_files(bucket.objects(), topic, produced)


@pytest.mark.parametrize(("config", "suffix"), [
    ({"format.class": "io.confluent.connect.s3.format.json.JsonFormat",
      "s3.compression.type": "gzip"}, ".json.gz"),
    ({"format.class": "io.confluent.connect.s3.format.avro.AvroFormat",
      "avro.codec": "deflate"}, ".avro"),
    ({"format.class": "io.confluent.connect.s3.format.parquet.ParquetFormat"},
     ".snappy.parquet"),
    ({"format.class": "io.confluent.connect.s3.format.bytearray.ByteArrayFormat",
      "value.converter": "org.apache.kafka.connect.converters.ByteArrayConverter"}, ".bin"),
], ids=["json-gzip", "avro-deflate", "parquet-snappy", "bytes"])
def test_each_format_reads_back_with_its_standard_reader(
        kafka: str, s3: dict[str, str], new_topic: Callable[..., str], unique: str,
        config: dict[str, str], suffix: str) -> None:
    bucket = Bucket(s3, f"formats-{unique}")
    each_record_reads_back(kafka, new_topic("formats", 1), f"formats-{unique}", bucket,
                           {"connector.class": CONNECTOR, **s3_settings(s3, bucket)},
                           config, suffix)


def test_large_files_are_multipart_uploads_written_once_with_conditional_writes(
        kafka: str, s3: dict[str, str], new_topic: Callable[..., str], unique: str) -> None:
    """Files above s3.part.size go up in 5 MiB parts (the last one shorter) and appear
    whole; with enable.conditional.writes, a restart that writes them again keeps them."""
    topic = new_topic("multipart", 1)
    values: list[bytes | None] = [orjson.dumps({"seq": i, "pad": "p" * 1000})
                                  for i in range(12_000)]
    produce(kafka, topic, values)
    bucket = Bucket(s3, f"multipart-{unique}")
    config = {"topics": topic, "format.class": "JsonFormat", "flush.size": "6000",
              "s3.part.size": "5242880", "enable.conditional.writes": "true",
              **s3_settings(s3, bucket), **JSON_VALUES}
    with herder_running(kafka, f"multipart-{unique}", config):
        wait_for(lambda: len(bucket.names()) >= 2, 90, "2 files")
    for key in bucket.names():
        head = bucket.client.head_object(Bucket=bucket.name, Key=key)
        assert head["ContentLength"] > 5 * 1024 * 1024
        assert head["ETag"].strip('"').endswith("-2"), head["ETag"]  # two parts
    first = bucket.objects()
    # a new connector name starts from offset 0: the same files are due again
    with herder_running(kafka, f"multipart-again-{unique}", config) as herder:
        wait_for(lambda: committed(kafka, f"connect-multipart-again-{unique}", topic, 1) ==
                 {0: 12_000}, 90, "the rerun's offsets committed")
        assert task_state(herder, f"multipart-again-{unique}")["state"] == State.RUNNING.value
    assert bucket.objects() == first
    assert [r["seq"] for r in json_lines(first)] == list(range(12_000))


def test_keys_and_headers_files_match_their_values_and_a_sigkill_rerun_rewrites_them(
        tmp_path: Path, kafka: str, s3: dict[str, str], new_topic: Callable[..., str],
        unique: str) -> None:
    bucket = Bucket(s3, f"keyed-{unique}")
    keys_and_headers_match_their_values_through_a_sigkill(
        tmp_path, kafka, new_topic("keyed", 1), bucket,
        {"name": f"keyed-{unique}", "connector.class": CONNECTOR, **s3_settings(s3, bucket)})


def test_null_values_written_as_tombstone_keys_files(
        kafka: str, s3: dict[str, str], new_topic: Callable[..., str], unique: str) -> None:
    """behavior.on.null.values=write as Confluent's S3 sink: a tombstone's key (and
    headers) go to the tombstone encoded partition, with no value file; the other records
    keep their value, keys and headers files."""
    bucket = Bucket(s3, f"tombstones-{unique}")
    topic = new_topic("tombstones", 1)
    values = [None if seq % 4 == 3 else orjson.dumps({"seq": seq}) for seq in range(40)]
    produce(kafka, topic, values, keys=[f"key-{seq}".encode() for seq in range(40)],
            partition=0, headers=[("source", b"cdc")])
    name = f"tombstones-{unique}"
    config = {**s3_settings(s3, bucket), "topics": topic, "format.class": "JsonFormat",
              "flush.size": "10", "store.kafka.keys": "true", "store.kafka.headers": "true",
              "keys.format.class": "io.confluent.connect.s3.format.json.JsonFormat",
              "behavior.on.null.values": "write", **JSON_VALUES}
    assert "store.kafka.keys=true" in errors_of(validate({
        **config, "name": name, "connector.class": CONNECTOR, "store.kafka.keys": "false"}))[
        "behavior.on.null.values"][0]
    with herder_running(kafka, name, config) as herder:
        wait_for(lambda: committed(kafka, f"connect-{name}", topic, 1) == {0: 40}, 90,
                 "every offset committed")
        assert task_state(herder, name)["state"] == State.RUNNING.value
    files = bucket.objects()
    tombstones = {key: data for key, data in files.items()
                  if key.startswith(f"topics/{topic}/tombstone/")}
    assert tombstones and all(".keys.json" in key or ".headers.avro" in key
                              for key in tombstones), sorted(tombstones)
    assert [line for key in sorted(tombstones) if key.endswith(".keys.json")
            for line in json_lines({key: tombstones[key]})] == \
        [f"key-{seq}" for seq in range(3, 40, 4)]
    headers = [h for key in sorted(tombstones) if key.endswith(".headers.avro")
               for h in read_back("AvroFormat", key, tombstones[key])]
    assert headers == [[{"key": "source", "value": "cdc"}]] * 10
    values_files = {key: data for key, data in files.items() if key.endswith("0.json")}
    assert [r["seq"] for r in json_lines(dict(sorted(values_files.items())))] == \
        [seq for seq in range(40) if seq % 4 != 3]
    assert not any(key.startswith(f"topics/{topic}/tombstone/") for key in values_files)


def test_sigkill_at_random_points_keeps_every_record_exactly_once(
        tmp_path: Path, kafka: str, s3: dict[str, str], new_topic: Callable[..., str],
        unique: str) -> None:
    bucket = Bucket(s3, f"crash-{unique}")
    sigkills_keep_every_record_exactly_once(
        tmp_path, kafka, new_topic("crash", 2), CRASH_RECORDS // 2, bucket,
        {"name": f"crash-{unique}", "connector.class": CONNECTOR, **s3_settings(s3, bucket)},
        unique)


def test_storage_outage_retries_without_loss_or_duplicates(
        kafka: str, s3: dict[str, str], new_topic: Callable[..., str], unique: str) -> None:
    endpoint = urlsplit(s3["KANAL_S3_ENDPOINT"])
    proxy = BlackoutProxy((endpoint.hostname or "", endpoint.port or 80)).start()
    bucket = Bucket(s3, f"outage-{unique}")
    outage_loses_and_duplicates_nothing(
        kafka, new_topic("outage", 1), f"outage-{unique}", bucket, proxy,
        lambda url: {"connector.class": CONNECTOR, **s3_settings(s3, bucket, url),
                     "s3.part.retries": "1", "s3.connection.timeout.ms": "2000"},
        OUTAGE_S)


def test_a_configuration_from_confluents_documentation_runs_unchanged(
        kafka: str, s3: dict[str, str], new_topic: Callable[..., str], unique: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Confluent's quick start properties, with only the bucket, the topic and store.url
    changed; the credentials come from the default chain (the environment)."""
    topic = new_topic("s3_topic", 1)
    bucket = Bucket(s3, f"confluent-kafka-connect-s3-testing-{unique}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3["KANAL_S3_ACCESS_KEY"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3["KANAL_S3_SECRET_KEY"])
    quick_start = {
        "name": "s3-sink", "connector.class": "io.confluent.connect.s3.S3SinkConnector",
        "tasks.max": "1", "topics": topic, "s3.region": "us-west-2",
        "s3.bucket.name": bucket.name, "s3.part.size": "5242880", "flush.size": "3",
        "storage.class": "io.confluent.connect.s3.storage.S3Storage",
        "format.class": "io.confluent.connect.s3.format.avro.AvroFormat",
        "partitioner.class": "io.confluent.connect.storage.partitioner.DefaultPartitioner",
        "schema.compatibility": "NONE",
        "store.url": s3["KANAL_S3_ENDPOINT"]}
    assert errors_of(validate(quick_start)) == {}
    expected = [speeding(i) for i in range(9)]
    produce(kafka, topic, [orjson.dumps({"schema": ENVELOPE_SCHEMA, "payload": v})
                           for v in expected])
    with herder_running(kafka, f"quick-start-{unique}", {
            **quick_start, "value.converter": "org.apache.kafka.connect.json.JsonConverter"}):
        wait_for(lambda: len(bucket.names()) >= 3, 60, "3 files")
    files = bucket.objects()
    assert sorted(files) == [f"topics/{topic}/partition=0/{topic}+0+{start:010d}.avro"
                             for start in (0, 3, 6)]
    assert [v for key in sorted(files) for v in read_back("AvroFormat", key, files[key])] == \
        expected


def test_the_example_validates_with_its_worker_providers(s3: dict[str, str]) -> None:
    """As a new user runs it: the example's credentials are ${env:...} placeholders, which
    the worker file's config providers resolve before the store is asked."""
    client = boto3.client("s3", endpoint_url=s3["KANAL_S3_ENDPOINT"],
                          region_name=s3["KANAL_S3_REGION"],
                          aws_access_key_id=s3["KANAL_S3_ACCESS_KEY"],
                          aws_secret_access_key=s3["KANAL_S3_SECRET_KEY"])
    with suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket="telemetry")  # the example's bucket
    environment = {**os.environ, **s3}
    checked = subprocess.run([KANAL, "validate", "--worker",
                              "examples/standalone/worker.properties",
                              "examples/s3-sink.properties"], capture_output=True, text=True,
                             timeout=60, check=False, env=environment)
    assert checked.returncode == 0 and "is valid" in checked.stdout, checked.stderr
    unresolved = subprocess.run([KANAL, "validate", "examples/s3-sink.properties"],
                                capture_output=True, text=True, timeout=60, check=False,
                                env=environment)
    assert unresolved.returncode != 0 and "aws.access.key.id" in unresolved.stderr
    assert s3["KANAL_S3_SECRET_KEY"] not in checked.stdout + checked.stderr + unresolved.stderr


def test_bad_stores_are_named_by_key_in_validate_and_task_status(
        tmp_path: Path, kafka: str, s3: dict[str, str], new_topic: Callable[..., str],
        unique: str) -> None:
    bucket = Bucket(s3, f"bad-{unique}")
    base = {"name": "bad", "connector.class": CONNECTOR, "topics": "t",
            "format.class": "JsonFormat", "flush.size": "10", **s3_settings(s3, bucket)}

    def errors(**changes: str | None) -> dict[str, list[str]]:
        config = {**base, **{k.replace("_", "."): v for k, v in changes.items()}}
        return errors_of(validate({k: v for k, v in config.items() if v is not None}))

    assert errors() == {}
    assert bucket.names() == []  # the write probe is gone again
    missing = errors(s3_bucket_name=f"missing-{unique}")
    assert "does not exist" in missing["s3.bucket.name"][0], missing
    assert "Missing required configuration" in errors(s3_bucket_name=None)["s3.bucket.name"][0]
    wrong = errors(aws_secret_access_key="wrong-secret")
    assert "rejected the credentials" in wrong["aws.access.key.id"][0], wrong
    read_only = errors(aws_access_key_id=s3["KANAL_S3_USER_ACCESS_KEY"],
                       aws_secret_access_key=s3["KANAL_S3_USER_SECRET_KEY"])
    assert "denied access" in read_only["s3.bucket.name"][0], read_only
    unreachable = errors(store_url="http://127.0.0.1:1")
    assert "unreachable" in unreachable["store.url"][0], unreachable
    assert "Unknown format class io.confluent.connect.s3.format.csv.CsvFormat" in errors(
        format_class="io.confluent.connect.s3.format.csv.CsvFormat")["format.class"][0]
    assert "Unknown partitioner class" in errors(
        partitioner_class="io.confluent.connect.storage.partitioner.WeeklyPartitioner")[
        "partitioner.class"][0]
    assert "greater than or equal to 5242880" in errors(s3_part_size="1024")[
        "s3.part.size"][0]
    assert "go together" in errors(aws_secret_access_key=None)["aws.secret.access.key"][0]
    hidden = {c["value"]["name"]: c["value"]["value"] for c in validate(base)["configs"]}
    assert hidden["aws.secret.access.key"] == "[hidden]"
    # the command line says the same, without the secret
    properties = write_properties(tmp_path / "bad.properties", {
        **base, "aws.access.key.id": s3["KANAL_S3_USER_ACCESS_KEY"],
        "aws.secret.access.key": s3["KANAL_S3_USER_SECRET_KEY"]})
    checked = subprocess.run([KANAL, "validate", str(properties)], capture_output=True,
                             text=True, timeout=60, check=False)
    assert checked.returncode != 0 and "s3.bucket.name: S3 denied access" in checked.stderr, \
        checked.stderr
    assert s3["KANAL_S3_USER_SECRET_KEY"] not in checked.stdout + checked.stderr

    # the task says the same (here the bucket goes away after creation), fails, and
    # commits nothing
    topic = new_topic("bad", 1)
    name = f"bad-{unique}"
    with herder_running(kafka, name, {**base, "topics": topic, **JSON_VALUES}) as herder:
        bucket.client.delete_bucket(Bucket=bucket.name)
        produce(kafka, topic, [orjson.dumps({"seq": i}) for i in range(20)])
        wait_for(lambda: task_state(herder, name)["state"] == State.FAILED.value, 60,
                 "the task to fail")
        trace = task_state(herder, name)["trace"]
        assert "s3.bucket.name" in trace and "does not exist" in trace, trace
        assert s3["KANAL_S3_SECRET_KEY"] not in trace
    assert committed(kafka, f"connect-{name}", topic, 1)[0] <= 0, "nothing committed"


@pytest.mark.parametrize(("code", "message", "expected"), [
    ("AccessDenied", "Access Denied",
     "S3 denied access to bucket {bucket} (AccessDenied: Access Denied); give the "
     "credentials s3:PutObject and multipart upload rights on it, or fix s3.bucket.name"),
    ("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.",
     "S3 rejected the credentials (InvalidAccessKeyId: The AWS Access Key Id you provided "
     "does not exist in our records.); check aws.access.key.id and aws.secret.access.key"),
], ids=["write-permission-taken", "credentials-revoked"])
def test_refusals_after_start_are_named_by_the_task_status(
        kafka: str, s3: dict[str, str], new_topic: Callable[..., str], unique: str,
        code: str, message: str, expected: str) -> None:
    """The write right or the access key taken away while the task runs (a proxy answers
    as S3 does, which versitygw cannot be made to do mid-run): the task fails naming the
    key to fix; nothing is committed."""
    bucket = Bucket(s3, f"refused-{unique}")
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>kanal-test</RequestId></Error>").encode()
    proxy = RefusingProxy(s3["KANAL_S3_ENDPOINT"], rf"/{bucket.name}(/|\?|$)", 403, body,
                          "application/xml")
    proxy.refusing = False
    proxy.start()
    try:
        topic = new_topic("refused", 1)
        name = f"refused-{unique}"
        with herder_running(kafka, name, {**s3_settings(s3, bucket, proxy.url),
                                          "topics": topic, "format.class": "JsonFormat",
                                          "flush.size": "1", **JSON_VALUES}) as herder:
            proxy.refusing = True
            trace = first_write_fails(herder, kafka, topic, name)
            assert expected.format(bucket=bucket.name) in trace, trace
            assert s3["KANAL_S3_SECRET_KEY"] not in trace
        assert committed(kafka, f"connect-{name}", topic, 1)[0] < 0, "nothing committed"
        assert bucket.names() == []
    finally:
        proxy.stop()
