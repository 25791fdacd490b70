"""The connector: Confluent's class name and configuration, Kanal's task."""

from __future__ import annotations

from kanal_worker.api import SinkConnector
from kanal_worker.connectors.hdfs.settings import HdfsSinkSettings
from kanal_worker.connectors.hdfs.task import HdfsSinkTask
from kanal_worker.connectors.storage.checks import config_problems


class HdfsSinkConnector(SinkConnector[HdfsSinkSettings]):
    settings = HdfsSinkSettings
    task_class = HdfsSinkTask
    aliases = ("io.confluent.connect.hdfs.HdfsSinkConnector",
               "io.confluent.connect.hdfs3.Hdfs3SinkConnector")

    def validate(self, settings: HdfsSinkSettings) -> dict[str, list[str]]:
        problems = config_problems(settings, HdfsSinkTask.store_problems(settings))
        if problems:
            return problems
        # the client library loads only when a configuration gets this far
        from kanal_worker.connectors.hdfs.store import access_problems
        return access_problems(settings)
