"""Runs a sink task: consume, convert, transform, write, and commit what is durable."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from kanal_worker import native
from kanal_worker.api.errors import (
    ConfigError,
    ConnectError,
    DataError,
    RecordWriteError,
    RetriableError,
)
from kanal_worker.api.plugins import Converter, SchemaAndValue, SinkConnector, SinkTask
from kanal_worker.api.records import (
    ConvertedBatch,
    Header,
    SinkBatch,
    SinkColumns,
    SinkRecord,
    TopicPartition,
)
from kanal_worker.config.connector import SinkSettings
from kanal_worker.config.worker import WorkerSettings, client_config
from kanal_worker.runtime.codec import Codec
from kanal_worker.runtime.errors import Failed, Stage
from kanal_worker.runtime.fetch import ConsumedRecord, Fetch, Fetched, RawHeaders
from kanal_worker.runtime.status import TargetState
from kanal_worker.runtime.task import StatusListener, TaskId, TaskRunner
from kanal_worker.runtime.transforms import Step, sub_config
from kanal_worker.transforms._util import MapPlanChain, map_plan_chains

log = logging.getLogger(__name__)

DEFAULT_BATCH = 2000
POLL_BYTES = 512 * 1024
"""Roughly the most a poll's values take, unless ``max.poll.records`` is set: a poll holds
at most ``DEFAULT_BATCH`` records, and fewer when the last poll's records were large. A poll's
records are held several times over while they are converted and written (the values,
what they decode to, the output), so big records in big polls were much of a task's
memory above its baseline: 2000 600-byte records a poll peaked 3-5 MB above 870."""
MIN_POLL = 100
"""The fewest records a poll is sized for, and the fewest the size is learnt from."""
FETCH_DEFAULTS = {
    # librdkafka backs a partition's fetching off for fetch.queue.backoff.ms (1 s) once
    # its queue is full, and a task drains a 1 MB queue in a few milliseconds: any longer
    # backoff idles the stream (20 ms held a bare consumer to ~0.8-1.0M records/s here,
    # 1 ms let it reach ~1.4M at the same CPU per record; 0 spins; a task that stops
    # taking records with a full queue costs ~3% of a core in rechecks). A small queue keeps
    # the memory low: a fetch can overshoot the queue's bound by a response, so at 2 MB a
    # task with 600-byte records peaked 16 MB above one at 1 MB.
    "fetch.queue.backoff.ms": "1",
    "queued.min.messages": "5000",
    "queued.max.messages.kbytes": "1024",
    # The queue's bound counts records, but each partition's part of a fetch response
    # (up to this many bytes, compressed) is decompressed whole and held until its last
    # record is freed: JSON with its schema in every record compresses ~10:1, so Java's
    # 1 MB held a task at 83 MB, 64 KB at 69 MB (other records: 70 -> 64 MB), at the same
    # records/s here. A partition then moves at most 64 KB per fetch round trip (32 MB/s
    # at 2 ms): raise it (consumer.max.partition.fetch.bytes) for a far-away broker.
    "max.partition.fetch.bytes": "65536",
}
"""Consumer defaults (``consumer.*`` worker keys and ``consumer.override.*`` win)."""
REBALANCING = frozenset({KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION})
"""Commit errors of a member whose group is rebalancing: it commits once it has rejoined."""
FINAL_COMMIT_SECONDS = 10.0
"""How long a stopping task takes part in a rebalance to commit what it has written."""
NOT_THE_RECORDS = (RetriableError, ConfigError)
"""Converter failures that are no record's fault and never go to ``errors.*``: a service
the converter needs is down (the poll is converted again after a backoff) or one of its
settings is wrong, e.g. refused registry credentials (the task fails)."""


def poll_size(records: int, value_bytes: int, max_poll_records: int) -> int:
    """How many records the next poll asks for, after one of ``records`` records whose
    values took ``value_bytes``: as many as fit in ``POLL_BYTES``, at least ``MIN_POLL``,
    never more than ``max_poll_records``."""
    per_record = max(value_bytes // max(records, 1), 1)
    return min(max_poll_records, max(MIN_POLL, POLL_BYTES // per_record))


def _to_connect_batch(converter: Converter, topic_runs: list[tuple[str, int, int]],
                      data: list[bytes | None]) -> ConvertedBatch:
    """``data`` converted by ``converter``, a batch per run of one topic
    (``Fetched.topic_runs``)."""
    parts: list[ConvertedBatch] = []
    for topic, start, end in topic_runs:
        part = converter.to_connect_batch(topic, data[start:end])
        if len(part.schemas) != end - start:
            raise ConnectError(f"{type(converter).__name__}.to_connect_batch converted "
                               f"{len(part.schemas)} of {end - start} items")
        parts.append(part)
    return ConvertedBatch.concat(parts)


def _column(converted: list[SchemaAndValue]) -> ConvertedBatch:
    return ConvertedBatch([item.schema for item in converted],
                          [item.value for item in converted])


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

    def committed(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        try:
            found = self._runner.consumer.committed(
                [KafkaTopicPartition(tp.topic, tp.partition) for tp in partitions], timeout=30)
        except KafkaException as exc:
            raise RetriableError(f"Could not read the committed offsets: {exc}") from None
        return {TopicPartition(tp.topic, tp.partition): tp.offset if tp.offset >= 0 else None
                for tp in found}

    def offset(self, offsets: dict[TopicPartition, int]) -> None:
        self._runner.starts.update(offsets)


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
        self.starts: dict[TopicPartition, int] = {}
        """Offsets the task asked to start partitions at from ``open``."""
        self.paused = False
        """Paused by the target state (``PUT /connectors/{name}/pause``)."""
        self.retry_paused = False
        """Paused while a batch is retried; the consumer keeps polling meanwhile."""
        self.held: list[Fetched] = []
        """Records polls returned while the partitions were paused for a retry: they come
        after the batch being retried and are processed next."""
        self.polling = False
        """Inside ``consume``, where rebalance callbacks run."""
        self.active_topics: set[str] = set()
        """Topics records were consumed from (``GET /connectors/{name}/topics``)."""
        self._plan_chains_of: list[Step] | None = None
        self._plan_chains: dict[int, MapPlanChain] = {}

    def execute(self) -> None:
        settings: SinkSettings = SinkSettings.parse(self.config)
        worker: WorkerSettings = WorkerSettings.parse(self.worker)
        overrides = sub_config(self.config, "consumer.override.")
        chosen = overrides.pop("max.poll.records", None)
        self.batch_size = DEFAULT_BATCH if chosen is None else int(chosen)
        self.sizes_polls = chosen is None
        """Whether polls are sized by their bytes (``poll_size``); a ``max.poll.records``
        the connector or its user chose is each poll's size as it is."""
        self.build_pipeline(settings)
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
            # A member learns of a rebalance from its next heartbeat, and a cooperative one
            # takes two: when a connector's second task joins, the first keeps every
            # partition until then. Frequent heartbeats let both tasks run within a second.
            "heartbeat.interval.ms": "500",
            "error_cb": self.kafka_error,
            **self._membership(worker),
            **{k: v for k, v in consumer_config.items() if k in overrides},
        })
        self.fetch = Fetch(self.consumer)
        self.cooperative = overrides.get("partition.assignment.strategy",
                                         "cooperative-sticky") == "cooperative-sticky"
        topics = (["^" + settings.topics_regex.removeprefix("^")] if settings.topics_regex
                  else settings.topics)
        if settings.topics_regex:
            re.compile(settings.topics_regex)
        try:
            if not settings.topics_regex:
                self._create_missing_topics(topics)
            self.ready_to_subscribe()
            self.consumer.subscribe(topics, on_assign=self._assigned, on_revoke=self._revoked,
                                    on_lost=self._lost)
            self._set(self.target.running_state)
            self._loop(worker.offset_flush_interval_ms / 1000)
            self._commit(final=True)
        finally:
            self._shutdown()

    def ready_to_subscribe(self) -> None:
        """Called once the task and its consumer are built, before the consumer joins the
        connector's group. A task process waits there for its siblings (runtime/process.py
        ``StartBarrier``); a thread goes on at once."""

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
            fetched = Fetched.concat(self.held) if self.held else self._consume(0.5)
            self.held = []
            if fetched:
                self.kafka_reached()
                self._process(fetched)
            if self.commit_requested or time.monotonic() >= next_commit:
                self.commit_requested = False
                self._commit()
                next_commit = time.monotonic() + commit_interval
            self._resume()

    def _consume(self, timeout: float) -> Fetched:
        self.polling = True
        try:
            fetched, events = self.fetch.poll(self.batch_size, timeout)
        finally:
            self.polling = False
        for event in events:
            self._consumer_error(event)
        if self.sizes_polls and len(fetched) >= MIN_POLL:
            self.batch_size = poll_size(len(fetched), fetched.value_bytes, DEFAULT_BATCH)
        return fetched

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
            if fetched := self._consume(min(left, 0.5)):
                self.held.append(fetched)

    def _resume(self) -> None:
        """Nothing is being retried (any more): fetch again, unless the target is paused."""
        if self.retry_paused:
            self.retry_paused = False
            if not self.paused:
                self.consumer.resume(_kafka(self.assignment))

    def _process(self, fetched: Fetched) -> None:
        """One poll: convert it as a batch, transform, write, and note the next offset
        of every partition it came from as consumed."""
        started = time.perf_counter()
        self.metrics.records_in += len(fetched)
        # the one offset rule: after the last record of each partition, whatever
        # became of it (written, dropped by a transform, sent to the DLQ)
        last = {TopicPartition(*tp): offset + 1
                for tp, offset in fetched.last_offsets().items()}
        converted = self._converted(fetched)
        if converted is None:
            return
        batch, kept = converted
        if self.chain:
            batch, kept = self._transform_all(batch, kept)
        self.active_topics.update(topic for topic, _ in last)
        if batch and not self._write(batch, kept):
            return
        # a partition revoked during a retry is another task's now: its offsets too
        self.consumed.update((tp, offset) for tp, offset in last.items()
                             if tp in self.assignment)
        self.metrics.records_out += len(batch)
        self.metrics.batches += 1
        self.metrics.batch_seconds += time.perf_counter() - started

    def _converted(self, fetched: Fetched) -> tuple[SinkBatch, Fetched] | None:
        """``_convert``, retried with backoff while a converter's service (a schema
        registry) is unreachable; None when stopping first (the poll is not consumed)."""
        attempt = 0
        while True:
            try:
                converted = self._convert(fetched)
            except RetriableError as exc:
                if self.stopping:
                    return None
                self.backoff(attempt, exc, "converting records")
                attempt += 1
                continue
            if attempt:
                self._set(self.status.state)
            return converted

    def _convert(self, fetched: Fetched) -> tuple[SinkBatch, Fetched]:
        """The records of ``fetched`` as one batch, and the records it holds (all of them,
        or those that converted).

        Keys and values are converted a batch at a time (``Converter.to_connect_batch``,
        per run of one topic); when that fails, the poll is converted record by record
        under ``errors.*`` so each failure is reported with its own message.
        """
        raw_values = fetched.values
        try:
            headers: list[list[Header] | None] = (
                [self._headers(topic, raw) if raw else None
                 for topic, raw in zip(fetched.topics, fetched.headers, strict=True)]
                if fetched.headers is not None else [None] * len(fetched))
            topic_runs = fetched.topic_runs()
            keys = _to_connect_batch(self.codec.key, topic_runs, fetched.keys)
            values = _to_connect_batch(self.codec.value, topic_runs, raw_values)
        except NOT_THE_RECORDS:
            raise
        except Exception:
            return self._one_by_one(fetched)
        unknown: list[bytes | None] = [None] * len(fetched)
        return self._batch(fetched, headers, keys, values,
                           raw_values if values.plain_json else unknown,
                           raw_values if values.verbatim else unknown), fetched

    def _one_by_one(self, fetched: Fetched) -> tuple[SinkBatch, Fetched]:
        """``_convert`` record by record, as Apache does: key, value, headers, each under
        ``errors.*``; a record that failed is left out (reported, or the task fails)."""
        codec: Codec = self.codec
        kept: list[int] = []
        keys: list[SchemaAndValue] = []
        values: list[SchemaAndValue] = []
        headers: list[list[Header] | None] = []
        for row, message in enumerate(fetched.rows()):
            topic = message.topic()
            key = self.errors.execute(partial(codec.key.to_connect, topic, message.key()),
                                      Stage.KEY_CONVERTER, codec.key_class, message=message,
                                      raising=NOT_THE_RECORDS)
            if isinstance(key, Failed):
                continue
            value = self.errors.execute(
                partial(codec.value.to_connect, topic, message.value()),
                Stage.VALUE_CONVERTER, codec.value_class, message=message,
                raising=NOT_THE_RECORDS)
            if isinstance(value, Failed):
                continue
            raw_headers = message.headers()
            converted = None
            if raw_headers:
                result = self.errors.execute(partial(self._headers, topic, raw_headers),
                                             Stage.HEADER_CONVERTER, codec.header_class,
                                             message=message)
                if isinstance(result, Failed):
                    continue
                converted = result
            kept.append(row)
            keys.append(key)
            values.append(value)
            headers.append(converted)
        converted_ones = fetched.select(kept)
        encoded = [raw if value.plain_json else None
                   for raw, value in zip(converted_ones.values, values, strict=True)]
        return self._batch(converted_ones, headers, _column(keys), _column(values), encoded,
                           [None] * len(kept)), converted_ones

    def _batch(self, fetched: Fetched, headers: list[list[Header] | None],
               keys: ConvertedBatch, values: ConvertedBatch, encoded: list[bytes | None],
               texts: list[bytes | None]) -> SinkBatch:
        return SinkBatch.of_columns(SinkColumns(
            origin=fetched, headers=headers, keys=keys, values=values, encoded=encoded,
            texts=texts))

    def _transform_all(self, batch: SinkBatch, kept: Fetched) -> tuple[SinkBatch, Fetched]:
        """``batch`` through the chain: each step on whole columns while the steps can
        (``Transformation.apply_columns``, no predicate; a run of steps that plan their
        maps at once, ``_map_plan_chains``), the rest record by record under
        ``errors.*``. A step whose column form raises runs record by record instead, so
        every failure is reported with its own record, as Apache reports it; from the
        chain's first step when it may have changed maps the chain owns (``chain_owned``)
        before it raised, so every record goes through each step once."""
        columns = converted = batch.columns
        done = 0
        plan_chains = self._map_plan_chains()
        while columns is not None and done < len(self.chain):
            step = self.chain[done]
            if step.predicate is not None:
                break
            at_once = plan_chains.get(done)
            try:
                transformed = (at_once or step.transform).apply_columns(columns)
            except Exception:  # record by record, it is reported with its record
                if columns.keys.chain_owned or columns.values.chain_owned:
                    columns, done = converted, 0
                break
            if transformed is None:
                break
            if len(transformed) != len(columns):
                raise ConnectError(f"{step.class_name}.apply_columns returned "
                                   f"{len(transformed)} of {len(columns)} records")
            columns, done = transformed, done + (len(at_once.steps) if at_once else 1)
        if columns is not None:
            batch = SinkBatch.of_columns(columns)
            if done == len(self.chain):
                return batch, kept
        rest = self.chain[done:]
        records: list[SinkRecord] = []
        rows: list[int] = []
        for row, (record, message) in enumerate(zip(batch, kept.rows(), strict=True)):
            result = self.errors.transform(rest, record, message=message)
            if result is not None:
                records.append(result)
                rows.append(row)
        return SinkBatch(records), kept.select(rows)

    def _map_plan_chains(self) -> dict[int, MapPlanChain]:
        """The chain's runs of steps rebuilding their maps in one native pass, by the
        index of their first step (none without the native map rebuild); made again when
        the chain is replaced. A run that raises goes record by record from its first
        step: the steps before the failing one give each record there what they gave it
        on columns, so the failing step reports the same records."""
        if self._plan_chains_of is not self.chain:
            self._plan_chains_of = self.chain
            self._plan_chains = (map_plan_chains([
                step.transform if step.predicate is None else None for step in self.chain])
                if native.map_rebuilder() is not None else {})
        return self._plan_chains

    def _consumer_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise KafkaException(error)
        log.warning("Task %s: consumer error: %s", self.id, error)

    def _headers(self, topic: str, raw_headers: RawHeaders) -> list[Header]:
        """The one header conversion, for the batch and the record-by-record path."""
        converted = (self.codec.header.to_connect_header(topic, name, data)
                     for name, data in raw_headers)
        return [Header(name, c.value, c.schema) for (name, _), c in zip(raw_headers, converted,
                                                                        strict=True)]

    def _write(self, batch: SinkBatch, fetched: Fetched) -> bool:
        """Write ``batch`` (from the records of ``fetched``, one each); False when
        stopping before it was written."""
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
                    kept = [row for row, record in enumerate(batch)
                            if record.topic_partition in self.assignment]
                    batch = SinkBatch(batch[row] for row in kept)
                    fetched = fetched.select(kept)
            except RecordWriteError as exc:
                origin: dict[int, ConsumedRecord] = {
                    id(record): message
                    for record, message in zip(batch, fetched.rows(), strict=True)}
                for record, error in exc.failures:
                    self.errors.failure(Stage.TASK_PUT, type(self.task).__name__,
                                        error if isinstance(error, Exception)
                                        else DataError(str(error)),
                                        message=origin.get(id(record)),
                                        record=record if isinstance(record, SinkRecord)
                                        else None)
                return True

    def _commit(self, partitions: set[TopicPartition] | None = None, *,
                final: bool = False) -> None:
        """Commit what the task says is durable (and the DLQ holds); the ``final`` commit of
        a stopping task goes through a rebalance it meets."""
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
            if not (final and self._commit_through_rebalance(fresh, exc)):
                log.warning("Task %s: offset commit failed (%s); will retry", self.id, exc)
                return
        for tp in fresh:
            self.committed[TopicPartition(tp.topic, tp.partition)] = tp.offset
        self._set(self.status.state)

    def _commit_through_rebalance(self, offsets: list[KafkaTopicPartition],
                                  refused: KafkaException) -> bool:
        """Whether ``offsets`` were committed after a refusal because the group is
        rebalancing (a sibling task joined or is leaving as it stops too). A task that
        stopped polling would never rejoin: the group would drop it and what it wrote
        would be delivered again. So the consumer is polled until the rebalance is over:
        partitions revoked meanwhile are committed by the revoke callback, records handed
        over meanwhile are left uncommitted for their next owner."""
        deadline = time.monotonic() + FINAL_COMMIT_SECONDS
        error = refused
        while error.args[0].code() in REBALANCING and time.monotonic() < deadline:
            self.consumer.consume(self.batch_size, 0.2)
            offsets = [tp for tp in offsets
                       if TopicPartition(tp.topic, tp.partition) in self.assignment]
            if not offsets:
                return True
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
                return True
            except KafkaException as exc:
                error = exc
        return False

    def _assigned(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        added = [TopicPartition(p.topic, p.partition) for p in partitions]
        self.assignment.update(added)
        for tp in added:
            self.fetch.forward(*tp)
        log.info("Task %s: assigned %s", self.id, ", ".join(map(str, added)) or "nothing")
        self.task.open(added)
        moved = False
        for tp, partition in zip(added, partitions, strict=True):
            start = self.starts.pop(tp, None)
            if start is not None:
                log.info("Task %s: %s starts at offset %d, as the task asked", self.id, tp,
                         start)
                partition.offset, moved = start, True
        if self.paused or self.retry_paused or moved:
            # assign first: pausing partitions not yet assigned would be forgotten
            if self.cooperative:
                consumer.incremental_assign(partitions)
            else:
                consumer.assign(partitions)
        if self.paused or self.retry_paused:
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
        for tp in removed:
            self.fetch.unforward(*tp)
        self.held = [fetched.select(row for row, tp in enumerate(zip(
            fetched.topics, fetched.partitions, strict=True)) if tp not in removed)
            for fetched in self.held]
        for tp in removed:
            self.consumed.pop(tp, None)
            self.committed.pop(tp, None)

    def _shutdown(self) -> None:
        """Leave the group first (its revoke callback commits), then release the task.

        A consumer that fails to close does not fail a task that is stopping: its offsets
        were committed just before, and librdkafka releases the consumer either way (as
        Apache's WorkerSinkTask closes its consumer quietly). confluent-kafka on
        Python 3.11 can raise a SystemError here when a commit in the revoke callback meets
        a group that is rebalancing as its sibling leaves."""
        consumer = getattr(self, "consumer", None)
        try:
            if consumer is not None:
                self.fetch.close()
                try:
                    consumer.close()
                except Exception as exc:
                    log.warning("Task %s: its consumer did not close cleanly (%s: %s); "
                                "records not committed are delivered again", self.id,
                                type(exc).__name__, exc)
        finally:
            task = getattr(self, "task", None)
            if task is not None:
                task.close(sorted(self.assignment))
                task.stop()
