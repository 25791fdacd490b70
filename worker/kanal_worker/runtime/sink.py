"""Runs a sink task: consume, convert, transform, write, and commit what is durable."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from itertools import repeat
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaTopicPartition

from kanal_worker.api.errors import ConnectError, DataError, RecordWriteError, RetriableError
from kanal_worker.api.plugins import Converter, SinkConnector, SinkTask
from kanal_worker.api.records import Header, SinkBatch, SinkRecord, TopicPartition
from kanal_worker.api.schema import Schema
from kanal_worker.config.connector import SinkSettings
from kanal_worker.config.worker import WorkerSettings, client_config
from kanal_worker.runtime.codec import Codec
from kanal_worker.runtime.errors import Failed, Stage
from kanal_worker.runtime.status import TargetState
from kanal_worker.runtime.task import StatusListener, TaskId, TaskRunner
from kanal_worker.runtime.transforms import sub_config

log = logging.getLogger(__name__)

DEFAULT_BATCH = 2000
TIMESTAMP_TYPES = {1: "CreateTime", 2: "LogAppendTime"}
FETCH_DEFAULTS = {
    # librdkafka backs a partition's fetching off for fetch.queue.backoff.ms (1 s) once
    # its queue is full; with a consumer as fast as a task that idles the stream. A short
    # backoff and a small queue keep the data flowing (and the memory low).
    "fetch.queue.backoff.ms": "20",
    "queued.min.messages": "5000",
    "queued.max.messages.kbytes": "2048",
}
"""Consumer defaults (``consumer.*`` worker keys and ``consumer.override.*`` win)."""

ManyDecoder = Callable[[list[bytes | None]], tuple[Schema | None, list[Any], bool] | None]
ManyValidator = Callable[[list[bytes | None]], bool | None]
_RECORD_SLOTS = frozenset({"topic", "kafka_partition", "key", "value", "key_schema",
                           "value_schema", "timestamp", "headers", "encoded_value",
                           "kafka_offset", "timestamp_type"})
_FAST_RECORDS = ({f.name for f in dataclasses.fields(SinkRecord)} == _RECORD_SLOTS
                 and not hasattr(SinkRecord, "__post_init__"))
"""Whether SinkRecords can be filled slot by slot (8x cheaper than the keyword call);
when a field is added to SinkRecord this turns False until the batch path sets it."""


def batch_methods(converter: Converter) -> tuple[ManyDecoder | None, ManyValidator | None]:
    """The converter's ``to_connect_many`` (a whole batch at once) and
    ``validate_many`` (whether a batch converts, without converting it), when the class
    that defines its ``to_connect`` also defines them: a subclass overriding only
    ``to_connect`` must not be bypassed."""
    for cls in type(converter).__mro__:
        if "to_connect" in cls.__dict__:
            many: ManyDecoder | None = (converter.to_connect_many  # type: ignore[attr-defined]
                                        if "to_connect_many" in cls.__dict__ else None)
            valid: ManyValidator | None = (
                converter.validate_many  # type: ignore[attr-defined]
                if many is not None and "validate_many" in cls.__dict__ else None)
            return many, valid
    return None, None


def _kafka(partitions: Iterable[TopicPartition]) -> list[KafkaTopicPartition]:
    return [KafkaTopicPartition(topic, partition) for topic, partition in partitions]


def group_id(connector: str) -> str:
    """Kafka Connect's consumer group for a sink connector."""
    return f"connect-{connector}"


class Context:
    def __init__(self, runner: SinkTaskRunner) -> None:
        self._runner = runner

    @property
    def task_id(self) -> str:
        return str(self._runner.id)

    def assignment(self) -> set[TopicPartition]:
        return set(self._runner.assignment)

    def request_commit(self) -> None:
        self._runner.commit_requested = True


class SinkTaskRunner(TaskRunner):
    def __init__(self, task_id: TaskId, config: Mapping[str, str], worker: Mapping[str, str],
                 worker_id: str, target: TargetState, on_status: StatusListener,
                 connector: type[SinkConnector[Any]]) -> None:
        super().__init__(task_id, config, worker, worker_id, target, on_status)
        self.connector = connector
        self.assignment: set[TopicPartition] = set()
        self.consumed: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.commit_requested = False
        self.paused = False
        """Paused by the target state (``PUT /connectors/{name}/pause``)."""
        self.retry_paused = False
        """Paused while a batch is retried; the consumer keeps polling meanwhile."""
        self.held: list[Message] = []
        """Messages a poll returned while the partitions were paused for a retry: they
        come after the batch being retried and are processed next."""
        self.polling = False
        """Inside ``consume``, where rebalance callbacks run."""
        self.active_topics: set[str] = set()
        """Topics records were consumed from (``GET /connectors/{name}/topics``)."""
        self.assigned_at: dict[TopicPartition, int] = {}
        """The consumer's position of each partition when it was assigned: until it
        moves, it may be left over from an earlier assignment and says nothing."""

    def execute(self) -> None:
        settings: SinkSettings = SinkSettings.parse(self.config)
        worker: WorkerSettings = WorkerSettings.parse(self.worker)
        overrides = sub_config(self.config, "consumer.override.")
        self.batch_size = int(overrides.pop("max.poll.records", DEFAULT_BATCH))
        self.build_pipeline(settings)
        self.keys_many, self.keys_valid = batch_methods(self.codec.key)
        self.values_many, self.values_valid = batch_methods(self.codec.value)
        self.task: SinkTask[Any] = self.connector.task_class(
            self.connector.settings.parse(self.config), Context(self))
        self.consumer = Consumer({
            **FETCH_DEFAULTS,
            # overrides go through client_config too: Java security keys get translated
            **(consumer_config := client_config(self.worker, "consumer", overrides)),
            "group.id": group_id(self.id.connector),
            "client.id": f"connector-consumer-{self.id}",
            "enable.auto.commit": "false",
            "auto.offset.reset": "earliest",
            # Java's default (librdkafka's is false): see _create_missing_topics
            "allow.auto.create.topics": "true",
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": "10000",
            "heartbeat.interval.ms": "2000",
            "error_cb": self.kafka_error,
            **self._membership(worker),
            **{k: v for k, v in consumer_config.items() if k in overrides},
        })
        self.cooperative = overrides.get("partition.assignment.strategy",
                                         "cooperative-sticky") == "cooperative-sticky"
        topics = (["^" + settings.topics_regex.removeprefix("^")] if settings.topics_regex
                  else settings.topics)
        if settings.topics_regex:
            re.compile(settings.topics_regex)
        try:
            if not settings.topics_regex:
                self._create_missing_topics(topics)
            self.consumer.subscribe(topics, on_assign=self._assigned, on_revoke=self._revoked,
                                    on_lost=self._lost)
            self._set(self.target.running_state)
            self._loop(worker.offset_flush_interval_ms / 1000)
            self._commit()
        finally:
            self._shutdown()

    def _create_missing_topics(self, topics: list[str]) -> None:
        """Ask for the topics' metadata, as Java's consumer does when it subscribes: with
        ``allow.auto.create.topics`` (and the broker's ``auto.create.topics.enable``) a
        missing topic is created then, so offsets of a topic subscribed to but never
        written can be set, as under Apache. librdkafka's subscription alone does not
        create them (confluentinc/librdkafka#3395)."""
        for topic in topics:
            try:
                self.consumer.list_topics(topic, timeout=10)
            except KafkaException as exc:  # the subscription reports an absent broker
                log.debug("Task %s: no metadata for %s: %s", self.id, topic, exc)

    def _membership(self, worker: WorkerSettings) -> dict[str, str]:
        """Static membership when a scheduler guarantees one owner per task.

        The replacement of a killed task then takes its partitions over at once and fences
        the old consumer. Standalone workers, which nothing coordinates, stay dynamic: two
        of them may share a connector's group. A dynamic member that dies holds its
        partitions until its session times out, so that timeout is the broker's smallest
        (``group.min.session.timeout.ms``, 6 s): a killed and restarted standalone worker
        consumes again within it.
        """
        if not worker.static_membership:
            return {"session.timeout.ms": "6000"}
        return {"group.instance.id": f"{self.id.connector}-{self.id.task}"}

    def _loop(self, commit_interval: float) -> None:
        next_commit = time.monotonic() + commit_interval
        while not self.stopping:
            self._follow_target()
            messages, self.held = self.held or self._consume(0.5), []
            if messages:
                self.kafka_reached()
                self._process(messages)
            if self.commit_requested or time.monotonic() >= next_commit:
                self.commit_requested = False
                self._commit()
                next_commit = time.monotonic() + commit_interval
            self._resume()

    def _consume(self, timeout: float) -> list[Message]:
        self.polling = True
        try:
            messages: list[Message] = self.consumer.consume(self.batch_size, timeout)
            return messages
        finally:
            self.polling = False

    def _follow_target(self) -> None:
        want_paused = self.target != TargetState.STARTED
        if want_paused != self.paused:
            if want_paused:
                self.consumer.pause(_kafka(self.assignment))
            elif not self.retry_paused:
                self.consumer.resume(_kafka(self.assignment))
            self.paused = want_paused
        self._set(self.target.running_state, detail=self.status.detail)

    def sleep(self, seconds: float) -> None:
        """Wait (less when the task stops) with every partition paused, polling all
        along as Apache's WorkerSinkTask does: however long a retry lasts, the consumer
        stays in its group (librdkafka leaves it after ``max.poll.interval.ms`` without a
        poll). The partitions stay paused until the batch is through (``_resume``)."""
        if self.polling:  # a rebalance callback runs inside a poll already
            super().sleep(seconds)
            return
        if not self.retry_paused:
            self.consumer.pause(_kafka(self.assignment))
            self.retry_paused = True
        end = time.monotonic() + seconds
        while not self.stopping and (left := end - time.monotonic()) > 0:
            self.held.extend(self._consume(min(left, 0.5)))

    def _resume(self) -> None:
        """Nothing is being retried (any more): fetch again, unless the target is paused."""
        if self.retry_paused:
            self.retry_paused = False
            if not self.paused:
                self.consumer.resume(_kafka(self.assignment))

    def _process(self, messages: list[Message]) -> None:
        started = time.perf_counter()
        deferred = self._deferred(messages)
        if deferred is not None:
            batch, last = deferred
            kept = messages
        else:
            converted = self._to_records(messages)
            if converted is None:
                records, kept, last = self._one_by_one(messages)
            else:
                records, kept, last = converted
                if self.chain:
                    records, kept = self._transform_all(records, kept)
            batch = SinkBatch(records)
        self.metrics.records_in += len(messages)
        self.active_topics.update(tp.topic for tp in last)
        if batch and not self._write(batch, kept):
            return
        # a partition revoked during a retry is another task's now: its offsets too
        self.consumed.update((tp, offset) for tp, offset in last.items()
                             if tp in self.assignment)
        self.metrics.records_out += len(batch)
        self.metrics.batches += 1
        self.metrics.batch_seconds += time.perf_counter() - started

    def _deferred(self, messages: list[Message]
                  ) -> tuple[SinkBatch, dict[TopicPartition, int]] | None:
        """A batch whose records are built only if the task looks at them, and the next
        offset per partition, when the whole poll is known to convert without building
        them: no transforms, no consumer errors, no headers, and converters that
        validate a batch at once. None otherwise (the records are built now)."""
        keys_valid, values_valid = self.keys_valid, self.values_valid
        if self.chain or keys_valid is None or values_valid is None or not _FAST_RECORDS:
            return None
        if any(map(Message.error, messages)) or any(map(Message.headers, messages)):
            return None
        raw_values = list(map(Message.value, messages))
        plain_json = values_valid(raw_values)
        if plain_json is None or keys_valid(list(map(Message.key, messages))) is None:
            return None
        # the consumer's position is the offset after the last message it handed out
        assigned_at = self.assigned_at
        last = {tp: offset for tp, offset in self._positions(self.assignment).items()
                if offset >= 0 and offset != assigned_at.get(tp)}

        def build() -> list[SinkRecord]:
            converted = self._to_records(messages)
            if converted is None:
                raise ConnectError(f"Task {self.id}: a batch validated as a whole failed "
                                   "to convert")
            return converted[0]
        def coordinates() -> list[tuple[str, int, int]]:
            return list(zip(map(Message.topic, messages), map(Message.partition, messages),
                            map(Message.offset, messages), strict=True))  # type: ignore[arg-type]
        encoded = raw_values if plain_json else None
        return SinkBatch.deferred(len(messages), build, encoded, coordinates), last  # type: ignore[arg-type]

    def _one_by_one(self, messages: list[Message]
                    ) -> tuple[list[SinkRecord], list[Message], dict[TopicPartition, int]]:
        """Records (and the messages they came from) and the next offset per partition,
        one message at a time: every failure is reported with its own message."""
        batch: list[SinkRecord] = []
        kept: list[Message] = []
        last: dict[TopicPartition, int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                self._consumer_error(error)
                continue
            last[TopicPartition(message.topic(), message.partition())] = message.offset() + 1
            record = self._to_record(message)
            if record is not None:
                batch.append(record)
                kept.append(message)
        return batch, kept, last

    def _to_records(self, messages: list[Message]
                    ) -> tuple[list[SinkRecord], list[Message], dict[TopicPartition, int]] | None:
        """What ``_one_by_one`` returns before transforms, with keys and values converted
        a batch at a time; None when a message needs the one-by-one path (a consumer
        error, a converter without ``to_connect_many``, an item it cannot convert)."""
        keys_many, values_many = self.keys_many, self.values_many
        if keys_many is None or values_many is None or not _FAST_RECORDS:
            return None
        for message in messages:
            if message.error() is not None:
                return None
        raw_values = [message.value() for message in messages]
        keys = keys_many([message.key() for message in messages])
        values = values_many(raw_values)
        if keys is None or values is None:
            return None
        key_schema, key_values, _ = keys
        value_schema, value_values, plain_json = values
        new = object.__new__
        types = TIMESTAMP_TYPES
        batch: list[SinkRecord] = []
        kept: list[Message] = []
        last: dict[tuple[str, int], int] = {}
        for message, key, value, encoded in zip(
                messages, key_values, value_values,
                raw_values if plain_json else repeat(None), strict=False):
            topic = message.topic()
            partition = message.partition()
            offset = message.offset()
            last[topic, partition] = offset
            headers: list[Header] = []
            raw_headers = message.headers()
            if raw_headers:
                converted = self.errors.execute(
                    partial(self._headers, topic, raw_headers), Stage.HEADER_CONVERTER,
                    self.codec.header_class, message=message)
                if isinstance(converted, Failed):
                    continue
                headers = converted
            ts_type, timestamp = message.timestamp()
            record: SinkRecord = new(SinkRecord)
            record.topic = topic
            record.kafka_partition = partition
            record.kafka_offset = offset
            record.key = key
            record.key_schema = key_schema
            record.value = value
            record.value_schema = value_schema
            record.timestamp = timestamp if ts_type else None
            record.timestamp_type = types.get(ts_type, "NoTimestampType")
            record.headers = headers
            record.encoded_value = encoded
            batch.append(record)
            kept.append(message)
        return batch, kept, {TopicPartition(t, p): o + 1 for (t, p), o in last.items()}

    def _positions(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        positions = self.consumer.position(_kafka(partitions))
        return {TopicPartition(tp.topic, tp.partition): tp.offset for tp in positions}

    def _transform_all(self, batch: list[SinkRecord], kept: list[Message]
                       ) -> tuple[list[SinkRecord], list[Message]]:
        records: list[SinkRecord] = []
        messages: list[Message] = []
        for record, message in zip(batch, kept, strict=True):
            result = self._transform(record, message)
            if result is not None:
                records.append(result)
                messages.append(message)
        return records, messages

    def _consumer_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise KafkaException(error)
        log.warning("Task %s: consumer error: %s", self.id, error)

    def _to_record(self, message: Message) -> SinkRecord | None:
        topic = message.topic()
        codec: Codec = self.codec
        key = self.errors.execute(partial(codec.key.to_connect, topic, message.key()),
                                  Stage.KEY_CONVERTER, codec.key_class, message=message)
        if isinstance(key, Failed):
            return None
        value = self.errors.execute(partial(codec.value.to_connect, topic, message.value()),
                                    Stage.VALUE_CONVERTER, codec.value_class, message=message)
        if isinstance(value, Failed):
            return None
        headers: list[Header] = []
        raw_headers = message.headers()
        if raw_headers:
            converted = self.errors.execute(partial(self._headers, topic, raw_headers),
                                            Stage.HEADER_CONVERTER, codec.header_class,
                                            message=message)
            if isinstance(converted, Failed):
                return None
            headers = converted
        ts_type, timestamp = message.timestamp()
        record = SinkRecord(
            topic=topic, kafka_partition=message.partition(), kafka_offset=message.offset(),
            key=key.value, key_schema=key.schema, value=value.value,
            value_schema=value.schema, timestamp=timestamp if ts_type else None,
            timestamp_type=TIMESTAMP_TYPES.get(ts_type, "NoTimestampType"), headers=headers,
            encoded_value=message.value() if value.plain_json else None)
        if not self.chain:
            return record
        return self._transform(record, message)

    def _transform(self, record: SinkRecord, message: Message) -> SinkRecord | None:
        return self.errors.transform(self.chain, record, message=message)

    def _headers(self, topic: str, raw_headers: list[tuple[str, bytes | None]]
                 ) -> list[Header]:
        converted = (self.codec.header.to_connect_header(topic, name, data)
                     for name, data in raw_headers)
        return [Header(name, c.value, c.schema) for (name, _), c in zip(raw_headers, converted,
                                                                        strict=True)]

    def _write(self, batch: SinkBatch, messages: list[Message]) -> bool:
        """Write ``batch`` (from ``messages``, one each); False when stopping before it
        was written."""
        attempt = 0
        while True:
            try:
                self.task.write(batch)
                if attempt:
                    self._set(self.status.state)
                return True
            except RetriableError as exc:
                if self.stopping:
                    return False
                self.backoff(attempt, exc, "write")
                attempt += 1
                if any(TopicPartition(topic, partition) not in self.assignment
                       for topic, partition, _ in batch.coordinates):
                    # revoked while retrying: those records are another task's now
                    kept = [(r, m) for r, m in zip(batch, messages, strict=True)
                            if r.topic_partition in self.assignment]
                    batch = SinkBatch(r for r, _ in kept)
                    messages = [m for _, m in kept]
            except RecordWriteError as exc:
                origin = {id(record): message
                          for record, message in zip(batch, messages, strict=True)}
                for record, error in exc.failures:
                    self.errors.failure(Stage.TASK_PUT, type(self.task).__name__,
                                        error if isinstance(error, Exception)
                                        else DataError(str(error)),
                                        message=origin.get(id(record)),
                                        record=record if isinstance(record, SinkRecord)
                                        else None)
                return True

    def _commit(self, partitions: set[TopicPartition] | None = None) -> None:
        """Commit what the task says is durable (and the DLQ holds)."""
        offsets = {tp: o for tp, o in self.consumed.items()
                   if partitions is None or tp in partitions}
        if not offsets:
            return
        attempt = 0
        while True:
            try:
                if self.errors.dlq is not None:
                    self.errors.dlq.flush()
                safe = self.task.pre_commit(dict(offsets))
                break
            except RetriableError as exc:
                if self.stopping and attempt >= 3:
                    log.warning("Task %s: stopping without committing (%s); the records "
                                "will be delivered again", self.id, exc)
                    return
                self.backoff(attempt, exc, "commit")
                attempt += 1
        fresh = [KafkaTopicPartition(tp.topic, tp.partition, offset)
                 for tp, offset in safe.items() if self.committed.get(tp) != offset]
        if not fresh:
            return
        try:
            self.consumer.commit(offsets=fresh, asynchronous=False)
        except KafkaException as exc:
            log.warning("Task %s: offset commit failed (%s); will retry", self.id, exc)
            return
        for tp in fresh:
            self.committed[TopicPartition(tp.topic, tp.partition)] = tp.offset
        self._set(self.status.state)

    def _assigned(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        added = [TopicPartition(p.topic, p.partition) for p in partitions]
        self.assignment.update(added)
        self.assigned_at.update(self._positions(added))
        log.info("Task %s: assigned %s", self.id, ", ".join(map(str, added)) or "nothing")
        self.task.open(added)
        if self.paused or self.retry_paused:
            # assign first: pausing partitions not yet assigned would be forgotten
            if self.cooperative:
                consumer.incremental_assign(partitions)
            else:
                consumer.assign(partitions)
            consumer.pause(partitions)

    def _revoked(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        removed = {TopicPartition(p.topic, p.partition) for p in partitions}
        self._commit(removed)
        self._forget(removed)

    def _lost(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        self._forget({TopicPartition(p.topic, p.partition) for p in partitions})

    def _forget(self, removed: set[TopicPartition]) -> None:
        self.task.close(sorted(removed))
        self.assignment -= removed
        self.held = [m for m in self.held
                     if TopicPartition(m.topic(), m.partition()) not in removed]
        for tp in removed:
            self.consumed.pop(tp, None)
            self.committed.pop(tp, None)
            self.assigned_at.pop(tp, None)

    def _shutdown(self) -> None:
        """Leave the group first (its revoke callback commits), then release the task."""
        consumer = getattr(self, "consumer", None)
        try:
            if consumer is not None:
                consumer.close()
        finally:
            task = getattr(self, "task", None)
            if task is not None:
                task.close(sorted(self.assignment))
                task.stop()
