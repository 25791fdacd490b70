"""MqttSourceConnector and MqttSinkConnector: MQTT brokers to Kafka and back.

Confluent's connectors rebuilt on Paho's MQTT 5 client, with their keys and class names
(``io.confluent.connect.mqtt.MqttSourceConnector``, ``...MqttSinkConnector``). The
source acknowledges a message to the broker only after Kafka acknowledged its record,
so with QoS 1 and a persistent session a crash or a broker restart loses nothing; its
tasks share the subscriptions through MQTT 5 shared subscriptions.
"""

from kanal_worker.connectors.mqtt.sink import MqttSinkConnector
from kanal_worker.connectors.mqtt.source import MqttSourceConnector

__all__ = ["MqttSinkConnector", "MqttSourceConnector"]
