"""Which records go into which file, and when files end: the exactly-once core.

Per Kafka partition the writer keeps a *file set*: the files opened since the set
began, one per encoded partition at a time. The set begins with the first record
written when no set is open, and ends (every file of it is closed) when

- it holds ``flush.size`` records (Confluent's count is per Kafka partition too),
- a record's timestamp is ``rotate.interval.ms`` past the set's first record, or the
  record opens a time bucket newer than every bucket of the set (with
  ``rotate.interval.ms`` set; Confluent rotates on *any* change of bucket, which cuts
  a file for every late record),
- the wall clock passes ``rotate.schedule.interval.ms`` (not deterministic).

Inside a set a single file closes early when its record's schema changes
(``schema.compatibility``) or when a record needs a file beyond
``kanal.max.open.files.per.partition`` (the file written least recently closes).

Why this is exactly-once: the offset committed for a partition is the first offset of
the oldest set that is not yet entirely in the store (the next offset when there
is none). At that offset no file was open, so a replay from it starts from the same
(empty) state and, every decision above being a function of the records alone, cuts
the same files at the same offsets, under the same names (``<topic>+<partition>+
<first offset>``) with the same bytes. Files already committed are overwritten with
identical content; nothing is written twice under two names, nothing is skipped.
A sink whose store renames files when it commits them may also end names with the
offset of the file's last record, as kafka-connect-hdfs does (``Layout.ends_names``):
that offset is as deterministic as the first.

With ``store.kafka.keys`` / ``store.kafka.headers`` every value file has companions:
the keys and headers of its records, in the same order, under the value file's name
with ``.keys`` / ``.headers`` before their own format's extension
(``t+0+0000000000.keys.avro``). A companion opens, closes and commits with its value
file and belongs to the same set, so the rules above hold for all three; a record
whose key or headers cannot be written fails before any of the files changes.

With ``behavior.on.null.values=write`` a record with a null value (a tombstone) goes to
the encoded partition ``tombstone.encoded.partition`` as Confluent's S3 sink writes it:
its key (and headers) in the companions, with no value file beside them
(``t/tombstone/t+0+0000000007.keys.avro``). Tombstones take no part in time-based
rotation (their value holds no timestamp field).
"""

from __future__ import annotations

import base64
import datetime as dt
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from kanal_worker.api import DataError, SinkRecord, TopicPartition
from kanal_worker.api.schema import STRING, Schema, Type, struct
from kanal_worker.connectors.storage import schemas
from kanal_worker.connectors.storage.formats import (
    BlockSpool,
    FileFormat,
    FileWriter,
    build_format,
)
from kanal_worker.connectors.storage.partitioners import (
    DefaultPartitioner,
    Partitioner,
    RunTimes,
    TimeBasedPartitioner,
    TimestampExtractor,
    build_extractor,
    build_partitioner,
    build_run_times,
)
from kanal_worker.connectors.storage.settings import StorageSinkSettings
from kanal_worker.connectors.storage.timeformat import parse_zone
from kanal_worker.converters.simple import SimpleHeaderConverter

HEADERS_SCHEMA = Schema(Type.ARRAY, value_schema=struct([("key", STRING),
                                                        ("value", STRING)]))
"""Confluent's view of a record's headers: a list of {key, value}, the values as text."""
T = TypeVar("T")
_header_text = SimpleHeaderConverter({}).from_connect_header
NULL_VALUE = ("Null valued records are not writeable with current behavior.on.null.values "
              "'fail' setting; set behavior.on.null.values=ignore to skip them")


@dataclass(frozen=True)
class Layout:
    """Everything that decides file names and file boundaries, from the settings."""

    format: FileFormat
    partitioner: Partitioner
    extractor: TimestampExtractor
    flush_size: int
    rotate_interval_ms: int
    schedule_interval_ms: int
    schedule_zone: dt.tzinfo
    max_open_files: int
    compatibility: str
    null_values: str
    """``behavior.on.null.values``: ignore, fail or write."""
    block_size: int
    topics_dir: str
    directory_delim: str
    file_delim: str
    offset_width: int
    tombstone_partition: str = "tombstone"
    ends_names: bool = False
    """Whether names end with the last record's offset too (``<topic>+<partition>+
    <start>+<end>``); only a store that renames at commit can write them (files are
    staged under the name without the end, see ``store.RenamingStore``)."""
    key_format: FileFormat | None = None
    """The format of the ``.keys`` files (``store.kafka.keys``); None: no keys stored."""
    header_format: FileFormat | None = None
    """The format of the ``.headers`` files (``store.kafka.headers``)."""
    run_times: RunTimes | None = None
    """``extractor`` read from a run's columns; None: runs with record time are placed
    record by record."""

    @classmethod
    def from_settings(cls, settings: StorageSinkSettings, file_format: FileFormat,
                      ends_names: bool = False) -> Layout:
        return cls(
            ends_names=ends_names,
            key_format=build_format(settings, settings.keys_format_class)
            if settings.store_kafka_keys else None,
            header_format=build_format(settings, settings.headers_format_class)
            if settings.store_kafka_headers else None,
            format=file_format,
            partitioner=build_partitioner(settings),
            extractor=build_extractor(settings),
            run_times=build_run_times(settings),
            flush_size=settings.flush_size,
            rotate_interval_ms=settings.rotate_interval_ms,
            schedule_interval_ms=settings.rotate_schedule_interval_ms,
            schedule_zone=parse_zone(settings.timezone) if settings.timezone else dt.UTC,
            max_open_files=settings.max_open_files,
            compatibility=settings.schema_compatibility,
            null_values=settings.behavior_on_null_values,
            tombstone_partition=settings.tombstone_encoded_partition,
            block_size=settings.part_size,
            topics_dir=settings.topics_dir,
            directory_delim=settings.directory_delim,
            file_delim=settings.file_delim,
            offset_width=settings.filename_offset_zero_pad_width,
        )

    @property
    def uses_time(self) -> bool:
        return self.partitioner.uses_time or self.rotate_interval_ms > 0

    @property
    def places_runs(self) -> bool:
        """Whether ``PartitionFiles.write_run`` places a whole run of records at once:
        the encoded partition follows from the Kafka partition or the record time alone,
        the record time (if used) is read from the run's columns, and no companions
        are written (their keys and headers are checked record by record)."""
        return (isinstance(self.partitioner, DefaultPartitioner | TimeBasedPartitioner)
                and (not self.uses_time or self.run_times is not None)
                and not self.companions)

    @cached_property
    def companions(self) -> list[tuple[str, FileFormat]]:
        """The files written beside each value file: (name suffix, format)."""
        return [(suffix, found) for suffix, found in ((".keys", self.key_format),
                                                      (".headers", self.header_format))
                if found is not None]

    def blob_name(self, tp: TopicPartition, encoded: str, start: int, suffix: str = "",
                  file_format: FileFormat | None = None) -> str:
        """``<topics.dir>/<topic>/<encoded partition>/<topic>+<partition>+<start>.<ext>``;
        a companion's ``<suffix>`` (``.keys``, ``.headers``) comes before its extension."""
        d, f = self.directory_delim, self.file_delim
        prefix = f"{self.topics_dir}{d}" if self.topics_dir else ""
        extension = (file_format or self.format).extension
        return (f"{prefix}{tp.topic}{d}{encoded}{d}{tp.topic}{f}{tp.partition}{f}"
                f"{start:0{self.offset_width}d}{suffix}{extension}")

    def ended_name(self, file: OpenFile) -> str:
        """``file``'s name once it ended: with ``ends_names`` the offset of its last
        record follows the first (``t+0+0000000000+0000000099.avro``)."""
        if not self.ends_names:
            return file.name
        start = f"{self.file_delim}{file.first_offset:0{self.offset_width}d}"
        cut = file.name.rindex(start) + len(start)
        return (f"{file.name[:cut]}{self.file_delim}{file.last_offset:0{self.offset_width}d}"
                f"{file.name[cut:]}")

    def views(self, record: SinkRecord) -> list[tuple[Schema | None, object]]:
        """What the companions of ``record``'s file hold of it, prepared by their formats
        (Confluent fails a record without a key or without headers the same way)."""
        prepared: list[tuple[Schema | None, object]] = []
        if self.key_format is not None:
            if record.key is None:
                raise DataError(f"Key cannot be null for the record at offset "
                                f"{record.kafka_offset}: store.kafka.keys=true writes every "
                                f"record's key beside its value")
            prepared.append(_prepare_view(self.key_format, "RecordKey", "key", record.key,
                                          record.key_schema))
        if self.header_format is not None:
            if not record.headers:
                raise DataError(f"Headers cannot be null for the record at offset "
                                f"{record.kafka_offset}: store.kafka.headers=true writes every "
                                f"record's headers beside its value")
            headers = [{"key": header.key, "value": header_text(header.value)}
                       for header in record.headers]
            prepared.append(_prepare_view(self.header_format, "RecordHeaders", "headers",
                                          headers, HEADERS_SCHEMA))
        return prepared


_envelopes: dict[int, tuple[Schema, Schema]] = {}


def _prepare_view(file_format: FileFormat, envelope: str, field_name: str, value: object,
                  schema: Schema | None) -> tuple[Schema | None, object]:
    """A key or the headers as ``file_format`` writes them, in Confluent's envelope
    struct when the format needs a struct per record."""
    if file_format.rooted_in_struct:
        inner = schemas.fit(value, schema)
        cached = _envelopes.get(id(inner))
        if cached is None or cached[0] is not inner:
            if len(_envelopes) >= schemas.CACHE_LIMIT:
                _envelopes.clear()
            cached = _envelopes[id(inner)] = (inner, struct([(field_name, inner)],
                                                            name=envelope))
        schema, value = cached[1], {field_name: value}
    return file_format.prepare(value, schema, None)


def header_text(value: object) -> str:
    """A header value as text, as Connect's ``Values.convertToString`` prints it."""
    if value is None:
        raise DataError("A header without a value cannot be stored (store.kafka.headers "
                        "writes every header's value as text)")
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    return (_header_text("", "", None, value) or b"").decode()


@dataclass(eq=False)
class OpenFile:
    """One file being written: its bytes leave in blocks while it is open."""

    name: str
    """The name the file is written under; ``final_name`` once it is finished."""
    set_start: int
    first_offset: int
    last_offset: int
    """The offset of the record written last (the first one's while none is)."""
    record_schema: Schema | None
    """The value schema of its records (None: schemaless), for schema.compatibility."""
    format_schema: Schema | None
    """The schema the format writes (inferred for schemaless Avro and Parquet)."""
    writer: FileWriter
    spool: BlockSpool
    last_write: int = 0
    staged: list[str] = field(default_factory=list)
    unstaged: list[tuple[str, bytes]] = field(default_factory=list)
    single: bytes | None = None
    """The whole content of a finished file smaller than a block (one put)."""
    finished: bool = False
    final_name: str = ""
    durable: bool = False
    companions: list[OpenFile] = field(default_factory=list)
    """The keys and headers files cut with this value file (``Layout.companions``)."""

    def take_blocks(self, block_size: int) -> None:
        for data in self.spool.take_blocks(block_size):
            self.unstaged.append((self._next_block_id(), data))

    def finish(self, block_size: int) -> None:
        self.writer.finish()
        self.take_blocks(block_size)
        tail = self.spool.take_rest()
        if self.staged or self.unstaged:
            if tail:
                self.unstaged.append((self._next_block_id(), tail))
        else:
            self.single = tail
        self.finished = True

    def _next_block_id(self) -> str:
        # part ids of one file must have equal length; 6 digits cover Azure's 50,000 blocks
        return f"{len(self.staged) + len(self.unstaged):06d}"

    @property
    def buffered(self) -> int:
        """Bytes held in memory for this file until they are uploaded."""
        return self.writer.pending + self.spool.held + len(self.single or b"") + \
            sum(len(data) for _, data in self.unstaged) + \
            sum(companion.buffered for companion in self.companions)

    @property
    def has_work(self) -> bool:
        return bool(self.unstaged) or (self.finished and not self.durable)


class PartitionFiles:
    """The files of one Kafka partition (see the module docstring for the rules)."""

    def __init__(self, tp: TopicPartition, layout: Layout) -> None:
        self.tp = tp
        self.layout = layout
        self.open: dict[str, OpenFile] = {}
        self.closed: list[OpenFile] = []
        self.set_start: int | None = None
        self.set_base_time: int | None = None
        self.set_records = 0
        self.newest_bucket: int | None = None
        self.next_scheduled: int | None = None
        self.next_offset: int | None = None
        self.sets_ended = 0
        self._writes = 0

    # -- records -----------------------------------------------------------------------

    def write(self, records: list[SinkRecord], now_ms: int) -> list[tuple[SinkRecord, DataError]]:
        """Add ``records`` (in offset order), skipping those already added (a retried
        batch); returns the records that could not be written, with the reason."""
        failures = []
        for record in records:
            offset = record.kafka_offset
            if self.next_offset is not None and offset < self.next_offset:
                continue
            self.next_offset = offset + 1
            try:
                self._add(record, now_ms)
            except DataError as exc:
                failures.append((record, exc))
        return failures

    def write_run(self, offsets: list[int], values: Callable[[], list[Any]],
                  schema: Schema | None, encoded: list[bytes | None],
                  timestamps: Callable[[], list[int | None]], now_ms: int) -> bool:
        """What ``write`` does with records at ``offsets`` (ascending) whose values are
        ``values()`` of record schema ``schema`` and whose Kafka timestamps are
        ``timestamps()``, when the layout ``places_runs``: the same files, cut at the
        same offsets, encoded a run at a time. False when the rest must go through
        ``write`` (nulls, values a format rejects, projections, a record whose time the
        extractor cannot find): the records placed so far are then skipped there by
        offset."""
        layout = self.layout
        assert layout.places_runs
        start = 0 if self.next_offset is None else bisect_left(offsets, self.next_offset)
        if start:
            offsets, encoded = offsets[start:], encoded[start:]
            values, timestamps = _tail(values, start), _tail(timestamps, start)
        times: list[int] | None = None
        if layout.uses_time:
            assert layout.run_times is not None
            times = layout.run_times(values, timestamps, schema, encoded, len(offsets),
                                     now_ms)
            if times is None:
                return False
        cuts = self._cuts(times, len(offsets))
        interval = layout.rotate_interval_ms if times is not None else 0
        placed = cut = 0
        while placed < len(offsets):
            while cuts[cut][0] <= placed:
                cut += 1
            cut_end, encoded_partition, bucket = cuts[cut]
            timestamp = None if times is None else times[placed]
            # as in ``_add``, nothing changes before the records are known to fit
            ends = self._set_ends(timestamp, bucket, now_ms)
            current = None if ends else self.open.get(encoded_partition)
            action = schemas.Action.APPEND
            if current is not None:
                try:
                    action = schemas.decide(layout.compatibility, current.record_schema, schema)
                except DataError:
                    return False
                if action is schemas.Action.PROJECT:
                    return False
            end = min(cut_end,
                      placed + layout.flush_size - (0 if ends else self.set_records))
            if interval > 0:
                # the records after the first share its bucket, so only the set's age
                # can end the set before ``end``
                assert times is not None and timestamp is not None
                # no base time: no set is open (a set begun by a tombstone needs
                # companions, never placed here), so the run's first record opens one
                base = timestamp if ends or self.set_base_time is None else self.set_base_time
                end = next((index for index in range(placed + 1, end)
                            if times[index] - base >= interval), end)
            found = layout.format.prepare_run(_part(values, placed, end), schema,
                                              encoded[placed:end])
            if found is None:
                return False
            if ends:
                self.end_set()
            elif current is not None and action is schemas.Action.NEW_FILE:
                self._close(current)
            for format_schema, count, payloads in found:
                current = self.open.get(encoded_partition)
                if current is not None and current.format_schema != format_schema:
                    self._close(current)
                    current = None
                if current is None:
                    current = self._open(encoded_partition, offsets[placed], schema,
                                         format_schema,
                                         None if times is None else times[placed], now_ms)
                if isinstance(payloads, list):
                    current.writer.append_run(payloads)
                else:
                    current.writer.append_columns(payloads)
                self._writes += count
                current.last_write = self._writes
                self.set_records += count
                placed += count
                current.last_offset = offsets[placed - 1]
                self.next_offset = offsets[placed - 1] + 1
            if bucket is not None and (self.newest_bucket is None or bucket > self.newest_bucket):
                self.newest_bucket = bucket
            if self.set_records >= layout.flush_size:
                self.end_set()
        return True

    def _cuts(self, times: list[int] | None, count: int) -> list[tuple[int, str, int | None]]:
        """The run cut where its records' encoded partition changes: ``(end index,
        encoded partition, bucket start)``, the bucket None without time buckets."""
        partitioner = self.layout.partitioner
        if isinstance(partitioner, TimeBasedPartitioner):
            assert times is not None
            return partitioner.cuts(times)
        assert isinstance(partitioner, DefaultPartitioner)
        return [(count, partitioner.encode_partition(self.tp.partition), None)]

    def _add(self, record: SinkRecord, now_ms: int) -> None:
        """Place one record; every check comes before any change, so a record that
        fails leaves the files as they were."""
        value = record.value
        layout = self.layout
        tombstone = value is None
        if tombstone and layout.null_values != "write":
            if layout.null_values == "ignore":
                return
            raise DataError(NULL_VALUE)
        views = layout.views(record) if layout.companions else []
        if tombstone:  # the key is the content of the file (see _open)
            (format_schema, payload), views = views[0], views[1:]
            timestamp, encoded, bucket = None, layout.tombstone_partition, None
        else:
            timestamp = layout.extractor(record, now_ms) if layout.uses_time else None
            encoded, bucket = layout.partitioner.encode(record, timestamp)
        end_set = self._set_ends(timestamp, bucket, now_ms)
        current = None if end_set else self.open.get(encoded)
        if current is not None and views and not _holds(current, views):
            current = None
        schema, encoded_value = record.value_schema, record.encoded_value
        if tombstone:
            schema = None
        elif current is not None:
            action = schemas.decide(layout.compatibility, current.record_schema, schema)
            if action is schemas.Action.PROJECT:
                assert schema is not None and current.record_schema is not None
                value = schemas.project(value, schema, current.record_schema)
                schema, encoded_value = current.record_schema, None
            elif action is schemas.Action.NEW_FILE:
                current = None
        if not tombstone:
            format_schema, payload = layout.format.prepare(value, schema, encoded_value)

        if end_set:
            self.end_set()
        previous = self.open.get(encoded)
        if previous is not None and (current is None or previous.format_schema != format_schema):
            self._close(previous)
            current = None
        if current is None:
            current = self._open(encoded, record.kafka_offset, schema, format_schema, timestamp,
                                 now_ms, views, tombstone)
        current.writer.append(payload)
        current.last_offset = record.kafka_offset
        if views:
            for companion, (_, view) in zip(current.companions, views, strict=True):
                companion.writer.append(view)
                companion.last_offset = record.kafka_offset
        self._writes += 1
        current.last_write = self._writes
        self.set_records += 1
        if self.set_base_time is None:
            self.set_base_time = timestamp  # the set began with a tombstone
        if bucket is not None and (self.newest_bucket is None or bucket > self.newest_bucket):
            self.newest_bucket = bucket
        if self.set_records >= layout.flush_size:
            self.end_set()

    def _set_ends(self, timestamp: int | None, bucket: int | None, now_ms: int) -> bool:
        if self.set_start is None:
            return False
        if self.next_scheduled is not None and now_ms >= self.next_scheduled:
            return True
        interval = self.layout.rotate_interval_ms
        if interval <= 0 or timestamp is None or self.set_base_time is None:
            return False
        return timestamp - self.set_base_time >= interval or (
            bucket is not None and self.newest_bucket is not None and bucket > self.newest_bucket)

    def _open(self, encoded: str, offset: int, record_schema: Schema | None,
              format_schema: Schema | None, timestamp: int | None, now_ms: int,
              views: list[tuple[Schema | None, object]] | None = None,
              tombstone: bool = False) -> OpenFile:
        if len(self.open) >= self.layout.max_open_files:
            self._close(min(self.open.values(), key=lambda f: f.last_write))
        if self.set_start is None:
            self.set_start = offset
            self.set_base_time = timestamp
            if self.layout.schedule_interval_ms > 0:
                self.next_scheduled = next_rotation(now_ms, self.layout.schedule_interval_ms,
                                                    self.layout.schedule_zone)
        companions = self.layout.companions
        if tombstone:  # no value file: the keys file stands in its place
            (suffix, file_format), companions = companions[0], companions[1:]
            name = self.layout.blob_name(self.tp, encoded, offset, suffix, file_format)
        else:
            name, file_format = self.layout.blob_name(self.tp, encoded, offset), self.layout.format
        opened = self._new_file(name, offset, file_format, record_schema, format_schema)
        for (suffix, companion_format), (view_schema, _) in zip(companions, views or [],
                                                                strict=True):
            opened.companions.append(self._new_file(
                self.layout.blob_name(self.tp, encoded, offset, suffix, companion_format),
                offset, companion_format, view_schema, view_schema))
        self.open[encoded] = opened
        return opened

    def _new_file(self, name: str, offset: int, file_format: FileFormat,
                  record_schema: Schema | None, format_schema: Schema | None) -> OpenFile:
        assert self.set_start is not None
        spool = BlockSpool()
        return OpenFile(name=name, set_start=self.set_start, first_offset=offset,
                        last_offset=offset, record_schema=record_schema,
                        format_schema=format_schema,
                        writer=file_format.open(format_schema, spool, name), spool=spool)

    def close_file(self, file: OpenFile) -> None:
        """Commit one open file early (the task's memory ceiling)."""
        self._close(file)

    def _close(self, file: OpenFile) -> None:
        for part in (file, *file.companions):
            part.finish(self.layout.block_size)
            part.final_name = self.layout.ended_name(part)
            self.closed.append(part)
        del self.open[next(k for k, v in self.open.items() if v is file)]

    def end_set(self) -> None:
        """Close every open file: the set is complete."""
        for file in list(self.open.values()):
            self._close(file)
        self.set_start = self.set_base_time = self.newest_bucket = self.next_scheduled = None
        self.set_records = 0
        self.sets_ended += 1

    def tick(self, now_ms: int) -> None:
        """Scheduled rotation when no record arrives to trigger it."""
        if self.next_scheduled is not None and now_ms >= self.next_scheduled:
            self.end_set()

    # -- uploads and commits -----------------------------------------------------------

    def uploads(self) -> Iterator[OpenFile]:
        """Files with blocks to stage or a finished file to commit."""
        for opened in self.open.values():
            for file in (opened, *opened.companions):
                file.take_blocks(self.layout.block_size)
                if file.has_work:
                    yield file
        for file in self.closed:
            if file.has_work:
                yield file

    def forget_durable(self) -> None:
        self.closed = [f for f in self.closed if not f.durable]

    def floor(self) -> int | None:
        """The first offset not yet safely in storage with all it depends on: the start
        of the oldest set with a file not committed; None when everything is."""
        starts = [f.set_start for f in self.closed if not f.durable]
        if self.set_start is not None:
            starts.append(self.set_start)
        return min(starts) if starts else None


def _tail(values: Callable[[], list[T]], start: int) -> Callable[[], list[T]]:
    return lambda: values()[start:]


def _part(values: Callable[[], list[Any]], start: int, end: int) -> Callable[[], list[Any]]:
    return lambda: values()[start:end]


def _holds(file: OpenFile, views: list[tuple[Schema | None, object]]) -> bool:
    """Whether ``file``'s companions take these keys and headers: a key of another
    schema needs new files, as a value of another schema does."""
    return all(companion.format_schema == schema
               for companion, (schema, _) in zip(file.companions, views, strict=True))


def next_rotation(now_ms: int, interval_ms: int, zone: dt.tzinfo) -> int:
    """Confluent's scheduled rotation time: the next multiple of the interval since
    local midnight, and never later than the next midnight."""
    local = dt.datetime.fromtimestamp(now_ms / 1000, zone)
    midnight = dt.datetime.combine(local.date(), dt.time(), zone)
    next_midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), zone)
    start_ms = int(midnight.timestamp() * 1000)
    upcoming = start_ms + ((now_ms - start_ms) // interval_ms + 1) * interval_ms
    return min(upcoming, int(next_midnight.timestamp() * 1000))

