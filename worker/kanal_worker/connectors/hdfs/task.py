"""The HDFS sink task: the storage core writing files over WebHDFS."""

from __future__ import annotations

from kanal_worker.connectors.hdfs.settings import HdfsSinkSettings
from kanal_worker.connectors.storage.store import ObjectStore
from kanal_worker.connectors.storage.task import StorageSinkTask


class HdfsSinkTask(StorageSinkTask[HdfsSinkSettings]):
    thread_prefix = "hdfs"

    @staticmethod
    def store_problems(settings: HdfsSinkSettings) -> dict[str, list[str]]:
        return {}

    def open_store(self) -> ObjectStore:
        from kanal_worker.connectors.hdfs.store import HdfsStore
        return HdfsStore(self.settings)

    def destination(self) -> str:
        return f"{self.settings.webhdfs} as {self.settings.user}"
