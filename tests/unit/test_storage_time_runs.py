"""Time-based partitioners and ``rotate.interval.ms`` place a poll's records as runs
(``PartitionFiles.write_run``): the same files (names and bytes), the same committed
offsets and the same failed records as placing them one by one."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from itertools import groupby
from typing import Any, cast

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kanal_worker.api import RecordWriteError, SinkBatch, SinkRecord, TopicPartition
from kanal_worker.api.records import ConvertedBatch, RecordLists, SinkColumns
from kanal_worker.api.schema import INT64, OPTIONAL_INT64, STRING, struct
from kanal_worker.connectors.azure_blob.settings import AzureBlobSinkSettings
from kanal_worker.connectors.azure_blob.task import AzureBlobSinkTask
from kanal_worker.connectors.storage import task as storage_task
from kanal_worker.connectors.storage.partitioners import (
    TimeBasedPartitioner,
    build_partitioner,
    build_run_times,
)
from kanal_worker.connectors.storage.writer import PartitionFiles
from kanal_worker.converters.json import JsonConverter

TOPIC = "telemetry"
PARTITIONS = 3
HOUR = 3_600_000
START = int(dt.datetime(2024, 5, 1, 22, tzinfo=dt.UTC).timestamp() * 1000)
"""Two hours before midnight: daily folders change too."""
META = struct([("at", OPTIONAL_INT64)], name="Meta", optional=True)
READING = struct([("seq", INT64), ("at", OPTIONAL_INT64), ("note", STRING), ("meta", META)],
                 name="Reading")

KINDS = ["ok"] * 12 + ["missing", "iso", "not-iso", "bool", "float", "no-meta", "null",
                       "no-kafka-time"]
"""How a record's time is given: mostly well, sometimes missing or of a wrong type."""


class MemoryStore:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.staged: dict[tuple[str, str], bytes] = {}

    def put(self, name: str, data: bytes) -> None:
        self.blobs[name] = data

    def stage(self, name: str, block_id: str, data: bytes) -> None:
        self.staged[name, block_id] = data

    def commit(self, name: str, block_ids: list[str]) -> None:
        self.blobs[name] = b"".join(self.staged[name, block] for block in block_ids)

    def close(self) -> None:
        pass


class Context:
    task_id = "time-runs-0"

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC, p) for p in range(PARTITIONS)}

    def request_commit(self) -> None:
        pass


def value_of(kind: str, seq: int, at: int, with_schema: bool) -> dict[str, Any] | None:
    if kind == "null":
        return None
    field: Any = {"ok": at, "no-kafka-time": at, "missing": None,
                  "iso": dt.datetime.fromtimestamp(at / 1000, dt.UTC).isoformat(),
                  "not-iso": "soon", "bool": True, "float": at + 0.5, "no-meta": at}[kind]
    if with_schema and type(field) is not int:
        field = None  # a struct's optional INT64 field holds ints or nothing
    value: dict[str, Any] = {"seq": seq, "note": "n", "meta": None if kind == "no-meta"
                             else {"at": field}}
    if kind != "missing" or with_schema:
        value["at"] = field
    return value


def stream(steps: list[tuple[int, int, int, str]], with_schema: bool) -> list[SinkRecord]:
    """Records of ``PARTITIONS`` partitions whose hour wanders back and forth."""
    hour, offsets, records = 0, [0] * PARTITIONS, []
    for seq, (partition, step, millis, kind) in enumerate(steps):
        hour = max(-3, min(3, hour + step))
        at = START + hour * HOUR + millis
        value = value_of(kind, seq, at, with_schema)
        records.append(SinkRecord(
            topic=TOPIC, kafka_partition=partition, kafka_offset=offsets[partition],
            value=value, value_schema=READING if with_schema and value is not None else None,
            timestamp=None if kind == "no-kafka-time" else at,
            encoded_value=None if with_schema or value is None else orjson.dumps(value)))
        offsets[partition] += 1
    return records


def polls(records: list[SinkRecord], sizes: list[int], as_columns: bool) -> Iterator[SinkBatch]:
    """Consecutive polls, each partition's records together as a fetch hands them over."""
    position = 0
    for size in [*sizes, len(records)]:
        poll = sorted(records[position:position + size], key=lambda r: r.kafka_partition or 0)
        position += size
        if not poll:
            continue
        if not as_columns:
            yield SinkBatch(poll)
            continue
        nothing: list[Any] = [None] * len(poll)
        yield SinkBatch.of_columns(SinkColumns(
            origin=RecordLists(
                topics=[r.topic for r in poll],
                partitions=[r.kafka_partition or 0 for r in poll],
                offsets=[r.kafka_offset for r in poll],
                timestamps=[(0, 0) if r.timestamp is None else (1, r.timestamp) for r in poll]),
            headers=nothing, keys=ConvertedBatch(nothing, nothing),
            values=ConvertedBatch([r.value_schema for r in poll], [r.value for r in poll]),
            encoded=[r.encoded_value for r in poll], texts=nothing))


def run(config: dict[str, str], batches: list[SinkBatch], ceiling: int = 0) -> tuple[
        dict[str, bytes], list[dict[TopicPartition, int]], list[list[tuple[int, int, str, str]]]]:
    """The files, the offsets ``pre_commit`` gives after each poll and each poll's failed
    records (partition, offset, error type, message); the wall clock moves 7 minutes per
    reading of it. ``ceiling``: bytes held for open files past which the fullest are
    committed early (``kanal.max.buffered.bytes``, whose smallest setting these polls never
    reach)."""
    clock = iter(range(START, START + 10_000 * HOUR, 420_000))
    store = MemoryStore()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(storage_task, "now_ms", lambda: next(clock))
        task = AzureBlobSinkTask(AzureBlobSinkSettings.parse({
            "azblob.account.name": "acct", "azblob.account.key": "a2V5", **config}),
            Context(), store)
        task.open(list(Context().assignment()))
        if ceiling:
            task.settings = task.settings.model_copy(update={"max_buffered_bytes": ceiling})
        offsets, failures = [], []
        for batch in batches:
            failed: list[tuple[int, int, str, str]] = []
            try:
                task.write(batch)
            except RecordWriteError as exc:
                rejected = [(cast(SinkRecord, r), e) for r, e in exc.failures]
                failed = [(r.kafka_partition or 0, r.kafka_offset, type(e).__name__, str(e))
                          for r, e in rejected]
            failures.append(failed)
            offsets.append(task.pre_commit({TopicPartition(TOPIC, p): 10_000
                                            for p in range(PARTITIONS)}))
        for files in task.partitions.values():
            files.end_set()
        task._upload()
    return store.blobs, offsets, failures


def record_by_record(config: dict[str, str], batches: list[SinkBatch],
                     ceiling: int) -> tuple[Any, Any, Any]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PartitionFiles, "write_run", lambda *args: False)
        return run(config, batches, ceiling)


PARTITIONERS = [
    {"partitioner.class": "HourlyPartitioner"},
    {"partitioner.class": "DailyPartitioner"},
    # half-hour buckets under one path per hour: a bucket, not a folder, ends a sub-run
    {"partitioner.class": "TimeBasedPartitioner", "partition.duration.ms": "1800000",
     "path.format": "'hour'=HH"},
    {"partitioner.class": "DefaultPartitioner"},
]
EXTRACTORS = [
    {"timestamp.extractor": "RecordField", "timestamp.field": "at"},
    {"timestamp.extractor": "RecordField", "timestamp.field": "meta.at"},
    {"timestamp.extractor": "Record"},
    {"timestamp.extractor": "Wallclock"},
]
FORMATS = [{"format.class": "JsonFormat"},
           {"format.class": "JsonFormat", "az.compression.type": "gzip"},
           {"format.class": "AvroFormat"}, {"format.class": "ParquetFormat"}]
steps = st.lists(st.tuples(st.integers(0, PARTITIONS - 1),
                           st.sampled_from([0] * 6 + [-2, -1, 1, 2]),
                           st.integers(0, HOUR - 1), st.sampled_from(KINDS)),
                 min_size=1, max_size=250)


@pytest.mark.parametrize("file_format", FORMATS, ids=["json", "json-gzip", "avro", "parquet"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(partitioner=st.sampled_from(PARTITIONERS), extractor=st.sampled_from(EXTRACTORS),
       walk=steps, sizes=st.lists(st.integers(1, 90), max_size=6),
       flush_size=st.integers(1, 60), rotate=st.sampled_from(["0", "600000", str(HOUR)]),
       schedule=st.sampled_from(["0", "0", str(HOUR)]), max_open=st.integers(1, 4),
       nulls=st.sampled_from(["ignore", "fail"]), with_schema=st.booleans(),
       as_columns=st.booleans(), mixed=st.booleans(),
       ceiling=st.sampled_from([0, 0, 1500, 6000]))
def test_runs_of_timed_records_write_what_record_by_record_writes(
        file_format: dict[str, str], partitioner: dict[str, str], extractor: dict[str, str],
        walk: list[tuple[int, int, int, str]], sizes: list[int], flush_size: int, rotate: str,
        schedule: str, max_open: int, nulls: str, with_schema: bool, as_columns: bool,
        mixed: bool, ceiling: int) -> None:
    config = {**file_format, **partitioner, **extractor, "locale": "en-US", "timezone": "UTC",
              "flush.size": str(flush_size), "rotate.interval.ms": rotate,
              "rotate.schedule.interval.ms": schedule,
              "kanal.max.open.files.per.partition": str(max_open),
              "behavior.on.null.values": nulls}
    if not mixed:  # most polls hold no bad record, and then go as runs
        walk = [(partition, step, millis, "ok") for partition, step, millis, _ in walk]
    records = stream(walk, with_schema)
    runs = run(config, list(polls(records, sizes, as_columns)), ceiling)
    assert runs == record_by_record(config, list(polls(records, sizes, as_columns)), ceiling)


def test_the_hourly_example_places_runs_and_cuts_them_by_hour() -> None:
    config = {**PARTITIONERS[0], **EXTRACTORS[0], "locale": "en-US", "timezone": "UTC",
              "flush.size": "1000", "format.class": "JsonFormat"}
    walk = [(0, step, 1000 * i, "ok") for i, step in enumerate([0, 0, 1, 0, -1, 1, 0])]
    records = stream(walk, with_schema=False)
    with pytest.MonkeyPatch.context() as patch:
        placed: list[list[int]] = []
        write_run = PartitionFiles.write_run

        def spy(files: PartitionFiles, offsets: list[int], *args: Any) -> bool:
            placed.append(offsets)
            return write_run(files, offsets, *args)
        patch.setattr(PartitionFiles, "write_run", spy)
        blobs, _, failures = run(config, list(polls(records, [], as_columns=True)))
    assert placed == [list(range(7))] and not any(failures)
    assert {name.split("/")[-2]: [orjson.loads(line)["seq"] for line in data.splitlines()]
            for name, data in blobs.items()} == {"hour=22": [0, 1, 4], "hour=23": [2, 3, 5, 6]}


FIELD_VALUE = st.one_of(
    st.integers(-(1 << 64), 1 << 64), st.sampled_from([1 << 63, -(1 << 63) - 1, (1 << 63) - 1]),
    st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none(), st.text(),
    st.just({"at": 5}))
FIELD_JSON = st.one_of(
    st.builds(lambda value, before, after: json.dumps({**before, "at": value, **after},
                                                      separators=(",", ":")).encode(),
              FIELD_VALUE, st.dictionaries(st.text(max_size=3), st.integers()),
              st.dictionaries(st.text(max_size=3),
                              st.floats(allow_nan=False, allow_infinity=False))),
    # a repeated key (the last one counts), an escaped key, numbers beyond a double
    st.builds(lambda first, last: b'{"at":%d,"at":%d}' % (first, last),
              st.integers(0, 1 << 40), st.integers(0, 1 << 40)),
    st.builds(lambda value: b'{"\\u0061t":%d, "x": 1e999}' % value, st.integers(0, 1 << 40)),
    st.builds(lambda value: b'{"x":123456789012345678901234567890,"at":%d}' % value,
              st.integers(0, 1 << 40)),
    st.sampled_from([b"[1]", b"7", b'"at"', b"{}", b'{"at":1.0}', b'{"at":-0}',
                     b'{"at":1e3}', b'{"a":{"at":1}}']))


@settings(max_examples=300, deadline=None)
@given(st.lists(FIELD_JSON, min_size=1, max_size=8))
def test_field_times_read_from_the_received_json_are_those_of_the_decoded_values(
        items: list[bytes]) -> None:
    converter = JsonConverter({"schemas.enable": "false"}, False)
    converted = converter.to_connect_batch(TOPIC, list(items))
    times = build_run_times(AzureBlobSinkSettings.parse({
        "azblob.account.name": "acct", "azblob.account.key": "a2V5",
        "format.class": "JsonFormat", "timestamp.extractor": "RecordField",
        "timestamp.field": "at"}))
    decoded: list[list[Any]] = []

    def values() -> list[Any]:
        decoded.append(converted.values)
        return converted.values

    def no_timestamps() -> list[int | None]:
        raise AssertionError("RecordField reads no Kafka timestamp")

    from_json = times(values, no_timestamps, None, list(items), len(items), 0)
    from_values = times(values, no_timestamps, None, [None] * len(items), len(items), 0)
    assert from_json == from_values
    if from_json is not None and len(decoded) == 1:  # the received JSON answered alone
        assert all(type(millis) is int for millis in from_json)


EDGES = [START + half * HOUR // 2 + step for half in range(-6, 7) for step in (-1, 0, 1)]
"""Times at and beside the ends of half-hour buckets."""


@settings(max_examples=500)
@given(st.lists(st.sampled_from(EDGES) | st.integers(START - 3 * HOUR, START + 3 * HOUR),
                max_size=12),
       st.sampled_from(PARTITIONERS[:3]))
@example([START + 5, START + HOUR], PARTITIONERS[0])  # the last one opens the next hour
def test_cuts_of_a_run_are_its_records_grouped_by_bucket(
        times: list[int], partitioner: dict[str, str]) -> None:
    built = build_partitioner(AzureBlobSinkSettings.parse({
        "azblob.account.name": "acct", "azblob.account.key": "a2V5",
        "format.class": "JsonFormat", "locale": "en-US", "timezone": "Europe/Amsterdam",
        **partitioner}))
    assert isinstance(built, TimeBasedPartitioner)
    buckets = [built.encode(cast(SinkRecord, None), millis) for millis in times]
    expected, end = [], 0
    for (path, start), run in groupby(buckets):
        end += len(list(run))
        expected.append((end, path, start))
    assert built.cuts(times) == expected
