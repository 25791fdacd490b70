"""MqttSourceConnector and MqttSinkConnector against the real mosquitto and Kafka.

The crash test runs ``kanal standalone`` as a subprocess, SIGKILLs it while publishers
send, and restarts mosquitto: every message reaches Kafka, and a message comes twice only
where MQTT sent it again (its second copy carries the duplicate flag).
``KANAL_MQTT_MESSAGES`` and ``KANAL_MQTT_PUBLISHERS`` scale it (the issue's full run:
100000 and 50).
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from confluent_kafka import Consumer, Message
from paho.mqtt.enums import CallbackAPIVersion

from dev.stack_env import stack_env
from kanal_worker.api import ConfigError
from kanal_worker.connectors.mqtt.settings import MqttSourceSettings
from kanal_worker.connectors.mqtt.source import MqttSourceTask
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.standalone import StandaloneHerder
from kanal_worker.runtime.status import State
from kanal_worker.runtime.validation import errors_of, validate
from tests.integration.own_mosquitto import Mosquitto
from tests.integration.standalone import (
    Standalone,
    in_process_herder,
    wait_for,
    worker_properties,
    write_properties,
)
from tests.kafka_helpers import consume_all, produce

pytestmark = pytest.mark.integration

MESSAGES = int(os.environ.get("KANAL_MQTT_MESSAGES", "10000"))
PUBLISHERS = int(os.environ.get("KANAL_MQTT_PUBLISHERS", "10"))


@pytest.fixture(scope="session")
def mqtt_env() -> dict[str, str]:
    return stack_env("mqtt")


def broker(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    return host, int(port)


def client(url: str, name: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{name}-{uuid.uuid4().hex[:6]}",
                    protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(100)
    c.connect(*broker(url))
    c.loop_start()
    return c


def publish(url: str, topic: str, payloads: list[bytes], rate: float) -> None:
    """Publish ``payloads`` at QoS 1 at about ``rate`` per second; return once the broker
    acknowledged them all."""
    c = client(url, "publisher")
    started = time.monotonic()
    sent = []
    for index, body in enumerate(payloads):
        sent.append(c.publish(topic, body, qos=1))
        ahead = index / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    for info in sent:
        info.wait_for_publish(120)
    c.disconnect()
    c.loop_stop()


def publish_all(url: str, prefix: str, publishers: int, seqs: range, rate: float
                ) -> list[threading.Thread]:
    threads = [threading.Thread(target=publish, daemon=True, args=(
        url, f"{prefix}/vehicles/{p}/telemetry",
        [orjson.dumps({"publisher": p, "seq": s}) for s in seqs], rate))
        for p in range(publishers)]
    for thread in threads:
        thread.start()
    return threads


def task_offsets(path: Path, name: str) -> dict[int, object]:
    """The offset each task of ``name`` committed last (a task's source partition is its
    MQTT client id), from the standalone offsets file."""
    if not path.exists():
        return {}
    data = orjson.loads(path.read_bytes())
    return {task: offset for partitions in data.values() if isinstance(partitions, dict)
            for key, offset in partitions.items() for task in (0, 1)
            if f'"kanal-{name}-{task}"' in key}


def consume_until(kafka: str, topic: str, wanted: set[tuple[int, int]], timeout: float
                  ) -> list[Message]:
    """Every message of ``topic`` until each of ``wanted`` arrived, and 3 s more (so late
    duplicates are counted too)."""
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": f"test-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    messages: list[Message] = []
    seen: set[tuple[int, int]] = set()
    deadline = time.monotonic() + timeout
    quiet_until = None
    try:
        while time.monotonic() < deadline and (quiet_until is None
                                               or time.monotonic() < quiet_until):
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    messages.append(message)
                    value = orjson.loads(message.value())
                    seen.add((value["publisher"], value.get("seq", 0)))
            if quiet_until is None and wanted <= seen:
                quiet_until = time.monotonic() + 3
    finally:
        consumer.close()
    return messages


def test_crashes_and_a_broker_restart_lose_no_message(
        tmp_path: Path, kafka: str, own_broker: Mosquitto,
        new_topic: Callable[..., str], unique: str) -> None:
    url = own_broker.url
    topic = new_topic("mqtt-in", 2)
    prefix = f"kanal-{unique}"
    name = f"mqtt-crash-{unique}"
    worker = worker_properties(tmp_path, kafka, **{
        "value.converter": "org.apache.kafka.connect.converters.ByteArrayConverter"})
    connector = write_properties(tmp_path / "mqtt.properties", {
        "name": name, "connector.class": "io.confluent.connect.mqtt.MqttSourceConnector",
        "tasks.max": "2", "mqtt.server.uri": url, "mqtt.topics": f"{prefix}/vehicles/+/telemetry",
        "kafka.topic": topic, "mqtt.qos": "1", "mqtt.clean.session.enabled": "false"})
    log = tmp_path / "kanal.log"
    offsets = tmp_path / "offsets.json"

    prober = client(url, "prober")
    probes = 0

    def resumed(since: int) -> Callable[[], bool]:
        """Both tasks subscribed: each committed a probe published from now on."""
        before = task_offsets(offsets, name)

        def check() -> bool:
            nonlocal probes
            probes += 1
            prober.publish(f"{prefix}/vehicles/probe/telemetry",
                           orjson.dumps({"publisher": -1, "seq": since + probes}), qos=1)
            now = task_offsets(offsets, name)
            return all(task in now and now[task] != before.get(task) for task in (0, 1))
        return check

    run = Standalone(worker, connector, log=log).start().wait_running()
    wait_for(resumed(0), 90, f"both tasks to commit (log: {log})")

    half = MESSAGES // PUBLISHERS // 2
    per_publisher = 2 * half
    rate = max(50.0, half / 8)  # the first half takes about 8 seconds
    rng = random.Random(unique)
    threads = publish_all(url, prefix, PUBLISHERS, range(half), rate)
    for _ in range(2):
        time.sleep(rng.uniform(1, 2.5))
        run.kill()
        run = Standalone(worker, connector, log=log).start()
    time.sleep(rng.uniform(1, 2.5))
    run.kill()
    # while the worker is down its sessions hold what is published; a clean restart of
    # mosquitto keeps them (mosquitto 2.0.11 forgets their shared subscriptions, which
    # the tasks make again when they connect)
    for thread in threads:
        thread.join(180)
    own_broker.restart()
    run = Standalone(worker, connector, log=log).start().wait_running()
    wait_for(resumed(10**6), 90, f"both tasks to subscribe again (log: {log})")
    threads = publish_all(url, prefix, PUBLISHERS, range(half, per_publisher), rate)
    for thread in threads:
        thread.join(180)
    prober.disconnect()
    prober.loop_stop()
    wanted = {(p, s) for p in range(PUBLISHERS) for s in range(per_publisher)}
    try:
        messages = consume_until(kafka, topic, wanted, timeout=180)
    finally:
        assert run.stop() == 0
        forget_sessions(url, name)
    copies: dict[tuple[int, int], list[bool]] = {}
    for message in messages:
        value = orjson.loads(message.value())
        if value["publisher"] < 0:
            continue  # a probe
        headers = dict(message.headers() or [])
        copies.setdefault((value["publisher"], value["seq"]), []).append(
            headers["mqtt.duplicate"] == b"true")
    missing = wanted - copies.keys()
    assert not missing, f"{len(missing)} messages lost, e.g. {sorted(missing)[:5]} (log: {log})"
    duplicated = {key: flags for key, flags in copies.items() if len(flags) > 1}
    # a message MQTT sent again carries the duplicate flag on its later copy
    assert all(any(flags) for flags in duplicated.values()), duplicated
    print(f"\n{len(wanted)} messages, {sum(map(len, copies.values())) - len(copies)} duplicates "
          f"({len(duplicated)} messages redelivered by MQTT)")


@pytest.fixture
def herder(kafka: str, mqtt_env: dict[str, str]) -> Iterator[StandaloneHerder]:
    herder = StandaloneHerder({"bootstrap.servers": kafka, "offset.flush.interval.ms": "500",
                               "key.converter": "StringConverter",
                               "value.converter": "StringConverter", "listeners": ""},
                              "test:8083", MemoryOffsetStore())
    try:
        yield herder
    finally:
        names = herder.connectors()
        herder.stop_all()
        forget_sessions(mqtt_env["KANAL_MQTT_URL"], *names)


def forget_sessions(url: str, *connectors: str) -> None:
    """End the persistent sessions the connectors' tasks left on the broker (a clean
    start discards a session)."""
    for name in connectors:
        for task in (0, 1):
            connected = threading.Event()
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"kanal-{name}-{task}",
                            protocol=mqtt.MQTTv5)
            c.on_connect = lambda *_args: connected.set()  # noqa: B023 - used at once
            c.connect(*broker(url), clean_start=True)
            c.loop_start()
            connected.wait(10)
            c.disconnect()
            c.loop_stop()


def test_sink_publishes_each_record_once_to_its_topic(
        herder: StandaloneHerder, kafka: str, mqtt_env: dict[str, str],
        new_topic: Callable[..., str], unique: str) -> None:
    url = mqtt_env["KANAL_MQTT_URL"]
    topic = new_topic("mqtt-out", 2)
    count = 500
    received: list[mqtt.MQTTMessage] = []
    subscriber = client(url, "subscriber")
    subscriber.on_message = lambda _c, _u, message: received.append(message)
    subscriber.subscribe(f"kanal-{unique}/#", qos=1)
    keys: list[bytes | None] = [f"VH-{n % 5:04d}".encode() for n in range(count)]
    produce(kafka, topic, [f"reading {n}".encode() for n in range(count)], keys=keys)
    herder.put_connector(f"mqtt-sink-{unique}", {
        "connector.class": "io.confluent.connect.mqtt.MqttSinkConnector", "tasks.max": "1",
        "topics": topic, "mqtt.server.uri": url, "mqtt.qos": "1",
        "mqtt.topic": f"kanal-{unique}/${{topic}}/${{key}}"})
    wait_for(lambda: len(received) >= count, 60, "every record published")
    time.sleep(1)  # a duplicate would arrive now
    subscriber.disconnect()
    subscriber.loop_stop()
    published = Counter((m.topic, m.payload.decode()) for m in received)
    assert published == Counter({(f"kanal-{unique}/{topic}/VH-{n % 5:04d}", f"reading {n}"): 1
                                 for n in range(count)})


def test_a_record_without_a_topic_goes_to_the_dead_letter_queue(
        herder: StandaloneHerder, kafka: str, mqtt_env: dict[str, str],
        new_topic: Callable[..., str], unique: str) -> None:
    url = mqtt_env["KANAL_MQTT_URL"]
    topic, dlq = new_topic("mqtt-out"), new_topic("mqtt-dlq")
    received: list[mqtt.MQTTMessage] = []
    subscriber = client(url, "subscriber")
    subscriber.on_message = lambda _c, _u, message: received.append(message)
    subscriber.subscribe(f"kanal-{unique}/#", qos=1)
    # a key with a wildcard makes a topic nothing can be published to
    produce(kafka, topic, [b"first", b"bad", b"last"], keys=[b"VH-1", b"VH+2", b"VH-3"])
    herder.put_connector(f"mqtt-dlq-{unique}", {
        "connector.class": "MqttSinkConnector", "tasks.max": "1", "topics": topic,
        "mqtt.server.uri": url, "mqtt.qos": "1", "mqtt.topic": f"kanal-{unique}/${{key}}",
        "errors.tolerance": "all", "errors.deadletterqueue.topic.name": dlq,
        "errors.deadletterqueue.topic.replication.factor": "1",
        "errors.deadletterqueue.context.headers.enable": "true"})
    dead = consume_all(kafka, dlq, 1, timeout=60)
    wait_for(lambda: len(received) >= 2, 60, "the other records published")
    subscriber.disconnect()
    subscriber.loop_stop()
    assert [(m.topic, m.payload) for m in received] == [(f"kanal-{unique}/VH-1", b"first"),
                                                       (f"kanal-{unique}/VH-3", b"last")]
    assert [m.value() for m in dead] == [b"bad"]
    headers = dict(dead[0].headers() or [])
    assert b"mqtt.topic" in headers["__connect.errors.exception.message"]


def test_qos_2_messages_arrive_once_across_a_task_restart(
        herder: StandaloneHerder, kafka: str, mqtt_env: dict[str, str],
        new_topic: Callable[..., str], unique: str) -> None:
    url = mqtt_env["KANAL_MQTT_URL"]
    topic = new_topic("mqtt-qos2")
    name = f"mqtt-qos2-{unique}"
    config = {"connector.class": "MqttSourceConnector", "tasks.max": "1",
              "mqtt.server.uri": url, "mqtt.topics": f"kanal-{unique}/#", "kafka.topic": topic,
              "mqtt.qos": "2", "mqtt.clean.session.enabled": "false",
              "value.converter": "org.apache.kafka.connect.converters.ByteArrayConverter"}
    herder.put_connector(name, config)
    wait_for(lambda: herder.connector_status(name)["tasks"][0]["state"] == State.RUNNING.value,
             60, "the task to run")
    sender = client(url, "qos2")
    for info in [sender.publish(f"kanal-{unique}/a", str(n).encode(), qos=2)
                 for n in range(100)]:
        info.wait_for_publish(30)
    sender.disconnect()
    sender.loop_stop()
    values = [m.value() for m in consume_all(kafka, topic, 100, timeout=60)]
    assert sorted(values, key=int) == [str(n).encode() for n in range(100)]
    time.sleep(1)  # an offset commit, and with it the PUBCOMPs
    # the same task again resumes the session and brings nothing twice
    herder.delete_connector(name)
    herder.put_connector(name, config)
    wait_for(lambda: herder.connector_status(name)["tasks"][0]["state"] == State.RUNNING.value,
             60, "the task to run again")
    time.sleep(2)
    assert len(consume_all(kafka, topic, 101, timeout=3)) == 100


def test_bad_input_names_the_key_and_the_fix(mqtt_env: dict[str, str], unique: str) -> None:
    base = {"name": "bad", "connector.class": "MqttSourceConnector", "kafka.topic": "t",
            "mqtt.server.uri": mqtt_env["KANAL_MQTT_URL"], "mqtt.topics": "vehicles/+"}

    def errors(**changes: str) -> dict[str, list[str]]:
        return errors_of(validate({**base, **{k.replace("_", "."): v
                                             for k, v in changes.items()}}))

    assert errors() == {}
    unreachable = errors(mqtt_server_uri="tcp://127.0.0.1:1", mqtt_connect_timeout_seconds="2")
    assert "cannot reach any broker" in unreachable["mqtt.server.uri"][0]
    assert "write tcp://host:port" in errors(mqtt_server_uri="http://broker")[
        "mqtt.server.uri"][0]
    assert "must fill a whole level" in errors(mqtt_topics="vehicles/speed+")["mqtt.topics"][0]
    assert "may only be the last level" in errors(mqtt_topics="#/speed")["mqtt.topics"][0]
    secured = {"mqtt_server_uri": mqtt_env["KANAL_MQTT_AUTH_URL"],
               "mqtt_username": mqtt_env["KANAL_MQTT_USERNAME"]}
    refused = errors(**secured, mqtt_password="wrong-password")
    assert "check mqtt.username and mqtt.password" in refused["mqtt.password"][0]
    assert errors(**secured, mqtt_password=mqtt_env["KANAL_MQTT_PASSWORD"]) == {}
    shown = {c["value"]["name"]: c["value"]["value"]
             for c in validate({**base, "mqtt.password": "s3cret"})["configs"]}
    assert shown["mqtt.password"] == "[hidden]"
    assert "wildcard" in errors_of(validate({
        "name": "bad", "connector.class": "MqttSinkConnector", "topics": "t",
        "mqtt.server.uri": mqtt_env["KANAL_MQTT_URL"], "mqtt.topic": "out/#"}))["mqtt.topic"][0]

    # a task that meets the refusal later (credentials changed after validation) fails
    # with the same message, and the password appears nowhere in it
    settings = MqttSourceSettings.parse({**base, **{k.replace("_", "."): v
                                                    for k, v in secured.items()},
                                         "mqtt.password": "wrong-password"})
    task = MqttSourceTask(settings, TaskContext(f"mqtt-refused-{unique}-0"))
    with pytest.raises(ConfigError) as refusal:
        task.start()
    assert refusal.value.key == "mqtt.password"
    assert "refused the credentials" in str(refusal.value)
    assert "wrong-password" not in str(refusal.value)


def test_tls_with_a_trust_store_and_a_client_key_store(
        herder: StandaloneHerder, kafka: str, mqtt_env: dict[str, str],
        new_topic: Callable[..., str], unique: str) -> None:
    tls = {"connector.class": "MqttSourceConnector", "kafka.topic": "t",
           "mqtt.topics": f"kanal-{unique}/#", "mqtt.server.uri": mqtt_env["KANAL_MQTT_TLS_URL"],
           "mqtt.ssl.trust.store.path": mqtt_env["KANAL_MQTT_TLS_CA"],
           "mqtt.ssl.key.store.path": mqtt_env["KANAL_MQTT_TLS_CLIENT_P12"],
           "mqtt.ssl.key.store.password": mqtt_env["KANAL_MQTT_TLS_PASSWORD"]}
    assert errors_of(validate({"name": "tls", **tls})) == {}
    untrusted = errors_of(validate({"name": "tls", **tls, "mqtt.ssl.trust.store.path": ""}))
    assert "not trust" in untrusted["mqtt.ssl.trust.store.path"][0]
    locked = errors_of(validate({"name": "tls", **tls, "mqtt.ssl.key.store.password": "no"}))
    assert "check mqtt.ssl.key.store.password" in locked["mqtt.ssl.key.store.path"][0]
    shown = {c["value"]["name"]: c["value"]["value"]
             for c in validate({"name": "tls", **tls})["configs"]}
    assert shown["mqtt.ssl.key.store.password"] == "[hidden]"

    topic = new_topic("mqtt-tls")
    name = f"mqtt-tls-{unique}"
    herder.put_connector(name, {**tls, "kafka.topic": topic, "tasks.max": "1", "mqtt.qos": "1",
                                "value.converter":
                                    "org.apache.kafka.connect.converters.ByteArrayConverter"})
    wait_for(lambda: herder.connector_status(name)["tasks"][0]["state"] == State.RUNNING.value,
             60, "the task to run")
    publish(mqtt_env["KANAL_MQTT_URL"], f"kanal-{unique}/a", [b"over TLS"], 10)
    assert [m.value() for m in consume_all(kafka, topic, 1, timeout=60)] == [b"over TLS"]


class TaskContext:
    def __init__(self, task_id: str) -> None:
        self.task_id = task_id

    def offset(self, source_partition: object) -> None:
        return None

    def request_commit(self) -> None:
        """Commits are the runtime's; this task never gets that far."""


def test_messages_keep_arriving_after_the_broker_restarts(
        herder: StandaloneHerder, kafka: str, own_broker: Mosquitto,
        new_topic: Callable[..., str], unique: str) -> None:
    """Reconnect: the task subscribes again by itself and resumes its session."""
    url = own_broker.url
    topic = new_topic("mqtt-reconnect")
    name = f"mqtt-reconnect-{unique}"
    herder.put_connector(name, {
        "connector.class": "MqttSourceConnector", "tasks.max": "1", "mqtt.server.uri": url,
        "mqtt.topics": f"kanal-{unique}/#", "kafka.topic": topic, "mqtt.qos": "1",
        "mqtt.clean.session.enabled": "false",
        "value.converter": "org.apache.kafka.connect.converters.ByteArrayConverter"})
    wait_for(lambda: herder.connector_status(name)["tasks"][0]["state"] == State.RUNNING.value,
             60, "the task to run")
    publish(url, f"kanal-{unique}/a", [b"before"], 10)
    assert len(consume_all(kafka, topic, 1, timeout=60)) == 1
    own_broker.restart()
    publish(url, f"kanal-{unique}/a", [b"after"], 10)
    values = [m.value() for m in consume_all(kafka, topic, 2, timeout=90)]
    assert values == [b"before", b"after"]
    assert herder.connector_status(name)["tasks"][0]["state"] == State.RUNNING.value


@pytest.fixture
def own_broker(tmp_path: Path, mqtt_env: dict[str, str]) -> Iterator[Mosquitto]:
    """A broker this test may restart (the shared one stays up for the others)."""
    broker = Mosquitto(tmp_path / "broker").start()
    try:
        yield broker
    finally:
        broker.stop()


def running(herder: StandaloneHerder, name: str, tasks: int = 1) -> Callable[[], bool]:
    return lambda: [t["state"] for t in herder.connector_status(name)["tasks"]] == \
        [State.RUNNING.value] * tasks


def test_plain_subscriptions_keep_what_is_published_before_the_tasks_reconnect(
        own_broker: Mosquitto, kafka: str, new_topic: Callable[..., str], unique: str
        ) -> None:
    """Mosquitto restores plain subscriptions from its persistence, not shared ones: one
    task, or several splitting the filters (mqtt.shared.subscription.enabled=false), lose
    nothing published after a broker restart and before they connect again."""
    url, prefix = own_broker.url, f"kanal-{unique}"
    one, split = new_topic("mqtt-one"), new_topic("mqtt-split")
    common = {"connector.class": "MqttSourceConnector", "mqtt.server.uri": url,
              "mqtt.qos": "1", "mqtt.clean.session.enabled": "false",
              "value.converter": "org.apache.kafka.connect.converters.ByteArrayConverter"}
    with in_process_herder(kafka, "StringConverter") as herder:
        herder.put_connector(f"one-{unique}", {**common, "tasks.max": "1", "kafka.topic": one,
                                               "mqtt.topics": f"{prefix}/one/#"})
        herder.put_connector(f"split-{unique}", {
            **common, "tasks.max": "2", "kafka.topic": split,
            "mqtt.shared.subscription.enabled": "false",
            "mqtt.topics": f"{prefix}/a/#,{prefix}/b/#"})
        wait_for(running(herder, f"one-{unique}"), 60, "the one task to run")
        wait_for(running(herder, f"split-{unique}", 2), 60, "the two tasks to run")
        for level in ("one", "a", "b"):
            publish(url, f"{prefix}/{level}/x", [f"{level} before".encode()], 10)
        assert len(consume_all(kafka, one, 1, timeout=60)) == 1
        assert len(consume_all(kafka, split, 2, timeout=60)) == 2

        own_broker.stop()
        time.sleep(3.5)  # the tasks' reconnection attempts back off: 1, 2, then 4 s apart
        since = own_broker.log_size()
        own_broker.start()
        for level in ("one", "a", "b"):
            publish(url, f"{prefix}/{level}/x",
                    [f"{level} {n}".encode() for n in range(20)], 1000)
        assert " as kanal-" not in own_broker.logged_since(since), \
            "a task reconnected before the messages were published: the test proves nothing"

        after_one = [m.value() for m in consume_all(kafka, one, 21, timeout=90)]
        after_split = [m.value() for m in consume_all(kafka, split, 42, timeout=90)]
        assert after_one == [b"one before", *[f"one {n}".encode() for n in range(20)]]
        assert sorted(after_split) == sorted([b"a before", b"b before",
                                              *[f"{level} {n}".encode() for level in "ab"
                                                for n in range(20)]])
        assert running(herder, f"one-{unique}")() and running(herder, f"split-{unique}", 2)()


def test_qos_2_after_a_sigkill_brings_again_what_kafka_had_not_confirmed(
        tmp_path: Path, kafka: str, mqtt_env: dict[str, str],
        new_topic: Callable[..., str], unique: str) -> None:
    """QoS 2: exactly once while the task runs, at least once across a crash; nothing
    lost. The worker commits (and so acknowledges) only every 60 s here: the SIGKILL
    comes before any message was acknowledged."""
    url = mqtt_env["KANAL_MQTT_URL"]
    topic = new_topic("mqtt-qos2-kill")
    name = f"mqtt-qos2-kill-{unique}"
    worker = worker_properties(tmp_path, kafka, offset_flush_interval_ms="60000", **{
        "value.converter": "org.apache.kafka.connect.converters.ByteArrayConverter"})
    connector = write_properties(tmp_path / "mqtt.properties", {
        "name": name, "connector.class": "MqttSourceConnector", "tasks.max": "1",
        "mqtt.server.uri": url, "mqtt.topics": f"kanal-{unique}/#", "kafka.topic": topic,
        "mqtt.qos": "2", "mqtt.clean.session.enabled": "false"})
    log = tmp_path / "kanal.log"
    sender = client(url, "qos2")
    try:
        run = Standalone(worker, connector, log=log).start().wait_running()
        wait_for(lambda: run.logged(b"RUNNING"), 60, f"the task to run (log: {log})")
        for info in [sender.publish(f"kanal-{unique}/a", f"first {n}".encode(), qos=2)
                     for n in range(100)]:
            info.wait_for_publish(30)
        first = consume_all(kafka, topic, 100, timeout=60)
        assert sorted(m.value() for m in first) == sorted(f"first {n}".encode()
                                                          for n in range(100))
        run.kill()
        run = Standalone(worker, connector, log=log).start().wait_running()
        again = consume_all(kafka, topic, 200, timeout=90)
        for info in [sender.publish(f"kanal-{unique}/a", f"then {n}".encode(), qos=2)
                     for n in range(100)]:
            info.wait_for_publish(30)
        every = consume_all(kafka, topic, 300, timeout=90)
        time.sleep(2)
        assert len(consume_all(kafka, topic, 301, timeout=3)) == 300
    finally:
        sender.disconnect()
        sender.loop_stop()
        run.stop()
        forget_sessions(url, name)
    # every message Kafka had when the worker died comes again, marked as a redelivery
    redelivered = again[100:]
    assert sorted(m.value() for m in redelivered) == sorted(m.value() for m in first)
    assert all(dict(m.headers() or [])["mqtt.duplicate"] == b"true" for m in redelivered)
    # and once the task runs, each message comes once
    assert sorted(m.value() for m in every[200:]) == sorted(f"then {n}".encode()
                                                            for n in range(100))
