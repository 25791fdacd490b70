"""AzureBlobStorageSinkConnector against the real broker and the real Azurite.

Connectors run through Kanal's runtime: an in-process ``StandaloneHerder`` or a
``kanal standalone`` subprocess that the crash test kills with SIGKILL. Blobs are read
back with the Azure SDK and each format's standard reader.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from kanal_worker.connectors.telemetry import reading
from kanal_worker.runtime.standalone import StandaloneHerder
from kanal_worker.runtime.validation import errors_of, validate
from tests.integration import storage_scenarios
from tests.integration.blackout import BlackoutProxy
from tests.integration.standalone import (
    wait_for,
)
from tests.integration.storage_data import (
    HOURLY,
    JSON_VALUES,
    START,
    assert_hourly_files,
    produce_seed_readings,
)
from tests.integration.storage_scenarios import (
    each_record_reads_back,
    outage_loses_and_duplicates_nothing,
    sigkills_keep_every_record_exactly_once,
)
from tests.kafka_helpers import committed, produce

pytestmark = pytest.mark.integration



def connection_settings(connection_string: str, store_url: str | None = None) -> dict[str, str]:
    """The Confluent keys for Azurite's account (what a user would write)."""
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    return {"azblob.account.name": parts["AccountName"],
            "azblob.account.key": parts["AccountKey"],
            "store.url": store_url or parts["BlobEndpoint"]}


def container(azurite: str, name: str) -> ContainerClient:
    return BlobServiceClient.from_connection_string(azurite).get_container_client(name)


def blobs(client: ContainerClient) -> dict[str, bytes]:
    if not client.exists():
        return {}
    return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}


def blob_count(client: ContainerClient) -> int:
    return len(list(client.list_blobs())) if client.exists() else 0


def line_total(client: ContainerClient) -> int:
    return storage_scenarios.line_total(ContainerView(client))


class ContainerView:
    """A container as the shared scenarios read it."""

    def __init__(self, client: ContainerClient) -> None:
        self.client = client

    def names(self) -> list[str]:
        return [b.name for b in self.client.list_blobs()] if self.client.exists() else []

    def objects(self) -> dict[str, bytes]:
        return blobs(self.client)


@contextmanager
def herder_running(kafka: str, name: str, config: dict[str, str]) -> Iterator[StandaloneHerder]:
    with storage_scenarios.herder_running(kafka, name, {
            "connector.class": "AzureBlobStorageSinkConnector", **config}) as herder:
        yield herder


def test_seed_vehicle_speeding_to_hourly_folders(kafka: str, azurite: str,
                                                 new_topic: Callable[..., str],
                                                 unique: str) -> None:
    """The seed's pipeline: speeding events as JSON, one folder per hour, record by record."""
    topic = new_topic("vehicle.speeding", 2)
    produced = produce_seed_readings(kafka, topic)
    name = f"azure-blob-sink-{unique}"
    seed_json = {"connector.class": "AzureBlobStorageSinkConnector", "topics": topic,
                 "format.class": "JsonFormat", **connection_settings(azurite)}
    client = container(azurite, f"telemetry-{unique}")
    with herder_running(kafka, name, {**seed_json, **JSON_VALUES, **HOURLY,
                                      "azblob.container.name": client.container_name,
                                      "flush.size": "100"}):
        wait_for(lambda: line_total(client) >= 1200, 90, "1200 records in blobs")
        wait_for(lambda: committed(kafka, f"connect-{name}", topic, 2) == {0: 600, 1: 600}, 30,
                 "offsets committed")
    assert_hourly_files(blobs(client), topic, produced)


@pytest.mark.parametrize(("config", "suffix"), [
    ({"format.class": "io.confluent.connect.azure.blob.format.json.JsonFormat",
      "az.compression.type": "gzip"}, ".json.gz"),
    ({"format.class": "io.confluent.connect.azure.blob.format.avro.AvroFormat",
      "avro.codec": "deflate"}, ".avro"),
    ({"format.class": "io.confluent.connect.azure.blob.format.parquet.ParquetFormat",
      "parquet.codec": "zstd"}, ".zstd.parquet"),
    ({"format.class": "io.confluent.connect.azure.blob.format.parquet.ParquetFormat"},
     ".snappy.parquet"),
    ({"format.class": "io.confluent.connect.azure.blob.format.bytearray.ByteArrayFormat",
      "value.converter": "org.apache.kafka.connect.converters.ByteArrayConverter"}, ".bin"),
], ids=["json-gzip", "avro-deflate", "parquet-zstd", "parquet-snappy", "bytes"])
def test_each_format_reads_back_with_its_standard_reader(
        kafka: str, azurite: str, new_topic: Callable[..., str], unique: str,
        config: dict[str, str], suffix: str) -> None:
    client = container(azurite, f"formats-{unique}")
    each_record_reads_back(kafka, new_topic("formats", 1), f"formats-{unique}",
                           ContainerView(client),
                           {"connector.class": "AzureBlobStorageSinkConnector",
                            "azblob.container.name": client.container_name,
                            **connection_settings(azurite)}, config, suffix)


def test_sigkill_at_random_points_keeps_every_record_exactly_once(
        tmp_path: Path, kafka: str, azurite: str, new_topic: Callable[..., str],
        unique: str) -> None:
    client = container(azurite, f"crash-{unique}")
    sigkills_keep_every_record_exactly_once(
        tmp_path, kafka, new_topic("crash", 2), 25_000, ContainerView(client),
        {"name": f"crash-{unique}",
         "connector.class": "io.confluent.connect.azure.blob.AzureBlobStorageSinkConnector",
         "azblob.container.name": client.container_name, **connection_settings(azurite)},
        unique)


def test_storage_outage_retries_without_loss_or_duplicates(
        kafka: str, azurite: str, new_topic: Callable[..., str], unique: str) -> None:
    endpoint = urlsplit(connection_settings(azurite)["store.url"])
    proxy = BlackoutProxy((endpoint.hostname or "", endpoint.port or 80)).start()
    client = container(azurite, f"outage-{unique}")
    outage_loses_and_duplicates_nothing(
        kafka, new_topic("outage", 1), f"outage-{unique}", ContainerView(client), proxy,
        lambda url: {"connector.class": "AzureBlobStorageSinkConnector",
                     "azblob.container.name": client.container_name,
                     **connection_settings(azurite, f"{url}/devstoreaccount1"),
                     "azblob.retry.retries": "1", "azblob.retry.backoff.ms": "200",
                     "azblob.connection.timeout.ms": "2000"},
        30)


def test_invalid_configuration_errors_name_each_key() -> None:
    base = {"name": "bad", "connector.class": "AzureBlobStorageSink", "topics": "t",
            "azblob.account.name": "acct", "azblob.account.key": "a2V5",
            "format.class": "JsonFormat", "flush.size": "10"}

    def errors(**changes: str | None) -> dict[str, list[str]]:
        config = {**base, **{k.replace("_", "."): v for k, v in changes.items()}}
        return errors_of(validate({k: v for k, v in config.items() if v is not None}))

    assert errors() == {}
    seed = {"name": "azure-blob-sink", "connector.class": "AzureBlobStorageSinkConnector",
            "topics": "vehicle.speeding", "azblob.account.name": "mystorageaccount",
            "azblob.account.key": "...", "format.class": "JsonFormat"}
    assert errors_of(validate(seed)) == {}  # the seed's JSON, unchanged
    assert "Missing required configuration" in errors(azblob_account_name=None)[
        "azblob.account.name"][0]
    assert "Unknown format class io.confluent.connect.azure.blob.format.csv.CsvFormat" in \
        errors(format_class="io.confluent.connect.azure.blob.format.csv.CsvFormat")[
            "format.class"][0]
    assert "Missing required configuration" in errors(format_class=None)["format.class"][0]
    assert "greater than or equal to 1" in errors(flush_size="0")["flush.size"][0]
    time_based = {"partitioner.class": "io.confluent.connect.storage.partitioner."
                                       "TimeBasedPartitioner",
                  "partition.duration.ms": "3600000", "path.format": "'d'=YYYY-MM-dd",
                  "locale": "en-US", "timezone": "UTC"}
    assert errors(**time_based) == {}
    assert errors(**{**time_based, "timezone": None}) == {"timezone": ["Timezone cannot be "
                                                                       "empty."]}
    assert errors(**{**time_based, "path.format": "YYYY/qq"}) == {
        "path.format": ["Illegal pattern component: qq"]}
    assert "is not recognised" in errors(**{**time_based, "timezone": "Mars/Olympus"})[
        "timezone"][0]
    assert errors(**{**time_based, "locale": None}) == {"locale": ["Locale cannot be empty."]}
    assert "greater than or equal to 5242880" in errors(azblob_block_size="1024")[
        "azblob.block.size"][0]
    assert "Invalid container name" in errors(azblob_container_name="My_Container")[
        "azblob.container.name"][0]
    assert "are both set" in errors(azblob_sas_token="sv=2024")["azblob.sas.token"][0]
    assert "Partition field name cannot be null or empty" in errors(
        partitioner_class="FieldPartitioner")["partition.field.name"][0]
    assert "Invalid timestamp extractor: Clock" in errors(timestamp_extractor="Clock")[
        "timestamp.extractor"][0]
    hidden = {c["value"]["name"]: c["value"]["value"] for c in validate(base)["configs"]}
    assert hidden["azblob.account.key"] == "[hidden]"


def test_throughput_of_json_into_azurite(kafka: str, azurite: str,
                                         new_topic: Callable[..., str], unique: str,
                                         record_property: Callable[[str, object], None]) -> None:
    """~100k schemaless JSON records; prints records/s (and records it for the report)."""
    topic = new_topic("throughput", 1)
    total = 100_000
    produce(kafka, topic, [orjson.dumps(reading(5, seq, 500, START, 100)) for seq in range(total)])
    client = container(azurite, f"speed-{unique}")
    started = time.monotonic()
    first_file: float | None = None
    with herder_running(kafka, f"speed-{unique}", {
            "topics": topic, "format.class": "JsonFormat", "flush.size": "10000",
            "azblob.container.name": client.container_name, **connection_settings(azurite),
            **JSON_VALUES}):
        while time.monotonic() - started < 120:
            count = blob_count(client)
            if count and first_file is None:
                first_file = time.monotonic()
            if count >= total // 10_000:
                break
            time.sleep(0.05)
        finished = time.monotonic()
    assert first_file is not None and count == total // 10_000
    overall = total / (finished - started)
    steady = (total - 10_000) / max(finished - first_file, 1e-3)
    record_property("records_per_second_overall", round(overall))
    record_property("records_per_second_steady", round(steady))
    print(f"\nJSON into Azurite: {overall:,.0f} records/s including start-up and group join, "
          f"{steady:,.0f} records/s once running ({total:,} records)")
    assert line_total(client) == total
