"""The GCS sink task: the storage core writing objects through resumable uploads."""

from __future__ import annotations

from kanal_worker.connectors.gcs.settings import GcsSinkSettings, credential_problems
from kanal_worker.connectors.storage.store import ObjectStore
from kanal_worker.connectors.storage.task import StorageSinkTask


class GcsSinkTask(StorageSinkTask[GcsSinkSettings]):
    thread_prefix = "gcs"

    @staticmethod
    def store_problems(settings: GcsSinkSettings) -> dict[str, list[str]]:
        return credential_problems(settings)

    def open_store(self) -> ObjectStore:
        # google-cloud-storage is imported only by workers running this task
        from kanal_worker.connectors.gcs.store import GcsStore
        return GcsStore(self.settings)

    def destination(self) -> str:
        return f"bucket {self.settings.gcs_bucket_name}"
