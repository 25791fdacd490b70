"""Partitioners and timestamp extractors with Confluent's names, paths and messages.

A partitioner maps a record to its *encoded partition*, the directory between
``<topics.dir>/<topic>/`` and the file name: ``partition=3`` (Default),
``region=eu/kind=car`` (Field), ``year=2024/month=05/day=01/hour=13`` (time-based).
Time-based partitioners also return the bucket's start in UTC milliseconds, which the
writer uses to notice that a newer bucket began (see ``writer``).
"""

from __future__ import annotations

import datetime as dt
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import Annotated, Any, cast

import msgspec

from kanal_worker.api import ConfigError, DataError, SinkRecord
from kanal_worker.api.schema import TIMESTAMP, Schema, Type
from kanal_worker.connectors.storage.settings import StorageSinkSettings
from kanal_worker.connectors.storage.timeformat import (
    JodaPattern,
    PatternError,
    bucket_end,
    bucket_start,
    local_moment,
    parse_zone,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
DAILY_FIELDS = ("'year'=YYYY", "'month'=MM", "'day'=dd")
HOURLY_FIELDS = (*DAILY_FIELDS, "'hour'=HH")
RECENT_BUCKETS = 8

TimestampExtractor = Callable[[SinkRecord, int], int]
"""``(record, now_ms) -> timestamp_ms``; ``now_ms`` is the wall clock of the batch."""
RunTimes = Callable[[Callable[[], list[Any]], Callable[[], list[int | None]], Schema | None,
                     list[bytes | None], int, int], list[int] | None]
"""``(values, timestamps, value schema, encoded values, count, now_ms) -> timestamps_ms``:
what the extractor finds for each record of a run, read from the run's columns (the
values when called, the records' Kafka timestamps when called, the JSON each value was
decoded from where the converter kept it); None when the extractor fails on a record of
the run (its error names the record, so the run goes record by record)."""


class Partitioner(ABC):
    uses_time = False
    """Whether ``encode`` needs the record's timestamp (time-based partitioners)."""

    @abstractmethod
    def encode(self, record: SinkRecord, timestamp: int | None) -> tuple[str, int | None]:
        """The encoded partition of ``record`` and, for time buckets, the bucket start."""


class DefaultPartitioner(Partitioner):
    """Keeps Kafka's partitioning: ``partition=<kafka partition>``."""

    def encode(self, record: SinkRecord, timestamp: int | None) -> tuple[str, int | None]:
        return self.encode_partition(record.kafka_partition or 0), None

    def encode_partition(self, partition: int) -> str:
        return f"partition={partition}"


class FieldPartitioner(Partitioner):
    """``<field>=<value>`` for each of ``partition.field.name``, joined by the delimiter.

    Like Confluent's: integer, string and boolean fields of a struct value (Kanal also
    accepts schemaless maps, which Confluent's newer versions do too).
    """

    def __init__(self, fields: list[str], delim: str) -> None:
        self.fields = fields
        self.delim = delim

    def encode(self, record: SinkRecord, timestamp: int | None) -> tuple[str, int | None]:
        value = record.value
        if not isinstance(value, Mapping):
            raise DataError("Error encoding partition: FieldPartitioner needs a struct or map "
                            f"value, got {type(value).__name__}")
        parts = []
        for name in self.fields:
            field_value = value.get(name)
            kind = _field_type(record.value_schema, name, field_value)
            if kind not in (Type.INT8, Type.INT16, Type.INT32, Type.INT64, Type.STRING,
                            Type.BOOLEAN) or field_value is None:
                raise DataError(f"Error encoding partition: field {name} of type "
                                f"{kind or type(field_value).__name__} is not supported as a "
                                "partition key (use an integer, string or boolean field)")
            if kind == Type.BOOLEAN:
                field_value = "true" if field_value else "false"
            parts.append(f"{name}={field_value}")
        return self.delim.join(parts), None


def _field_type(schema: Schema | None, name: str, value: Any) -> Type | None:
    if schema is not None:
        field = schema.field(name)
        return field.schema.type if field is not None else None
    if isinstance(value, bool):
        return Type.BOOLEAN
    if isinstance(value, int):
        return Type.INT64
    if isinstance(value, str):
        return Type.STRING
    return None


class TimeBasedPartitioner(Partitioner):
    """Buckets of ``partition.duration.ms`` aligned in ``timezone``, named by
    ``path.format`` (a Joda pattern) applied to the bucket's start."""

    uses_time = True

    def __init__(self, duration_ms: int, path_format: str, zone: dt.tzinfo) -> None:
        self.duration_ms = duration_ms
        self.pattern = JodaPattern(path_format)
        self.zone = zone
        self._recent: list[tuple[int, int, str]] = []
        """(start, end, path) of the buckets used last, newest first: records mostly fall
        in the current bucket or a few late ones, and zone arithmetic is costly."""

    def encode(self, record: SinkRecord, timestamp: int | None) -> tuple[str, int | None]:
        assert timestamp is not None
        start, _, path = self._bucket(timestamp)
        return path, start

    def _bucket(self, timestamp: int) -> tuple[int, int, str]:
        for recent in self._recent:
            if recent[0] <= timestamp < recent[1]:
                return recent
        start = bucket_start(self.duration_ms, timestamp, self.zone)
        found = (start, bucket_end(self.duration_ms, start, self.zone),
                 self.pattern.format(local_moment(start, self.zone)))
        self._recent = [found, *self._recent[:RECENT_BUCKETS - 1]]
        return found

    def cuts(self, times: list[int]) -> list[tuple[int, str, int | None]]:
        """A run of record ``times`` cut into consecutive records of one bucket, as
        ``(end index, path, bucket start)``; a bucket, not a path, ends a cut, since two
        buckets may share a path and the writer rotates on a newer bucket."""
        if not times:
            return []
        start, end, path = self._bucket(min(times))
        if max(times) < end:  # the common run: every record in one bucket
            return [(len(times), path, start)]
        cuts: list[tuple[int, str, int | None]] = []
        start = end = 0
        path = ""
        for index, timestamp in enumerate(times):
            if start <= timestamp < end:
                continue
            if index:
                cuts.append((index, path, start))
            start, end, path = self._bucket(timestamp)
        cuts.append((len(times), path, start))
        return cuts


def time_settings(settings: StorageSinkSettings) -> tuple[int, str] | None:
    """``(duration, path format)`` of a time-based partitioner, None for the others.

    As in Confluent's storage-common, Hourly and Daily ignore ``partition.duration.ms``
    and ``path.format`` and join their fields with ``directory.delim``."""
    match settings.partitioner_class:
        case "HourlyPartitioner":
            return HOUR_MS, settings.directory_delim.join(HOURLY_FIELDS)
        case "DailyPartitioner":
            return DAY_MS, settings.directory_delim.join(DAILY_FIELDS)
        case "TimeBasedPartitioner":
            path = settings.path_format
            if settings.directory_delim and path.endswith(settings.directory_delim):
                path = path[:-len(settings.directory_delim)]
            return settings.partition_duration_ms, path
    return None


def partitioner_problems(settings: StorageSinkSettings) -> dict[str, list[str]]:
    """Confluent's configuration errors for the chosen partitioner, by key."""
    problems: dict[str, list[str]] = {}

    def add(key: str, message: str) -> None:
        problems.setdefault(key, []).append(message)

    if settings.partitioner_class == "FieldPartitioner" and not settings.partition_field_name:
        add("partition.field.name",
            "Partition field name cannot be null or empty when using FieldPartitioner.")
    timed = time_settings(settings)
    if timed is not None:
        duration, path = timed
        if settings.partitioner_class == "TimeBasedPartitioner":
            if duration <= 0:
                add("partition.duration.ms", "Partition duration needs to be a positive.")
            if not path.strip() or path == settings.directory_delim:
                add("path.format", "Path format cannot be empty.")
        if path.strip():
            try:
                JodaPattern(path)
            except PatternError as exc:
                add("path.format", str(exc))
        if not settings.locale:
            add("locale", "Locale cannot be empty.")
        if not settings.timezone:
            add("timezone", "Timezone cannot be empty.")
    if (timed is not None or settings.rotate_interval_ms > 0) and \
            settings.timestamp_extractor == "RecordField" and not settings.timestamp_field:
        add("timestamp.field", "RecordField timestamp extractor needs the name of the field "
            "holding the timestamp; set timestamp.field")
    return problems


def build_partitioner(settings: StorageSinkSettings) -> Partitioner:
    """The partitioner ``settings`` choose; raises ConfigError with Confluent's message."""
    for key, messages in partitioner_problems(settings).items():
        raise ConfigError(key, messages[0])
    if settings.partitioner_class == "FieldPartitioner":
        return FieldPartitioner(list(settings.partition_field_name), settings.directory_delim)
    timed = time_settings(settings)
    if timed is None:
        return DefaultPartitioner()
    duration, path = timed
    return TimeBasedPartitioner(duration, path, parse_zone(settings.timezone))


def build_extractor(settings: StorageSinkSettings) -> TimestampExtractor:
    match settings.timestamp_extractor:
        case "Record":
            return _record_time
        case "RecordField":
            return _field_extractor(settings.timestamp_field)
    return _wallclock


def build_run_times(settings: StorageSinkSettings) -> RunTimes:
    """``build_extractor`` read from a run's columns: the same times, the same errors."""
    match settings.timestamp_extractor:
        case "Record":
            return _record_times
        case "RecordField":
            return _field_times(settings.timestamp_field)
    return _wallclock_times


def _wallclock_times(values: Callable[[], list[Any]], timestamps: Callable[[], list[int | None]],
                     schema: Schema | None, encoded: list[bytes | None], count: int,
                     now_ms: int) -> list[int] | None:
    return [now_ms] * count


def _record_times(values: Callable[[], list[Any]], timestamps: Callable[[], list[int | None]],
                  schema: Schema | None, encoded: list[bytes | None], count: int,
                  now_ms: int) -> list[int] | None:
    found = timestamps()
    return None if None in found else cast(list[int], found)


def _field_times(path: str) -> RunTimes:
    read = _field_reader(path)
    from_json = None if "." in path else _json_field_millis(path)

    def times(values: Callable[[], list[Any]], timestamps: Callable[[], list[int | None]],
              schema: Schema | None, encoded: list[bytes | None], count: int,
              now_ms: int) -> list[int] | None:
        if from_json is not None and schema is None and None not in encoded:
            received = from_json(cast(list[bytes], encoded))
            if received is not None:
                return received
        run = values()
        if schema is None and "." not in path:
            # the common case, as in ``_field_reader``: epoch millis in plain JSON
            found = [value.get(path) if type(value) is dict else None for value in run]
            if all(type(millis) is int for millis in found):
                return cast(list[int], found)
        try:
            return [read(value, schema) for value in run]
        except DataError:
            return None
    return times


_INT64 = Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)]
"""An integer every JSON reader of the converter decodes to the same int (orjson reads
larger ones as doubles, the exact-number fallback as exact ints)."""


def _json_field_millis(name: str) -> Callable[[list[bytes]], list[int] | None]:
    """Epoch millis of the top-level field ``name`` read straight from values' JSON,
    the rest of each document skipped: what ``_field_reader`` finds in the decoded maps
    when every value is an object whose field is such an integer (a repeated key counts
    once, its last value, as when decoding). None when any value is otherwise: the
    values are then decoded and read as before."""
    decoder = msgspec.json.Decoder(msgspec.defstruct(
        "TimeField", [("millis", _INT64)], rename={"millis": name}, gc=False))
    millis = attrgetter("millis")

    def read(encoded: list[bytes]) -> list[int] | None:
        try:
            return list(map(millis, map(decoder.decode, encoded)))
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
    return read


def _wallclock(record: SinkRecord, now_ms: int) -> int:
    return now_ms


def _record_time(record: SinkRecord, now_ms: int) -> int:
    if record.timestamp is None:
        raise DataError("Unable to determine timestamp using timestamp.extractor Record for "
                        f"record {record.topic}-{record.kafka_partition}@{record.kafka_offset}: "
                        "it has no timestamp")
    return record.timestamp


def _field_extractor(path: str) -> TimestampExtractor:
    read = _field_reader(path)

    def extract(record: SinkRecord, now_ms: int) -> int:
        return read(record.value, record.value_schema)
    return extract


def _field_reader(path: str) -> Callable[[Any, Schema | None], int]:
    """``(value, value schema) -> timestamp_ms`` of the field ``path`` (``a.b``)."""
    names = path.split(".")

    def read(value: Any, schema: Schema | None) -> int:
        if schema is None and len(names) == 1 and type(value) is dict:
            found = value.get(names[0])
            if type(found) is int:  # the common case: epoch millis in plain JSON
                return found
        for name in names:
            if not isinstance(value, Mapping):
                raise DataError(f"Error extracting timestamp from record field {path}: the "
                                "value is not a struct or map")
            value = value.get(name)
            if schema is not None:
                field = schema.field(name) if schema.type == Type.STRUCT else None
                schema = field.schema if field is not None else None
        return _millis(value, schema, path)
    return read


def _millis(value: Any, schema: Schema | None, path: str) -> int:
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(value, int | float) and not isinstance(value, bool) and \
            (schema is None or schema.name == TIMESTAMP or schema.type in (Type.INT32, Type.INT64)):
        return int(value)
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise DataError(f"Error extracting timestamp from record field {path}: "
                            f"{value!r} is not an ISO-8601 date-time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return int(moment.timestamp() * 1000)
    raise DataError(f"Error extracting timestamp from record field {path}: unsupported "
                    f"type {type(value).__name__} (use epoch millis, an ISO-8601 string or a "
                    "Timestamp)")


def now_ms() -> int:
    return time.time_ns() // 1_000_000
