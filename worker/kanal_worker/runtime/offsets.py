"""Where source offsets live: a local file (standalone) or a compacted Kafka topic.

The Kafka form uses Apache Kafka Connect's record format (key
``["<connector>", {source partition}]``, value the offset as JSON), so offsets are
readable by the same tools and can move between Kanal and Apache workers.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kanal_worker.api.errors import ConfigError

LEADERLESS = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                        KafkaError.UNKNOWN_TOPIC_OR_PART})
"""What a partition answers for a moment after its topic was created or its broker
restarted, until it has a leader."""


def _log_ends(consumer: Consumer, partition: TopicPartition,
              timeout: float = 30) -> tuple[int, int]:
    """The partition's first offset and its end, retried while it has no leader.

    The end is the log end for a consumer that reads uncommitted, and the last stable
    offset, which an open transaction holds back, for one that reads committed. Offsets
    committed after a transaction another task left open (killed before it could abort)
    lie past that one, and a task restarted from a read that stopped there would produce
    again what it had already committed.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = consumer.get_watermark_offsets(partition, timeout=15)
            return int(low), int(high)
        except KafkaException as exc:
            if exc.args[0].code() not in LEADERLESS or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


OPEN_TRANSACTION_WAIT_SECONDS = 90
"""How long a read of the offsets topic waits for open transactions below its end: past
the 60 s transaction timeout of a killed task's producer and the broker's next check for
timed-out transactions."""

JAVA_PARTITIONER = "murmur2_random"
"""librdkafka's name for the Java client's default partitioner: keyed records land on the
partitions Apache Kafka Connect workers would choose."""


def partition_key(partition: dict[str, Any]) -> str:
    """A stable string for a source partition map (key order does not matter)."""
    return orjson.dumps(partition, option=orjson.OPT_SORT_KEYS).decode()


class OffsetStore(ABC):
    """Source offsets per connector and source partition."""

    @abstractmethod
    def get(self, connector: str, partition: dict[str, Any]) -> dict[str, Any] | None: ...

    @abstractmethod
    def put(self, connector: str, offsets: dict[str, dict[str, Any] | None]) -> None:
        """Store offsets (keyed by ``partition_key``; None deletes) durably."""

    @abstractmethod
    def all(self, connector: str) -> list[tuple[dict[str, Any], dict[str, Any]]]: ...

    def refresh(self, *, through_open_transactions: bool = False) -> None:  # noqa: B027
        """Catch up with offsets other workers wrote (before a task starts); only shared
        stores have anything to catch up with.

        ``through_open_transactions``: where a task resumes from what is read, offsets
        committed past a transaction still open (a killed task's, until its successor
        fences it) are waited for; without it the read stops at the first open one.
        """


class CachedOffsetStore(OffsetStore):
    """Offsets held in memory; subclasses decide how they are made durable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, dict[str, Any]]] = {}

    def get(self, connector: str, partition: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            return self._data.get(connector, {}).get(partition_key(partition))

    def all(self, connector: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        with self._lock:
            return [(orjson.loads(k), v) for k, v in self._data.get(connector, {}).items()]

    def _merge(self, connector: str, offsets: dict[str, dict[str, Any] | None]) -> None:
        """Apply ``offsets`` to the cache; the caller holds the lock."""
        merge(self._data, connector, offsets)


def merge(data: dict[str, dict[str, dict[str, Any]]], connector: str,
          offsets: dict[str, dict[str, Any] | None]) -> None:
    """Apply ``offsets`` of ``connector`` to ``data`` (None deletes a partition's offset)."""
    stored = data.setdefault(connector, {})
    for key, offset in offsets.items():
        if offset is None:
            stored.pop(key, None)
        else:
            stored[key] = offset


class FileOffsetStore(CachedOffsetStore):
    """JSON file replaced atomically on every write, so a crash leaves the old or the new
    offsets, never a torn file."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        if path.exists():
            try:
                self._data = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError) as exc:
                raise ConfigError("offset.storage.file.filename",
                                  f"cannot read offsets from {path}: {exc}") from None
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._write()
            except OSError as exc:
                raise ConfigError("offset.storage.file.filename",
                                  f"cannot write offsets to {path}: {exc.strerror}; choose a "
                                  "writable path") from None

    def put(self, connector: str, offsets: dict[str, dict[str, Any] | None]) -> None:
        with self._lock:
            self._merge(connector, offsets)
            self._write()

    def _write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as handle:
            handle.write(orjson.dumps(self._data, option=orjson.OPT_INDENT_2))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)


class MemoryOffsetStore(CachedOffsetStore):
    """For connectors run without a persistent store (tests, validation)."""

    def put(self, connector: str, offsets: dict[str, dict[str, Any] | None]) -> None:
        with self._lock:
            self._merge(connector, offsets)


class SharedOffsetStore(CachedOffsetStore):
    """Offsets other workers write too, re-read from where they are kept on ``refresh``.

    A refresh reads a snapshot while this worker's tasks keep committing: the offsets they
    commit meanwhile may be missing from what it read. Installing the snapshot as read would
    take those back, and a task that then restarts from the cache (an exactly-once source
    replaying an aborted transaction) would produce its last committed records again. So
    offsets applied during a read are laid over the snapshot, in the order they came, and
    refreshes run one at a time.
    """

    def __init__(self) -> None:
        super().__init__()
        self._refreshing = threading.Lock()
        self._applied_during_read: list[tuple[str, dict[str, dict[str, Any] | None]]] | None \
            = None

    @abstractmethod
    def read_all(self, *, through_open_transactions: bool = False
                 ) -> dict[str, dict[str, dict[str, Any]]]:
        """Every connector's offsets as they are kept now (``refresh`` says the flag)."""

    def refresh(self, *, through_open_transactions: bool = False) -> None:
        with self._refreshing:
            with self._lock:
                self._applied_during_read = []
            try:
                data = self.read_all(through_open_transactions=through_open_transactions)
            except BaseException:
                with self._lock:
                    self._applied_during_read = None
                raise
            with self._lock:
                for connector, offsets in self._applied_during_read or ():
                    merge(data, connector, offsets)
                self._applied_during_read = None
                self._data = data

    def applied(self, connector: str, offsets: dict[str, dict[str, Any] | None]) -> None:
        """Record offsets committed by this worker in the cache."""
        with self._lock:
            self._merge(connector, offsets)
            if self._applied_during_read is not None:
                self._applied_during_read.append((connector, dict(offsets)))


class KafkaOffsetStore(SharedOffsetStore):
    """Offsets in a compacted topic, cached in memory and re-read on ``refresh``.

    ``stage`` writes offsets through a caller's (transactional) producer, so an
    exactly-once source commits its records and their offsets in one transaction.
    """

    def __init__(self, topic: str, client_config: dict[str, str], partitions: int = 25,
                 replication_factor: int = 3) -> None:
        super().__init__()
        self.topic = topic
        self.client_config = client_config
        self._ensure_topic(partitions, replication_factor)
        self._producer = Producer({**client_config, "enable.idempotence": "true",
                                   "linger.ms": "0", "partitioner": JAVA_PARTITIONER})
        self.refresh()

    def _ensure_topic(self, partitions: int, replication_factor: int) -> None:
        admin = AdminClient(self.client_config)
        metadata = admin.list_topics(timeout=15)
        if self.topic in metadata.topics:
            return
        topic = NewTopic(self.topic, partitions, min(replication_factor,
                                                     max(1, len(metadata.brokers))),
                         config={"cleanup.policy": "compact"})
        for future in admin.create_topics([topic]).values():
            try:
                future.result(15)
            except Exception as exc:  # another worker created it first
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise

    @staticmethod
    def record_key(connector: str, partition: dict[str, Any]) -> bytes:
        return orjson.dumps([connector, partition])

    def read_all(self, *, through_open_transactions: bool = False
                 ) -> dict[str, dict[str, dict[str, Any]]]:
        """The topic read to its end; retried while a new topic's leaders are elected."""
        deadline = time.monotonic() + 30
        while True:
            try:
                return self._read_to_end(through_open_transactions)
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _read_to_end(self, through_open_transactions: bool
                     ) -> dict[str, dict[str, dict[str, Any]]]:
        """Every committed offset record up to the end seen when the read starts: the
        first open transaction, or ``through_open_transactions`` the log end.

        Through them, a transaction still open below the log end (a sibling task's, until
        it commits, or a killed one's, until its successor fences it or the broker times
        it out) holds the read there: the committed records past it are read once it ends.
        """
        group = {"group.id": f"kanal-offsets-{uuid.uuid4()}", "enable.auto.commit": "false"}
        ends: dict[int, int] = {}
        starts = []
        isolation = "read_uncommitted" if through_open_transactions else "read_committed"
        bounds = Consumer({**self.client_config, **group, "isolation.level": isolation})
        try:
            metadata = bounds.list_topics(self.topic, timeout=15)
            for partition in metadata.topics[self.topic].partitions:
                low, high = _log_ends(bounds, TopicPartition(self.topic, partition))
                if high > low:
                    ends[partition] = high
                    starts.append(TopicPartition(self.topic, partition, low))
        finally:
            bounds.close()
        data: dict[str, dict[str, dict[str, Any]]] = {}
        if not starts:
            return data
        consumer = Consumer({**self.client_config, **group, "isolation.level": "read_committed",
                             "auto.offset.reset": "earliest"})
        try:
            consumer.assign(starts)
            deadline = time.monotonic() + OPEN_TRANSACTION_WAIT_SECONDS
            while ends and time.monotonic() < deadline:
                for message in consumer.consume(1000, 0.5):
                    if message.error() is not None:
                        continue
                    self._apply(data, message.key(), message.value())
                for partition in list(ends):
                    position = consumer.position([TopicPartition(self.topic, partition)])[0]
                    if position.offset >= ends[partition]:
                        del ends[partition]
            if ends:
                raise TimeoutError(
                    f"could not read offsets topic {self.topic} to its end within "
                    f"{OPEN_TRANSACTION_WAIT_SECONDS} s: partitions {sorted(ends)} stopped short "
                    "of it, at a transaction nobody ended (it ends when the task that opened "
                    "it starts again, or after its transaction.timeout.ms) or at a leader "
                    "that did not answer. A transaction open past its timeout is one the "
                    "broker no longer tracks (a hanging transaction): find it with "
                    "kafka-transactions.sh find-hanging and end it with kafka-transactions.sh "
                    "abort, then restart the task")
        finally:
            consumer.close()
        return data

    @staticmethod
    def _apply(data: dict[str, dict[str, dict[str, Any]]], key: bytes | None,
               value: bytes | None) -> None:
        try:
            connector, partition = orjson.loads(key or b"null")
        except (TypeError, ValueError):
            return  # not an offset record
        stored = data.setdefault(connector, {})
        if value is None:
            stored.pop(partition_key(partition), None)
        else:
            stored[partition_key(partition)] = orjson.loads(value)

    def stage(self, producer: Producer, connector: str,
              offsets: dict[str, dict[str, Any] | None]) -> None:
        """Produce offset records with ``producer``; ``applied`` once they are committed."""
        for key, offset in offsets.items():
            producer.produce(self.topic, key=self.record_key(connector, orjson.loads(key)),
                             value=None if offset is None else orjson.dumps(offset))

    def put(self, connector: str, offsets: dict[str, dict[str, Any] | None]) -> None:
        self.stage(self._producer, connector, offsets)
        if self._producer.flush(30):
            raise TimeoutError(f"offsets not acknowledged by topic {self.topic}")
        self.applied(connector, offsets)

