"""Kafka Connect's error handling: retries, tolerance, error logs, dead-letter queues."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

import orjson
from confluent_kafka import Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from kanal_worker.api.errors import ConnectError, RetriableError
from kanal_worker.api.records import SourceRecord
from kanal_worker.runtime.status import format_trace

log = logging.getLogger(__name__)
T = TypeVar("T")

HEADER_PREFIX = "__connect.errors."


class Stage(StrEnum):
    """Apache's stage names, written to ``__connect.errors.stage``."""

    KEY_CONVERTER = "KEY_CONVERTER"
    VALUE_CONVERTER = "VALUE_CONVERTER"
    HEADER_CONVERTER = "HEADER_CONVERTER"
    TRANSFORMATION = "TRANSFORMATION"
    TASK_PUT = "TASK_PUT"
    TASK_POLL = "TASK_POLL"
    KAFKA_PRODUCE = "KAFKA_PRODUCE"
    KAFKA_CONSUME = "KAFKA_CONSUME"


class ToleranceExceeded(ConnectError):
    pass


class DeadLetterQueue:
    """Produces failed records, unchanged, to the DLQ topic (created when missing)."""

    def __init__(self, topic: str, replication_factor: int, client_config: dict[str, str],
                 context_headers: bool, connector: str, task_id: int) -> None:
        self.topic = topic
        self.context_headers = context_headers
        self.connector = connector
        self.task_id = task_id
        self.producer = Producer({**client_config, "linger.ms": "5",
                                  "enable.idempotence": "true"})
        self._ensure_topic(client_config, replication_factor)
        self.count = 0

    def _ensure_topic(self, client_config: dict[str, str], replication_factor: int) -> None:
        admin = AdminClient({k: v for k, v in client_config.items()
                             if k in ("bootstrap.servers", "security.protocol")
                             or k.startswith(("ssl.", "sasl."))})
        metadata = admin.list_topics(timeout=10)
        if self.topic in metadata.topics:
            return
        brokers = max(1, len(metadata.brokers))
        futures = admin.create_topics([NewTopic(self.topic, 1, min(replication_factor, brokers))])
        for future in futures.values():
            try:
                future.result(10)
            except Exception as exc:  # a concurrent task may have created it
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise

    def send(self, stage: Stage, executing: str, error: BaseException,
             message: Message | None = None, source: SourceRecord | None = None) -> None:
        headers: list[tuple[str, bytes]] = []
        if message is not None:
            key, value, timestamp = message.key(), message.value(), message.timestamp()[1]
            headers.extend(message.headers() or [])
        else:
            assert source is not None
            key = _plain_json(source.key)
            value = _plain_json(source.value)
            timestamp = source.timestamp
        if self.context_headers:
            headers.extend(self._context(stage, executing, error, message, source))
        self.producer.produce(self.topic, value=value, key=key, headers=headers,
                              timestamp=timestamp if timestamp and timestamp > 0 else 0)
        self.producer.poll(0)
        self.count += 1

    def _context(self, stage: Stage, executing: str, error: BaseException,
                 message: Message | None, source: SourceRecord | None) -> list[tuple[str, bytes]]:
        ctx: dict[str, str] = {}
        if message is not None:
            ctx["topic"] = message.topic() or ""
            ctx["partition"] = str(message.partition())
            ctx["offset"] = str(message.offset())
        elif source is not None:
            ctx["topic"] = source.topic
            ctx["source.partition"] = orjson.dumps(source.source_partition).decode()
            ctx["source.offset"] = orjson.dumps(source.source_offset).decode()
        ctx["connector.name"] = self.connector
        ctx["task.id"] = str(self.task_id)
        ctx["stage"] = stage.value
        ctx["class.name"] = executing
        ctx["exception.class.name"] = f"{type(error).__module__}.{type(error).__qualname__}"
        ctx["exception.message"] = str(error)
        ctx["exception.stacktrace"] = format_trace(error)
        return [(HEADER_PREFIX + k, v.encode()) for k, v in ctx.items()]

    def flush(self, timeout: float = 30) -> None:
        if self.producer.flush(timeout):
            raise RetriableError(f"dead letter queue {self.topic}: records not yet acknowledged")


def _plain_json(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    return orjson.dumps(value, default=str)


class ErrorHandler:
    """Applies ``errors.*``: retry retriable failures, then tolerate or fail."""

    def __init__(self, *, tolerance: str, retry_timeout_ms: int, retry_delay_max_ms: int,
                 log_enable: bool, log_messages: bool, task: str,
                 dlq: DeadLetterQueue | None) -> None:
        self.tolerate_all = tolerance == "all"
        self.retry_timeout_ms = retry_timeout_ms
        self.retry_delay_max_ms = retry_delay_max_ms
        self.log_enable = log_enable
        self.log_messages = log_messages
        self.task = task
        self.dlq = dlq
        self.failed = 0
        self.stopping: Callable[[], bool] = lambda: False

    def retry(self, operation: Callable[[], T]) -> T:
        """Run ``operation``; retry ``RetriableError`` with backoff for errors.retry.timeout."""
        deadline = (time.monotonic() + self.retry_timeout_ms / 1000
                    if self.retry_timeout_ms >= 0 else float("inf"))
        delay = 0.3
        while True:
            try:
                return operation()
            except RetriableError:
                if time.monotonic() + delay > deadline or self.stopping():
                    raise
                time.sleep(delay)
                delay = min(delay * 2, self.retry_delay_max_ms / 1000)

    def failure(self, stage: Stage, executing: str, error: BaseException, *,
                message: Message | None = None, source: SourceRecord | None = None) -> None:
        """A record failed for good: log it, send it to the DLQ, or fail the task."""
        self.failed += 1
        where = _where(message, source)
        if self.log_enable:
            detail = ""
            if self.log_messages and message is not None:
                detail = f" key={message.key()!r} value={message.value()!r}"
            log.error("Error encountered in task %s. Executing stage '%s' with class '%s', "
                      "where %s%s: %s", self.task, stage, executing, where, detail, error)
        if not self.tolerate_all:
            raise ToleranceExceeded(
                f"Tolerance exceeded in error handler: stage {stage} ({executing}) failed for "
                f"{where}: {error}") from error
        if self.dlq is not None:
            self.dlq.send(stage, executing, error, message, source)


def _where(message: Message | None, source: SourceRecord | None) -> str:
    if message is not None:
        return (f"consumed record is {{topic='{message.topic()}', partition={message.partition()}"
                f", offset={message.offset()}, timestamp={message.timestamp()[1]}}}")
    if source is not None:
        return (f"source record is {{topic='{source.topic}', partition={source.source_partition}"
                f", offset={source.source_offset}}}")
    return "no record"
