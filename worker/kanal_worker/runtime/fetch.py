"""Where a sink task's records come from: a poll as columns.

A sink task reads its partitions through the native fetch (``kanal_worker.native``) when it
attaches to the task's Consumer, which delivers a poll as buffers, and through
confluent-kafka's messages otherwise. Both become the same ``Fetched`` columns, so
everything after the fetch is one path. Per-record objects (``Consumed``, which reads as a
confluent-kafka ``Message`` to ``errors.*`` and the dead letter queue) are made only for
records that take the record-by-record path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from itertools import groupby
from typing import Any, Protocol, cast

from confluent_kafka import Consumer, KafkaError, Message

from kanal_worker import native

log = logging.getLogger(__name__)

RawHeaders = list[tuple[str, bytes | None]]


class ConsumedRecord(Protocol):
    """A consumed record as ``errors.*`` reads it: confluent-kafka's ``Message`` or a row
    of a ``Fetched`` poll."""

    def topic(self) -> str | None: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...

    def key(self) -> bytes | None: ...

    def value(self) -> bytes | None: ...

    def timestamp(self) -> tuple[int, int]: ...

    def headers(self) -> RawHeaders | None: ...


class Fetched:
    """The records of one poll, column by column. A native poll holds its columns in C
    until one is first asked for: the runtime reads only what it needs per poll
    (``last_offsets``, ``topic_runs``), and a sink that never reads a record's topic,
    partition, offset or timestamp never has them made."""

    __slots__ = ("_count", "_keys", "_offsets", "_partitions", "_poll", "_timestamps",
                 "_topics", "_values", "headers")

    def __init__(self, topics: list[str] | None, partitions: list[int] | None,
                 offsets: list[int] | None, timestamps: list[tuple[int, int]] | None,
                 headers: list[RawHeaders | None] | None,
                 keys: list[bytes | None] | None = None,
                 values: list[bytes | None] | None = None, poll: Any = None) -> None:
        """The columns as lists, or None for those ``poll`` (a native poll) gives."""
        self._topics = topics
        self._partitions = partitions
        self._offsets = offsets
        self._timestamps = timestamps
        self.headers = headers
        """None when no record has headers."""
        self._keys = keys
        self._values = values
        self._poll = poll
        self._count = len(poll) if offsets is None else len(offsets)

    @classmethod
    def of_messages(cls, messages: Sequence[Message]) -> Fetched:
        """``messages`` (records only: consumer events are taken out first)."""
        headers = list(map(Message.headers, messages))
        return cls(list(map(Message.topic, messages)), list(map(Message.partition, messages)),
                   list(map(Message.offset, messages)), list(map(Message.timestamp, messages)),
                   headers if any(headers) else None, list(map(Message.key, messages)),
                   list(map(Message.value, messages)))

    @classmethod
    def of_native(cls, poll: Any) -> Fetched:
        return cls(None, None, None, None, poll.headers, poll=poll)

    @classmethod
    def concat(cls, parts: Sequence[Fetched]) -> Fetched:
        if len(parts) == 1:
            return parts[0]
        headers = ([h for part in parts for h in part.header_lists()]
                   if any(part.headers for part in parts) else None)
        return cls([t for part in parts for t in part.topics],
                   [p for part in parts for p in part.partitions],
                   [o for part in parts for o in part.offsets],
                   [t for part in parts for t in part.timestamps], headers,
                   [k for part in parts for k in part.keys],
                   [v for part in parts for v in part.values])

    def __len__(self) -> int:
        return self._count

    @property
    def value_bytes(self) -> int:
        """The bytes of all the values."""
        if self._poll is not None and self._values is None:
            return int(self._poll.value_bytes)
        return sum(len(value) for value in self.values if value is not None)

    @property
    def topics(self) -> list[str]:
        if self._topics is None:
            self._topics = self._poll.topics()
        return self._topics

    @property
    def partitions(self) -> list[int]:
        if self._partitions is None:
            self._partitions = self._poll.partitions()
        return self._partitions

    @property
    def offsets(self) -> list[int]:
        if self._offsets is None:
            self._offsets = self._poll.offsets()
        return self._offsets

    @property
    def timestamps(self) -> list[tuple[int, int]]:
        """``(type, milliseconds)`` of each record, as ``Message.timestamp()``."""
        if self._timestamps is None:
            self._timestamps = self._poll.timestamps()
        return self._timestamps

    @property
    def keys(self) -> list[bytes | None]:
        if self._keys is None:
            self._keys = self._poll.keys()
        return self._keys

    @property
    def values(self) -> list[bytes | None]:
        if self._values is None:
            self._values = self._poll.values()
        return self._values

    def last_offsets(self) -> dict[tuple[str, int], int]:
        """The offset of each topic-partition's last record, in the order of their first
        records."""
        if self._poll is not None:
            return cast(dict[tuple[str, int], int], self._poll.last_offsets())
        return dict(zip(zip(self.topics, self.partitions, strict=True), self.offsets,
                        strict=True))

    def topic_runs(self) -> list[tuple[str, int, int]]:
        """``(topic, start, end)`` of each run of consecutive records of one topic."""
        if self._poll is not None:
            return cast(list[tuple[str, int, int]], self._poll.topic_runs())
        runs: list[tuple[str, int, int]] = []
        start = 0
        for topic, run in groupby(self.topics):
            end = start + len(list(run))
            runs.append((topic, start, end))
            start = end
        return runs

    def header_lists(self) -> list[RawHeaders | None]:
        """Each record's headers, None for a record without any."""
        return self.headers if self.headers is not None else [None] * self._count

    def select(self, rows: Iterable[int]) -> Fetched:
        """The records at ``rows``, in that order."""
        rows = list(rows)
        if len(rows) == self._count and rows == list(range(len(rows))):
            return self
        headers = None
        if self.headers is not None:
            headers = [self.headers[i] for i in rows]
        keys, values = self.keys, self.values
        topics, partitions, offsets = self.topics, self.partitions, self.offsets
        timestamps = self.timestamps
        return Fetched([topics[i] for i in rows], [partitions[i] for i in rows],
                       [offsets[i] for i in rows], [timestamps[i] for i in rows],
                       headers if headers and any(headers) else None,
                       [keys[i] for i in rows], [values[i] for i in rows])

    def row(self, index: int) -> Consumed:
        return Consumed(self, index)

    def rows(self) -> Iterator[Consumed]:
        return map(Consumed, [self] * self._count, range(self._count))


class Consumed:
    """One record of a ``Fetched`` poll with ``Message``'s accessors."""

    __slots__ = ("_fetched", "_index")

    def __init__(self, fetched: Fetched, index: int) -> None:
        self._fetched = fetched
        self._index = index

    def topic(self) -> str:
        return self._fetched.topics[self._index]

    def partition(self) -> int:
        return self._fetched.partitions[self._index]

    def offset(self) -> int:
        return self._fetched.offsets[self._index]

    def key(self) -> bytes | None:
        return self._fetched.keys[self._index]

    def value(self) -> bytes | None:
        return self._fetched.values[self._index]

    def timestamp(self) -> tuple[int, int]:
        return self._fetched.timestamps[self._index]

    def headers(self) -> RawHeaders | None:
        headers = self._fetched.headers
        return None if headers is None else headers[self._index]


NOTHING = Fetched([], [], [], [], None, [], [])
ASSIGNMENT_WAIT = 0.05
"""Seconds a poll waits on the Consumer before the first partition is forwarded: its
records will not come through the Consumer, so a long wait would only delay them."""


class Fetch:
    """A sink task's consumer as a source of ``Fetched`` polls.

    With the native fetch, each assigned partition is forwarded to the fetcher's queue
    (``forward`` from the assignment callback, ``unforward`` on revocation) and records
    are read from it; the Consumer is still polled without waiting on every call, for
    its rebalance callbacks and consumer-wide events. While no partition is forwarded
    (before the first assignment) the wait is on the Consumer, so an assignment is
    served as it comes. Without the native fetch, the Consumer's messages are read as
    they are.
    """

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.fetcher = native.fetcher(consumer)
        self.forwarded: set[tuple[str, int]] = set()

    def forward(self, topic: str, partition: int) -> None:
        if self.fetcher is None:
            return
        if self.fetcher.forward(topic, partition):
            self.forwarded.add((topic, partition))
        else:
            log.warning("Native fetch: %s-%d could not be forwarded; its records come as "
                        "confluent-kafka messages", topic, partition)

    def unforward(self, topic: str, partition: int) -> None:
        if self.fetcher is not None:
            self.fetcher.unforward(topic, partition)
            self.forwarded.discard((topic, partition))

    def poll(self, limit: int, timeout: float) -> tuple[Fetched, list[KafkaError]]:
        """At most ``limit`` records, waiting up to ``timeout`` seconds for the first,
        and the consumer events (errors, end of partition) that came with them."""
        fetcher = self.fetcher if self.forwarded else None
        if fetcher is not None:
            wait = 0.0
        elif self.fetcher is not None:  # an assignment's records go to the fetcher at once
            wait = min(timeout, ASSIGNMENT_WAIT)
        else:
            wait = timeout
        messages = self.consumer.consume(limit, wait)
        events = [error for error in map(Message.error, messages) if error is not None]
        if events:
            messages = [message for message in messages if message.error() is None]
        if fetcher is None or messages:
            return (Fetched.of_messages(messages) if messages else NOTHING), events
        poll = fetcher.consume(limit, timeout)
        events.extend(KafkaError(code, reason) for _, _, _, code, reason in poll.errors)
        return (Fetched.of_native(poll) if len(poll) else NOTHING), events

    def close(self) -> None:
        """Release the fetcher's queue: before the Consumer's close, as librdkafka wants."""
        if self.fetcher is not None:
            self.fetcher.close()
