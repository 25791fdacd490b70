"""Kafka Connect's error handling: retries, tolerance, error logs, dead-letter queues.

Apache's semantics (``RetryWithToleranceOperator``, ``LogReporter``,
``DeadLetterQueueReporter``, whose headers name Apache's Java exception classes), with two
deliberate differences so that a bad record never vanishes: a record whose retries ran
out fails the task under ``errors.tolerance=none`` (Apache skips it), and a record the DLQ
could not take fails the task instead of being logged and dropped. Beyond Apache, source
connectors get a DLQ too (conversion and transform failures), and sinks report per-record
write failures (``RecordWriteError``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from functools import partial
from typing import Any, Final, TypeVar

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from kanal_worker.api.backoff import exponential_backoff
from kanal_worker.api.errors import ConnectError, DataError, RetriableError
from kanal_worker.api.records import TIMESTAMP_TYPES, ConnectRecord, SinkRecord, SourceRecord
from kanal_worker.converters.json import dumps
from kanal_worker.runtime.fetch import ConsumedRecord
from kanal_worker.runtime.status import format_trace
from kanal_worker.runtime.transforms import Step

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R", bound=ConnectRecord)

HEADER_PREFIX = "__connect.errors."
RETRIES_DELAY_MIN_MS = 300
"""Apache's first retry delay; each further retry doubles it up to errors.retry.delay.max.ms."""
DLQ_PARTITIONS = 1


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
    """``errors.tolerance=none`` and a record failed: the task stops with this trace."""


class Failed:
    """The result of an operation whose failure was tolerated: skip the record."""

    def __repr__(self) -> str:
        return "FAILED"


FAILED: Final = Failed()


def _raw(value: Any) -> bytes | None:
    """A source record's key, value or header as bytes for the DLQ: bytes and text as they
    are, anything else as JSON (there are no original bytes for a record not yet written)."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    try:
        return dumps(value)
    except DataError:  # the very value that failed may have no JSON: keep its text
        return str(value).encode()


JAVA_EXCEPTIONS: Final[tuple[tuple[type[BaseException], str], ...]] = (
    (ZeroDivisionError, "java.lang.ArithmeticException"),
    (OverflowError, "java.lang.ArithmeticException"),
    (ValueError, "java.lang.IllegalArgumentException"),
    (TypeError, "java.lang.ClassCastException"),
    (IndexError, "java.lang.IndexOutOfBoundsException"),
    (NotImplementedError, "java.lang.UnsupportedOperationException"),
)
"""Python's built-in failures as the Java exceptions Apache's code throws in their place."""


def java_exception_class(error: BaseException) -> str:
    """The Java class Apache Kafka Connect would report for ``error``: a Kanal error
    names it (``java_class``), built-in failures map to their Java counterparts, and
    anything else is an unchecked ``RuntimeException``."""
    named = getattr(error, "java_class", None)
    if isinstance(named, str):
        return named
    for python, java in JAVA_EXCEPTIONS:
        if isinstance(error, python):
            return java
    return "java.lang.RuntimeException"


class DeadLetterQueue:
    """Produces failed records, unchanged, to the DLQ topic (created when missing).

    Sink records go with their original key, value, headers and timestamp bytes; the
    ``__connect.errors.*`` context headers are added when enabled. Delivery is checked at
    ``flush`` (called before offsets are committed): a record the DLQ did not take fails the
    task rather than being lost.
    """

    def __init__(self, topic: str, replication_factor: int, client_config: dict[str, str],
                 context_headers: bool, connector: str, task_id: int) -> None:
        self.topic = topic.strip()
        self.context_headers = context_headers
        self.connector = connector
        self.task_id = task_id
        self.producer = Producer({**client_config, "linger.ms": "5",
                                  "enable.idempotence": "true"})
        self._ensure_topic(client_config, replication_factor)
        self.count = 0
        self.delivery_error: KafkaError | None = None

    def _ensure_topic(self, client_config: dict[str, str], replication_factor: int) -> None:
        admin = AdminClient({k: v for k, v in client_config.items()
                             if k in ("bootstrap.servers", "security.protocol")
                             or k.startswith(("ssl.", "sasl."))})
        metadata = admin.list_topics(timeout=10)
        if self.topic in metadata.topics:
            return
        log.error("Topic %s doesn't exist. Will attempt to create topic.", self.topic)
        # capped at the broker count so a one-broker development cluster works with the
        # default of 3; Apache would fail to create the topic there
        brokers = max(1, len(metadata.brokers))
        futures = admin.create_topics([NewTopic(self.topic, DLQ_PARTITIONS,
                                                min(replication_factor, brokers))])
        for future in futures.values():
            try:
                future.result(10)
            except Exception as exc:  # a concurrent task may have created it
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise ConnectError("Could not initialize dead letter queue with "
                                       f"topic={self.topic}: {exc}") from exc

    def send(self, stage: Stage, executing: str, error: BaseException,
             message: ConsumedRecord | None = None, record: ConnectRecord | None = None) -> None:
        headers: list[tuple[str, bytes | None]] = []
        timestamp: int | None
        if message is not None:
            key, value = message.key(), message.value()
            ts_type, timestamp = message.timestamp()
            if not ts_type:
                timestamp = None
            headers.extend(message.headers() or [])
        elif record is not None:
            key, value, timestamp = _raw(record.key), _raw(record.value), record.timestamp
            headers.extend((h.key, _raw(h.value)) for h in record.headers)
        else:
            raise ConnectError(f"no record to send to the dead letter queue for {error}")
        if self.context_headers:
            headers.extend(self._context(stage, executing, error, message, record))
        while True:
            try:
                self.producer.produce(self.topic, value=value, key=key, headers=headers,
                                      timestamp=timestamp if timestamp and timestamp > 0 else 0,
                                      on_delivery=self._delivered)
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)
        self.count += 1

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None and self.delivery_error is None:
            log.error("Could not produce message to dead letter queue. topic=%s: %s",
                      self.topic, error)
            self.delivery_error = error

    def _context(self, stage: Stage, executing: str, error: BaseException,
                 message: ConsumedRecord | None, record: ConnectRecord | None
                 ) -> list[tuple[str, bytes | None]]:
        ctx: dict[str, str | None] = {}
        if message is not None:
            ctx["topic"] = message.topic() or ""
            ctx["partition"] = str(message.partition())
            ctx["offset"] = str(message.offset())
        elif isinstance(record, SinkRecord):
            ctx["topic"] = record.topic
            ctx["partition"] = str(record.kafka_partition)
            ctx["offset"] = str(record.kafka_offset)
        elif isinstance(record, SourceRecord):
            ctx["topic"] = record.topic
            ctx["source.partition"] = dumps(record.source_partition).decode()
            ctx["source.offset"] = dumps(record.source_offset).decode()
        ctx["connector.name"] = self.connector
        ctx["task.id"] = str(self.task_id)
        ctx["stage"] = stage.value
        ctx["class.name"] = executing
        ctx["exception.class.name"] = java_exception_class(error)
        ctx["exception.message"] = str(error) or None
        ctx["exception.stacktrace"] = format_trace(error)
        return [(HEADER_PREFIX + k, v.encode() if v is not None else None)
                for k, v in ctx.items()]

    def flush(self, timeout: float = 30) -> None:
        remaining = self.producer.flush(timeout)
        if self.delivery_error is not None:
            raise ConnectError(f"dead letter queue {self.topic} did not accept a failed record "
                               f"({self.delivery_error}); stopping so that it is not lost")
        if remaining:
            raise RetriableError(f"dead letter queue {self.topic}: records not yet acknowledged")


class ErrorHandler:
    """Applies ``errors.*``: retry retriable failures, then tolerate or fail.

    Converters and transforms run through ``execute``: a ``RetriableError`` is retried for
    ``errors.retry.timeout`` ms (-1: forever) with Apache's backoff (300 ms doubling, then
    a random delay below ``errors.retry.delay.max.ms``); any other failure, or running out
    of retries, is a failed record: logged when ``errors.log.enable``, sent to the DLQ when
    one is configured, then skipped with ``errors.tolerance=all`` or failing the task with
    ``none``.
    """

    def __init__(self, *, tolerance: str, retry_timeout_ms: int, retry_delay_max_ms: int,
                 log_enable: bool, log_messages: bool, task: str,
                 dlq: DeadLetterQueue | None) -> None:
        self.tolerate_all = tolerance.lower() == "all"
        self.retry_timeout_ms = retry_timeout_ms
        self.retry_delay_max_ms = retry_delay_max_ms
        self.log_enable = log_enable
        self.log_messages = log_messages
        self.task = task
        self.dlq = dlq
        self.failed = 0
        self.stopping: Callable[[], bool] = lambda: False
        self.sleep: Callable[[float], None] = self._sleep

    def retry(self, operation: Callable[[], T]) -> T:
        """Run ``operation``, retrying ``RetriableError`` until errors.retry.timeout passes."""
        attempt = 0
        start = time.monotonic()
        deadline = (start + self.retry_timeout_ms / 1000 if self.retry_timeout_ms >= 0
                    else float("inf"))
        while True:
            attempt += 1
            try:
                return operation()
            except RetriableError:
                if time.monotonic() >= deadline or self.stopping():
                    raise
                self.sleep(self._backoff(attempt, deadline))
                if self.stopping():
                    raise

    def _backoff(self, attempt: int, deadline: float) -> float:
        delay = exponential_backoff(attempt - 1, RETRIES_DELAY_MIN_MS / 1000,
                                    self.retry_delay_max_ms / 1000)
        return max(0.0, min(delay, deadline - time.monotonic()))

    def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when the task stops (Apache's stop latch)."""
        end = time.monotonic() + seconds
        while not self.stopping() and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))

    def execute(self, operation: Callable[[], T], stage: Stage, executing: str, *,
                message: ConsumedRecord | None = None,
                record: ConnectRecord | None = None,
                raising: tuple[type[Exception], ...] = ()) -> T | Failed:
        """``operation`` with retries; FAILED when it failed and the failure is tolerated.
        Failures of the ``raising`` types (once the retries are over) are raised for
        the caller to handle: they say nothing about the record (a service is down, a
        setting is wrong), so no record goes to the DLQ for them."""
        try:
            return self.retry(operation)
        except Exception as exc:
            if isinstance(exc, raising):
                raise
            self.failure(stage, executing, exc, message=message, record=record)
            return FAILED

    def transform(self, chain: Sequence[Step], record: R, *,
                  message: ConsumedRecord | None = None) -> R | None:
        """``record`` through ``chain``, each step under error handling; None when a step
        dropped the record or failed with the failure tolerated. ``message`` is the
        consumed original of a sink record (the DLQ gets its raw bytes)."""
        current: R | None = record
        for step in chain:
            assert current is not None
            result = self.execute(partial(step.apply, current), Stage.TRANSFORMATION,
                                  step.class_name, message=message,
                                  record=None if message is not None else record)
            if isinstance(result, Failed) or result is None:
                return None
            current = result
        return current

    def failure(self, stage: Stage, executing: str, error: BaseException, *,
                message: ConsumedRecord | None = None, record: ConnectRecord | None = None) -> None:
        """A record failed for good: log it, send it to the DLQ, then skip it or fail."""
        self.failed += 1
        if self.log_enable:
            detail = ""
            if self.log_messages:
                detail = f", where {_where(message, record, with_data=True)}"
            log.error("Error encountered in task %s. Executing stage '%s' with class '%s'%s.",
                      self.task, stage, executing, detail, exc_info=error)
        if self.dlq is not None:
            self.dlq.send(stage, executing, error, message, record)
        if not self.tolerate_all:
            if self.dlq is not None:
                # the task stops now: make sure the record reached the DLQ first
                try:
                    self.dlq.flush(10)
                except ConnectError as exc:
                    log.error("Task %s: %s", self.task, exc)
            raise ToleranceExceeded(
                f"Tolerance exceeded in error handler: stage {stage} ({executing}) failed for "
                f"{_where(message, record)}: {error}") from error


def _where(message: ConsumedRecord | None, record: ConnectRecord | None,
           with_data: bool = False) -> str:
    """The failed record as Apache's LogReporter describes it; source records' keys, values
    and headers only ``with_data`` (errors.log.include.messages), never in task traces."""
    if message is not None:
        ts_type, timestamp = message.timestamp()
        stamp = (f", timestamp={timestamp}, timestampType={TIMESTAMP_TYPES[ts_type]}"
                 if ts_type in TIMESTAMP_TYPES else "")
        return (f"consumed record is {{topic='{message.topic()}', "
                f"partition={message.partition()}, offset={message.offset()}{stamp}}}")
    if isinstance(record, SinkRecord):
        return (f"consumed record is {{topic='{record.topic}', "
                f"partition={record.kafka_partition}, offset={record.kafka_offset}, "
                f"timestamp={record.timestamp}, timestampType={record.timestamp_type}}}")
    if isinstance(record, SourceRecord) and not with_data:
        return (f"source record is {{topic='{record.topic}', "
                f"sourcePartition={record.source_partition}, "
                f"sourceOffset={record.source_offset}}}")
    if isinstance(record, SourceRecord):
        headers = ", ".join(f"{h.key}={h.value!r}" for h in record.headers)
        return (f"source record is SourceRecord{{sourcePartition={record.source_partition}, "
                f"sourceOffset={record.source_offset}}} ConnectRecord{{topic='{record.topic}', "
                f"kafkaPartition={record.kafka_partition}, key={record.key!r}, "
                f"keySchema={record.key_schema}, value={record.value!r}, "
                f"valueSchema={record.value_schema}, timestamp={record.timestamp}, "
                f"headers=[{headers}]}}")
    return "no record"
