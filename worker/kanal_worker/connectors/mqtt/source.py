"""MqttSourceConnector: MQTT topic filters into one Kafka topic, with no message lost.

A message is acknowledged to the broker (PUBACK, or PUBREC for QoS 2) only in ``commit``,
which the runtime calls once Kafka acknowledged every record polled before it. Until
then the broker keeps the message in the task's persistent session and sends it again
after a crash or a reconnect: with QoS 1 or 2 and ``mqtt.clean.session.enabled=false``
nothing is lost, and what comes twice is exactly what MQTT redelivers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from kanal_worker.api import (
    ConfigError,
    ConnectError,
    Header,
    RetriableError,
    SourceConnector,
    SourceRecord,
    SourceTask,
    SourceTaskContext,
)
from kanal_worker.api.backoff import exponential_backoff
from kanal_worker.api.schema import BOOLEAN, BYTES, INT32, STRING
from kanal_worker.connectors.mqtt.client import (
    connect,
    connection_problems,
    new_client,
    subscribe_error,
)
from kanal_worker.connectors.mqtt.settings import MqttSourceSettings

log = logging.getLogger(__name__)

RECEIVE_MAXIMUM = 65535
"""The most unacknowledged messages MQTT 5 lets a client ask for."""


class Received(NamedTuple):
    """A message as the task keeps it until ``poll``: Paho's message object carries its
    MQTT 5 properties (kilobytes each), too much for a window of tens of thousands."""

    connection: int
    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    dup: bool


def share_group(settings: MqttSourceSettings, task_id: str) -> str:
    """The shared subscription group of the tasks, or "" to subscribe plainly."""
    if not settings.shared_subscription:
        return ""
    if settings.share_group:
        return settings.share_group
    return task_id.rsplit("-", 1)[0] if settings.task_count > 1 else ""


def subscriptions(settings: MqttSourceSettings, task_id: str) -> list[str]:
    group = share_group(settings, task_id)
    return [f"$share/{group}/{topic}" if group and not topic.startswith("$share/") else topic
            for topic in settings.topics]


class MqttSourceTask(SourceTask[MqttSourceSettings]):
    def __init__(self, settings: MqttSourceSettings, context: SourceTaskContext) -> None:
        super().__init__(settings, context)
        self.client_id = f"kanal-{context.task_id}"
        self.filters = subscriptions(settings, context.task_id)
        self.partition = {"mqtt.client.id": self.client_id}
        self.persistent = not settings.clean_session and settings.qos > 0
        self.lock = threading.Condition()
        self.connection = 0
        """Counts connections. An acknowledgement (PUBACK, PUBREC) belongs to the
        connection that brought its message: the broker sends again, under a message id
        it may give to another message once acknowledged, what a lost connection left
        unacknowledged."""
        self.buffer: deque[Received] = deque()
        self.polled: list[tuple[int, int, int]] = []
        """(connection, message id, QoS) of each message returned by ``poll``, acknowledged
        in ``commit``."""
        self.window = min(RECEIVE_MAXIMUM, settings.buffer_capacity)
        """The most unacknowledged messages the broker sends (MQTT 5 Receive Maximum)."""
        self.subscribed = threading.Event()
        self.broker: object = settings.server_uri[0]
        self.connected = False
        """Whether the client is connected now (Paho reconnects by itself)."""
        self.failure: Exception | None = None
        """What the network thread met that the task must fail with."""
        self.client = new_client(settings, self.client_id, manual_ack=True)
        self.client.on_message = self._received
        self.client.on_subscribe = self._subscribed
        if share_group(settings, context.task_id):
            # a restarted mosquitto forgets shared subscriptions: until a task of the group
            # is back, what is published reaches none, so try again every second
            self.client.reconnect_delay_set(1, 1)

    def start(self) -> None:
        deadline = time.monotonic() + self.settings.connect_timeout_seconds
        retry = 0
        while True:
            try:
                self.broker = connect(self.client, self.settings, self._connected,
                                      self._disconnected, self.window, self._refused)
                break
            except RetriableError as exc:
                if time.monotonic() >= deadline:
                    raise ConnectError(str(exc)) from None
                time.sleep(exponential_backoff(retry, 0.5, 5))
                retry += 1
        if not self.subscribed.wait(self.settings.connect_timeout_seconds):
            raise ConnectError(f"the broker did not answer the subscription to "
                               f"{self.filters} within {self.settings.connect_timeout_seconds}s")
        if self.failure is not None:
            raise self.failure

    def _connected(self, session_present: bool) -> None:
        self.connected = True
        if self.persistent and not session_present and self.connection > 0:
            log.warning("MQTT client %s: the broker did not keep the session; messages "
                        "published while disconnected were not kept for it", self.client_id)
        # retained messages only for a new subscription: a resumed one has had them
        options = SubscribeOptions(qos=self.settings.qos,
                                   retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        self.client.subscribe([(topic, options) for topic in self.filters])

    def _subscribed(self, _client: mqtt.Client, _userdata: Any, _mid: int,
                    reasons: list[ReasonCode], _properties: Properties | None) -> None:
        for topic, reason in zip(self.filters, reasons, strict=False):
            problem = subscribe_error(reason, topic)
            if problem is not None:
                self.failure = ConfigError("mqtt.topics", problem)
        self.subscribed.set()

    def _refused(self, error: Exception) -> None:
        self.failure = error

    def _disconnected(self) -> None:
        with self.lock:
            self.connected = False
            self.connection += 1
            if self.persistent:
                # the broker sends these again on the next connection
                self.buffer = deque(item for item in self.buffer if item.qos == 0)

    def _received(self, _client: mqtt.Client, _userdata: Any,
                  message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.buffer.append(Received(self.connection, message.topic, bytes(message.payload),
                                        message.mid, message.qos, bool(message.retain),
                                        bool(message.dup)))
            self.lock.notify()

    def poll(self) -> list[SourceRecord]:
        if self.failure is not None:
            raise self.failure
        with self.lock:
            if not self.buffer:
                self.lock.wait(self.settings.empty_timeout_ms / 1000)
            if not self.buffer and not self.connected:
                # the runtime shows this in the task's status and polls again later
                raise RetriableError(f"mqtt.server.uri: lost the connection to the broker "
                                     f"{self.broker}; reconnecting (check that it runs)")
            taken = [self.buffer.popleft()
                     for _ in range(min(len(self.buffer), self.settings.batch_size))]
            self.polled.extend((message.connection, message.mid, message.qos)
                               for message in taken if message.qos > 0)
            waiting = len(self.polled)
        if waiting * 2 >= self.window:
            # the broker stops sending when the window is full of unacknowledged messages
            self.context.request_commit()
        now = int(time.time() * 1000)
        return [self._record(message, now) for message in taken]

    def _record(self, message: Received, now: int) -> SourceRecord:
        return SourceRecord(
            topic=self.settings.kafka_topic, key=message.topic, key_schema=STRING,
            value=message.payload, value_schema=BYTES, timestamp=now,
            headers=[Header("mqtt.message.id", message.mid, INT32),
                     Header("mqtt.qos", message.qos, INT32),
                     Header("mqtt.retained", message.retain, BOOLEAN),
                     Header("mqtt.duplicate", message.dup, BOOLEAN)],
            source_partition=self.partition,
            source_offset={"mqtt.message.id": message.mid})

    def commit(self) -> None:
        """Kafka has every record polled so far: the broker may forget their messages."""
        with self.lock:
            polled, self.polled = self.polled, []
            for connection, mid, qos in polled:
                if connection == self.connection:
                    self.client.ack(mid, qos)

    def stop(self) -> None:
        # a persistent session stays on the broker, holding what was not acknowledged
        self.client.disconnect()
        self.client.loop_stop()


class MqttSourceConnector(SourceConnector[MqttSourceSettings]):
    """Every task subscribes to every filter; with several tasks they subscribe in one
    MQTT 5 shared subscription group, so the broker gives each message to one of them.
    Without shared subscriptions the filters are split between the tasks instead."""

    settings = MqttSourceSettings
    task_class = MqttSourceTask
    aliases = ("io.confluent.connect.mqtt.MqttSourceConnector",)

    def task_configs(self, config: Mapping[str, str], max_tasks: int) -> list[dict[str, str]]:
        settings = MqttSourceSettings.parse(config)
        if settings.shared_subscription:
            return [{**config, "mqtt.task.count": str(max_tasks)} for _ in range(max_tasks)]
        tasks = min(max_tasks, len(settings.topics))
        return [{**config, "mqtt.topics": ",".join(settings.topics[task::tasks]),
                 "mqtt.task.count": "1"} for task in range(tasks)]

    def validate(self, settings: MqttSourceSettings) -> dict[str, list[str]]:
        return connection_problems(settings)
