"""The storage sink task: batches per partition, parallel uploads, offsets only when durable.

A sink subclasses ``StorageSinkTask`` with ``open_store`` (its backend, see ``store``)
and ``store_problems`` (its own configuration checks); the rest is shared.

``write`` places each record in its file (``writer``), then stages the blocks that
filled up and commits the files that ended, in parallel on a small thread pool, and
returns once they are in storage. If storage fails, it raises ``RetriableError``: the
runtime backs off and calls ``write`` again with the same batch, records already placed
are skipped by offset, and only the uploads still missing are retried. ``pre_commit``
never reports an offset whose records are not all in committed files.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from concurrent.futures import ThreadPoolExecutor, wait
from functools import partial
from itertools import repeat
from operator import is_
from typing import Any, TypeVar, cast

from kanal_worker.api import (
    ConfigError,
    RecordWriteError,
    RetriableError,
    SinkBatch,
    SinkRecord,
    SinkTask,
    SinkTaskContext,
    TopicPartition,
)
from kanal_worker.connectors.storage.checks import config_problems
from kanal_worker.connectors.storage.formats import build_format
from kanal_worker.connectors.storage.partitioners import now_ms
from kanal_worker.connectors.storage.settings import StorageSinkSettings
from kanal_worker.connectors.storage.store import ObjectStore, RenamingStore
from kanal_worker.connectors.storage.writer import Layout, OpenFile, PartitionFiles

log = logging.getLogger(__name__)
S = TypeVar("S", bound=StorageSinkSettings)


class StorageSinkTask(SinkTask[S]):
    thread_prefix = "storage"
    ends_names = False
    """Whether file names end with their last record's offset (``Layout.ends_names``):
    a sink sets it when its store is a ``RenamingStore`` and its users expect such names."""

    def __init__(self, settings: S, context: SinkTaskContext,
                 store: ObjectStore | None = None) -> None:
        super().__init__(settings, context)
        for key, messages in config_problems(settings, self.store_problems(settings)).items():
            raise ConfigError(key, messages[0])
        self.layout = Layout.from_settings(settings, build_format(settings), self.ends_names)
        self.store: ObjectStore = self.open_store() if store is None else store
        self.pool = ThreadPoolExecutor(settings.upload_threads,
                                       thread_name_prefix=f"{self.thread_prefix}-"
                                                          f"{context.task_id}")
        self.partitions: dict[TopicPartition, PartitionFiles] = {}
        self.failures: list[tuple[SinkRecord, BaseException]] = []
        self._sets_seen = 0
        self._ceiling_logged = False
        log.info("Task %s writes %s files to %s (%s)", context.task_id,
                 settings.format_class, self.destination(), settings.partitioner_class)

    @staticmethod
    @abstractmethod
    def store_problems(settings: S) -> dict[str, list[str]]:
        """The store's own configuration problems, by key (see ``checks``)."""

    @abstractmethod
    def open_store(self) -> ObjectStore:
        """The backend; its client library is imported here, so that only workers
        running this sink pay its memory."""

    @abstractmethod
    def destination(self) -> str:
        """Where the files go, for the log: ``container x``, ``bucket y``."""

    def open(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.partitions.setdefault(tp, PartitionFiles(tp, self.layout))

    def write(self, batch: SinkBatch) -> None:
        now = now_ms()
        if self.layout.places_runs:
            self._write_runs(batch, now)
        else:
            self._write_records(batch.records, now)
        self._bound_memory()
        self._upload()
        if self.failures:
            failures, self.failures = self.failures, []
            raise RecordWriteError([(record, error) for record, error in failures])

    def _write_records(self, records: list[SinkRecord], now: int) -> None:
        by_partition: dict[TopicPartition, list[SinkRecord]] = {}
        for record in records:
            by_partition.setdefault(record.topic_partition, []).append(record)
        for tp, placed in by_partition.items():
            self.failures.extend(self._files(tp).write(placed, now))

    def _write_runs(self, batch: SinkBatch, now: int) -> None:
        """Each partition's records as one run (``PartitionFiles.write_run``) when they
        share a record schema, else, or from where a run stops, record by record."""
        value_schemas, encoded = batch.value_schemas, batch.encoded_values
        start = 0
        for topic, partition, offsets in batch.partition_runs():
            end = start + len(offsets)
            schema = value_schemas[start]
            files = self._files(TopicPartition(topic, partition))
            placed = all(map(is_, value_schemas[start:end], repeat(schema))) and files.write_run(
                offsets, partial(_values, batch, start, end), schema, encoded[start:end],
                partial(_timestamps, batch, start, end), now)
            if not placed:
                self._write_records(batch[start:end], now)
            start = end

    def _files(self, tp: TopicPartition) -> PartitionFiles:
        files = self.partitions.get(tp)
        if files is None:
            files = self.partitions[tp] = PartitionFiles(tp, self.layout)
        return files

    def pre_commit(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        now = now_ms()
        for files in self.partitions.values():
            files.tick(now)
        try:
            self._upload()
        except RetriableError as exc:
            # the next write retries; until then only what is already durable counts
            log.warning("Task %s: uploads pending (%s)", self.context.task_id, exc)
        safe = {}
        for tp, offset in offsets.items():
            floor = self.partitions[tp].floor() if tp in self.partitions else None
            safe[tp] = offset if floor is None else min(floor, offset)
        return safe

    def close(self, partitions: list[TopicPartition]) -> None:
        """Drop the partitions' open files: their records come again from the committed
        offset, to whichever task owns the partition next."""
        gone = set(partitions)
        for tp in gone:
            self.partitions.pop(tp, None)
        self.failures = [(r, e) for r, e in self.failures if r.topic_partition not in gone]

    def stop(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.store.close()

    def _bound_memory(self) -> None:
        """Keep the bytes held for open files under ``kanal.max.buffered.bytes`` by
        committing the fullest files early (see the setting for the cost)."""
        ceiling = self.settings.max_buffered_bytes
        held = [(file.buffered, files, file) for files in self.partitions.values()
                for file in files.open.values()]
        total = sum(size for size, _, _ in held)
        if total <= ceiling:
            return
        if not self._ceiling_logged:
            self._ceiling_logged = True
            log.warning("Task %s holds %d bytes for %d open files, above "
                        "kanal.max.buffered.bytes=%d: committing the fullest files early",
                        self.context.task_id, total, len(held), ceiling)
        for size, files, file in sorted(held, key=lambda entry: -entry[0]):
            if total <= ceiling:
                break
            files.close_file(file)
            total -= size

    def _upload(self) -> None:
        """Stage full blocks and commit ended files, in parallel; raise if any failed
        (the ones that succeeded are not repeated)."""
        work = [file for files in self.partitions.values() for file in files.uploads()]
        if work:
            done, _ = wait([self.pool.submit(self._upload_file, file) for file in work])
            for files in self.partitions.values():
                files.forget_durable()
            errors = [f.exception() for f in done if f.exception() is not None]
            fatal = next((e for e in errors if not isinstance(e, RetriableError)), None)
            if fatal is not None:
                raise fatal
            if errors:
                raise RetriableError(f"{len(errors)} of {len(work)} uploads failed: {errors[0]}")
        sets = sum(files.sets_ended for files in self.partitions.values())
        if sets != self._sets_seen:
            self._sets_seen = sets
            self.context.request_commit()

    def _upload_file(self, file: OpenFile) -> None:
        while file.unstaged:
            block_id, data = file.unstaged[0]
            self.store.stage(file.name, block_id, data)
            file.staged.append(block_id)
            file.unstaged.pop(0)
        if file.finished and not file.durable:
            if file.single is not None:
                self.store.put(file.final_name, file.single)
            elif file.final_name == file.name:
                self.store.commit(file.name, file.staged)
            else:
                cast(RenamingStore, self.store).commit_as(file.name, file.staged,
                                                          file.final_name)
            file.durable = True


def _values(batch: SinkBatch, start: int, end: int) -> list[Any]:
    return batch.values[start:end]


def _timestamps(batch: SinkBatch, start: int, end: int) -> list[int | None]:
    return batch.timestamps[start:end]
