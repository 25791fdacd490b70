"""The connector: Confluent's class name and configuration, Kanal's task."""

from __future__ import annotations

from collections.abc import Mapping

from kanal_worker.api import ConfigError, SinkConnector
from kanal_worker.connectors.elasticsearch.checks import config_problems
from kanal_worker.connectors.elasticsearch.settings import ElasticsearchSinkSettings
from kanal_worker.connectors.elasticsearch.task import ElasticsearchSinkTask

POLL_RECORDS = "consumer.override.max.poll.records"
MIN_POLL, MAX_BUFFERED = 500, 20000


class ElasticsearchSinkConnector(SinkConnector[ElasticsearchSinkSettings]):
    settings = ElasticsearchSinkSettings
    task_class = ElasticsearchSinkTask
    aliases = ("io.confluent.connect.elasticsearch.ElasticsearchSinkConnector",)

    def validate(self, settings: ElasticsearchSinkSettings) -> dict[str, list[str]]:
        problems = config_problems(settings)
        if problems:
            return problems
        from kanal_worker.connectors.elasticsearch.server import server_problems

        return server_problems(settings)

    def task_configs(self, config: Mapping[str, str], max_tasks: int) -> list[dict[str, str]]:
        """Each task polls enough records to fill its bulk requests in flight (at most
        Confluent's max.buffered.records default, 20,000), unless the configuration sets
        consumer.override.max.poll.records: a task writes one poll at a time, so a
        smaller poll would leave max.in.flight.requests unused."""
        configs = super().task_configs(config, max_tasks)
        if POLL_RECORDS in config:
            return configs
        try:
            settings: ElasticsearchSinkSettings = self.settings.parse(config)
        except ConfigError:
            return configs  # validation reports it
        in_flight = 1 if settings.write_method == "upsert" else settings.max_in_flight_requests
        poll = min(max(settings.batch_size * in_flight, MIN_POLL), MAX_BUFFERED)
        return [{**task, POLL_RECORDS: str(poll)} for task in configs]
