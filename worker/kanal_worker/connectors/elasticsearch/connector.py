"""The connector: Confluent's class name and configuration, Kanal's task."""

from __future__ import annotations

from kanal_worker.api import SinkConnector
from kanal_worker.connectors.elasticsearch.checks import config_problems, server_problems
from kanal_worker.connectors.elasticsearch.settings import ElasticsearchSinkSettings
from kanal_worker.connectors.elasticsearch.task import ElasticsearchSinkTask


class ElasticsearchSinkConnector(SinkConnector[ElasticsearchSinkSettings]):
    settings = ElasticsearchSinkSettings
    task_class = ElasticsearchSinkTask
    aliases = ("io.confluent.connect.elasticsearch.ElasticsearchSinkConnector",)

    def validate(self, settings: ElasticsearchSinkSettings) -> dict[str, list[str]]:
        return config_problems(settings) or server_problems(settings)
