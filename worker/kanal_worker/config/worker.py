"""Worker configuration (``worker.properties``), under Kafka Connect's keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from kanal_worker.api.config import Settings, setting
from kanal_worker.config.kafka_clients import translate

JAVA_CLIENT_ONLY = {
    "key.deserializer", "value.deserializer", "key.serializer", "value.serializer",
    "interceptor.classes", "metric.reporters", "max.poll.records",
    "auto.include.jmx.reporter",
}
"""Java client keys librdkafka has no use for; dropped (``max.poll.records`` is honoured
as the consume batch size)."""


STATIC_MEMBERSHIP = "kanal.consumer.static.membership"


class WorkerSettings(Settings):
    bootstrap_servers: str = setting(
        "localhost:9092", key="bootstrap.servers", importance="HIGH",
        doc="Kafka brokers to connect to, host:port separated by commas.")
    key_converter: str = setting(
        "org.apache.kafka.connect.json.JsonConverter", key="key.converter", importance="HIGH",
        doc="Converter class for record keys.")
    value_converter: str = setting(
        "org.apache.kafka.connect.json.JsonConverter", key="value.converter",
        importance="HIGH", doc="Converter class for record values.")
    header_converter: str = setting(
        "org.apache.kafka.connect.storage.SimpleHeaderConverter", key="header.converter",
        importance="LOW", doc="HeaderConverter class for record headers.")
    offset_file: str = setting(
        "", key="offset.storage.file.filename", importance="HIGH",
        doc="Standalone mode: file that stores source connector offsets.")
    offset_topic: str = setting(
        "", key="offset.storage.topic", importance="HIGH",
        doc="Compacted topic for source offsets (cluster mode, and standalone when set; "
            "required for exactly-once sources).")
    offset_partitions: int = setting(25, key="offset.storage.partitions", ge=1,
                                     doc="Partitions of the offsets topic when Kanal creates it.")
    offset_replication_factor: int = setting(
        3, key="offset.storage.replication.factor", ge=1,
        doc="Replication factor of the offsets topic when Kanal creates it (capped at the "
            "number of brokers).")
    group_id: str = setting(
        "kanal", key="group.id", importance="HIGH",
        doc="Name of the Connect cluster; prefixes transactional ids of exactly-once sources.")
    exactly_once_source: Literal["disabled", "preparing", "enabled"] = setting(
        "disabled", key="exactly.once.source.support", importance="HIGH",
        doc="'enabled' gives source tasks transactional producers: records and their offsets "
            "commit atomically, and a zombie task is fenced.")
    offset_flush_interval_ms: int = setting(
        60000, key="offset.flush.interval.ms", importance="LOW", ge=1,
        doc="Interval at which to commit task offsets.")
    listeners: str = setting(
        "http://0.0.0.0:8083", key="listeners", importance="LOW",
        doc="REST API listener, e.g. http://0.0.0.0:8083; empty disables the REST API.")
    task_shutdown_timeout_ms: int = setting(
        5000, key="task.shutdown.graceful.timeout.ms", importance="LOW",
        doc="Time to wait for tasks to stop cleanly.")
    client_id: str = setting("", key="client.id", importance="LOW",
                             doc="Prefix of Kafka client ids.")
    static_membership: bool = setting(
        False, key=STATIC_MEMBERSHIP, importance="LOW",
        doc="Kanal: sink consumers join with group.instance.id=<connector>-<task>. Set by "
            "cluster-mode workers, where the operator guarantees one owner per task.")
    metrics_port: int = setting(
        9404, key="kanal.metrics.port", importance="LOW", ge=0, le=65535,
        doc="Kanal: Prometheus metrics on http://0.0.0.0:<port>/metrics; 0 disables them.")
    progress_interval_ms: int = setting(
        10000, key="kanal.progress.log.interval.ms", importance="LOW",
        doc="Kanal: interval of the log line with records moved and rate per task; 0 "
            "disables it.")
    task_processes: Literal["auto", "always", "never"] = setting(
        "auto", key="kanal.task.processes", importance="MEDIUM",
        doc="Kanal: where sink tasks run. 'auto': in child processes when the worker runs "
            "two or more tasks of the connector and may use two cores or more (CPU affinity "
            "and cgroup quota), else in the worker; 'always': every sink task in a child; "
            "'never': every task in the worker. Source tasks always run in the worker, with "
            "its offsets store.")


def client_config(worker: Mapping[str, str], role: str,
                  overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Kafka client settings for ``role`` (consumer, producer, admin).

    Like Kafka Connect: top-level security settings and ``<role>.*`` from the worker,
    then the connector's ``<role>.override.*``; Java security settings are translated
    for librdkafka (``kafka_clients``).
    """
    shared = ("security.protocol", "ssl.", "sasl.", "client.dns.lookup")
    out = {"bootstrap.servers": worker.get("bootstrap.servers", "localhost:9092")}
    for key, value in worker.items():
        if key.startswith(shared):
            out[key] = value
    prefix = f"{role}."
    out.update({k[len(prefix):]: v for k, v in worker.items() if k.startswith(prefix)})
    if overrides:
        out.update(overrides)
    return translate({k: v for k, v in out.items() if k not in JAVA_CLIENT_ONLY})
