"""Runs a source task: poll, transform, convert, produce, and store acknowledged offsets."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from kanal_worker.api.errors import ConfigError, ConnectError, RetriableError
from kanal_worker.api.plugins import SourceConnector, SourceTask
from kanal_worker.api.records import SourceBatch, SourceRecord
from kanal_worker.config.connector import SourceSettings
from kanal_worker.config.worker import WorkerSettings
from kanal_worker.runtime.errors import Failed, Stage
from kanal_worker.runtime.offsets import (
    JAVA_PARTITIONER,
    KafkaOffsetStore,
    OffsetStore,
    partition_key,
)
from kanal_worker.runtime.status import TargetState
from kanal_worker.runtime.task import StatusListener, TaskId, TaskRunner

log = logging.getLogger(__name__)


class Context:
    def __init__(self, runner: SourceTaskRunner) -> None:
        self._runner = runner

    @property
    def task_id(self) -> str:
        return str(self._runner.id)

    def offset(self, source_partition: Mapping[str, Any]) -> dict[str, Any] | None:
        return self._runner.offsets.get(self._runner.id.connector, dict(source_partition))

    def request_commit(self) -> None:
        self._runner.commit_requested = True


class SourceTaskRunner(TaskRunner):
    def __init__(self, task_id: TaskId, config: Mapping[str, str], worker: Mapping[str, str],
                 worker_id: str, target: TargetState, on_status: StatusListener,
                 connector: type[SourceConnector[Any]], offsets: OffsetStore) -> None:
        super().__init__(task_id, config, worker, worker_id, target, on_status)
        self.connector = connector
        self.offsets = offsets
        self.pending: dict[str, dict[str, Any]] = {}
        self._partition_keys: tuple[dict[str, Any], dict[str, Any], str] | None = None
        """The last source partition seen, a copy of it and its key: tasks reuse one map
        for a partition, so its key is computed once, not per record."""
        self.delivery_error: KafkaError | None = None
        self.active_topics: set[str] = set()
        """Topics records were produced to (``GET /connectors/{name}/topics``)."""
        self.commit_requested = False

    def execute(self) -> None:
        settings: SourceSettings = SourceSettings.parse(self.config)
        worker: WorkerSettings = WorkerSettings.parse(self.worker)
        self.build_pipeline(settings)
        producer_config = self.producer_config()
        self.transactional = worker.exactly_once_source == "enabled"
        if self.transactional:
            if not isinstance(self.offsets, KafkaOffsetStore):
                raise ConfigError("exactly.once.source.support",
                                  "exactly-once sources keep offsets in Kafka; set "
                                  "offset.storage.topic in the worker configuration")
            producer_config["transactional.id"] = (
                f"{worker.group_id}-{self.id.connector}-{self.id.task}")
        self.producer = Producer({
            "client.id": f"connector-producer-{self.id}",
            "enable.idempotence": "true",
            "linger.ms": "5",
            "compression.type": "lz4",
            "partitioner": JAVA_PARTITIONER,
            "error_cb": self.kafka_error,
            **producer_config,
            # only failures need the delivery callback, set once for the producer: one
            # passed with each record costs ~0.2 µs, and a report per record ~1 µs
            "on_delivery": self._delivered,
            "delivery.report.only.error": True,
        })
        if self.transactional:
            # fences any zombie instance of this task still producing somewhere
            self.producer.init_transactions(60)
        self.in_transaction = False
        self.offsets.refresh(through_open_transactions=True)
        self._start_task()
        try:
            self._loop(settings, worker)
            self._commit()
        finally:
            self.task.stop()
            if self.in_transaction:
                self.producer.abort_transaction(10)
            self.producer.flush(10)

    def _start_task(self) -> None:
        self.task: SourceTask[Any] = self.connector.task_class(
            self.connector.settings.parse(self.config), Context(self))
        self.task.start()

    def _loop(self, settings: SourceSettings, worker: WorkerSettings) -> None:
        interval = (worker.offset_flush_interval_ms if not self.transactional
                    or settings.transaction_boundary == "interval"
                    else 0) / 1000
        next_commit = time.monotonic() + interval
        attempt = 0
        while not self.stopping:
            self._set(self.target.running_state, detail=self.status.detail)
            if self.target != TargetState.STARTED:
                self.sleep(0.2)
                continue
            try:
                records = self.task.poll()
            except RetriableError as exc:
                self.backoff(attempt, exc, "poll")
                attempt += 1
                continue
            if attempt:
                attempt = 0
                self._set(self.status.state)  # the retried poll succeeded: drop its note
            if records:
                self._send(records)
            else:
                self.producer.poll(0.05)
            if time.monotonic() >= next_commit or self.commit_requested:
                self.commit_requested = False
                self._commit()
                next_commit = time.monotonic() + interval

    def _send(self, polled: list[SourceRecord] | SourceBatch) -> None:
        started = time.perf_counter()
        if self.transactional and not self.in_transaction:
            self.producer.begin_transaction()
            self.in_transaction = True
        if not (isinstance(polled, SourceBatch) and self._send_columns(polled)):
            self._send_records(polled if isinstance(polled, list) else polled.records())
        self.producer.poll(0)
        self.metrics.records_in += len(polled)
        self.metrics.batches += 1
        self.metrics.batch_seconds += time.perf_counter() - started

    def _send_columns(self, batch: SourceBatch) -> bool:
        """Convert and produce a batch's values without a record for each; False, with
        nothing produced, where records are needed: transforms, or a value the converter
        refuses (reported, with retries, one record at a time)."""
        if self.chain:
            return False
        topic, codec = batch.topic, self.codec
        try:
            key = codec.key.from_connect(topic, None, None)
            values = codec.value.from_connect_batch(topic, batch.value_schema, batch.values)
        except Exception:
            return False
        produce, timestamp = self.producer.produce, batch.timestamp or 0
        # _hand_over's positional call, inlined (a method call per record shows in the
        # profile); _hand_over itself takes over while the producer's queue is full
        for value in values:
            try:
                produce(topic, value, key, -1, None, None, timestamp)
            except BufferError:
                self._hand_over(topic, value, key, -1, timestamp, None)
        self.active_topics.add(topic)
        self.metrics.records_out += len(values)
        self.pending[self._partition_key(batch.source_partition)] = batch.source_offsets[-1]
        return True

    def _send_records(self, records: list[SourceRecord]) -> None:
        converted = None if self.chain else self._convert_all(records)
        if converted is not None:
            for record, (key, value, headers) in zip(records, converted, strict=True):
                self._produce(record, key, value, headers)
                self._pending(record)
        else:
            for original in records:
                transformed = self._transform(original)
                if transformed is not None:
                    payload = self._convert(transformed)
                    if payload is not None:
                        self._produce(transformed, *payload)
                self._pending(original)

    def _produce(self, record: SourceRecord, key: bytes | None, value: bytes | None,
                 headers: list[tuple[str, bytes | None]]) -> None:
        partition = record.kafka_partition
        self._hand_over(record.topic, value, key, -1 if partition is None else partition,
                        record.timestamp or 0, headers or None)
        self.active_topics.add(record.topic)
        self.metrics.records_out += 1

    def _hand_over(self, topic: str, value: bytes | None, key: bytes | None, partition: int,
                   timestamp: int, headers: list[tuple[str, bytes | None]] | None) -> None:
        """``produce``, waiting while the producer's queue is full.

        Positional, in confluent-kafka's order (topic, value, key, partition, on_delivery,
        callback, timestamp, headers): keywords cost ~0.4 µs a record to parse."""
        while True:
            try:
                self.producer.produce(topic, value, key, partition, None, None, timestamp,
                                      headers)
                return
            except BufferError:
                self.producer.poll(0.1)

    def _pending(self, record: SourceRecord) -> None:
        """Remember ``record``'s offset as its partition's latest (committed once acked)."""
        self.pending[self._partition_key(record.source_partition)] = record.source_offset

    def _partition_key(self, partition: dict[str, Any]) -> str:
        cached = self._partition_keys
        if cached is None or cached[0] is not partition or cached[1] != partition:
            cached = self._partition_keys = (partition, dict(partition),
                                             partition_key(partition))
        return cached[2]

    def _convert_all(self, records: list[SourceRecord]
                     ) -> list[tuple[bytes | None, bytes | None,
                                     list[tuple[str, bytes | None]]]] | None:
        """Every record's key, value and headers at once; None when one of them fails
        (``_convert`` then reports it with retries, one record at a time)."""
        codec = self.codec
        key_from, value_from = codec.key.from_connect, codec.value.from_connect
        header_from = codec.header.from_connect_header
        try:
            return [(key_from(r.topic, r.key_schema, r.key),
                     value_from(r.topic, r.value_schema, r.value),
                     [(h.key, header_from(r.topic, h.key, h.schema, h.value))
                      for h in r.headers])
                    for r in records]
        except Exception:
            return None

    def _transform(self, record: SourceRecord) -> SourceRecord | None:
        return self.errors.transform(self.chain, record)

    def _convert(self, record: SourceRecord
                 ) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]] | None:
        codec = self.codec
        key = self.errors.execute(
            partial(codec.key.from_connect, record.topic, record.key_schema, record.key),
            Stage.KEY_CONVERTER, codec.key_class, record=record)
        if isinstance(key, Failed):
            return None
        value = self.errors.execute(
            partial(codec.value.from_connect, record.topic, record.value_schema, record.value),
            Stage.VALUE_CONVERTER, codec.value_class, record=record)
        if isinstance(value, Failed):
            return None
        headers = self.errors.execute(
            lambda: [(h.key, codec.header.from_connect_header(record.topic, h.key, h.schema,
                                                              h.value))
                     for h in record.headers],
            Stage.HEADER_CONVERTER, codec.header_class, record=record)
        if isinstance(headers, Failed):
            return None
        return key, value, headers

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        # a batch fails as a whole; keep the record's own error, not its neighbours'
        replaceable = (self.delivery_error is None or
                       self.delivery_error.code() == KafkaError._INVALID_DIFFERENT_RECORD)
        if error is not None and replaceable:
            self.delivery_error = error

    def _commit(self) -> None:
        if self.transactional:
            self._commit_transaction()
            return
        self._commit_acknowledged()

    def _commit_acknowledged(self) -> None:
        """Store offsets once every record produced so far is acknowledged."""
        if not self.pending:
            return
        remaining = self.producer.flush(30)
        if self.errors.dlq is not None:
            self.errors.dlq.flush()
        if self.delivery_error is not None:
            raise ConnectError(f"Kafka did not accept records: {self.delivery_error}; offsets "
                               "were not committed, so they will be produced again")
        if remaining:
            log.warning("Task %s: %d records not yet acknowledged; offsets wait", self.id,
                        remaining)
            return
        offsets: dict[str, dict[str, Any] | None] = dict(self.pending)
        self.offsets.put(self.id.connector, offsets)
        self.pending.clear()
        self.task.commit()
        self.kafka_reached()

    def _commit_transaction(self) -> None:
        """Commit the records and their offsets atomically; on an abortable failure,
        abort and restart the task from the last committed offsets."""
        if not self.in_transaction:
            return
        assert isinstance(self.offsets, KafkaOffsetStore)
        offsets: dict[str, dict[str, Any] | None] = dict(self.pending)
        if self.errors.dlq is not None:
            self.errors.dlq.flush()
        try:
            self.offsets.stage(self.producer, self.id.connector, offsets)
            self.producer.commit_transaction(60)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if not error.txn_requires_abort():
                raise
            log.warning("Task %s: transaction aborted (%s); replaying from the last "
                        "committed offsets", self.id, error)
            self.producer.abort_transaction(60)
            self.in_transaction = False
            self.pending.clear()
            self.task.stop()
            self.offsets.refresh(through_open_transactions=True)
            self._start_task()
            return
        self.in_transaction = False
        self.offsets.applied(self.id.connector, offsets)
        self.pending.clear()
        self.task.commit()
        self.kafka_reached()
