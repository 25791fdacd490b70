"""The connector: Confluent's class name and configuration, Kanal's task."""

from __future__ import annotations

from kanal_worker.api import SinkConnector
from kanal_worker.connectors.gcs.settings import GcsSinkSettings
from kanal_worker.connectors.gcs.task import GcsSinkTask
from kanal_worker.connectors.storage.checks import config_problems


class GcsSinkConnector(SinkConnector[GcsSinkSettings]):
    settings = GcsSinkSettings
    task_class = GcsSinkTask
    aliases = ("io.confluent.connect.gcs.GcsSinkConnector",)

    def validate(self, settings: GcsSinkSettings) -> dict[str, list[str]]:
        problems = config_problems(settings, GcsSinkTask.store_problems(settings))
        if problems:
            return problems
        # the client library loads only when a configuration gets this far
        from kanal_worker.connectors.gcs.store import access_problems
        return access_problems(settings)
