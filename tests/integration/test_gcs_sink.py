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
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from dev.stack_env import stack_env
from kanal_worker.api import TopicPartition
from kanal_worker.runtime.status import State
from kanal_worker.runtime.validation import errors_of, validate
from tests.integration import storage_scenarios
from tests.integration.blackout import BlackoutProxy
from tests.integration.gcs_servers import Emulator, gcs_refusal
from tests.integration.standalone import KANAL, wait_for, write_properties
from tests.integration.storage_data import (
    HOURLY,
    JSON_VALUES,
    assert_hourly_files,
    json_lines,
    produce_seed_readings,
)
from tests.integration.storage_scenarios import (
    first_write_fails,
    herder_running,
    line_total,
    task_state,
)
from tests.kafka_helpers import committed, produce

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DENIED = ("kanal-test@example.iam.gserviceaccount.com does not have storage.objects.create "
          "access to the Google Cloud Storage object. Permission 'storage.objects.create' "
          "denied on resource (or it may not exist).")
CRASH_RECORDS = int(os.environ.get("KANAL_TEST_GCS_CRASH_RECORDS", "30000"))
OUTAGE_SECONDS = float(os.environ.get("KANAL_TEST_OUTAGE_SECONDS", "10"))


class Bucket:
    """A fresh bucket of the emulator, as the tests read it (a ``StoreView``)."""

    def __init__(self, endpoint: str, name: str) -> None:
        client = storage.Client(project="kanal-test", credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": endpoint})
        self.bucket = client.create_bucket(name)
        self.name = name

    def names(self) -> list[str]:
        return [blob.name for blob in self.bucket.client.list_blobs(self.bucket)]

    def objects(self) -> dict[str, bytes]:
        return {blob.name: blob.download_as_bytes()
                for blob in self.bucket.client.list_blobs(self.bucket)}


@pytest.fixture
def bucket(gcs: str, unique: str) -> Bucket:
    return Bucket(gcs, f"kanal-{unique}")


def sink(gcs: str, bucket: Bucket, **extra: str) -> dict[str, str]:
    """What a user writes: Confluent's class and keys, store.url at the emulator."""
    return {"connector.class": "io.confluent.connect.gcs.GcsSinkConnector",
            "gcs.bucket.name": bucket.name, "store.url": gcs, **extra}


def test_seed_vehicle_speeding_to_hourly_folders(kafka: str, gcs: str, bucket: Bucket,
                                                 new_topic: Callable[..., str],
                                                 unique: str) -> None:
    """The seed's pipeline into GCS: JSON, one folder per hour, record by record."""
    topic = new_topic("vehicle.speeding", 2)
    produced = produce_seed_readings(kafka, topic)
    name = f"gcs-sink-{unique}"
    with herder_running(kafka, name, {**sink(gcs, bucket), "topics": topic,
                                      "format.class": "JsonFormat", "flush.size": "100",
                                      **JSON_VALUES, **HOURLY}):
        wait_for(lambda: line_total(bucket) >= 1200, 90, "1200 records in objects")
        wait_for(lambda: committed(kafka, f"connect-{name}", topic, 2) == {0: 600, 1: 600}, 30,
                 "offsets committed")
    assert_hourly_files(bucket.objects(), topic, produced)


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
        kafka: str, gcs: str, bucket: Bucket, new_topic: Callable[..., str],
        unique: str, config: dict[str, str], suffix: str) -> None:
    storage_scenarios.each_record_reads_back(kafka, new_topic("formats", 1),
                                             f"formats-{unique}", bucket, sink(gcs, bucket),
                                             config, suffix)


def test_large_files_go_up_as_resumable_uploads(kafka: str, gcs: str, bucket: Bucket,
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
        wait_for(lambda: len(bucket.names()) >= 2, 90, "2 files")
    files = bucket.objects()
    assert all(len(data) > 5 << 20 for data in files.values()), \
        {name: len(data) for name, data in files.items()}
    assert [line for name in sorted(files) for line in files[name].splitlines()] == values


def test_sigkill_at_random_points_keeps_every_record_exactly_once(
        tmp_path: Path, kafka: str, gcs: str, bucket: Bucket,
        new_topic: Callable[..., str], unique: str) -> None:
    storage_scenarios.sigkills_keep_every_record_exactly_once(
        tmp_path, kafka, new_topic("crash", 2), CRASH_RECORDS // 2, bucket,
        {"name": f"crash-{unique}", **sink(gcs, bucket)}, unique)


def test_storage_outage_retries_without_loss_or_duplicates(
        kafka: str, gcs: str, bucket: Bucket, new_topic: Callable[..., str],
        unique: str) -> None:
    endpoint = urlsplit(gcs)
    proxy = BlackoutProxy((endpoint.hostname or "", endpoint.port or 80)).start()
    storage_scenarios.outage_loses_and_duplicates_nothing(
        kafka, new_topic("outage", 1), f"outage-{unique}", bucket, proxy,
        lambda url: sink(url, bucket), OUTAGE_SECONDS)


def test_missing_bucket_is_named_by_validate_and_by_the_task_status(
        kafka: str, gcs: str, bucket: Bucket, new_topic: Callable[..., str],
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
        bucket.bucket.delete()  # gone after the connector started
        trace = first_write_fails(herder, kafka, topic, name)
        assert f"GCS bucket {bucket.name} does not exist; create it or fix gcs.bucket.name" \
            in trace, trace
        assert all(offset < 0 for offset in committed(kafka, f"connect-{name}", topic,
                                                      1).values())  # nothing committed


def test_invalid_configuration_errors_name_each_key(gcs: str, bucket: Bucket) -> None:
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
    unreachable = errors(store_url="http://127.0.0.1:1")["store.url"][0]
    assert unreachable.startswith("GCS unreachable at http://127.0.0.1:1: "), unreachable
    assert unreachable.endswith("check store.url (empty for Google's endpoint)"), unreachable
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


def test_a_lost_upload_session_starts_again_from_the_bytes_sent(
        tmp_path: Path, kafka: str, new_topic: Callable[..., str], unique: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """The emulator restarts while a large file is being uploaded: its resumable session
    is gone (404), so the task opens a new one and sends the file's bytes again; the task
    keeps running, and the object holds every record once."""
    emulator = Emulator(stack_env("gcs", quiet=True)["KANAL_GCS_SERVER"],
                        tmp_path / "own-gcs").start()
    try:
        bucket = Bucket(emulator.url, f"restart-{unique}")
        topic = new_topic("restart", 1)
        records = [orjson.dumps({"seq": seq, "pad": "x" * 1000}) for seq in range(16_000)]
        produce(kafka, topic, records[:8000], partition=0)
        name = f"restart-{unique}"
        config = {**sink(emulator.url, bucket), "topics": topic, "format.class": "JsonFormat",
                  "flush.size": "16000", "gcs.part.size": str(5 * 1024 * 1024), **JSON_VALUES}
        with herder_running(kafka, name, config) as herder:
            runner = herder.runners()[0]
            partition = TopicPartition(topic, 0)
            wait_for(lambda: getattr(runner, "consumed", {}).get(partition) == 8000, 90,
                     "the first 8 MB staged")
            emulator.stop()
            emulator.start()
            produce(kafka, topic, records[8000:], partition=0)
            wait_for(lambda: committed(kafka, f"connect-{name}", topic, 1) == {0: 16_000}, 120,
                     "every offset committed")
            assert task_state(herder, name)["state"] == State.RUNNING.value
        assert "GCS lost the upload session" in caplog.text
        files = bucket.objects()
        assert list(files) == [f"topics/{topic}/partition=0/{topic}+0+0000000000.json"]
        assert [r["seq"] for r in json_lines(files)] == list(range(16_000))
    finally:
        emulator.stop()


def test_bucket_without_write_permission_is_named_by_validate_and_task_status(
        tmp_path: Path, kafka: str, gcs: str, bucket: Bucket, new_topic: Callable[..., str],
        unique: str) -> None:
    """A service account that may read the bucket but not create objects in it (a proxy
    answers 403 as GCS does): validate, ``kanal validate`` and the task status name
    gcs.bucket.name and the credentials; nothing is committed."""
    proxy = gcs_refusal(gcs, bucket.name, 403, DENIED).start()
    try:
        topic = new_topic("readonly", 1)
        name = f"readonly-{unique}"
        config = {**sink(proxy.url, bucket), "topics": topic, "format.class": "JsonFormat",
                  "flush.size": "1", **JSON_VALUES}
        problems = errors_of(validate({**config, "name": name}))
        assert list(problems) == ["gcs.bucket.name"], problems
        message = problems["gcs.bucket.name"][0]
        assert message.startswith(f"GCS refused to create objects in bucket {bucket.name}: "
                                  "kanal-test@example.iam.gserviceaccount.com does not have "
                                  "storage.objects.create access"), message
        assert "gcs.credentials.path or gcs.credentials.json" in message, message
        properties = write_properties(tmp_path / "readonly.properties", {**config,
                                                                          "name": name})
        checked = subprocess.run([KANAL, "validate", str(properties)], capture_output=True,
                                 text=True, timeout=60, check=False)
        assert checked.returncode != 0, checked.stdout
        assert f"gcs.bucket.name: GCS refused to create objects in bucket {bucket.name}" in \
            checked.stderr, checked.stderr
        proxy.refusing = False
        with herder_running(kafka, name, config) as herder:
            proxy.refusing = True  # the right taken away after the connector started
            trace = first_write_fails(herder, kafka, topic, name)
            assert f"GCS refused access to bucket {bucket.name} (gcs.bucket.name): " \
                   "kanal-test@example.iam.gserviceaccount.com does not have " \
                   "storage.objects.create access" in trace, trace
            assert "check gcs.credentials.path or gcs.credentials.json" in trace, trace
        assert all(offset < 0 for offset in committed(kafka, f"connect-{name}", topic,
                                                      1).values())  # nothing committed
        assert bucket.names() == [] and proxy.refused >= 2
    finally:
        proxy.stop()


def test_credentials_refused_after_start_are_named_by_the_task_status(
        kafka: str, gcs: str, bucket: Bucket, new_topic: Callable[..., str],
        unique: str) -> None:
    """Credentials GCS stops accepting (a key revoked while the task runs, 401): the
    task fails naming the credential keys; nothing is committed."""
    proxy = gcs_refusal(gcs, bucket.name, 401, "Invalid Credentials")
    proxy.refusing = False
    proxy.start()
    try:
        topic = new_topic("revoked", 1)
        name = f"revoked-{unique}"
        with herder_running(kafka, name, {**sink(proxy.url, bucket), "topics": topic,
                                          "format.class": "JsonFormat", "flush.size": "1",
                                          **JSON_VALUES}) as herder:
            proxy.refusing = True
            trace = first_write_fails(herder, kafka, topic, name)
            # the emulator's anonymous credentials cannot renew; a key would, and fail so
            assert "GCS credentials were rejected: " in trace, trace
            assert "check gcs.credentials.path or gcs.credentials.json" in trace, trace
        assert all(offset < 0 for offset in committed(kafka, f"connect-{name}", topic,
                                                      1).values())  # nothing committed
    finally:
        proxy.stop()
