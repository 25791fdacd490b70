"""The object-store sink task's write path alone, in process (no Kafka, no store): the
workload's JSON polls written as JSON, Parquet and Avro files, each run's schema
inferred or checked a field at a time (``schemas.infer_columns``,
``schemas.fits_by_columns``) and value by value, alternately.

    python -m bench.storage_write [--form json|json-schemas] [--formats json,parquet,avro]
                                  [--records N] [--partitions P] [--rounds R] [--hourly]

With ``--hourly`` the files go to hourly folders of the readings' ``timestamp`` field,
as the Azure example writes them (HourlyPartitioner, RecordField), and the paths
compared are record-by-record placement and placement of runs (``write_run``).

Polls of the runtime's 2000 records spread over the partitions (each partition's records
together, as a fetch hands them over) are converted as the runtime converts them
(JsonConverter, with schemas for ``json-schemas``; schemaless values still undecoded),
then written by an Azure Blob
sink task into a store in memory, files closed at the end. Prints the CPU microseconds
per record (``time.process_time``, best of the rounds) of each path; both must write
the same files.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from unittest.mock import patch

from bench.workload import records
from kanal_worker.api import SinkBatch, TopicPartition
from kanal_worker.api.records import ConvertedBatch, RecordLists, SinkColumns
from kanal_worker.connectors.azure_blob.settings import AzureBlobSinkSettings
from kanal_worker.connectors.azure_blob.task import AzureBlobSinkTask
from kanal_worker.connectors.storage import schemas
from kanal_worker.connectors.storage.writer import Layout
from kanal_worker.converters.json import JsonConverter
from kanal_worker.runtime.sink import DEFAULT_BATCH

TOPIC = "bench"
FLUSH_SIZE = 10_000
"""Records per file, as B2 cuts them at 200,000 records (the last file of each partition
stays open and is not written)."""
FORMATS = {"json": "JsonFormat", "parquet": "ParquetFormat", "avro": "AvroFormat"}
HOURLY = {"partitioner.class": "HourlyPartitioner", "locale": "en-US", "timezone": "UTC",
          "timestamp.extractor": "RecordField", "timestamp.field": "timestamp"}
"""The partitioner settings of examples/azure-blob-sink.json."""


class MemoryStore:
    """Files kept as the bytes committed under their names."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.parts: dict[tuple[str, str], bytes] = {}

    def put(self, name: str, data: bytes) -> None:
        self.files[name] = data

    def stage(self, name: str, part_id: str, data: bytes) -> None:
        self.parts[name, part_id] = data

    def commit(self, name: str, part_ids: list[str]) -> None:
        self.files[name] = b"".join(self.parts.pop((name, part)) for part in part_ids)

    def close(self) -> None:
        pass


class Context:
    task_id = "bench-0"

    def __init__(self, partitions: int) -> None:
        self.partitions = {TopicPartition(TOPIC, p) for p in range(partitions)}

    def assignment(self) -> set[TopicPartition]:
        return self.partitions

    def request_commit(self) -> None:
        pass


def polls(count: int, partitions: int, form: str) -> list[SinkBatch]:
    """The first ``count`` readings as polls of ``DEFAULT_BATCH``, round robin over the
    partitions, each partition's records of a poll one after the other."""
    values = [value for _, value in records(count, form)]
    converter = JsonConverter({"schemas.enable": str(form == "json-schemas").lower()}, False)
    next_offset = [0] * partitions
    batches = []
    for start in range(0, count, DEFAULT_BATCH):
        poll = values[start:start + DEFAULT_BATCH]
        data: list[bytes | None] = [value for p in range(partitions)
                                    for value in poll[p::partitions]]
        where = [(p, next_offset[p] + i) for p in range(partitions)
                 for i in range(len(poll[p::partitions]))]
        for p in range(partitions):
            next_offset[p] += len(poll[p::partitions])
        size = len(data)
        converted = converter.to_connect_batch(TOPIC, data)
        batches.append(SinkBatch.of_columns(SinkColumns(
            origin=RecordLists(topics=[TOPIC] * size, partitions=[p for p, _ in where],
                               offsets=[o for _, o in where], timestamps=[(0, -1)] * size),
            headers=[None] * size, keys=ConvertedBatch([None] * size, [None] * size),
            values=converted, encoded=list(data) if converted.plain_json else [None] * size,
            texts=[None] * size)))
    return batches


def write_all(file_format: str, count: int, partitions: int, form: str = "json",
              partitioning: dict[str, str] | None = None) -> tuple[float, dict[str, bytes]]:
    """CPU microseconds per record of writing ``count`` readings of ``form`` (polls
    built first, untimed), and the files written."""
    batches = polls(count, partitions, form)
    store = MemoryStore()
    settings: AzureBlobSinkSettings = AzureBlobSinkSettings.parse({
        "format.class": FORMATS[file_format], "flush.size": str(FLUSH_SIZE),
        "azblob.account.name": "bench", "azblob.account.key": "a2V5", **(partitioning or {})})
    task = AzureBlobSinkTask(settings, Context(partitions), store)  # type: ignore[arg-type]
    assigned = sorted(Context(partitions).partitions)
    task.open(assigned)
    start = time.process_time()
    for batch in batches:
        task.write(batch)
    task.close(assigned)
    spent = time.process_time() - start
    task.stop()
    return spent / count * 1e6, store.files


def value_by_value() -> AbstractContextManager[Any]:
    """Every value's schema inferred or checked on its own, as before the column
    paths."""
    return patch.multiple(schemas, infer_columns=lambda run: None,
                          fits_by_columns=lambda run, schema: False)


def record_by_record() -> AbstractContextManager[Any]:
    """Every record placed on its own, as time-based partitioners did before runs."""
    return patch.object(Layout, "places_runs", property(lambda layout: False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--form", choices=["json", "json-schemas"], default="json")
    parser.add_argument("--formats", default="json,parquet,avro")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hourly", action="store_true",
                        help="hourly folders; compare record-by-record placement with runs")
    args = parser.parse_args()
    before = "record by record" if args.hourly else "value by value"
    paths: dict[str, Callable[[], AbstractContextManager[None]]] = {
        before: record_by_record if args.hourly else value_by_value, "by columns": nullcontext}
    partitioning = HOURLY if args.hourly else None
    for file_format in args.formats.split(","):
        times: dict[str, list[float]] = {name: [] for name in paths}
        files: dict[str, dict[str, bytes]] = {}
        for _ in range(args.rounds):
            for name, path in paths.items():
                with path():
                    spent, files[name] = write_all(file_format, args.records,
                                                   args.partitions, args.form, partitioning)
                times[name].append(spent)
        if files[before] != files["by columns"]:
            raise SystemExit(f"{file_format}: the two paths wrote other files")
        for name, rounds in times.items():
            print(f"{file_format} {name}: {min(rounds):.3f} µs/record (best of {args.rounds}; "
                  f"all: {', '.join(f'{s:.3f}' for s in rounds)}; {len(files[name])} files)")


if __name__ == "__main__":
    main()
