"""The settings every storage sink shares, under Confluent's storage-common keys.

A sink's own settings model subclasses ``StorageSinkSettings`` with its store's keys
(credentials, bucket or container, endpoint) and says through three properties how
large its staged parts are and how its files are compressed
(``part_size``, ``compression_type``, ``compression_level``), because those keys carry
the store's prefix in Confluent's connectors (``azblob.block.size``, ``s3.part.size``,
``az.compression.type``, ``s3.compression.type``). Values that name Java classes
(``format.class``, ``partitioner.class``, ``timestamp.extractor``) are resolved here to
the short names the core uses. Checks that need several keys live in ``checks``.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from typing import Annotated, Literal

from pydantic import BeforeValidator, field_validator

from kanal_worker.api import CommaList, Settings, setting
from kanal_worker.connectors.storage.timeformat import parse_zone

FORMAT_NAMES = ("JsonFormat", "AvroFormat", "ParquetFormat", "ByteArrayFormat")
PARTITIONER_NAMES = ("DefaultPartitioner", "FieldPartitioner", "TimeBasedPartitioner",
                     "HourlyPartitioner", "DailyPartitioner")
EXTRACTORS = {
    "Wallclock": "Wallclock", "Record": "Record", "RecordField": "RecordField",
    "WallclockTimestampExtractor": "Wallclock", "RecordTimestampExtractor": "Record",
    "RecordFieldTimestampExtractor": "RecordField",
}
ESCAPES = {"\\n": "\n", "\\r": "\r", "\\t": "\t", "\\\\": "\\"}
MEBIBYTE = 1 << 20

CONNECTOR, STORAGE, PARTITIONER, KANAL = "Connector", "Storage", "Partitioner", "Kanal"


def _upper(value: object) -> object:
    return value.strip().upper().replace("-", "_") if isinstance(value, str) else value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


Upper = BeforeValidator(_upper)
Lower = BeforeValidator(_lower)
AuthMethod = Literal["AUTO", "ACCOUNT_KEY", "SAS_TOKEN", "CONNECTION_STRING", "AZURE_AD"]


class StorageSinkSettings(Settings):
    # -- Connector -----------------------------------------------------------------------
    format_class: str = setting(
        key="format.class", importance="HIGH", group=CONNECTOR, display="Format class",
        doc="JsonFormat, AvroFormat, ParquetFormat or ByteArrayFormat (Confluent's class "
            "names, e.g. io.confluent.connect.s3.format.json.JsonFormat, work too).")
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
    behavior_on_null_values: Annotated[Literal["ignore", "fail", "write"], Lower] = setting(
        "fail", key="behavior.on.null.values", importance="LOW", group=CONNECTOR,
        display="Behavior for null-valued records",
        doc="ignore skips records with a null value (tombstones); fail reports them as "
            "failed records (the task fails unless errors.tolerance=all sends them to the "
            "dead letter queue); write (with store.kafka.keys=true) writes their keys, and "
            "headers with store.kafka.headers, to files in tombstone.encoded.partition, "
            "without a value file.")
    tombstone_encoded_partition: str = setting(
        "tombstone", key="tombstone.encoded.partition", importance="LOW", group=CONNECTOR,
        display="Tombstone encoded partition",
        doc="With behavior.on.null.values=write, the encoded partition (directory under the "
            "topic) of the files holding the keys of null-valued records.")
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
    store_kafka_keys: bool = setting(
        False, key="store.kafka.keys", importance="LOW", group=CONNECTOR,
        display="Store Kafka Keys",
        doc="Also write each record's key, in keys.format.class, to a file beside its value "
            "file: the same name with .keys before the extension (t+0+0000000000.keys.avro), "
            "cut with it, one key per value in the same order. A record without a key fails "
            "(errors.tolerance=all sends it to the dead letter queue).")
    store_kafka_headers: bool = setting(
        False, key="store.kafka.headers", importance="LOW", group=CONNECTOR,
        display="Store Kafka Headers",
        doc="Also write each record's headers, in headers.format.class, to a file beside its "
            "value file (.headers before the extension), as a list of {key, value} with the "
            "values as text. A record without headers fails (errors.tolerance=all sends it "
            "to the dead letter queue).")
    keys_format_class: str = setting(
        "AvroFormat", key="keys.format.class", importance="LOW", group=CONNECTOR,
        display="Keys format class",
        doc="Format of the .keys files with store.kafka.keys: JsonFormat, AvroFormat, "
            "ParquetFormat or ByteArrayFormat (Confluent's class names work too).")
    headers_format_class: str = setting(
        "AvroFormat", key="headers.format.class", importance="LOW", group=CONNECTOR,
        display="Headers format class",
        doc="Format of the .headers files with store.kafka.headers: JsonFormat, AvroFormat "
            "or ParquetFormat (Confluent's class names work too).")
    filename_offset_zero_pad_width: int = setting(
        10, key="filename.offset.zero.pad.width", importance="LOW", group=CONNECTOR, ge=0,
        display="Filename Offset Zero Pad Width",
        doc="Width to which the offsets in file names are padded with zeros.")


    # -- Storage -------------------------------------------------------------------------
    topics_dir: str = setting(
        "topics", key="topics.dir", importance="HIGH", group=STORAGE, display="Topics directory",
        doc="Top level directory of the files.")
    directory_delim: str = setting(
        "/", key="directory.delim", importance="MEDIUM", group=STORAGE,
        display="Directory Delimiter", doc="Directory delimiter in object names.")
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
        doc="Kanal: parts uploaded and files committed in parallel, across files.")
    max_buffered_bytes: int = setting(
        512 * MEBIBYTE, key="kanal.max.buffered.bytes", importance="LOW", group=KANAL,
        ge=MEBIBYTE, display="Max Buffered Bytes per Task",
        doc="Kanal: ceiling on the bytes a task holds for its open files. Past it the "
            "file holding the most is committed early; memory then stays below this plus "
            "kanal.upload.threads x the part size. A file cut by the ceiling ends where the "
            "other partitions' data put it, so a replay may cut it elsewhere (at-least-once "
            "for its records): exactly-once holds while partitions x "
            "kanal.max.open.files.per.partition x the part size stays below the ceiling.")

    @property
    @abstractmethod
    def part_size(self) -> int:
        """Bytes per staged part (block, multipart part) of a file."""
        ...

    @property
    @abstractmethod
    def compression_type(self) -> str:
        """``none`` or ``gzip``: compression of JSON and ByteArray files."""
        ...

    @property
    @abstractmethod
    def compression_level(self) -> int:
        """gzip level 0-9, -1 for zlib's default."""
        ...

    @field_validator("format_class", "keys_format_class", "headers_format_class")
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

    @field_validator("format_bytearray_separator")
    @classmethod
    def _unescape(cls, value: str) -> str:
        return re.sub(r"\\[nrt\\]", lambda m: ESCAPES[m.group(0)], value)



def _simple_name(value: str, known: tuple[str, ...], what: str) -> str:
    simple = value.rsplit(".", 1)[-1]
    if simple not in known:
        raise ValueError(f"Unknown {what} class {value}; use one of {', '.join(known)}")
    return simple
