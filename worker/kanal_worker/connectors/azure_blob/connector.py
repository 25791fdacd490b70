"""The connector: Confluent's class name and configuration, Kanal's task."""

from __future__ import annotations

from kanal_worker.api import SinkConnector
from kanal_worker.connectors.azure_blob.settings import AzureBlobSinkSettings
from kanal_worker.connectors.azure_blob.task import AzureBlobSinkTask
from kanal_worker.connectors.storage.checks import config_problems


class AzureBlobStorageSinkConnector(SinkConnector[AzureBlobSinkSettings]):
    settings = AzureBlobSinkSettings
    task_class = AzureBlobSinkTask
    aliases = ("io.confluent.connect.azure.blob.AzureBlobStorageSinkConnector",)

    def validate(self, settings: AzureBlobSinkSettings) -> dict[str, list[str]]:
        return config_problems(settings, AzureBlobSinkTask.store_problems(settings))
