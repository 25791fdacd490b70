"""store.kafka.keys / store.kafka.headers: the .keys and .headers files beside each value
file, named, cut and failed as Confluent's storage sinks do, on the in-memory store."""

from __future__ import annotations

import io

import fastavro
import orjson
import pytest

from kanal_worker.api import Header, RecordWriteError, SinkBatch, SinkRecord, TopicPartition
from kanal_worker.api.schema import INT64, STRING
from kanal_worker.connectors.s3.settings import S3SinkSettings
from kanal_worker.connectors.s3.task import S3SinkTask
from kanal_worker.connectors.storage.checks import config_problems
from tests.unit.test_azure_writer import Context, MemoryContainer

TP = TopicPartition("t", 0)
BOTH = {"s3.bucket.name": "telemetry", "format.class": "JsonFormat", "flush.size": "3",
        "store.kafka.keys": "true", "store.kafka.headers": "true"}


def task_for(store: MemoryContainer, **config: str) -> S3SinkTask:
    settings: S3SinkSettings = S3SinkSettings.parse({**BOTH, **config})
    assert config_problems(settings, S3SinkTask.store_problems(settings)) == {}
    task = S3SinkTask(settings, Context(), store)
    task.open([TP])
    return task


def record(offset: int, key: object = "k", headers: list[Header] | None = None,
           key_schema: object = None) -> SinkRecord:
    return SinkRecord(topic="t", kafka_partition=0, kafka_offset=offset,
                      key=None if key is None else (f"{key}{offset}" if key == "k" else key),
                      key_schema=key_schema, value={"seq": offset},
                      headers=[Header("trace", f"id-{offset}"), Header("n", offset)]
                      if headers is None else headers)


def avro_rows(data: bytes) -> list[object]:
    return list(fastavro.reader(io.BytesIO(data)))


def lines(data: bytes) -> list[object]:
    return [orjson.loads(line) for line in data.splitlines()]


def test_keys_and_headers_files_sit_beside_each_value_file_and_are_cut_with_it() -> None:
    store = MemoryContainer()
    task = task_for(store)
    task.write(SinkBatch([record(o) for o in range(7)]))
    base = "topics/t/partition=0/t+0+"
    assert sorted(store.blobs) == sorted(
        f"{base}{start:010d}{suffix}" for start in (0, 3)
        for suffix in (".json", ".keys.avro", ".headers.avro"))
    for start in (0, 3):
        values = lines(store.blobs[f"{base}{start:010d}.json"])
        assert values == [{"seq": o} for o in range(start, start + 3)]
        assert avro_rows(store.blobs[f"{base}{start:010d}.keys.avro"]) == \
            [f"k{o}" for o in range(start, start + 3)]
        assert avro_rows(store.blobs[f"{base}{start:010d}.headers.avro"]) == \
            [[{"key": "trace", "value": f"id-{o}"}, {"key": "n", "value": str(o)}]
             for o in range(start, start + 3)]
    # the set open at offset 6 holds its three files back, and the offset with them
    assert task.pre_commit({TP: 7}) == {TP: 6}


def test_the_keys_and_headers_formats_name_their_own_extension() -> None:
    store = MemoryContainer()
    task_for(store, **{"format.class": "io.confluent.connect.s3.format.avro.AvroFormat",
                       "keys.format.class": "io.confluent.connect.s3.format.json.JsonFormat",
                       "headers.format.class": "JsonFormat", "s3.compression.type": "gzip",
                       "store.kafka.headers": "false"}).write(
        SinkBatch([record(o, key_schema=STRING) for o in range(3)]))
    assert sorted(store.blobs) == ["topics/t/partition=0/t+0+0000000000.avro",
                                   "topics/t/partition=0/t+0+0000000000.keys.json.gz"]


def test_a_record_without_key_or_headers_fails_and_leaves_the_files_aligned() -> None:
    store = MemoryContainer()
    task = task_for(store)
    keyless, headerless = record(1, key=None), record(2, headers=[])
    with pytest.raises(RecordWriteError) as raised:
        task.write(SinkBatch([record(0), keyless, headerless, record(3), record(4)]))
    failures = dict((r.kafka_offset, str(e)) for r, e in raised.value.failures)
    assert sorted(failures) == [1, 2]
    assert "Key cannot be null" in failures[1] and "store.kafka.keys" in failures[1]
    assert "Headers cannot be null" in failures[2]
    name = "topics/t/partition=0/t+0+0000000000"
    assert lines(store.blobs[f"{name}.json"]) == [{"seq": 0}, {"seq": 3}, {"seq": 4}]
    assert avro_rows(store.blobs[f"{name}.keys.avro"]) == ["k0", "k3", "k4"]
    assert len(avro_rows(store.blobs[f"{name}.headers.avro"])) == 3


def test_a_key_of_another_schema_cuts_the_value_file_too() -> None:
    store = MemoryContainer()
    task_for(store, **{"flush.size": "10", "store.kafka.headers": "false"}).write(SinkBatch(
        [record(0, key_schema=STRING), record(1, key=7, key_schema=INT64),
         record(2, key=8, key_schema=INT64)]))
    task_files = sorted(store.blobs)
    assert task_files == ["topics/t/partition=0/t+0+0000000000.json",
                          "topics/t/partition=0/t+0+0000000000.keys.avro"]
    # offsets 1-2 wait in the open files started at 1, beside the ended 0
    assert avro_rows(store.blobs[task_files[1]]) == ["k0"]


def test_headers_as_bytes_are_refused_by_key() -> None:
    settings: S3SinkSettings = S3SinkSettings.parse(
        {**BOTH, "headers.format.class": "ByteArrayFormat"})
    problems = config_problems(settings, S3SinkTask.store_problems(settings))
    assert "AvroFormat" in problems["headers.format.class"][0]
