"""A sink connector's offsets: those of its consumer group, read and changed as KIP-875
asks."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from kanal_worker.api.errors import ConnectError
from kanal_worker.runtime.herder import BadRequestError, ConflictError, ConnectorOffset
from kanal_worker.runtime.sink import group_id

SINK_TOPIC, SINK_PARTITION, SINK_OFFSET = "kafka_topic", "kafka_partition", "kafka_offset"
ADMIN_TIMEOUT = 30.0
STATIC_MEMBERS_WAIT = 45.0
"""A static group member (``group.instance.id``) does not leave the group when its task
stops: the broker keeps it until its session times out. Offset changes wait up to this
long for the group to empty."""


def parse_sink_offsets(offsets: list[ConnectorOffset]) -> dict[tuple[str, int], int | None]:
    """Kafka topic partitions and their offsets (None resets), checked like Kafka Connect."""
    parsed: dict[tuple[str, int], int | None] = {}
    for entry in offsets:
        partition = entry.partition
        if not partition:
            raise BadRequestError("The partition for a sink connector offset cannot be null "
                                  "or missing")
        if SINK_TOPIC not in partition or SINK_PARTITION not in partition:
            raise BadRequestError(f"The partition for a sink connector offset must contain "
                                  f"the keys '{SINK_TOPIC}' and '{SINK_PARTITION}'")
        topic, number = partition[SINK_TOPIC], partition[SINK_PARTITION]
        if not isinstance(topic, str) or not topic:
            raise BadRequestError("Kafka topic names must be valid strings and may not be "
                                  "null")
        key = (topic, _integer(number, "partition"))
        if entry.offset is None:
            parsed[key] = None
        elif SINK_OFFSET not in entry.offset:
            raise BadRequestError(f"The offset for a sink connector should either be null or "
                                  f"contain the key '{SINK_OFFSET}'")
        else:
            parsed[key] = _integer(entry.offset[SINK_OFFSET], "offset")
    return parsed


def _integer(value: Any, what: str) -> int:
    """Kafka Connect accepts both 10 and "10"."""
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            number = int(value)
        except ValueError:
            pass
        else:
            if number >= 0:
                return number
    raise BadRequestError(f"Failed to parse the following Kafka {what} value in the provided "
                          f"offsets: '{value}'. {what.capitalize()} values for sink connectors "
                          "need to be integers.")


class ConsumerGroupOffsets:
    """A sink connector's offsets: those of its consumer group, through the admin client."""

    def __init__(self, admin_config: Mapping[str, str], connector: str) -> None:
        self.admin = AdminClient(dict(admin_config))
        self.connector = connector
        self.group = group_id(connector)

    def read(self) -> list[ConnectorOffset]:
        listed = self._call(self.admin.list_consumer_group_offsets,
                            [ConsumerGroupTopicPartitions(self.group)],
                            f"Failed to read the offsets of consumer group {self.group}")
        return [ConnectorOffset({SINK_TOPIC: tp.topic, SINK_PARTITION: tp.partition},
                                {SINK_OFFSET: tp.offset})
                for tp in listed.topic_partitions if tp.offset >= 0]

    def alter(self, offsets: Mapping[tuple[str, int], int | None]) -> None:
        """Write ``offsets``; a None offset removes the partition's committed offset."""
        self._await_empty_group("alter")
        wanted = {tp: offset for tp, offset in offsets.items() if offset is not None}
        if len(wanted) < len(offsets):
            # The Python admin client cannot delete single partitions' offsets: delete the
            # group and write back what remains (the group is empty, nothing races it).
            current = {(o.partition[SINK_TOPIC], o.partition[SINK_PARTITION]):
                       int(o.offset[SINK_OFFSET]) for o in self.read() if o.offset}
            wanted = {**{tp: offset for tp, offset in current.items() if tp not in offsets},
                      **wanted}
            self._delete_group("alter")
        if wanted:
            partitions = [TopicPartition(topic, number, offset)
                          for (topic, number), offset in sorted(wanted.items())]
            altered = self._call(self.admin.alter_consumer_group_offsets,
                                 [ConsumerGroupTopicPartitions(self.group, partitions)],
                                 f"Failed to alter consumer group offsets for connector "
                                 f"{self.connector}")
            for tp in altered.topic_partitions:
                if tp.error is not None and tp.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise BadRequestError(f"Topic partition {tp.topic}-{tp.partition} does not "
                                          "exist; offsets can only be set for existing ones")
                if tp.error is not None:
                    raise ConnectError(f"Failed to alter the offset of {tp.topic}-"
                                       f"{tp.partition} for connector {self.connector}: "
                                       f"{tp.error.str()}")

    def reset(self) -> None:
        self._await_empty_group("reset")
        self._delete_group("reset")

    def _call(self, operation: Callable[[list[Any]], dict[str, Future[Any]]],
              request: list[Any], failure: str) -> Any:
        """The group's result of an admin ``operation``; a Kafka error becomes a
        ConnectError saying ``failure``."""
        try:
            return operation(request)[self.group].result(ADMIN_TIMEOUT)
        except KafkaException as exc:
            raise ConnectError(f"{failure}: {exc}") from None

    def _delete_group(self, action: str) -> None:
        try:
            self.admin.delete_consumer_groups([self.group])[self.group].result(ADMIN_TIMEOUT)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:
                raise ConnectError(f"Failed to {action} consumer group offsets for connector "
                                   f"{self.connector}: {exc}") from None

    def _await_empty_group(self, action: str) -> None:
        deadline = time.monotonic() + STATIC_MEMBERS_WAIT
        while True:
            description = self._call(self.admin.describe_consumer_groups, [self.group],
                                     f"Failed to describe consumer group {self.group}")
            if not description.members:
                return
            if time.monotonic() > deadline:
                raise ConflictError(
                    f"Failed to {action} consumer group offsets for connector "
                    f"{self.connector} either because its tasks haven't stopped completely "
                    "yet or the connector was resumed before the request could be completed. "
                    "If the connector is in a stopped state, this operation can be safely "
                    "retried.")
            time.sleep(0.5)
