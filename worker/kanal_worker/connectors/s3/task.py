"""The S3 sink task: the storage core writing S3 objects through multipart uploads."""

from __future__ import annotations

from kanal_worker.connectors.s3.settings import S3SinkSettings, s3_problems
from kanal_worker.connectors.storage.store import ObjectStore
from kanal_worker.connectors.storage.task import StorageSinkTask


class S3SinkTask(StorageSinkTask[S3SinkSettings]):
    thread_prefix = "s3"

    @staticmethod
    def store_problems(settings: S3SinkSettings) -> dict[str, list[str]]:
        return s3_problems(settings)

    def open_store(self) -> ObjectStore:
        # boto3 costs ~30 MB of memory: only workers running this task load it
        from kanal_worker.connectors.s3.store import S3Store
        return S3Store(self.settings)

    def destination(self) -> str:
        return f"bucket {self.settings.s3_bucket_name}"
