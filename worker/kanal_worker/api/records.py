"""Records as they travel through converters, transforms and tasks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Self

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
        return dataclasses.replace(self, **changes)


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
