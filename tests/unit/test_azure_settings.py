"""Azure Blob sink: Confluent's keys, defaults and types; authentication choices."""

from __future__ import annotations

from pathlib import Path

import pytest

from kanal_worker.api.config import describe, secret_keys
from kanal_worker.connectors.azure_blob.auth import account_url, auth_method, auth_problems
from kanal_worker.connectors.azure_blob.settings import AzureBlobSinkSettings
from kanal_worker.connectors.azure_blob.storage import BackoffRetry

MINIMAL = {"format.class": "JsonFormat", "flush.size": "100", "azblob.account.name": "acct"}


def parse(**config: str) -> AzureBlobSinkSettings:
    result: AzureBlobSinkSettings = AzureBlobSinkSettings.parse(
        {**MINIMAL, **{k.replace("_", "."): v for k, v in config.items()}})
    return result


def test_defaults_are_confluents() -> None:
    defaults = {info.name: info.default_value for info in describe(AzureBlobSinkSettings)}
    assert {key: defaults[key] for key in (
        "azblob.container.name", "azblob.block.size", "azblob.retry.type",
        "azblob.retry.retries", "azblob.retry.backoff.ms", "azblob.retry.max.backoff.ms",
        "azblob.connection.timeout.ms", "rotate.interval.ms", "rotate.schedule.interval.ms",
        "topics.dir", "directory.delim", "file.delim", "filename.offset.zero.pad.width",
        "partitioner.class", "partition.duration.ms", "path.format", "locale", "timezone",
        "timestamp.extractor", "timestamp.field", "behavior.on.null.values",
        "az.compression.type", "schema.compatibility", "store.url")} == {
        "azblob.container.name": "default", "azblob.block.size": "26214400",
        "azblob.retry.type": "EXPONENTIAL", "azblob.retry.retries": "3",
        "azblob.retry.backoff.ms": "4000", "azblob.retry.max.backoff.ms": "120000",
        "azblob.connection.timeout.ms": "30000", "rotate.interval.ms": "-1",
        "rotate.schedule.interval.ms": "-1", "topics.dir": "topics", "directory.delim": "/",
        "file.delim": "+", "filename.offset.zero.pad.width": "10",
        "partitioner.class": "DefaultPartitioner", "partition.duration.ms": "-1",
        "path.format": "", "locale": "", "timezone": "", "timestamp.extractor": "Wallclock",
        "timestamp.field": "timestamp", "behavior.on.null.values": "fail",
        "az.compression.type": "none", "schema.compatibility": "NONE", "store.url": None}
    required = {info.name for info in describe(AzureBlobSinkSettings) if info.required}
    assert required == {"format.class"}


def test_secrets_are_password_typed_and_hidden() -> None:
    assert secret_keys(AzureBlobSinkSettings) == {
        "azblob.account.key", "azblob.sas.token", "azblob.connection.string"}
    assert "secret" not in repr(parse(azblob_account_key="secret"))


def test_confluent_class_names_and_case_resolve() -> None:
    parsed = parse(**{
        "format.class": "io.confluent.connect.azure.blob.format.parquet.ParquetFormat",
        "partitioner.class": "io.confluent.connect.storage.partitioner.FieldPartitioner",
        "behavior.on.null.values": "IGNORE", "schema.compatibility": "backward",
        "azblob.retry.type": "fixed", "format.bytearray.separator": "\\r\\n"})
    assert (parsed.format_class, parsed.partitioner_class) == ("ParquetFormat",
                                                               "FieldPartitioner")
    assert (parsed.behavior_on_null_values, parsed.schema_compatibility,
            parsed.azblob_retry_type) == ("ignore", "BACKWARD", "FIXED")
    assert parsed.format_bytearray_separator == "\r\n"


@pytest.mark.parametrize(("config", "method"), [
    ({"azblob.account.key": "k"}, "ACCOUNT_KEY"),
    ({"azblob.sas.token": "?sv=1"}, "SAS_TOKEN"),
    ({"azblob.connection.string": "UseDevelopmentStorage=true"}, "CONNECTION_STRING"),
    ({}, "AZURE_AD"),
    ({"azblob.account.key": "k", "azblob.auth.method": "azure-ad"}, "AZURE_AD"),
])
def test_auth_method_auto_picks_the_credential_that_is_set(config: dict[str, str],
                                                          method: str) -> None:
    parsed: AzureBlobSinkSettings = AzureBlobSinkSettings.parse({**MINIMAL, **config})
    assert auth_method(parsed) == method
    assert auth_problems(parsed) == {}


def test_auth_problems_name_the_key_to_fix() -> None:
    both: AzureBlobSinkSettings = AzureBlobSinkSettings.parse(
        {**MINIMAL, "azblob.account.key": "k", "azblob.sas.token": "s"})
    assert "are both set" in auth_problems(both)["azblob.sas.token"][0]
    forced: AzureBlobSinkSettings = AzureBlobSinkSettings.parse(
        {**MINIMAL, "azblob.auth.method": "SAS_TOKEN"})
    assert "azblob.sas.token" in auth_problems(forced)
    nameless: AzureBlobSinkSettings = AzureBlobSinkSettings.parse(
        {"format.class": "JsonFormat", "flush.size": "1", "azblob.account.key": "k"})
    assert "azblob.account.name" in auth_problems(nameless)


def test_account_url_for_azure_and_azurite() -> None:
    assert account_url(parse()) == "https://acct.blob.core.windows.net"
    assert account_url(parse(**{"store.url": "http://127.0.0.1:10000"})) == \
        "http://127.0.0.1:10000/acct"
    assert account_url(parse(**{"store.url": "http://127.0.0.1:10000/devstoreaccount1/"})) == \
        "http://127.0.0.1:10000/devstoreaccount1"
    assert account_url(parse(**{"store.url": "https://blob.example.net"})) == \
        "https://blob.example.net"


def test_retry_backoff_follows_confluents_description() -> None:
    exponential = BackoffRetry(False, 4000, 10000, 3)
    assert [exponential.get_backoff_time({"count": n}) for n in (1, 2, 3, 4)] == \
        [4.0, 8.0, 10.0, 10.0]
    assert BackoffRetry(True, 500, 10000, 3).get_backoff_time({"count": 3}) == 0.5


def test_the_reference_documents_every_key() -> None:
    reference = (Path(__file__).resolve().parents[2] / "docs" / "azure-blob-sink.md").read_text()
    missing = [info.name for info in describe(AzureBlobSinkSettings)
               if f"| `{info.name}` |" not in reference]
    assert missing == []
