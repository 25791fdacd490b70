"""Records as they travel through converters, transforms and tasks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple, Protocol, Self, overload

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


@dataclass(slots=True, kw_only=True)
class SourceBatch:
    """Values a source task read from one source partition into one topic, as columns.

    What a task returns from ``poll`` instead of a ``SourceRecord`` per value when its
    values share everything but the value and the offset (a file's lines): the runtime
    converts and produces the columns without building a record per value, and builds
    the records (``records``) only where something needs them, a transform or a value
    its converter refuses. ``source_offsets[i]`` is the offset once ``values[i]`` is
    written; ``timestamp`` is every record's.
    """

    topic: str
    source_partition: dict[str, Any]
    values: list[Any]
    source_offsets: list[dict[str, Any]]
    value_schema: Schema | None = None
    timestamp: int | None = None

    def __post_init__(self) -> None:
        if len(self.values) != len(self.source_offsets):
            raise ValueError(f"a SourceBatch needs an offset per value: {len(self.values)} "
                             f"values, {len(self.source_offsets)} offsets")

    def __len__(self) -> int:
        return len(self.values)

    def records(self) -> list[SourceRecord]:
        topic, partition = self.topic, self.source_partition
        schema, timestamp = self.value_schema, self.timestamp
        return [SourceRecord(topic=topic, value=value, value_schema=schema,
                             timestamp=timestamp, source_partition=partition,
                             source_offset=offset)
                for value, offset in zip(self.values, self.source_offsets, strict=True)]


class ConvertedBatch:
    """Keys or values of a batch as ``Converter.to_connect_batch`` returns them.

    ``schemas`` holds one schema per item; ``values`` the Connect values in order. A
    converter that has made sure every item converts may pass a function instead of
    the values: they are decoded when first read, so a sink that copies the bytes it
    received never pays for them. ``plain_json`` says that every item's bytes are plain
    JSON of its value (sinks writing JSON reuse them); ``verbatim`` that every value is
    its bytes, or their UTF-8 text (sinks printing values as text copy the bytes).
    ``chain_owned`` that every map or struct among the values was made by a step of the
    sink's transform chain and nobody else holds it: the next step may change it instead
    of copying it (a converter's values may be shared or cached).
    """

    __slots__ = ("_decode", "_values", "chain_owned", "plain_json", "schemas", "verbatim")

    def __init__(self, schemas: list[Schema | None],
                 values: list[Any] | Callable[[], list[Any]],
                 plain_json: bool = False, verbatim: bool = False,
                 chain_owned: bool = False) -> None:
        self.schemas = schemas
        self.plain_json = plain_json
        self.verbatim = verbatim
        self.chain_owned = chain_owned
        self._values: list[Any] | None = None if callable(values) else values
        self._decode: Callable[[], list[Any]] | None = values if callable(values) else None

    @property
    def values(self) -> list[Any]:
        if self._values is None:
            assert self._decode is not None
            values = self._decode()
            if len(values) != len(self.schemas):
                raise RuntimeError(f"a converted batch of {len(self.schemas)} items decoded "
                                   f"{len(values)}")
            self._values, self._decode = values, None
        return self._values

    @classmethod
    def concat(cls, parts: Sequence[ConvertedBatch]) -> ConvertedBatch:
        """One batch of the items of ``parts``, in order (values still decoded lazily)."""
        if len(parts) == 1:
            return parts[0]
        return cls([schema for part in parts for schema in part.schemas],
                   lambda: [value for part in parts for value in part.values],
                   all(part.plain_json for part in parts), all(part.verbatim for part in parts))


class RecordOrigin(Protocol):
    """Where each record of a poll came from, column by column: ``timestamps`` as Kafka
    gives them (``(type, milliseconds)``, type 0 for none). The runtime's poll makes each
    list when first read, so a sink that reads none of them never pays for them."""

    @property
    def topics(self) -> list[str]: ...

    @property
    def partitions(self) -> list[int]: ...

    @property
    def offsets(self) -> list[int]: ...

    @property
    def timestamps(self) -> list[tuple[int, int]]: ...

    def __len__(self) -> int: ...


@dataclass(slots=True, frozen=True)
class RecordLists:
    """A ``RecordOrigin`` of lists already made."""

    topics: list[str]
    partitions: list[int]
    offsets: list[int]
    timestamps: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.offsets)


@dataclass(slots=True)
class SinkColumns:
    """A poll's records column by column, as the runtime hands them to ``SinkBatch``:
    ``origin`` each record's topic, partition, offset and timestamp (also read as
    ``topics``, ``partitions``, ``offsets``, ``timestamps``), ``headers`` None for a
    record without any, ``encoded`` per record the value bytes received when they are
    plain JSON of its value, else None, ``texts`` per record the value bytes received
    when the value is them or their UTF-8 text, else None."""

    origin: RecordOrigin
    headers: list[list[Header] | None]
    keys: ConvertedBatch
    values: ConvertedBatch
    encoded: list[bytes | None]
    texts: list[bytes | None]

    @property
    def topics(self) -> list[str]:
        return self.origin.topics

    @property
    def partitions(self) -> list[int]:
        return self.origin.partitions

    @property
    def offsets(self) -> list[int]:
        return self.origin.offsets

    @property
    def timestamps(self) -> list[tuple[int, int]]:
        return self.origin.timestamps

    def __len__(self) -> int:
        return len(self.origin)

    def with_keys(self, keys: ConvertedBatch) -> SinkColumns:
        """These columns with other keys (what a transformation of keys returns)."""
        return dataclasses.replace(self, keys=keys)

    def with_values(self, values: ConvertedBatch) -> SinkColumns:
        """These columns with other values, whose received bytes no longer say anything."""
        unknown: list[bytes | None] = [None] * len(self)
        return dataclasses.replace(self, values=values, encoded=unknown, texts=unknown)


TIMESTAMP_TYPES = {1: "CreateTime", 2: "LogAppendTime"}
_topic_partition = itemgetter(0, 1)


class SinkBatch(Sequence[SinkRecord]):
    """The records of one poll, as ``SinkTask.write`` receives them.

    A sequence of SinkRecords, and the same records column by column: ``coordinates``,
    ``values``, ``value_schemas`` and ``encoded_values``. The runtime converts a poll as
    columns and builds the SinkRecord objects (most of the cost of a record in Python)
    only when the task iterates the batch; a task that reads the columns never pays for
    them.
    """

    __slots__ = ("_columns", "_records", "_size")

    def __init__(self, records: Iterable[SinkRecord] = ()) -> None:
        self._records: list[SinkRecord] | None = list(records)
        self._size = len(self._records)
        self._columns: SinkColumns | None = None

    @classmethod
    def of_columns(cls, columns: SinkColumns) -> SinkBatch:
        batch = cls()
        batch._records, batch._size, batch._columns = None, len(columns), columns
        return batch

    @property
    def records(self) -> list[SinkRecord]:
        if self._records is None:
            assert self._columns is not None
            self._records = _build(self._columns)
        return self._records

    @property
    def values(self) -> list[Any]:
        """Every record's value, in order."""
        if self._records is None:
            assert self._columns is not None
            return self._columns.values.values
        return [record.value for record in self._records]

    @property
    def value_schemas(self) -> list[Schema | None]:
        """Every record's value schema, in order."""
        if self._records is None:
            assert self._columns is not None
            return self._columns.values.schemas
        return [record.value_schema for record in self._records]

    @property
    def timestamps(self) -> list[int | None]:
        """Every record's Kafka timestamp (``SinkRecord.timestamp``), in order."""
        if self._records is None:
            assert self._columns is not None
            return [timestamp if kind else None
                    for kind, timestamp in self._columns.timestamps]
        return [record.timestamp for record in self._records]

    @property
    def encoded_values(self) -> list[bytes | None]:
        """Per record, the bytes its value was decoded from when they are plain JSON of
        the value (``SinkRecord.encoded_value``: JSON strings included), else None."""
        if self._records is None:
            assert self._columns is not None
            return self._columns.encoded
        return [record.encoded_value for record in self._records]

    @property
    def text_values(self) -> list[bytes | None]:
        """Per record, the bytes received when its value is those bytes or their UTF-8
        text (StringConverter, ByteArrayConverter), else None."""
        if self._records is None:
            assert self._columns is not None
            return self._columns.texts
        return [None] * self._size

    @property
    def columns(self) -> SinkColumns | None:
        """The columns the records are (to be) built from; None once a transformation
        went record by record."""
        return self._columns if self._records is None else None

    @property
    def coordinates(self) -> list[tuple[str, int, int]]:
        """``(topic, partition, offset)`` of every record, in order."""
        if self._records is None:
            assert self._columns is not None
            columns = self._columns
            return list(zip(columns.topics, columns.partitions, columns.offsets, strict=True))
        return [(record.topic, record.kafka_partition or 0, record.kafka_offset)
                for record in self._records]

    def partition_runs(self) -> list[tuple[str, int, list[int]]]:
        """``(topic, partition, offsets)`` of each stretch of consecutive records of one
        partition, in order: the grouping of ``coordinates``, made from the columns
        without a tuple per record."""
        if self._records is None:
            assert self._columns is not None
            columns = self._columns
            runs = []
            start = 0
            partitions = zip(columns.topics, columns.partitions, strict=True)
            for (topic, partition), run in groupby(partitions):
                end = start + len(list(run))
                runs.append((topic, partition, columns.offsets[start:end]))
                start = end
            return runs
        return [(topic, partition, [offset for _, _, offset in run])
                for (topic, partition), run in groupby(self.coordinates, key=_topic_partition)]

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
        built = "built" if self._records is not None else "columns"
        return f"SinkBatch({self._size} records, {built})"


def _build(columns: SinkColumns) -> list[SinkRecord]:
    """The SinkRecords of ``columns``, filled slot by slot: 8 times cheaper than the
    keyword call (tests check that every field is set)."""
    new = object.__new__
    types = TIMESTAMP_TYPES
    records: list[SinkRecord] = []
    append = records.append
    for topic, partition, offset, (ts_type, timestamp), headers, key, key_schema, value, \
            value_schema, raw in zip(columns.topics, columns.partitions, columns.offsets,
                                     columns.timestamps, columns.headers, columns.keys.values,
                                     columns.keys.schemas, columns.values.values,
                                     columns.values.schemas, columns.encoded, strict=True):
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
        record.headers = headers or []
        record.encoded_value = raw
        append(record)
    return records
