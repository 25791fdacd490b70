"""MqttSinkConnector: each Kafka record published as one MQTT message.

``write`` returns once the broker acknowledged every message of the batch (for QoS 1 and
2), so the offsets the runtime commits after it only cover messages the broker has.
"""

from __future__ import annotations

import time
from collections import deque

import paho.mqtt.client as mqtt

from kanal_worker.api import (
    DataError,
    RecordWriteError,
    RetriableError,
    SinkBatch,
    SinkConnector,
    SinkRecord,
    SinkTask,
    SinkTaskContext,
)
from kanal_worker.connectors.mqtt.client import connect, connection_problems, new_client
from kanal_worker.connectors.mqtt.settings import MqttSinkSettings, topic_name_problem
from kanal_worker.converters.json import dumps

IN_FLIGHT = 1000
"""Messages sent and not yet acknowledged by the broker (Paho's default of 20 leaves the
connection idle while it waits for acknowledgements)."""
OUTSTANDING = 10000
"""Messages handed to the client and not yet acknowledged: well below the 65535 message
ids of MQTT, which Paho refuses to reuse while a message holds one (it would drop the
new message)."""


def mqtt_topic(template: str, record: SinkRecord) -> str:
    """``mqtt.topic`` for ``record``: its Kafka topic, partition and key put in."""
    return (template.replace("${topic}", record.topic)
            .replace("${partition}", str(record.kafka_partition or 0))
            .replace("${key}", "" if record.key is None else str(record.key)))


def payload(record: SinkRecord) -> bytes:
    """The message body: bytes as they are, text as UTF-8, anything else as JSON."""
    value = record.value
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return record.encoded_value or dumps(value)


class MqttSinkTask(SinkTask[MqttSinkSettings]):
    def __init__(self, settings: MqttSinkSettings, context: SinkTaskContext) -> None:
        super().__init__(settings, context)
        self.client = new_client(settings, f"kanal-{context.task_id}")
        self.client.max_inflight_messages_set(IN_FLIGHT)
        connect(self.client, settings)
        self.fixed_topic = "" if "${" in settings.topic_template else settings.topic_template
        """The one topic of every record when the template has no placeholder."""

    def write(self, batch: SinkBatch) -> None:
        settings = self.settings
        deadline = time.monotonic() + settings.publish_timeout_seconds
        outstanding: deque[mqtt.MQTTMessageInfo] = deque()
        failures: list[tuple[object, BaseException]] = []
        for record in batch:
            topic = self.fixed_topic or mqtt_topic(settings.topic_template, record)
            problem = None if self.fixed_topic else topic_name_problem(topic)
            if problem is not None:
                failures.append((record, DataError(
                    f"mqtt.topic {settings.topic_template!r} gives no topic to publish to "
                    f"for this record: {problem}")))
                continue
            try:
                body = payload(record)
            except DataError as exc:
                failures.append((record, exc))
                continue
            if len(outstanding) >= OUTSTANDING:
                self._wait(outstanding.popleft(), deadline, len(batch))
            outstanding.append(self.client.publish(topic, body, settings.qos, settings.retain))
        for info in outstanding:
            self._wait(info, deadline, len(batch))
        if failures:
            raise RecordWriteError(failures)

    def _wait(self, info: mqtt.MQTTMessageInfo, deadline: float, batch: int) -> None:
        """Return once the broker acknowledged ``info``'s message; RetriableError when it
        did not by ``deadline`` or the client could not send it."""
        try:
            left = deadline - time.monotonic()
            if not info.is_published() and left > 0:
                info.wait_for_publish(left)
            published = info.is_published()
        except (RuntimeError, ValueError) as exc:
            # not connected (the client reconnects by itself), or no message id free
            raise RetriableError(f"cannot publish to the broker ({exc}); the batch is "
                                 "published again") from None
        if not published:
            raise RetriableError(
                f"the broker did not acknowledge the batch of {batch} records within "
                f"mqtt.publish.timeout.seconds={self.settings.publish_timeout_seconds}; it is "
                "published again")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class MqttSinkConnector(SinkConnector[MqttSinkSettings]):
    settings = MqttSinkSettings
    task_class = MqttSinkTask
    aliases = ("io.confluent.connect.mqtt.MqttSinkConnector",)

    def validate(self, settings: MqttSinkSettings) -> dict[str, list[str]]:
        return connection_problems(settings)

