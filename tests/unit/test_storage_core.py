"""The storage core through the S3 sink's settings: the memory ceiling, and S3's keys.

The store is the in-memory container of the Azure writer tests: the core sees the
same ObjectStore protocol whichever sink it serves.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from kanal_worker.api import ConfigError, SinkBatch, SinkRecord, TopicPartition
from kanal_worker.api.config import describe
from kanal_worker.connectors.s3.settings import S3SinkSettings
from kanal_worker.connectors.s3.task import S3SinkTask
from kanal_worker.connectors.storage.checks import config_problems
from kanal_worker.connectors.storage.settings import StorageSinkSettings
from kanal_worker.runtime.validation import errors_of, validate
from tests.unit.test_azure_writer import Context, MemoryContainer

MIB = 1 << 20
BASE = {"s3.bucket.name": "telemetry", "format.class": "JsonFormat"}


def s3_task(store: MemoryContainer, partitions: int, **config: str) -> S3SinkTask:
    settings: S3SinkSettings = S3SinkSettings.parse({**BASE, **config})
    task = S3SinkTask(settings, Context(), store)
    task.open([TopicPartition("t", p) for p in range(partitions)])
    return task


def record(partition: int, offset: int) -> SinkRecord:
    value = {"partition": partition, "seq": offset, "pad": "x" * 1000}
    return SinkRecord(topic="t", kafka_partition=partition, kafka_offset=offset, value=value,
                      encoded_value=orjson.dumps(value))


def held(task: S3SinkTask) -> int:
    return sum(file.buffered for files in task.partitions.values()
               for file in files.open.values())


def write_under_ceiling(task: S3SinkTask, ceiling: int, batches: int,
                        per_partition: int) -> dict[int, int]:
    """Write ``batches`` polls of ``per_partition`` records to each of 16 partitions,
    checking after each that the open files hold at most ``ceiling`` bytes; returns
    the next offset of each partition."""
    offsets = dict.fromkeys(range(16), 0)
    for _ in range(batches):
        batch = [record(p, offsets[p] + i) for p in range(16) for i in range(per_partition)]
        for p in offsets:
            offsets[p] += per_partition
        task.write(SinkBatch(batch))
        assert held(task) <= ceiling
    return offsets


def test_the_memory_ceiling_commits_the_fullest_files_and_loses_nothing() -> None:
    """16 partitions x 5 MiB parts would hold 80 MiB; the ceiling keeps it under 4 MiB."""
    store = MemoryContainer()
    task = s3_task(store, 16, **{"flush.size": "100000", "s3.part.size": str(5 * MIB),
                                 "kanal.max.buffered.bytes": str(4 * MIB)})
    offsets = write_under_ceiling(task, 4 * MIB, 40, 20)
    assert store.blobs, "files were committed early"
    written = {(r["partition"], r["seq"]) for r in store.records()}
    assert len(written) == len(store.records())  # once each
    pending = {(p, o) for p in range(16) for o in range(offsets[p])} - written
    # what is not in the store yet is still open, and not committed as an offset
    floors = task.pre_commit({TopicPartition("t", p): offsets[p] for p in range(16)})
    for (p, o) in pending:
        assert floors[TopicPartition("t", p)] <= o


def test_without_pressure_files_end_only_by_flush_size() -> None:
    store = MemoryContainer()
    task = s3_task(store, 2, **{"flush.size": "50"})
    task.write(SinkBatch([record(p, o) for p in range(2) for o in range(120)]))
    assert sorted(store.blobs) == [f"topics/t/partition={p}/t+{p}+{start:010d}.json"
                                   for p in range(2) for start in (0, 50)]


def test_confluent_class_names_and_keys_parse() -> None:
    settings: S3SinkSettings = S3SinkSettings.parse({
        **BASE, "format.class": "io.confluent.connect.s3.format.parquet.ParquetFormat",
        "partitioner.class": "io.confluent.connect.storage.partitioner.DailyPartitioner",
        "s3.ssea.name": "aes256", "s3.compression.type": "GZIP",
        "storage.class": "io.confluent.connect.s3.storage.S3Storage"})
    assert (settings.format_class, settings.partitioner_class) == ("ParquetFormat",
                                                                   "DailyPartitioner")
    assert (settings.s3_ssea_name, settings.compression_type, settings.part_size) == \
        ("AES256", "gzip", 26214400)


@pytest.mark.parametrize(("config", "key", "words"), [
    ({"aws.access.key.id": "AKIA"}, "aws.secret.access.key", "go together"),
    ({"s3.sse.kms.key.id": "k"}, "s3.sse.kms.key.id", "aws:kms"),
    ({"s3.ssea.name": "aws:kms", "s3.sse.customer.key": "a2V5"}, "s3.sse.customer.key",
     "excludes"),
])
def test_s3_key_combinations_are_named(config: dict[str, str], key: str, words: str) -> None:
    settings: S3SinkSettings = S3SinkSettings.parse({**BASE, **config})
    problems = config_problems(settings, S3SinkTask.store_problems(settings))
    assert words in problems[key][0], problems
    with pytest.raises(ConfigError, match=key):
        S3SinkTask(settings, Context(), MemoryContainer())


@pytest.mark.parametrize(("key", "value", "words"), [
    ("s3.bucket.name", "My_Bucket", "Invalid bucket name"),
    ("s3.part.size", "1024", "greater than or equal to 5242880"),
    ("storage.class", "io.confluent.connect.hdfs.storage.HdfsStorage", "Unknown storage"),
    ("s3.ssea.name", "rot13", "Unknown server-side encryption"),
    ("store.url", "ftp://host", "Invalid URL"),
])
def test_single_bad_values_are_named_without_contacting_the_store(
        key: str, value: str, words: str) -> None:
    errors = errors_of(validate({"name": "s3", "connector.class": "S3SinkConnector",
                                 "topics": "t", **BASE, key: value}))
    assert words in errors[key][0], errors


def test_the_s3_page_documents_every_key_of_its_own() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "s3-sink.md").read_text()
    shared = {info.name for info in describe(StorageSinkSettings)}
    missing = [info.name for info in describe(S3SinkSettings)
               if info.name not in shared and f"`{info.name}`" not in page]
    assert missing == []
