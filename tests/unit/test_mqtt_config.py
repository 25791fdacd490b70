"""The MQTT connectors' pure logic: addresses, topic filters, the sink's topic and payload,
the source's subscriptions."""

from __future__ import annotations

import pytest

from kanal_worker.api import SinkRecord
from kanal_worker.connectors.mqtt.settings import (
    MqttSinkSettings,
    MqttSourceSettings,
    Server,
    server,
    topic_filter_problem,
    topic_name_problem,
)
from kanal_worker.connectors.mqtt.sink import mqtt_topic, payload
from kanal_worker.connectors.mqtt.source import MqttSourceConnector, subscriptions
from kanal_worker.runtime.registry import find

BASE = {"mqtt.server.uri": "tcp://broker:1883", "mqtt.topics": "vehicles/+/telemetry",
        "kafka.topic": "vehicle.telemetry"}


def test_broker_addresses() -> None:
    assert server("tcp://broker:1884") == Server("broker", 1884, False)
    assert server("ssl://broker") == Server("broker", 8883, True)
    assert server("mqtt://10.0.0.1") == Server("10.0.0.1", 1883, False)
    for bad in ("broker:1883", "http://broker", "tcp://", "tcp://broker:port"):
        with pytest.raises(ValueError, match="tcp://host:port"):
            server(bad)


@pytest.mark.parametrize("topic", ["vehicles/+/telemetry", "vehicles/#", "#", "+", "a//b",
                                   "$share/group/vehicles/#", "/leading"])
def test_valid_topic_filters(topic: str) -> None:
    assert topic_filter_problem(topic) is None


@pytest.mark.parametrize(("topic", "problem"), [
    ("vehicles/speed+", "must fill a whole level"),
    ("vehicles/#/speed", "may only be the last level"),
    ("ve#", "must fill a whole level"),
    ("", "matches nothing"),
    ("$share/g+/a", "group without + or #"),
    ("$share/group", "group without + or #"),
])
def test_invalid_topic_filters(topic: str, problem: str) -> None:
    found = topic_filter_problem(topic)
    assert found is not None and problem in found


def test_topic_names_refuse_wildcards() -> None:
    assert topic_name_problem("vehicles/VH-1/speeding") is None
    assert "wildcard" in (topic_name_problem("vehicles/+/speeding") or "")
    assert "empty" in (topic_name_problem("") or "")


def test_settings_keys_and_errors() -> None:
    settings = MqttSourceSettings.parse({**BASE, "mqtt.qos": "1", "mqtt.password": "s3cret"})
    assert settings.qos == 1 and settings.clean_session is True
    assert settings.password.get_secret_value() == "s3cret" and "s3cret" not in repr(settings)
    errors = MqttSourceSettings.config_errors({**BASE, "mqtt.qos": "3",
                                               "mqtt.topics": "a/b#"})
    assert set(errors) == {"mqtt.qos", "mqtt.topics"}
    assert "wildcard" in MqttSinkSettings.config_errors(
        {"mqtt.server.uri": "tcp://b", "mqtt.topic": "out/#"})["mqtt.topic"][0]


def test_tasks_share_the_subscription_only_when_there_are_several() -> None:
    one = MqttSourceSettings.parse(BASE)
    assert subscriptions(one, "vehicles-in-0") == ["vehicles/+/telemetry"]
    two = MqttSourceSettings.parse({**BASE, "mqtt.task.count": "2"})
    assert subscriptions(two, "vehicles-in-1") == ["$share/vehicles-in/vehicles/+/telemetry"]
    named = MqttSourceSettings.parse({**BASE, "mqtt.shared.subscription.group": "fleet"})
    assert subscriptions(named, "vehicles-in-0") == ["$share/fleet/vehicles/+/telemetry"]


def test_without_shared_subscriptions_the_tasks_split_the_filters_and_subscribe_plainly(
        ) -> None:
    config = {**BASE, "mqtt.topics": "a/+,b/#,c", "mqtt.shared.subscription.enabled": "false"}
    tasks = MqttSourceConnector().task_configs(config, 2)
    assert [task["mqtt.topics"] for task in tasks] == ["a/+,c", "b/#"]
    assert [subscriptions(MqttSourceSettings.parse(task), f"vehicles-in-{n}")
            for n, task in enumerate(tasks)] == [["a/+", "c"], ["b/#"]]
    # never more tasks than filters
    assert len(MqttSourceConnector().task_configs(config, 5)) == 3


def record(key: object, value: object, encoded: bytes | None = None) -> SinkRecord:
    return SinkRecord(topic="vehicle.speeding", kafka_partition=2, kafka_offset=7, key=key,
                      value=value, encoded_value=encoded)


def test_sink_topic_template_and_payload() -> None:
    template = "fleet/${topic}/${partition}/${key}"
    assert mqtt_topic(template, record("VH-1", None)) == "fleet/vehicle.speeding/2/VH-1"
    assert mqtt_topic(template, record(None, None)) == "fleet/vehicle.speeding/2/"
    assert payload(record(None, b"\x00raw")) == b"\x00raw"
    assert payload(record(None, "text")) == b"text"
    assert payload(record(None, None)) == b""
    assert payload(record(None, {"speed": 130})) == b'{"speed":130}'
    assert payload(record(None, {"speed": 130}, b'{"speed": 130}')) == b'{"speed": 130}'


def test_confluent_class_names_are_aliases() -> None:
    for kind in ("Source", "Sink"):
        found = find("connector", f"io.confluent.connect.mqtt.Mqtt{kind}Connector",
                     "connector.class")
        assert found.cls.__name__ == f"Mqtt{kind}Connector"
