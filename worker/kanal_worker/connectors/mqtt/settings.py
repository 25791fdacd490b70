"""The keys of Confluent's MQTT source and sink, and the few Kanal adds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import SecretStr, field_validator

from kanal_worker.api import CommaList, Settings, setting

CONNECTION = "Connection"
SECURITY = "Security"

SCHEMES = {"tcp": (1883, False), "mqtt": (1883, False), "ssl": (8883, True),
           "mqtts": (8883, True)}
"""URI schemes Paho's Java client accepts (and their MQTT aliases): default port, TLS."""


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'ssl' if self.tls else 'tcp'}://{self.host}:{self.port}"


def server(uri: str) -> Server:
    """``tcp://host:port`` or ``ssl://host:port`` as a Server; ValueError naming the fix."""
    parts = urlsplit(uri)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError(f"{uri!r} is not a broker address; write tcp://host:port, or "
                         f"ssl://host:port for TLS")
    default_port, tls = SCHEMES[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError:
        raise ValueError(f"{uri!r} has an invalid port; write tcp://host:port") from None
    return Server(parts.hostname, port, tls)


LEVEL = re.compile(r"[^#+]*|[#+]")


def topic_filter_problem(topic: str) -> str | None:
    """Why ``topic`` is not a valid MQTT topic filter, or None (MQTT 5 section 4.7)."""
    if not topic:
        return "an empty topic filter matches nothing"
    if "\0" in topic or len(topic.encode()) > 65535:
        return f"{topic!r} holds a NUL character or is longer than 65535 bytes"
    name = topic
    if topic.startswith("$share/"):
        parts = topic.split("/", 2)
        if len(parts) < 3 or not parts[1] or not LEVEL.fullmatch(parts[1]) or parts[1] in "#+":
            return f"{topic!r} is not $share/<group>/<filter> with a group without + or #"
        name = parts[2]
    levels = name.split("/")
    for index, level in enumerate(levels):
        if not LEVEL.fullmatch(level):
            return (f"{topic!r}: the wildcards + and # must fill a whole level "
                    f"(level {level!r}); write e.g. vehicles/+/speed or vehicles/#")
        if level == "#" and index != len(levels) - 1:
            return f"{topic!r}: # may only be the last level; write e.g. vehicles/#"
    return None


def topic_name_problem(topic: str) -> str | None:
    """Why ``topic`` cannot be published to, or None."""
    if not topic:
        return "the topic is empty"
    if "+" in topic or "#" in topic:
        return f"{topic!r} holds a wildcard (+ or #), which only subscriptions may use"
    if "\0" in topic or len(topic.encode()) > 65535:
        return f"{topic!r} holds a NUL character or is longer than 65535 bytes"
    return None


class MqttConnectionSettings(Settings):
    """What both connectors need to reach the broker."""

    server_uri: CommaList = setting(
        key="mqtt.server.uri", importance="HIGH", group=CONNECTION,
        doc="List of MQTT brokers to connect to (tcp://host:port, ssl://host:port for TLS), "
            "tried in order when the task connects.")
    username: str = setting(
        "", key="mqtt.username", importance="HIGH", group=CONNECTION,
        doc="Username to connect with, or blank to connect without a username.")
    password: SecretStr = setting(
        SecretStr(""), key="mqtt.password", importance="HIGH", group=CONNECTION,
        doc="Password to connect with, or blank to connect without a password.")
    qos: int = setting(
        0, key="mqtt.qos", importance="MEDIUM", group=CONNECTION, ge=0, le=2,
        doc="The MQTT quality of service: 0 at most once, 1 at least once, 2 exactly once "
            "between broker and client. Use 1 with mqtt.clean.session.enabled=false to lose "
            "nothing.")
    clean_session: bool = setting(
        True, key="mqtt.clean.session.enabled", importance="LOW", group=CONNECTION,
        doc="Sets whether the client and server should remember state across restarts and "
            "reconnects; false keeps a persistent session (MQTT 5: clean start off, a "
            "session that never expires), so messages published while the task is away "
            "wait for it.")
    connect_timeout_seconds: int = setting(
        30, key="mqtt.connect.timeout.seconds", importance="LOW", group=CONNECTION, ge=1,
        doc="Sets the connection timeout value: how long the task waits for the broker "
            "when it connects.")
    keepalive_seconds: int = setting(
        60, key="mqtt.keepalive.interval.seconds", importance="LOW", group=CONNECTION, ge=1,
        doc="Sets the \"keep alive\" interval.")
    trust_store_path: str = setting(
        "", key="mqtt.ssl.trust.store.path", importance="HIGH", group=SECURITY,
        doc="The trust store (PKCS12, JKS or PEM) with the certificates that validate the "
            "broker's TLS certificate; blank trusts the system's certificate authorities.")
    trust_store_password: SecretStr = setting(
        SecretStr(""), key="mqtt.ssl.trust.store.password", importance="HIGH",
        group=SECURITY, doc="Password used to open the trust store.")
    key_store_path: str = setting(
        "", key="mqtt.ssl.key.store.path", importance="HIGH", group=SECURITY,
        doc="The key store (PKCS12) with the private key and certificate this client "
            "authenticates with; blank sends no client certificate.")
    key_store_password: SecretStr = setting(
        SecretStr(""), key="mqtt.ssl.key.store.password", importance="HIGH",
        group=SECURITY, doc="Password used to open the key store.")

    @field_validator("server_uri")
    @classmethod
    def _servers(cls, uris: list[str]) -> list[str]:
        if not uris:
            raise ValueError("list at least one broker, e.g. tcp://broker:1883")
        if len({server(uri).tls for uri in uris}) > 1:
            raise ValueError("the list mixes tcp:// and ssl:// brokers; list brokers of one "
                             "kind (the client uses TLS for all or none)")
        return uris

    @property
    def servers(self) -> list[Server]:
        return [server(uri) for uri in self.server_uri]


class MqttSourceSettings(MqttConnectionSettings):
    topics: CommaList = setting(
        key="mqtt.topics", importance="HIGH", group="MQTT",
        doc="List of MQTT topic filters to subscribe to; + and # wildcards allowed.")
    kafka_topic: str = setting(
        key="kafka.topic", importance="HIGH", group="Kafka",
        doc="The Kafka topic the messages are written to.")
    buffer_capacity: int = setting(
        50000, key="records.buffer.max.capacity", importance="LOW", group="Kafka", ge=1,
        doc="The most messages received and not yet written to Kafka; Kanal asks the "
            "broker for at most this many unacknowledged messages (MQTT 5 Receive Maximum, "
            "at most 65535).")
    batch_size: int = setting(
        4096, key="records.buffer.max.batch.size", importance="LOW", group="Kafka", ge=1,
        doc="The most records returned by one poll.")
    empty_timeout_ms: int = setting(
        100, key="records.buffer.empty.timeout", importance="LOW", group="Kafka", ge=0,
        doc="How long a poll waits for a message when none is buffered, in milliseconds.")
    share_group: str = setting(
        "", key="mqtt.shared.subscription.group", importance="LOW", group="MQTT",
        doc="Kanal: the MQTT 5 shared subscription group ($share/<group>/<filter>) the "
            "tasks subscribe in, so the broker gives each message to one of them; blank "
            "uses the connector's name when tasks.max is above 1 and subscribes plainly "
            "with one task.")
    shared_subscription: bool = setting(
        True, key="mqtt.shared.subscription.enabled", importance="LOW", group="MQTT",
        doc="Kanal: true lets several tasks share every filter through an MQTT 5 shared "
            "subscription (the broker balances the messages; mosquitto does not restore "
            "shared subscriptions when it restarts, so messages published before the tasks "
            "subscribe again are lost for them). false splits the filters between the "
            "tasks as Confluent's connector does (at most one task per filter), each "
            "subscribing plainly, which a broker restart keeps.")
    task_count: int = setting(
        1, key="mqtt.task.count", importance="LOW", ge=1,
        doc="Set by the connector for its tasks: how many tasks share the subscriptions.")

    @field_validator("topics")
    @classmethod
    def _filters(cls, topics: list[str]) -> list[str]:
        if not topics:
            raise ValueError("list at least one topic filter, e.g. vehicles/+/telemetry")
        for topic in topics:
            problem = topic_filter_problem(topic)
            if problem is not None:
                raise ValueError(problem)
        return topics


class MqttSinkSettings(MqttConnectionSettings):
    topic_template: str = setting(
        "${topic}", key="mqtt.topic", importance="HIGH", group="MQTT",
        doc="Kanal: the MQTT topic each record is published to; ${topic}, ${partition} "
            "and ${key} are replaced by the record's Kafka topic, partition and key.")
    retain: bool = setting(
        False, key="mqtt.retain", importance="LOW", group="MQTT",
        doc="Whether the broker keeps the last message of each topic for new subscribers.")
    publish_timeout_seconds: int = setting(
        60, key="mqtt.publish.timeout.seconds", importance="LOW", group="MQTT", ge=1,
        doc="Kanal: how long a batch waits for the broker to acknowledge its messages "
            "before it is retried.")

    @field_validator("topic_template")
    @classmethod
    def _template(cls, template: str) -> str:
        problem = topic_name_problem(template.replace("${", "").replace("}", ""))
        if problem is not None:
            raise ValueError(problem)
        return template
