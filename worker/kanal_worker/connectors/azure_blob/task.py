"""The Azure sink task: the storage core writing block blobs."""

from __future__ import annotations

from kanal_worker.connectors.azure_blob.auth import auth_problems
from kanal_worker.connectors.azure_blob.settings import AzureBlobSinkSettings
from kanal_worker.connectors.storage.store import ObjectStore
from kanal_worker.connectors.storage.task import StorageSinkTask


class AzureBlobSinkTask(StorageSinkTask[AzureBlobSinkSettings]):
    thread_prefix = "azblob"

    @staticmethod
    def store_problems(settings: AzureBlobSinkSettings) -> dict[str, list[str]]:
        return auth_problems(settings)

    def open_store(self) -> ObjectStore:
        # the Azure SDK costs ~25 MB of memory: only workers running this task load it
        from kanal_worker.connectors.azure_blob.storage import AzureBlobStore
        return AzureBlobStore(self.settings)

    def destination(self) -> str:
        return f"container {self.settings.azblob_container_name}"
