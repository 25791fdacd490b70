"""B5: the MQTT source and sink against raw Paho publish and subscribe, on mosquitto.

One run: a raw publisher sends the workload's first ``count`` JSON lines at QoS 1 to a
fresh MQTT topic, where two persistent sessions wait (Kanal's source task's and a raw
subscriber's), so each holds the same backlog. The raw subscriber drains its own; Kanal's
MqttSource drains the other into a fresh Kafka topic (timed on its high watermarks);
then Kanal's MqttSink publishes that topic back to MQTT at QoS 1 (timed on its committed
offsets). Ratios: source / raw subscribe, sink / raw publish, in records per second from
launch (the source receives from MQTT before its first record reaches Kafka, where its
records/s window starts).
"""

from __future__ import annotations

import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

from bench.measure import Sample, run_raw, watch
from bench.raw import mqtt_client
from bench.sources import TopicCounter, drop_topic, lines_file, new_topic
from bench.storage import Committed
from bench.systems import Kanal, delete_groups
from bench.workload import PARTITIONS, Workload

MAX_MESSAGES = 200_000
"""MQTT moves tens of thousands of messages a second here: more would only take longer."""
BYTES = "org.apache.kafka.connect.converters.ByteArrayConverter"


def messages(workload: Workload) -> int:
    return min(workload.records, MAX_MESSAGES)


def _session(url: str, client_id: str, topic_filter: str) -> None:
    """Leave a persistent session subscribed to ``topic_filter`` on the broker."""
    subscribed = threading.Event()
    client = mqtt_client(url, client_id, persistent=True)
    client.on_subscribe = lambda *_args: subscribed.set()
    client.subscribe(topic_filter, qos=1)
    if not subscribed.wait(30):
        raise RuntimeError(f"mosquitto did not confirm the subscription of {client_id}")
    client.disconnect()
    client.loop_stop()


def _kanal(sample: Sample, kanal: Kanal, progress: Any, timeout: float) -> Sample:
    try:
        kanal.start()
        window = watch(progress, sample.records, kanal.pid, timeout, started=kanal.started,
                       interval=0.05, alive=kanal.alive)
        sample.peak_rss_mb = kanal.peak_rss_mb() if kanal.alive() else 0.0
        window.fill(sample)
    finally:
        kanal.stop()
        if not sample.ok:
            sample.note += " | " + kanal.tail(5).replace("\n", " / ")
    return sample


def b5(workload: Workload, bootstrap: str, mqtt_url: str, run: int,
       workdir: Path) -> list[Sample]:
    count = messages(workload)
    unique = uuid.uuid4().hex[:8]
    mqtt_topic = f"bench/{unique}/vehicles"
    source = f"bench-mqtt-src-{unique}"
    raw_client = f"bench-raw-{unique}"
    for client_id in (f"kanal-{source}-0", raw_client):
        _session(mqtt_url, client_id, mqtt_topic)
    timeout = 120 + count / 1000
    lines = str(lines_file(workdir, workload.records))
    samples = [
        run_raw(Sample("B5 mqtt", "publish", "paho", run, count), "bench.raw",
                ["mqtt-publish", mqtt_url, mqtt_topic, lines, str(count)], timeout),
        run_raw(Sample("B5 mqtt", "subscribe", "paho", run, count), "bench.raw",
                ["mqtt-subscribe", mqtt_url, raw_client, mqtt_topic, str(count)], timeout)]
    topic = new_topic(bootstrap)
    sink = f"bench-mqtt-sink-{unique}"
    try:
        counter = TopicCounter(bootstrap, topic)
        try:
            samples.append(_kanal(
                Sample("B5 mqtt", "subscribe", "kanal", run, count),
                Kanal(workdir / source, bootstrap, [{
                    "name": source, "connector.class": "MqttSourceConnector",
                    "tasks.max": "1", "mqtt.server.uri": mqtt_url, "mqtt.topics": mqtt_topic,
                    "kafka.topic": topic, "mqtt.qos": "1",
                    "mqtt.clean.session.enabled": "false", "value.converter": BYTES}]),
                counter, timeout))
        finally:
            counter.close()
        committed = Committed(bootstrap, f"connect-{sink}",
                              Workload(topic, count, PARTITIONS, 0, 0))
        try:
            samples.append(_kanal(
                Sample("B5 mqtt", "publish", "kanal", run, count),
                Kanal(workdir / sink, bootstrap, [{
                    "name": sink, "connector.class": "MqttSinkConnector", "tasks.max": "1",
                    "topics": topic, "mqtt.server.uri": mqtt_url, "mqtt.qos": "1",
                    "mqtt.topic": f"bench/{unique}/out", "value.converter": BYTES}]),
                committed, timeout))
        finally:
            committed.close()
    finally:
        for name in (source, sink):
            shutil.rmtree(workdir / name, ignore_errors=True)
        drop_topic(bootstrap, topic)
        delete_groups(bootstrap, f"connect-{sink}")
        _forget_sessions(mqtt_url, f"kanal-{source}-0", raw_client)
    return samples


def _forget_sessions(url: str, *client_ids: str) -> None:
    """End the sessions the run left (a clean start discards them on the broker)."""
    for client_id in client_ids:
        client = mqtt_client(url, client_id)
        client.disconnect()
        client.loop_stop()
