"""The HDFS sink task: the storage core writing files over WebHDFS.

Files are named as kafka-connect-hdfs names them, ``<topic>+<partition>+<start>+<end>``,
and like it the task reads where to resume from those names when it opens a partition:
past the last file when the files from the committed offset on form an unbroken run
(a task stopped after renaming files but before committing their offsets does not write
them again). This holds with the DefaultPartitioner only: one file at a time per Kafka
partition holds every record from its start to its end. Other partitioners write
several files at once whose ranges interleave, so a name cannot prove that every file
of a set is in place (kafka-connect-hdfs keeps a write-ahead log for that); they resume
from the committed offset, where the deterministic files are written again alike.
"""

from __future__ import annotations

import logging
import re

from kanal_worker.api import ConnectError, TopicPartition
from kanal_worker.connectors.hdfs.settings import HdfsSinkSettings
from kanal_worker.connectors.storage.partitioners import DefaultPartitioner
from kanal_worker.connectors.storage.store import ManagedStore, ObjectStore
from kanal_worker.connectors.storage.task import StorageSinkTask

log = logging.getLogger(__name__)


class HdfsSinkTask(StorageSinkTask[HdfsSinkSettings]):
    thread_prefix = "hdfs"
    ends_names = True  # kafka-connect-hdfs's <topic>+<partition>+<start>+<end>

    @staticmethod
    def store_problems(settings: HdfsSinkSettings) -> dict[str, list[str]]:
        return {}

    def open_store(self) -> ObjectStore:
        from kanal_worker.connectors.hdfs.store import HdfsStore
        return HdfsStore(self.settings)

    def destination(self) -> str:
        return f"{self.settings.webhdfs} as {self.settings.user}"

    def open(self, partitions: list[TopicPartition]) -> None:
        super().open(partitions)
        from kanal_worker.connectors.hdfs.store import HdfsStore
        if not isinstance(self.store, HdfsStore):
            return
        self.store.remove_stale_temp_files(partitions)
        partitioner = self.layout.partitioner
        if isinstance(partitioner, DefaultPartitioner) and \
                self.layout.null_values != "write":  # tombstones interleave with values
            self._resume_after_written_files(self.store, partitioner, partitions)

    def _resume_after_written_files(self, store: ManagedStore, partitioner: DefaultPartitioner,
                                    partitions: list[TopicPartition]) -> None:
        try:
            committed = self.context.committed(partitions)
            written = {tp: self._written_ranges(store, partitioner.encode_partition(tp.partition),
                                                tp) for tp in partitions}
        except ConnectError as exc:  # then the committed offsets, which are safe too
            log.warning("Task %s: cannot read the files' offsets in HDFS (%s); resuming from "
                        "the committed offsets", self.context.task_id, exc)
            return
        starts = {}
        for tp in partitions:
            resume = resume_offset(written[tp], committed.get(tp))
            if resume is not None and resume != committed.get(tp):
                starts[tp] = resume
                log.info("Task %s: %s resumes at offset %d, after the files in HDFS "
                         "(committed: %s)", self.context.task_id, tp, resume, committed.get(tp))
        if starts:
            self.context.offset(starts)

    def _written_ranges(self, store: ManagedStore, encoded: str,
                        tp: TopicPartition) -> list[tuple[int, int]]:
        """The (start, end) offsets in the names of ``tp``'s files."""
        layout = self.layout
        prefix = layout.blob_name(tp, encoded, 0).rsplit(layout.directory_delim, 1)[0] + \
            f"{layout.directory_delim}{tp.topic}{layout.file_delim}{tp.partition}" \
            f"{layout.file_delim}"
        offsets = re.compile(rf"(\d+){re.escape(layout.file_delim)}(\d+)\D")
        ranges = []
        for name in store.names(prefix):
            found = offsets.match(name[len(prefix):])
            if found:
                ranges.append((int(found[1]), int(found[2])))
        return ranges


def resume_offset(ranges: list[tuple[int, int]], committed: int | None) -> int | None:
    """Where to resume given the (start, end) offsets of the files in the store: past the
    last file, when the committed offset lies in the unbroken run of files that ends
    with it (or nothing is committed, as kafka-connect-hdfs recovers); None: from the
    committed offset."""
    if not ranges:
        return None
    ordered = sorted(set(ranges))
    run_start, end = ordered[-1]
    for start, stop in reversed(ordered[:-1]):
        if stop + 1 != run_start:
            break
        run_start = start
    if committed is None or run_start <= committed <= end + 1:
        return end + 1
    return None
