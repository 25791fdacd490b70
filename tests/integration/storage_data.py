"""Records and readers shared by the object-store sink tests (Azure, S3)."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import random
import re
from typing import Any

import fastavro
import orjson
import pyarrow.parquet as pq

from kanal_worker.connectors.telemetry import reading
from tests.kafka_helpers import produce

HOUR = 3_600_000
START = int(dt.datetime(2024, 5, 1, 6, 0, tzinfo=dt.UTC).timestamp() * 1000)
JSON_VALUES = {"value.converter": "org.apache.kafka.connect.json.JsonConverter",
               "value.converter.schemas.enable": "false",
               "key.converter": "org.apache.kafka.connect.storage.StringConverter"}
HOURLY = {"partitioner.class": "io.confluent.connect.storage.partitioner.HourlyPartitioner",
          "locale": "en-US", "timezone": "UTC", "timestamp.extractor": "RecordField",
          "timestamp.field": "timestamp"}


def json_lines(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(line) for data in files.values() for line in data.splitlines()]


ENVELOPE_SCHEMA = {"type": "struct", "name": "kanal.Speeding", "optional": False, "fields": [
    {"field": "vehicle_id", "type": "string", "optional": False},
    {"field": "speed_kmh", "type": "float64", "optional": False},
    {"field": "lane", "type": "int32", "optional": False},
    {"field": "flagged", "type": "boolean", "optional": False},
    {"field": "note", "type": "string", "optional": True},
    {"field": "tags", "type": "array", "items": {"type": "string"}, "optional": False}]}


def speeding(i: int) -> dict[str, Any]:
    return {"vehicle_id": f"VH-{i % 97:04d}", "speed_kmh": 90 + i % 70 + 0.25,
            "lane": i % 4, "flagged": i % 5 == 0, "note": None if i % 3 else f"n{i}",
            "tags": ["radar", f"zone-{i % 7}"]}


def read_back(file_format: str, name: str, data: bytes) -> list[Any]:
    if file_format == "AvroFormat":
        return list(fastavro.reader(io.BytesIO(data)))
    if file_format == "ParquetFormat":
        rows: list[Any] = pq.read_table(io.BytesIO(data)).to_pylist()
        return rows
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    if file_format == "ByteArrayFormat":
        return data.splitlines()
    return [orjson.loads(line) for line in data.splitlines()]


def late_readings(partition: int, count: int, seed: int) -> list[bytes | None]:
    """Readings 10 s apart, one in five up to two hours late (out of order)."""
    rng = random.Random(seed * 7 + partition)
    values: list[bytes | None] = []
    for seq in range(count):
        value = reading(seed, seq, 40, START, 10_000)
        if rng.random() < 0.2:
            value["timestamp"] -= rng.randrange(2 * HOUR)
        value["partition"] = partition
        values.append(orjson.dumps(value))
    return values


def assert_hourly_files(files: dict[str, bytes], topic: str,
                        produced: dict[int, list[bytes | None]],
                        ends_names: bool = False) -> None:
    """The seed's layout: every record once, as produced, in its hour's folder, in a
    file named by its first offset (and its last, with ``ends_names``)."""
    end = r"\+(\d{10})" if ends_names else ""
    pattern = re.compile(rf"topics/{re.escape(topic)}/year=(\d{{4}})/month=(\d\d)/day=(\d\d)/"
                         rf"hour=(\d\d)/{re.escape(topic)}\+([01])\+(\d{{10}}){end}\.json")
    seen: dict[int, dict[int, bytes]] = {0: {}, 1: {}}
    for blob_name, data in files.items():
        match = pattern.fullmatch(blob_name)
        assert match, blob_name
        year, month, day, hour, partition, start, *last = map(int, match.groups())
        lines = data.splitlines()
        assert produced[partition].index(lines[0]) == start  # named by its first offset
        assert last in ([], [produced[partition].index(lines[-1])])
        for line in lines:
            offset = produced[partition].index(line)  # bytes kept exactly as produced
            assert offset not in seen[partition]
            seen[partition][offset] = line
            at = dt.datetime.fromtimestamp(orjson.loads(line)["timestamp"] / 1000, dt.UTC)
            assert (at.year, at.month, at.day, at.hour) == (year, month, day, hour)
    assert {p: sorted(s) for p, s in seen.items()} == {0: list(range(600)),
                                                       1: list(range(600))}


def produce_seed_readings(kafka: str, topic: str) -> dict[int, list[bytes | None]]:
    """The seed's speeding readings, 600 in each of ``topic``'s 2 partitions, 20 s apart."""
    produced: dict[int, list[bytes | None]] = {}
    for partition in (0, 1):
        values: list[bytes | None] = [orjson.dumps(reading(partition, seq, 50, START, 20_000))
                                      for seq in range(600)]
        produce(kafka, topic, values, partition=partition)
        produced[partition] = values
    return produced
