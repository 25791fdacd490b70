"""How the storage core names files: kafka-connect-hdfs's end offsets when a sink asks
for them, and the tombstone partition of ``behavior.on.null.values=write``."""

from __future__ import annotations

import orjson

from kanal_worker.api import SinkBatch, SinkRecord, TopicPartition
from kanal_worker.connectors.hdfs.settings import HdfsSinkSettings
from kanal_worker.connectors.hdfs.task import HdfsSinkTask
from kanal_worker.connectors.s3.settings import S3SinkSettings
from kanal_worker.connectors.s3.task import S3SinkTask
from tests.unit.test_azure_writer import Context, MemoryContainer

HOUR = 3_600_000


def record(offset: int, value: dict[str, int] | None, timestamp: int = 0) -> SinkRecord:
    return SinkRecord(topic="t", kafka_partition=0, kafka_offset=offset, value=value,
                      encoded_value=None if value is None else orjson.dumps(value),
                      key=f"k{offset}", timestamp=timestamp)


def test_hdfs_names_end_with_the_last_offset_of_their_file() -> None:
    store = MemoryContainer()
    settings: HdfsSinkSettings = HdfsSinkSettings.parse({
        "hdfs.url": "http://127.0.0.1:1", "format.class": "JsonFormat", "flush.size": "4",
        "store.kafka.keys": "true", "keys.format.class": "JsonFormat"})
    task = HdfsSinkTask(settings, Context(), store)
    task.write(SinkBatch([record(offset, {"seq": offset}) for offset in range(10)]))
    task.pre_commit({TopicPartition("t", 0): 10})
    base = "topics/t/partition=0/t+0+"
    assert sorted(store.blobs) == sorted(f"{base}{start:010d}+{end:010d}{suffix}"
                                         for start, end in ((0, 3), (4, 7))
                                         for suffix in (".json", ".keys.json"))


def test_tombstones_go_to_their_partition_and_do_not_move_time_rotation() -> None:
    """A set may begin with a tombstone (no timestamp of its value): time-based rotation
    then counts from the set's first value."""
    store = MemoryContainer()
    settings: S3SinkSettings = S3SinkSettings.parse({
        "s3.bucket.name": "telemetry", "format.class": "JsonFormat", "flush.size": "100",
        "store.kafka.keys": "true", "keys.format.class": "JsonFormat",
        "behavior.on.null.values": "write", "rotate.interval.ms": str(HOUR),
        "partitioner.class": "HourlyPartitioner", "timestamp.extractor": "Record",
        "locale": "en-US", "timezone": "UTC"})
    task = S3SinkTask(settings, Context(), store)
    task.open([TopicPartition("t", 0)])
    task.write(SinkBatch([record(0, None), record(1, {"seq": 1}, 10), record(2, None),
                          record(3, {"seq": 3}, HOUR + 20), record(4, {"seq": 4}, HOUR + 30)]))
    # the record at HOUR + 20 ended the set that began with the tombstone at offset 0
    assert sorted(store.blobs) == [
        "topics/t/tombstone/t+0+0000000000.keys.json",
        "topics/t/year=1970/month=01/day=01/hour=00/t+0+0000000001.json",
        "topics/t/year=1970/month=01/day=01/hour=00/t+0+0000000001.keys.json"]
    assert store.blobs["topics/t/tombstone/t+0+0000000000.keys.json"] == b'"k0"\n"k2"\n'
    assert task.pre_commit({TopicPartition("t", 0): 5}) == {TopicPartition("t", 0): 3}
