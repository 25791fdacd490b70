"""Azure Blob sink: file boundaries, open-file bound, retries and crash replays.

The store here is an in-memory blob container (put, stage, commit with Azure's
semantics); the integration tests run the same task against Azurite and Kafka.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import itertools
import random
import threading
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kanal_worker.api import (
    ConfigError,
    ConnectError,
    RecordWriteError,
    RetriableError,
    SinkBatch,
    SinkRecord,
    TopicPartition,
)
from kanal_worker.api.schema import INT64, STRING, struct
from kanal_worker.connectors.azure_blob.settings import AzureBlobSinkSettings
from kanal_worker.connectors.azure_blob.task import AzureBlobSinkTask
from kanal_worker.connectors.azure_blob.writer import next_rotation
from kanal_worker.connectors.storage.writer import PartitionFiles

TP = TopicPartition("vehicle.speeding", 0)
HOUR = 3_600_000
START = int(dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp() * 1000)
HOURLY = {"partitioner.class": "HourlyPartitioner", "locale": "en-US", "timezone": "UTC",
          "timestamp.extractor": "RecordField", "timestamp.field": "at"}


class MemoryContainer:
    """Blob container semantics: blocks are invisible until a commit names them; a
    put or commit replaces the blob atomically. ``fail_after`` makes requests fail."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.staged: dict[tuple[str, str], bytes] = {}
        self.requests = 0
        self.fail_after: int | None = None
        self.fatal = False
        self._lock = threading.Lock()

    def _request(self) -> None:
        with self._lock:
            self.requests += 1
            if self.fail_after is not None and self.requests > self.fail_after:
                if self.fatal:
                    raise ConnectError("AuthorizationFailure")
                raise RetriableError("connection refused")

    def put(self, name: str, data: bytes) -> None:
        self._request()
        self.blobs[name] = data

    def stage(self, name: str, block_id: str, data: bytes) -> None:
        self._request()
        self.staged[(name, block_id)] = data

    def commit(self, name: str, block_ids: list[str]) -> None:
        self._request()
        self.blobs[name] = b"".join(self.staged[(name, b)] for b in block_ids)

    def close(self) -> None:
        pass

    def records(self) -> list[Any]:
        return [record for name, data in self.blobs.items() for record in (
            fastavro.reader(io.BytesIO(data)) if name.endswith(".avro")
            else map(orjson.loads, data.splitlines()))]


class Context:
    task_id = "azure-sink-0"

    def __init__(self) -> None:
        self.commits_requested = 0

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def request_commit(self) -> None:
        self.commits_requested += 1


def make_task(store: MemoryContainer, **config: str) -> AzureBlobSinkTask:
    parsed: AzureBlobSinkSettings = AzureBlobSinkSettings.parse({
        "format.class": "JsonFormat", "flush.size": "10", "azblob.account.name": "acct",
        "azblob.account.key": "a2V5", **config})
    task = AzureBlobSinkTask(parsed, Context(), store)
    task.open([TP])
    return task


def reading(offset: int, at: int, **extra: Any) -> SinkRecord:
    value = {"seq": offset, "at": at, **extra}
    return SinkRecord(topic=TP.topic, kafka_partition=0, kafka_offset=offset, value=value,
                      encoded_value=orjson.dumps(value))


def late_stream(count: int, seed: int) -> list[SinkRecord]:
    """Readings 90 s apart; one in five is up to two hours late."""
    rng = random.Random(seed)
    return [reading(i, START + i * 90_000 - (rng.randrange(2 * HOUR) if rng.random() < 0.2
                                            else 0)) for i in range(count)]


def test_files_end_at_flush_size_and_offsets_wait_for_them() -> None:
    store = MemoryContainer()
    task = make_task(store, **{"flush.size": "3"})
    task.write(SinkBatch([reading(i, START) for i in range(7)]))
    assert sorted(store.blobs) == [
        "topics/vehicle.speeding/partition=0/vehicle.speeding+0+0000000000.json",
        "topics/vehicle.speeding/partition=0/vehicle.speeding+0+0000000003.json"]
    assert task.pre_commit({TP: 7}) == {TP: 6}  # record 6 is in an open file
    task.write(SinkBatch([reading(7, START), reading(8, START)]))
    assert task.pre_commit({TP: 9}) == {TP: 9}
    assert [r["seq"] for r in store.records()] == list(range(9))
    assert task.context.commits_requested == 2  # type: ignore[attr-defined]  # per write


def test_hourly_files_hold_their_hours_and_a_set_shares_one_commit_point() -> None:
    store = MemoryContainer()
    task = make_task(store, **HOURLY, **{"flush.size": "4"})
    task.write(SinkBatch([reading(0, START), reading(1, START + HOUR), reading(2, START + 10),
                reading(3, START + HOUR + 5)]))
    assert sorted(store.blobs) == [
        "topics/vehicle.speeding/year=2024/month=05/day=01/hour=00/vehicle.speeding+0+0000000000"
        ".json",
        "topics/vehicle.speeding/year=2024/month=05/day=01/hour=01/vehicle.speeding+0+0000000001"
        ".json"]
    assert [orjson.loads(line)["seq"] for line in store.blobs[min(store.blobs)].splitlines()] == \
        [0, 2]


def test_rotate_interval_ends_files_on_record_time_and_on_a_newer_bucket() -> None:
    store = MemoryContainer()
    task = make_task(store, **HOURLY, **{"flush.size": "1000", "rotate.interval.ms": "1800000"})
    task.write(SinkBatch([reading(0, START), reading(1, START + 1_700_000)]))
    assert not store.blobs
    task.write(SinkBatch([reading(2, START + 1_800_000)]))  # 30 min after the set's first record
    assert len(store.blobs) == 1 and task.pre_commit({TP: 3}) == {TP: 2}
    # hour 01 begins
    task.write(SinkBatch([reading(3, START + HOUR), reading(4, START + 1_900_000)]))
    assert len(store.blobs) == 2 and task.pre_commit({TP: 5}) == {TP: 3}


def test_late_records_join_open_files_instead_of_cutting_tiny_ones() -> None:
    store = MemoryContainer()
    task = make_task(store, **HOURLY, **{"flush.size": "100000", "rotate.interval.ms": str(HOUR)})
    records = late_stream(2000, seed=1)  # 50 hours of data, 20 % late
    task.write(SinkBatch(records))
    written = task.pre_commit({TP: 2000})[TP]
    assert sorted(r["seq"] for r in store.records()) == list(range(written))
    # Confluent rotates at every change of hour: roughly one file per late record
    changes = sum(1 for a, b in itertools.pairwise(records[:written])
                  if a.value["at"] // HOUR != b.value["at"] // HOUR)
    assert changes > 500
    assert len(store.blobs) < 150


def test_open_files_are_bounded_and_the_least_recently_written_closes() -> None:
    store = MemoryContainer()
    task = make_task(store, **HOURLY, **{"flush.size": "1000",
                                         "kanal.max.open.files.per.partition": "2"})
    # hour 1 is the least recently written when hour 2 arrives, then hour 2 when 1 returns
    hours = [0, 1, 0, 2, 0, 1]
    task.write(SinkBatch([reading(i, START + h * HOUR) for i, h in enumerate(hours)]))
    files = task.partitions[TP]
    assert len(files.open) == 2
    assert sorted(name.split("/")[-2:][0] + "@" + name[-6] for name in store.blobs) == [
        "hour=01@1", "hour=02@3"]
    assert task.pre_commit({TP: 6}) == {TP: 0}  # the set is still open


def test_schema_change_starts_a_new_file_only_for_its_partition() -> None:
    store = MemoryContainer()
    task = make_task(store, **{"flush.size": "5"})
    v1 = struct([("seq", INT64)], name="R", version=1)
    v2 = struct([("seq", INT64), ("name", STRING)], name="R", version=2)
    task.write(SinkBatch([SinkRecord(topic=TP.topic, kafka_partition=0, kafka_offset=i,
                           value={"seq": i, "name": "x"} if schema is v2 else {"seq": i},
                           value_schema=schema)
                for i, schema in enumerate([v1, v1, v2, v2, v1])]))
    assert sorted(name[-15:] for name in store.blobs) == [
        "0000000000.json", "0000000002.json", "0000000004.json"]


def test_backward_compatibility_projects_older_records() -> None:
    store = MemoryContainer()
    task = make_task(store, **{"flush.size": "3", "schema.compatibility": "BACKWARD"})
    v1 = struct([("seq", INT64)], name="R", version=1)
    v2 = struct([("seq", INT64), ("name", STRING.with_(optional=True, default="?"))],
                name="R", version=2)
    task.write(SinkBatch([SinkRecord(topic=TP.topic, kafka_partition=0, kafka_offset=i, value=value,
                           value_schema=schema) for i, (value, schema) in enumerate(
        [({"seq": 0, "name": "a"}, v2), ({"seq": 1}, v1), ({"seq": 2, "name": "c"}, v2)])]))
    assert store.records() == [{"seq": 0, "name": "a"}, {"seq": 1, "name": "?"},
                               {"seq": 2, "name": "c"}]


def test_null_values_fail_or_are_ignored() -> None:
    store = MemoryContainer()
    task = make_task(store, **{"flush.size": "2"})
    tombstone = SinkRecord(topic=TP.topic, kafka_partition=0, kafka_offset=1, value=None)
    with pytest.raises(RecordWriteError) as raised:
        task.write(SinkBatch([reading(0, START), tombstone, reading(2, START)]))
    assert [r for r, _ in raised.value.failures] == [tombstone]
    assert "behavior.on.null.values" in str(raised.value.failures[0][1])
    assert [r["seq"] for r in store.records()] == [0, 2]
    ignoring = make_task(MemoryContainer(), **{"behavior.on.null.values": "IGNORE"})
    ignoring.write(SinkBatch([tombstone]))
    assert ignoring.pre_commit({TP: 2}) == {TP: 2}


def test_an_outage_retries_only_what_is_missing_and_reports_failures_once() -> None:
    store = MemoryContainer()
    task = make_task(store, **{"flush.size": "2"})
    store.fail_after = 1
    bad = SinkRecord(topic=TP.topic, kafka_partition=0, kafka_offset=4, value=None)
    batch = [reading(0, START), reading(1, START), reading(2, START), reading(3, START), bad]
    with pytest.raises(RetriableError):
        task.write(SinkBatch(batch))
    assert task.pre_commit({TP: 5}) == {TP: 2}  # the second file is not in storage
    store.fail_after = None
    with pytest.raises(RecordWriteError) as raised:
        task.write(SinkBatch(batch))  # the runtime retries the same batch
    assert [r for r, _ in raised.value.failures] == [bad]
    assert [r["seq"] for r in store.records()] == [0, 1, 2, 3]
    assert task.pre_commit({TP: 5}) == {TP: 5}


def test_a_refused_credential_fails_the_task() -> None:
    store = MemoryContainer()
    task = make_task(store, **{"flush.size": "1"})
    store.fail_after, store.fatal = 0, True
    with pytest.raises(ConnectError, match="AuthorizationFailure"):
        task.write(SinkBatch([reading(0, START)]))


def test_large_files_are_staged_in_blocks_and_committed_once() -> None:
    store = MemoryContainer()
    task = make_task(store, **{"flush.size": "400"})
    task.layout = dataclasses.replace(task.layout, block_size=4096)
    task.close([TP])
    task.open([TP])
    records = [reading(i, START, pad="x" * 100) for i in range(400)]
    for start in range(0, 400, 50):
        task.write(SinkBatch(records[start:start + 50]))
    (name, data), = store.blobs.items()
    blocks = [block for (blob, _), block in store.staged.items() if blob == name]
    assert len(blocks) == len(data) // 4096 + 1 and all(len(b) == 4096 for b in blocks[:-1])
    assert [r["seq"] for r in store.records()] == list(range(400))


def test_closing_a_partition_drops_its_open_files() -> None:
    store = MemoryContainer()
    task = make_task(store)
    task.write(SinkBatch([reading(0, START)]))
    task.close([TP])
    assert task.pre_commit({}) == {} and not store.blobs


def test_invalid_settings_stop_the_task_with_the_key() -> None:
    with pytest.raises(ConfigError) as raised:
        make_task(MemoryContainer(), **{"partitioner.class": "HourlyPartitioner"})
    assert raised.value.key == "locale"


def test_scheduled_rotation_is_on_the_wall_clock_in_the_zone() -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    now = int(dt.datetime(2024, 5, 1, 10, 17, tzinfo=paris).timestamp() * 1000)
    assert next_rotation(now, HOUR, paris) == int(
        dt.datetime(2024, 5, 1, 11, tzinfo=paris).timestamp() * 1000)
    late = int(dt.datetime(2024, 5, 1, 23, 30, tzinfo=paris).timestamp() * 1000)
    assert next_rotation(late, 5 * HOUR, paris) == int(
        dt.datetime(2024, 5, 2, tzinfo=paris).timestamp() * 1000)


REPLAY_CONFIGS = [
    {**HOURLY, "flush.size": "37", "rotate.interval.ms": str(HOUR),
     "kanal.max.open.files.per.partition": "2"},
    {**HOURLY, "flush.size": "50", "kanal.max.open.files.per.partition": "3",
     "format.class": "AvroFormat"},
]


def run_with_crashes(records: list[SinkRecord], plan: list[tuple[int, int]],
                     config: dict[str, str]) -> MemoryContainer:
    """Feed ``records`` as the runtime would, crashing at the planned points.

    ``plan`` holds, per run, (records processed before the crash, storage requests that
    succeed before storage fails too). A crash loses the task; the next run starts at
    the last offset ``pre_commit`` returned, like a consumer after a restart.
    """
    store = MemoryContainer()
    committed = 0
    rng = random.Random(len(plan))
    for processed, requests in [*plan, (len(records), -1)]:
        task = make_task(store, **config)
        store.fail_after = None if requests < 0 else store.requests + requests
        position = committed
        try:
            while position < min(processed, len(records)):
                batch = records[position:position + rng.randint(1, 60)]
                task.write(SinkBatch(batch))
                position += len(batch)
                if rng.random() < 0.3:
                    committed = task.pre_commit({TP: position})[TP]
            committed = task.pre_commit({TP: position})[TP]
        except RetriableError:
            pass  # the crash comes while storage is failing
    store.fail_after = None
    return store


@pytest.mark.parametrize("config", REPLAY_CONFIGS, ids=["json-rotating", "avro-flush-only"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000),
       plan=st.lists(st.tuples(st.integers(0, 700), st.integers(0, 40)), max_size=4))
def test_replays_after_crashes_write_the_same_files(config: dict[str, str], seed: int,
                                                   plan: list[tuple[int, int]]) -> None:
    records = late_stream(700, seed)
    reference = run_with_crashes(records, [], config)
    crashed = run_with_crashes(records, plan, config)
    assert crashed.blobs == reference.blobs  # same names, same bytes
    seqs = sorted(r["seq"] for r in crashed.records())
    assert seqs == sorted(set(seqs))  # exactly once
    assert len(seqs) > 600


def mixed_stream(count: int, seed: int) -> list[SinkRecord]:
    """Late readings, some of another shape (a schema of their own in Avro and
    Parquet), some null, some whose JSON spans lines (encoded again)."""
    rng = random.Random(seed)
    records = late_stream(count, seed)
    for i, record in enumerate(records):
        draw = rng.random()
        if draw < 0.05:
            records[i] = reading(i, START, speed=rng.choice([1, 1.5, None]))
        elif draw < 0.07:
            records[i] = dataclasses.replace(record, value=None, encoded_value=None)
        elif draw < 0.09:
            records[i] = dataclasses.replace(record, encoded_value=b'{\n"seq": %d}' % i,
                                             value={"seq": i})
    return records


@pytest.mark.parametrize("config", [
    {"az.compression.type": "none"}, {"az.compression.type": "gzip"},
    {"format.class": "AvroFormat"}, {"format.class": "ParquetFormat"},
], ids=["json", "json-gzip", "avro", "parquet"])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000),
       plan=st.lists(st.tuples(st.integers(0, 700), st.integers(0, 40)), max_size=3))
def test_runs_write_what_record_by_record_writes(config: dict[str, str], seed: int,
                                                 plan: list[tuple[int, int]]) -> None:
    config = {"flush.size": "37", "behavior.on.null.values": "ignore", **config}
    assert make_task(MemoryContainer(), **config).layout.places_runs
    records = mixed_stream(700, seed)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PartitionFiles, "write_run", lambda *args: False)
        reference = run_with_crashes(records, [], config)
    runs = run_with_crashes(records, plan, config)
    assert runs.blobs == reference.blobs
    assert len(runs.blobs) >= 600 // 37
