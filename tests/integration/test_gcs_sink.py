"""GcsSinkConnector against the real broker and the real fake-gcs-server.

Connectors run through Kanal's runtime: an in-process ``StandaloneHerder`` or a
``kanal standalone`` subprocess that the crash test kills with SIGKILL. Objects are
read back with google-cloud-storage and each format's standard reader.

``KANAL_TEST_GCS_CRASH_RECORDS`` sets the records of the SIGKILL test (default 30,000;
the issue's 100,000 is a setting away) and ``KANAL_TEST_OUTAGE_SECONDS`` the length of
the store outage (default 10; 60 for the full check).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from kanal_worker.runtime.status import State
from kanal_worker.runtime.validation import errors_of, validate
from tests.integration.blackout import BlackoutProxy
from tests.integration.object_store import (
    first_task,
    herder_running,
    outage_run,
    produce_seed,
    sigkill_run,
)
from tests.integration.standalone import wait_for
from tests.integration.storage_data import (
    ENVELOPE_SCHEMA,
    HOURLY,
    JSON_VALUES,
    assert_hourly_files,
    read_back,
    speeding,
)
from tests.kafka_helpers import committed, produce

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CRASH_RECORDS = int(os.environ.get("KANAL_TEST_GCS_CRASH_RECORDS", "30000"))
OUTAGE_SECONDS = float(os.environ.get("KANAL_TEST_OUTAGE_SECONDS", "10"))


def client(endpoint: str) -> storage.Client:
    return storage.Client(project="kanal-test", credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": endpoint})


@pytest.fixture
def bucket(gcs: str, unique: str) -> Iterator[storage.Bucket]:
    yield client(gcs).create_bucket(f"kanal-{unique}")


def objects(bucket: storage.Bucket) -> dict[str, bytes]:
    return {blob.name: blob.download_as_bytes() for blob in bucket.client.list_blobs(bucket)}


def names(bucket: storage.Bucket) -> list[str]:
    return [blob.name for blob in bucket.client.list_blobs(bucket)]


def line_total(bucket: storage.Bucket) -> int:
    return sum(data.count(b"\n") for data in objects(bucket).values())


def sink(gcs: str, bucket: storage.Bucket, **extra: str) -> dict[str, str]:
    """What a user writes: Confluent's class and keys, store.url at the emulator."""
    return {"connector.class": "io.confluent.connect.gcs.GcsSinkConnector",
            "gcs.bucket.name": bucket.name, "store.url": gcs, **extra}


def test_seed_vehicle_speeding_to_hourly_folders(kafka: str, gcs: str, bucket: storage.Bucket,
                                                 new_topic: Callable[..., str],
                                                 unique: str) -> None:
    """The seed's pipeline into GCS: JSON, one folder per hour, record by record."""
    topic = new_topic("vehicle.speeding", 2)
    produced = produce_seed(kafka, topic)
    name = f"gcs-sink-{unique}"
    with herder_running(kafka, name, {**sink(gcs, bucket), "topics": topic,
                                      "format.class": "JsonFormat", "flush.size": "100",
                                      **JSON_VALUES, **HOURLY}):
        wait_for(lambda: line_total(bucket) >= 1200, 90, "1200 records in objects")
        wait_for(lambda: committed(kafka, f"connect-{name}", topic, 2) == {0: 600, 1: 600}, 30,
                 "offsets committed")
    assert_hourly_files(objects(bucket), topic, produced)


@pytest.mark.parametrize(("config", "suffix"), [
    ({"format.class": "io.confluent.connect.gcs.format.json.JsonFormat",
      "gcs.compression.type": "gzip"}, ".json.gz"),
    ({"format.class": "io.confluent.connect.gcs.format.avro.AvroFormat",
      "avro.codec": "deflate"}, ".avro"),
    ({"format.class": "io.confluent.connect.gcs.format.parquet.ParquetFormat"},
     ".snappy.parquet"),
    ({"format.class": "io.confluent.connect.gcs.format.bytearray.ByteArrayFormat",
      "value.converter": "org.apache.kafka.connect.converters.ByteArrayConverter"}, ".bin"),
], ids=["json-gzip", "avro-deflate", "parquet-snappy", "bytes"])
def test_each_format_reads_back_with_its_standard_reader(
        kafka: str, gcs: str, bucket: storage.Bucket, new_topic: Callable[..., str],
        unique: str, config: dict[str, str], suffix: str) -> None:
    topic = new_topic("formats", 1)
    expected: list[Any] = [speeding(i) for i in range(500)]
    if "ByteArrayConverter" in config.get("value.converter", ""):
        expected = [f"raw-{i}-\x01\x02".encode() for i in range(500)]
        produce(kafka, topic, expected)
    else:
        produce(kafka, topic, [orjson.dumps({"schema": ENVELOPE_SCHEMA, "payload": v})
                               for v in expected])
    file_format = config["format.class"].rsplit(".", 1)[-1]
    with herder_running(kafka, f"formats-{unique}", {
            **sink(gcs, bucket), "topics": topic, "flush.size": "100",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter", **config}):
        wait_for(lambda: len(names(bucket)) >= 5, 60, "5 files")
    files = objects(bucket)
    assert sorted(files) == [f"topics/{topic}/partition=0/{topic}+0+{start:010d}{suffix}"
                             for start in range(0, 500, 100)]
    assert [v for name in sorted(files) for v in read_back(file_format, name, files[name])] == \
        expected


def test_large_files_go_up_as_resumable_uploads(kafka: str, gcs: str, bucket: storage.Bucket,
                                                new_topic: Callable[..., str],
                                                unique: str) -> None:
    """Files of several parts (5 MiB chunks and an unaligned tail) arrive whole."""
    topic = new_topic("large", 1)
    values: list[bytes | None] = [orjson.dumps({"seq": i, "pad": f"{i:x}" * 300})
                                  for i in range(12_000)]
    produce(kafka, topic, values)
    with herder_running(kafka, f"large-{unique}", {
            **sink(gcs, bucket, **{"gcs.part.size": str(5 << 20)}), "topics": topic,
            "format.class": "JsonFormat", "flush.size": "6000", **JSON_VALUES}):
        wait_for(lambda: len(names(bucket)) >= 2, 90, "2 files")
    files = objects(bucket)
    assert all(len(data) > 5 << 20 for data in files.values()), \
        {name: len(data) for name, data in files.items()}
    assert [line for name in sorted(files) for line in files[name].splitlines()] == values


def test_sigkill_at_random_points_keeps_every_record_exactly_once(
        tmp_path: Path, kafka: str, gcs: str, bucket: storage.Bucket,
        new_topic: Callable[..., str], unique: str) -> None:
    sigkill_run(tmp_path, kafka, new_topic("crash", 2),
                {"name": f"crash-{unique}", **sink(gcs, bucket)},
                lambda: len(names(bucket)), lambda: objects(bucket), CRASH_RECORDS // 2, unique)


def test_storage_outage_retries_without_loss_or_duplicates(
        kafka: str, gcs: str, bucket: storage.Bucket, new_topic: Callable[..., str],
        unique: str) -> None:
    endpoint = urlsplit(gcs)
    proxy = BlackoutProxy((endpoint.hostname or "", endpoint.port or 80)).start()
    details = " ".join(outage_run(kafka, new_topic("outage", 1), f"outage-{unique}",
                                  sink(proxy.url, bucket), proxy, lambda: objects(bucket),
                                  OUTAGE_SECONDS))
    assert "retrying write" in details and "GCS unreachable" in details, details


def test_missing_bucket_is_named_by_validate_and_by_the_task_status(
        kafka: str, gcs: str, bucket: storage.Bucket, new_topic: Callable[..., str],
        unique: str) -> None:
    topic = new_topic("nobucket", 1)
    name = f"nobucket-{unique}"
    config = {"connector.class": "GcsSinkConnector", "gcs.bucket.name": bucket.name,
              "store.url": gcs, "topics": topic, "format.class": "JsonFormat",
              "flush.size": "1", **JSON_VALUES}
    absent = {**config, "name": name, "gcs.bucket.name": f"absent-{unique}"}
    assert errors_of(validate(absent)) == {"gcs.bucket.name": [
        f"Bucket absent-{unique} does not exist; create it or fix gcs.bucket.name"]}
    with herder_running(kafka, name, config) as herder:
        bucket.delete()  # gone after the connector started
        produce(kafka, topic, [b'{"a": 1}'])
        wait_for(lambda: first_task(herder, name)["state"] == State.FAILED.value, 60,
                 "the task to fail")
        trace = first_task(herder, name)["trace"]
        assert f"GCS bucket {bucket.name} does not exist; create it or fix gcs.bucket.name" \
            in trace, trace
        assert all(offset < 0 for offset in committed(kafka, f"connect-{name}", topic,
                                                      1).values())  # nothing committed


def test_invalid_configuration_errors_name_each_key(gcs: str, bucket: storage.Bucket) -> None:
    base = {"name": "bad", "connector.class": "io.confluent.connect.gcs.GcsSinkConnector",
            "topics": "t", "gcs.bucket.name": bucket.name, "format.class": "JsonFormat",
            "flush.size": "10", "store.url": gcs}

    def errors(**changes: str | None) -> dict[str, list[str]]:
        config = {**base, **{k.replace("_", "."): v for k, v in changes.items()}}
        return errors_of(validate({k: v for k, v in config.items() if v is not None}))

    assert errors() == {}
    example = orjson.loads(EXAMPLES.joinpath("gcs-sink.json").read_bytes())
    assert errors_of(validate({**example["config"], "name": example["name"],
                               "gcs.bucket.name": bucket.name, "store.url": gcs})) == {}
    # an endpoint that is down is not a configuration error: the task retries then
    assert errors(store_url="http://127.0.0.1:1") == {}
    assert "Missing required configuration" in errors(gcs_bucket_name=None)[
        "gcs.bucket.name"][0]
    assert "Invalid bucket name" in errors(gcs_bucket_name="Bad_Bucket!")["gcs.bucket.name"][0]
    assert "Unknown format class io.confluent.connect.gcs.format.csv.CsvFormat" in \
        errors(format_class="io.confluent.connect.gcs.format.csv.CsvFormat")["format.class"][0]
    assert "Unknown partitioner class" in errors(partitioner_class="MonthlyPartitioner")[
        "partitioner.class"][0]
    assert "not a multiple of 262144" in errors(gcs_part_size="5300000")["gcs.part.size"][0]
    assert "greater than or equal to 5242880" in errors(gcs_part_size="262144")[
        "gcs.part.size"][0]
    both = errors(gcs_credentials_path="/key.json", gcs_credentials_json='{"type": "x"}')
    assert "not both" in both["gcs.credentials.json"][0]
    key = '{"type": "service_account", "private_key": "secret-key-text"}'
    wrong = errors(gcs_credentials_json=key)["gcs.credentials.json"][0]
    assert wrong.startswith("Not a service account key (MalformedError: "), wrong
    assert "client_email" in wrong and "token_uri" in wrong  # the missing fields
    assert "secret-key-text" not in wrong
    assert errors(gcs_credentials_path="/nonexistent/key.json") == {"gcs.credentials.path": [
        "Cannot read /nonexistent/key.json: No such file or directory"]}
    hidden = {c["value"]["name"]: c["value"]["value"]
              for c in validate({**base, "gcs.credentials.json": key})["configs"]}
    assert hidden["gcs.credentials.json"] == "[hidden]"
