"""The connector's configuration, under Confluent's keys and with Confluent's defaults.

A Confluent ``AzureBlobStorageSinkConnector`` configuration parses unchanged. Values
that name Java classes (``format.class``, ``partitioner.class``,
``timestamp.extractor``) are resolved here to the short names Kanal uses, so the rest
of the package never compares class names again. Checks that need several keys live
in ``checks``; this module only judges one value at a time.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, SecretStr, field_validator

from kanal_worker.api import CommaList, Settings, setting
from kanal_worker.connectors.azure_blob.timeformat import parse_zone

FORMAT_NAMES = ("JsonFormat", "AvroFormat", "ParquetFormat", "ByteArrayFormat")
PARTITIONER_NAMES = ("DefaultPartitioner", "FieldPartitioner", "TimeBasedPartitioner",
                     "HourlyPartitioner", "DailyPartitioner")
EXTRACTORS = {
    "Wallclock": "Wallclock", "Record": "Record", "RecordField": "RecordField",
    "WallclockTimestampExtractor": "Wallclock", "RecordTimestampExtractor": "Record",
    "RecordFieldTimestampExtractor": "RecordField",
}
ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")
CONTAINER_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
ESCAPES = {"\\n": "\n", "\\r": "\r", "\\t": "\t", "\\\\": "\\"}

AZURE, CONNECTOR, STORAGE, PARTITIONER, KANAL = (
    "Azure", "Connector", "Storage", "Partitioner", "Kanal")


def _upper(value: object) -> object:
    return value.strip().upper().replace("-", "_") if isinstance(value, str) else value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


Upper = BeforeValidator(_upper)
Lower = BeforeValidator(_lower)
AuthMethod = Literal["AUTO", "ACCOUNT_KEY", "SAS_TOKEN", "CONNECTION_STRING", "AZURE_AD"]


class AzureBlobSinkSettings(Settings):
    # -- Azure ---------------------------------------------------------------------------
    azblob_account_name: str | None = setting(
        None, key="azblob.account.name", importance="HIGH", group=AZURE,
        display="Azure Storage Account Name",
        doc="The storage account name (3-24 lowercase letters and digits). Required unless "
            "azblob.connection.string names the account.")
    azblob_account_key: SecretStr | None = setting(
        None, key="azblob.account.key", importance="HIGH", group=AZURE,
        display="Azure Storage Account Key",
        doc="The storage account key (Shared Key authentication).")
    azblob_sas_token: SecretStr | None = setting(
        None, key="azblob.sas.token", importance="HIGH", group=AZURE,
        display="Azure SAS Token",
        doc="Kanal: a shared access signature (account or container SAS with create, write "
            "and add permissions) used instead of the account key.")
    azblob_connection_string: SecretStr | None = setting(
        None, key="azblob.connection.string", importance="HIGH", group=AZURE,
        display="Azure Storage Connection String",
        doc="Kanal: a storage connection string; it carries the account, its credential and "
            "its endpoint (store.url is then ignored).")
    azblob_auth_method: Annotated[AuthMethod, Upper] = setting(
        "AUTO", key="azblob.auth.method", importance="MEDIUM", group=AZURE,
        display="Authentication Method",
        doc="Kanal: how to authenticate. AUTO uses the one credential that is set "
            "(connection string, SAS token or account key) and Azure AD "
            "(DefaultAzureCredential: workload identity, managed identity, AZURE_CLIENT_* "
            "variables, Azure CLI) when none is; the other values force one method.")
    azblob_container_name: str = setting(
        "default", key="azblob.container.name", importance="MEDIUM", group=AZURE,
        display="Azure Blob Container Name",
        doc="The container (3-63 lowercase letters, digits and single hyphens). Kanal "
            "creates it when it does not exist and the credential allows it.")
    store_url: str | None = setting(
        None, key="store.url", importance="HIGH", group=STORAGE, display="Store URL",
        doc="The blob endpoint, e.g. http://127.0.0.1:10000/devstoreaccount1 for Azurite; "
            "default https://<account>.blob.core.windows.net. For an IP or localhost URL "
            "without a path the account name is appended, as Azurite expects.")
    azblob_block_size: int = setting(
        26214400, key="azblob.block.size", importance="HIGH", group=AZURE,
        display="Block Size", ge=5242880, le=104857600,
        doc="Size in bytes of the blocks staged for each blob; a file smaller than one "
            "block is uploaded in a single request.")
    azblob_retry_type: Annotated[Literal["EXPONENTIAL", "FIXED"], Upper] = setting(
        "EXPONENTIAL", key="azblob.retry.type", importance="LOW", group=AZURE,
        display="Retry Type",
        doc="EXPONENTIAL starts with azblob.retry.backoff.ms and doubles up to "
            "azblob.retry.max.backoff.ms; FIXED always waits azblob.retry.backoff.ms.")
    azblob_retry_retries: int = setting(
        3, key="azblob.retry.retries", importance="MEDIUM", group=AZURE, ge=1,
        display="Retries",
        doc="Retries of one request by the Azure client before the runtime takes over "
            "(it backs off and retries the write, showing 'retrying write' in the status).")
    azblob_retry_backoff_ms: int = setting(
        4000, key="azblob.retry.backoff.ms", importance="LOW", group=AZURE, ge=0,
        display="Retry Backoff (ms)",
        doc="Delay before the first retry of a request, in milliseconds.")
    azblob_retry_max_backoff_ms: int = setting(
        120000, key="azblob.retry.max.backoff.ms", importance="LOW", group=AZURE, ge=1,
        display="Max Retry Backoff (ms)",
        doc="Longest delay between retries of a request, in milliseconds.")
    azblob_connection_timeout_ms: int = setting(
        30000, key="azblob.connection.timeout.ms", importance="MEDIUM", group=AZURE, ge=1,
        display="Connection Timeout (ms)",
        doc="Longest time one try of an HTTP request may take (connect and read), in "
            "milliseconds; raise it for large blocks over slow links.")

    # -- Connector -----------------------------------------------------------------------
    format_class: str = setting(
        key="format.class", importance="HIGH", group=CONNECTOR, display="Format class",
        doc="JsonFormat, AvroFormat, ParquetFormat or ByteArrayFormat (Confluent's class "
            "names, e.g. io.confluent.connect.azure.blob.format.json.JsonFormat, work too).")
    flush_size: int = setting(
        1000, key="flush.size", importance="HIGH", group=CONNECTOR, ge=1, display="Flush Size",
        doc="Records per Kafka partition after which every open file of that partition is "
            "committed; a file never holds more. Confluent requires it; Kanal defaults to "
            "1000 so that a minimal configuration (the seed's) runs.")
    rotate_interval_ms: int = setting(
        -1, key="rotate.interval.ms", importance="HIGH", group=CONNECTOR,
        display="Rotate Interval (ms)",
        doc="Commit the open files of a partition when a record's timestamp (from "
            "timestamp.extractor) is this far past the first record of the files, or when "
            "a record opens a newer time bucket; -1 disables. Deterministic with the "
            "Record and RecordField extractors.")
    rotate_schedule_interval_ms: int = setting(
        -1, key="rotate.schedule.interval.ms", importance="MEDIUM", group=CONNECTOR,
        display="Rotate Schedule Interval (ms)",
        doc="Commit open files on the wall clock every interval (aligned to midnight in "
            "timezone, which must be set); -1 disables. Breaks exactly-once: a replay cuts "
            "files elsewhere.")
    behavior_on_null_values: Annotated[Literal["ignore", "fail"], Lower] = setting(
        "fail", key="behavior.on.null.values", importance="LOW", group=CONNECTOR,
        display="Behavior for null-valued records",
        doc="ignore skips records with a null value (tombstones); fail reports them as "
            "failed records (the task fails unless errors.tolerance=all sends them to the "
            "dead letter queue).")
    az_compression_type: Annotated[Literal["none", "gzip"], Lower] = setting(
        "none", key="az.compression.type", importance="LOW", group=CONNECTOR,
        display="Compression type",
        doc="Compression of JsonFormat and ByteArrayFormat files (gzip adds .gz).")
    az_compression_level: int = setting(
        -1, key="az.compression.level", importance="LOW", group=CONNECTOR, ge=-1, le=9,
        display="Compression Level",
        doc="gzip level 0-9; -1 is zlib's default (6).")
    avro_codec: Annotated[Literal["null", "deflate", "snappy", "bzip2", "xz", "zstandard"],
                          Lower] = setting(
        "null", key="avro.codec", importance="LOW", group=CONNECTOR, display="Avro codec",
        doc="Compression codec inside Avro files.")
    parquet_codec: Annotated[Literal["none", "snappy", "gzip", "zstd", "brotli"], Lower] = \
        setting("snappy", key="parquet.codec", importance="LOW", group=CONNECTOR,
                display="Parquet codec",
                doc="Compression codec of Parquet files; it shows in the extension "
                    "(.snappy.parquet, .zstd.parquet, .gz.parquet, .br.parquet, .parquet).")
    format_bytearray_extension: str = setting(
        ".bin", key="format.bytearray.extension", importance="LOW", group=CONNECTOR,
        display="Output extension for ByteArrayFormat",
        doc="File extension of ByteArrayFormat files.")
    format_bytearray_separator: str = setting(
        "\n", key="format.bytearray.separator", importance="LOW", group=CONNECTOR,
        display="Line separator ByteArrayFormat",
        doc="Bytes written after each record by ByteArrayFormat; escapes \\n \\r \\t work.")
    schema_compatibility: Annotated[Literal["NONE", "BACKWARD", "FORWARD", "FULL"], Upper] = \
        setting("NONE", key="schema.compatibility", importance="HIGH", group=CONNECTOR,
                display="Schema Compatibility",
                doc="NONE starts a new file whenever a record's value schema differs from "
                    "its file's; BACKWARD and FULL when the schema version grows, FORWARD when "
                    "it shrinks, projecting the other records onto the file's schema.")
    filename_offset_zero_pad_width: int = setting(
        10, key="filename.offset.zero.pad.width", importance="LOW", group=CONNECTOR, ge=0,
        display="Filename Offset Zero Pad Width",
        doc="Width to which the start offset in file names is padded with zeros.")

    # -- Storage -------------------------------------------------------------------------
    topics_dir: str = setting(
        "topics", key="topics.dir", importance="HIGH", group=STORAGE, display="Topics directory",
        doc="Top level directory of the files.")
    directory_delim: str = setting(
        "/", key="directory.delim", importance="MEDIUM", group=STORAGE,
        display="Directory Delimiter", doc="Directory delimiter in blob names.")
    file_delim: str = setting(
        "+", key="file.delim", importance="MEDIUM", group=STORAGE, display="File Delimiter",
        doc="Delimiter between topic, partition and start offset in file names.")

    # -- Partitioner ---------------------------------------------------------------------
    partitioner_class: str = setting(
        "DefaultPartitioner", key="partitioner.class", importance="HIGH", group=PARTITIONER,
        display="Partitioner Class", width="LONG",
        dependents=("partition.field.name", "partition.duration.ms", "path.format", "locale",
                    "timezone"),
        doc="DefaultPartitioner (partition=N), FieldPartitioner, TimeBasedPartitioner, "
            "HourlyPartitioner or DailyPartitioner; io.confluent.connect.storage.partitioner.* "
            "names work too.")
    partition_field_name: CommaList = setting(
        [], key="partition.field.name", importance="MEDIUM", group=PARTITIONER,
        display="Partition Field Name",
        doc="The fields FieldPartitioner partitions by, separated by commas.")
    partition_duration_ms: int = setting(
        -1, key="partition.duration.ms", importance="MEDIUM", group=PARTITIONER,
        display="Partition Duration (ms)",
        doc="The duration of a TimeBasedPartitioner bucket in milliseconds.")
    path_format: str = setting(
        "", key="path.format", importance="MEDIUM", group=PARTITIONER, display="Path Format",
        doc="Joda-Time pattern naming TimeBasedPartitioner directories, e.g. "
            "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH (Hourly and Daily ignore it).")
    locale: str = setting(
        "", key="locale", importance="MEDIUM", group=PARTITIONER, display="Locale",
        doc="Locale of time-based partitioning, e.g. en-US (required by Confluent's "
            "time-based partitioners). Month and day names print in English.")
    timezone: str = setting(
        "", key="timezone", importance="MEDIUM", group=PARTITIONER, display="Timezone",
        doc="Time zone of time-based partitioning and scheduled rotation: UTC, a long id "
            "such as Europe/Paris, or a fixed offset [+-]hh:mm.")
    timestamp_extractor: str = setting(
        "Wallclock", key="timestamp.extractor", importance="MEDIUM", group=PARTITIONER,
        display="Timestamp Extractor",
        doc="Where record time comes from: Wallclock (processing time; not deterministic), "
            "Record (the Kafka timestamp) or RecordField (timestamp.field of the value).")
    timestamp_field: str = setting(
        "timestamp", key="timestamp.field", importance="MEDIUM", group=PARTITIONER,
        display="Record Field for Timestamp Extractor",
        doc="The value field (dots for nested fields) holding epoch milliseconds, an "
            "ISO-8601 string or a Timestamp.")

    # -- Kanal ---------------------------------------------------------------------------
    max_open_files: int = setting(
        32, key="kanal.max.open.files.per.partition", importance="LOW", group=KANAL, ge=1,
        display="Max Open Files per Partition",
        doc="Kanal: files open at once per Kafka partition. A record that needs one more "
            "first commits the file written least recently, so late or scattered records "
            "join open files instead of cutting the current ones.")
    upload_threads: int = setting(
        4, key="kanal.upload.threads", importance="LOW", group=KANAL, ge=1,
        display="Upload Threads",
        doc="Kanal: blocks and block lists uploaded in parallel, across files.")

    @field_validator("format_class")
    @classmethod
    def _known_format(cls, value: str) -> str:
        return _simple_name(value, FORMAT_NAMES, "format")

    @field_validator("partitioner_class")
    @classmethod
    def _known_partitioner(cls, value: str) -> str:
        return _simple_name(value, PARTITIONER_NAMES, "partitioner")

    @field_validator("timestamp_extractor")
    @classmethod
    def _known_extractor(cls, value: str) -> str:
        simple = value.rsplit(".", 1)[-1].rsplit("$", 1)[-1]
        if simple not in EXTRACTORS:
            raise ValueError(f"Invalid timestamp extractor: {value}; use Wallclock, Record or "
                             "RecordField")
        return EXTRACTORS[simple]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value:
            parse_zone(value)
        return value

    @field_validator("azblob_account_name")
    @classmethod
    def _account_name(cls, value: str | None) -> str | None:
        if value and not ACCOUNT_NAME.match(value):
            raise ValueError(f"Invalid account name {value!r}: use 3-24 lowercase letters and "
                             "digits")
        return value or None

    @field_validator("azblob_container_name")
    @classmethod
    def _container_name(cls, value: str) -> str:
        if not CONTAINER_NAME.match(value):
            raise ValueError(f"Invalid container name {value!r}: use 3-63 lowercase letters, "
                             "digits and single hyphens, starting and ending with a letter or "
                             "digit")
        return value

    @field_validator("store_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Invalid URL {value!r}: use http(s)://host[:port][/account]")
        return value.rstrip("/")

    @field_validator("format_bytearray_separator")
    @classmethod
    def _unescape(cls, value: str) -> str:
        return re.sub(r"\\[nrt\\]", lambda m: ESCAPES[m.group(0)], value)

    def secret(self, name: Literal["key", "sas", "connection"]) -> str | None:
        """The secret's value, None when it is unset or blank."""
        value = {"key": self.azblob_account_key, "sas": self.azblob_sas_token,
                 "connection": self.azblob_connection_string}[name]
        text = value.get_secret_value().strip() if value is not None else ""
        return text or None


def _simple_name(value: str, known: tuple[str, ...], what: str) -> str:
    simple = value.rsplit(".", 1)[-1]
    if simple not in known:
        raise ValueError(f"Unknown {what} class {value}; use one of {', '.join(known)}")
    return simple
