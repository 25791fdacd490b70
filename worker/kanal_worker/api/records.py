"""Records as they travel through converters, transforms and tasks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple, Self, overload

from kanal_worker.api.schema import Schema


class TopicPartition(NamedTuple):
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition}"


@dataclass(slots=True)
class Header:
    key: str
    value: Any
    schema: Schema | None = None


@dataclass(slots=True, kw_only=True)
class ConnectRecord:
    """What converters produce and transforms rewrite.

    ``encoded_value`` holds the bytes the value was decoded from as long as the value
    is unchanged and those bytes are plain JSON of it; sinks that write JSON reuse them
    instead of encoding again. ``replace`` drops it whenever the value changes.
    """

    topic: str
    kafka_partition: int | None = None
    key: Any = None
    value: Any = None
    key_schema: Schema | None = None
    value_schema: Schema | None = None
    timestamp: int | None = None
    headers: list[Header] = field(default_factory=list)
    encoded_value: bytes | None = None

    def replace(self, **changes: Any) -> Self:
        if "value" in changes or "value_schema" in changes:
            changes.setdefault("encoded_value", None)
        cls: type[Self] = type(self)
        copy = object.__new__(cls)  # no __init__: transforms copy every record
        _copier(cls)(self, copy)  # type: ignore[arg-type]  # classes are hashable
        for name, value in changes.items():
            setattr(copy, name, value)
        return copy


@cache
def _copier(cls: type[ConnectRecord]) -> Callable[[Any, Any], None]:
    """``copy(source, target)`` setting every field of ``cls`` on ``target``, generated
    the way dataclasses generate ``__init__``: one attribute store per field is 3-4 times
    cheaper than ``dataclasses.replace`` or a ``setattr`` loop."""
    names = [f.name for f in dataclasses.fields(cls)]
    body = "".join(f"    target.{name} = source.{name}\n" for name in names)
    namespace: dict[str, Any] = {}
    exec(f"def copy(source, target):\n{body or '    pass'}\n", namespace)
    copy: Callable[[Any, Any], None] = namespace["copy"]
    return copy


@dataclass(slots=True, kw_only=True)
class SinkRecord(ConnectRecord):
    kafka_offset: int
    timestamp_type: str = "CreateTime"

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.kafka_partition or 0)


@dataclass(slots=True, kw_only=True)
class SourceRecord(ConnectRecord):
    """``source_partition`` and ``source_offset`` are JSON-able maps the task chooses;
    the runtime stores the offset once the record is acknowledged by Kafka."""

    source_partition: dict[str, Any] = field(default_factory=dict)
    source_offset: dict[str, Any] = field(default_factory=dict)


class SinkBatch(Sequence[SinkRecord]):
    """The records of one poll, as ``SinkTask.write`` receives them.

    A sequence of SinkRecords whose objects may not exist yet: when the runtime has
    checked a whole poll at once (every key and value converts, no headers, no
    transforms) it builds them only if the task looks at them. A task that writes the
    JSON it received reads ``encoded_values`` instead and never pays for them, which
    is most of the cost of a record in Python.
    """

    __slots__ = ("_build", "_coordinates", "_encoded", "_records", "_size")

    def __init__(self, records: Iterable[SinkRecord] = ()) -> None:
        self._records: list[SinkRecord] | None = list(records)
        self._size = len(self._records)
        self._build: Callable[[], list[SinkRecord]] | None = None
        self._encoded: list[bytes] | None = None
        self._coordinates: Callable[[], list[tuple[str, int, int]]] | None = None

    @classmethod
    def deferred(cls, size: int, build: Callable[[], list[SinkRecord]],
                 encoded_values: list[bytes] | None,
                 coordinates: Callable[[], list[tuple[str, int, int]]]) -> SinkBatch:
        """``size`` records that ``build`` makes on first use; ``encoded_values`` and
        ``coordinates`` as the properties below describe them."""
        batch = cls()
        batch._records, batch._size, batch._build = None, size, build
        batch._encoded, batch._coordinates = encoded_values, coordinates
        return batch

    @property
    def records(self) -> list[SinkRecord]:
        if self._records is None:
            assert self._build is not None
            records = self._build()
            if len(records) != self._size:
                raise RuntimeError(f"a deferred batch of {self._size} records built "
                                   f"{len(records)}")
            self._records, self._build = records, None
        return self._records

    @property
    def encoded_values(self) -> list[bytes] | None:
        """The bytes every value was decoded from, in order, when each value is plain
        JSON of those bytes (``SinkRecord.encoded_value`` of every record; JSON strings
        included); None when some value has none."""
        if self._encoded is None and self._records:
            encoded = [record.encoded_value for record in self._records]
            if None not in encoded:
                self._encoded = encoded  # type: ignore[assignment]
        return self._encoded

    @property
    def coordinates(self) -> list[tuple[str, int, int]]:
        """``(topic, partition, offset)`` of every record, in order."""
        if self._records is None:
            assert self._coordinates is not None
            return self._coordinates()
        return [(record.topic, record.kafka_partition or 0, record.kafka_offset)
                for record in self._records]

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, index: int) -> SinkRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[SinkRecord]: ...

    def __getitem__(self, index: int | slice) -> SinkRecord | list[SinkRecord]:
        return self.records[index]

    def __iter__(self) -> Iterator[SinkRecord]:
        return iter(self.records)

    def __repr__(self) -> str:
        built = "built" if self._records is not None else "deferred"
        return f"SinkBatch({self._size} records, {built})"
