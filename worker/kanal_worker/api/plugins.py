"""The plugin contract: connectors, tasks, converters, transforms and predicates.

A plugin is a class registered under an entry point group (``kanal.connectors``,
``kanal.converters``, ``kanal.transforms``, ``kanal.predicates``). It declares its
configuration as a ``Settings`` model in ``settings`` and Kafka Connect class names it
answers to in ``aliases``, so existing configurations move over unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from kanal_worker.api.config import Settings
from kanal_worker.api.records import (
    ConnectRecord,
    ConvertedBatch,
    SinkBatch,
    SinkColumns,
    SourceBatch,
    SourceRecord,
    TopicPartition,
)
from kanal_worker.api.schema import Schema

S = TypeVar("S", bound=Settings)
R = TypeVar("R", bound=ConnectRecord)


class Plugin:
    """What every registered component shares."""

    settings: ClassVar[type[Settings]] = Settings
    aliases: ClassVar[tuple[str, ...]] = ()
    version: ClassVar[str] = "0.1.0"


class SinkTaskContext(Protocol):
    """What a sink task may ask of the runtime."""

    @property
    def task_id(self) -> str: ...

    def assignment(self) -> set[TopicPartition]: ...

    def request_commit(self) -> None:
        """Ask for an offset commit soon (e.g. after a time-based file rotation)."""

    def committed(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The offsets the task's consumer group committed for ``partitions`` (None: none)."""

    def offset(self, offsets: dict[TopicPartition, int]) -> None:
        """Consume these partitions from these offsets instead of the committed ones, as
        Kafka Connect's ``SinkTaskContext.offset``; called from ``open``, before any of
        their records is delivered (a sink whose system records what it holds)."""


class SourceTaskContext(Protocol):
    @property
    def task_id(self) -> str: ...

    def offset(self, source_partition: Mapping[str, Any]) -> dict[str, Any] | None:
        """The last committed offset for ``source_partition``, or None."""

    def request_commit(self) -> None:
        """Ask for an offset commit (and so ``SourceTask.commit``) after the next poll, e.g.
        when the external system waits for acknowledgements before it sends more."""


class SinkTask(ABC, Generic[S]):
    """Writes batches of records to an external system.

    The runtime consumes, converts and transforms records, calls ``write`` with a
    batch per poll, retries it on ``RetriableError``, and commits to Kafka only the
    offsets ``pre_commit`` returns. The default ``pre_commit`` says everything written
    is durable; a task that buffers (files, blocks) overrides it to return only what
    it has made durable.

    ``write`` gets a ``SinkBatch``: iterate it for SinkRecords, or read its columns
    (``values``, ``encoded_values``, ``coordinates``) without building them.
    """

    def __init__(self, settings: S, context: SinkTaskContext) -> None:
        self.settings = settings
        self.context = context

    def open(self, partitions: list[TopicPartition]) -> None:
        """Partitions were assigned to this task."""

    @abstractmethod
    def write(self, batch: SinkBatch) -> None: ...

    def pre_commit(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Given the next offset to consume per partition, return what is safe to commit."""
        return offsets

    def close(self, partitions: list[TopicPartition]) -> None:
        """Partitions were taken away: drop their buffers (they will be replayed)."""

    def stop(self) -> None:
        """The task stops for good; release clients and files."""


class SourceTask(ABC, Generic[S]):
    """Reads records from an external system.

    ``poll`` returns the records that are ready (an empty list when there are none;
    it may block briefly), or a ``SourceBatch`` of values that differ only in value and
    offset. Each record carries a source partition and offset; the runtime stores an
    offset only after Kafka acknowledged its record and everything before it.
    """

    def __init__(self, settings: S, context: SourceTaskContext) -> None:
        self.settings = settings
        self.context = context

    def start(self) -> None:
        """Open resources; read ``context.offset`` to resume."""

    @abstractmethod
    def poll(self) -> list[SourceRecord] | SourceBatch: ...

    def commit(self) -> None:
        """Offsets up to the last acknowledged record were stored."""

    def stop(self) -> None:
        """The task stops for good; release resources. Called from another thread."""


class Connector(Plugin, Generic[S]):
    """Plans tasks from a connector configuration."""

    kind: ClassVar[str]
    task_class: ClassVar[type[Any]]

    def task_configs(self, config: Mapping[str, str], max_tasks: int) -> list[dict[str, str]]:
        """One configuration per task; by default ``max_tasks`` copies of the connector's."""
        return [dict(config) for _ in range(max_tasks)]

    def validate(self, settings: S) -> dict[str, list[str]]:
        """Errors that need more than one key to find, by key (e.g. a bad combination)."""
        return {}


class SinkConnector(Connector[S]):
    kind = "sink"
    task_class: ClassVar[type[SinkTask[Any]]]


class SourceConnector(Connector[S]):
    kind = "source"
    task_class: ClassVar[type[SourceTask[Any]]]

    def task_configs(self, config: Mapping[str, str], max_tasks: int) -> list[dict[str, str]]:
        return [dict(config)]


@dataclass(frozen=True, slots=True)
class SchemaAndValue:
    schema: Schema | None
    value: Any
    plain_json: bool = False
    """True when the bytes this came from are plain JSON of ``value`` (reusable)."""


class Converter(Plugin):
    """Turns Kafka bytes into Connect data and back (``key.converter`` etc.)."""

    def __init__(self, config: Mapping[str, str], is_key: bool) -> None:
        self.config = config
        self.is_key = is_key

    @abstractmethod
    def to_connect(self, topic: str, data: bytes | None) -> SchemaAndValue: ...

    def to_connect_batch(self, topic: str, data: list[bytes | None]) -> ConvertedBatch:
        """Every item of ``data`` converted as ``to_connect`` converts it; raises when an
        item does not convert (the runtime then converts that poll item by item, so each
        failure is reported with its own record). This default calls ``to_connect`` per
        item; a converter that can do a whole batch at once overrides it."""
        converted = [self.to_connect(topic, item) for item in data]
        return ConvertedBatch([item.schema for item in converted],
                              [item.value for item in converted],
                              all(item.plain_json for item in converted))

    @abstractmethod
    def from_connect(self, topic: str, schema: Schema | None, value: Any) -> bytes | None: ...

    def from_connect_batch(self, topic: str, schema: Schema | None,
                           values: list[Any]) -> list[bytes | None]:
        """Values of one schema (a ``SourceBatch``) converted as ``from_connect`` converts
        each; raises when one does not convert (the runtime then converts record by
        record, so the failure is reported with its own record). This default calls
        ``from_connect`` per value; a converter that can do a whole batch overrides it."""
        return [self.from_connect(topic, schema, value) for value in values]


class HeaderConverter(Plugin):
    """Turns header bytes into Connect values and back (``header.converter``)."""

    def __init__(self, config: Mapping[str, str]) -> None:
        self.config = config

    @abstractmethod
    def to_connect_header(self, topic: str, key: str, data: bytes | None) -> SchemaAndValue: ...

    @abstractmethod
    def from_connect_header(self, topic: str, key: str, schema: Schema | None,
                            value: Any) -> bytes | None: ...


class Transformation(Plugin, Generic[R]):
    """A single message transform: returns the new record, or None to drop it."""

    def __init__(self, config: Mapping[str, str]) -> None:
        self.config = config

    @abstractmethod
    def apply(self, record: R) -> R | None: ...

    def apply_columns(self, columns: SinkColumns) -> SinkColumns | None:
        """A sink poll transformed as whole columns, as ``apply`` would transform each of
        its records (none dropped); None when this transformation works record by record
        only (the default). The runtime then builds the records and calls ``apply``, and
        it also falls back to ``apply`` whenever this raises, so each failure is reported
        with its own record."""
        return None

    def close(self) -> None:
        """Release resources."""


class Predicate(Plugin, Generic[R]):
    """Decides whether a transform applies to a record (``predicates.*``)."""

    def __init__(self, config: Mapping[str, str]) -> None:
        self.config = config

    @abstractmethod
    def test(self, record: R) -> bool: ...
