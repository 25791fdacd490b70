"""The HDFS sink task: the storage core writing files over WebHDFS."""

from __future__ import annotations

from kanal_worker.api import TopicPartition
from kanal_worker.connectors.hdfs.settings import HdfsSinkSettings
from kanal_worker.connectors.storage.store import ObjectStore
from kanal_worker.connectors.storage.task import StorageSinkTask


class HdfsSinkTask(StorageSinkTask[HdfsSinkSettings]):
    thread_prefix = "hdfs"
    ends_names = True  # kafka-connect-hdfs's <topic>+<partition>+<start>+<end>

    @staticmethod
    def store_problems(settings: HdfsSinkSettings) -> dict[str, list[str]]:
        return {}

    def open_store(self) -> ObjectStore:
        from kanal_worker.connectors.hdfs.store import HdfsStore
        return HdfsStore(self.settings)

    def open(self, partitions: list[TopicPartition]) -> None:
        super().open(partitions)
        from kanal_worker.connectors.hdfs.store import HdfsStore
        if isinstance(self.store, HdfsStore):
            self.store.remove_stale_temp_files(partitions)

    def destination(self) -> str:
        return f"{self.settings.webhdfs} as {self.settings.user}"
