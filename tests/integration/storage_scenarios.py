"""Fault scenarios every object-store sink passes the same way: SIGKILLs of the worker
and an outage of the store. A test hands in its connector's settings and a view of its
container or bucket."""

from __future__ import annotations

import io
import random
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import fastavro
import orjson
from confluent_kafka import Producer

from kanal_worker.connectors.telemetry import reading
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.standalone import StandaloneHerder
from kanal_worker.runtime.status import State
from tests.integration.blackout import BlackoutProxy
from tests.integration.standalone import (
    Standalone,
    wait_for,
    worker_properties,
    write_properties,
)
from tests.integration.storage_data import (
    ENVELOPE_SCHEMA,
    HOUR,
    HOURLY,
    JSON_VALUES,
    START,
    json_lines,
    late_readings,
    read_back,
    speeding,
)
from tests.kafka_helpers import committed, produce


class StoreView(Protocol):
    """A container or bucket as the test reads it."""

    def names(self) -> list[str]: ...

    def objects(self) -> dict[str, bytes]: ...


def line_total(view: StoreView) -> int:
    return sum(data.count(b"\n") for data in view.objects().values())


@contextmanager
def herder_running(kafka: str, name: str, config: dict[str, str]) -> Iterator[StandaloneHerder]:
    """An in-process worker running connector ``name`` (``config`` names its class)."""
    herder = StandaloneHerder({"bootstrap.servers": kafka, "offset.flush.interval.ms": "1000",
                               "listeners": ""}, "test:8083", MemoryOffsetStore())
    herder.put_connector(name, {"tasks.max": "1", **config})
    try:
        yield herder
    finally:
        herder.stop_all()


def task_state(herder: StandaloneHerder, name: str) -> dict[str, Any]:
    task: dict[str, Any] = herder.connector_status(name)["tasks"][0]
    return task


def first_write_fails(herder: StandaloneHerder, kafka: str, topic: str, name: str) -> str:
    """Produce a record to ``topic`` and wait for task 0 of ``name`` to fail writing it;
    the failure's trace (the task status)."""
    produce(kafka, topic, [b'{"a": 1}'])
    wait_for(lambda: task_state(herder, name)["state"] == State.FAILED.value, 60,
             "the task to fail")
    return str(task_state(herder, name)["trace"])


def sigkills_keep_every_record_exactly_once(
        tmp_path: Path, kafka: str, topic: str, per_partition: int, view: StoreView,
        connector: dict[str, str], seed: str) -> None:
    """Late and out-of-order readings in hourly files of ``connector`` (name, class and
    store keys; the rest is set here) on a 2-partition ``topic``, through 4 SIGKILLs."""
    for partition in (0, 1):
        produce(kafka, topic, late_readings(partition, per_partition, 11), partition=partition)
    worker = worker_properties(tmp_path, kafka)
    properties = write_properties(tmp_path / "sink.properties", {
        "topics": topic, "format.class": "JsonFormat", "flush.size": "1000",
        "rotate.interval.ms": str(HOUR), "kanal.max.open.files.per.partition": "3",
        **HOURLY, **JSON_VALUES, **connector})
    log = tmp_path / "kanal.log"
    rng = random.Random(seed)
    # 4 times: start, and once it consumes, SIGKILL it after a random number of new files
    # or a random time, whichever comes first: a fast run may have consumed every record
    # (the open sets then wait for the tail below), so a file count alone may never come
    for _ in range(4):
        target = len(view.names()) + rng.randint(2, 40)
        run = Standalone(worker, properties, log=log).start()
        try:
            wait_for(lambda: run.logged(f": assigned {topic}".encode()), 120,  # noqa: B023
                     f"the partitions assigned (log: {log})")
            deadline = time.monotonic() + rng.uniform(0.5, 4)
            wait_for(lambda: len(view.names()) >= target  # noqa: B023
                     or time.monotonic() >= deadline, 60,  # noqa: B023
                     f"{target} files (log: {log})")
            time.sleep(rng.uniform(0, 0.3))
        finally:
            run.stop(signal.SIGKILL)
    # a record far in the future ends the last open sets, so every produced record is due
    for partition in (0, 1):
        tail = {**reading(99, 0, 1, START + 1000 * HOUR, 1), "partition": partition, "tail": 1}
        produce(kafka, topic, [orjson.dumps(tail)], partition=partition)
    run = Standalone(worker, properties, log=log).start()
    try:
        wait_for(lambda: line_total(view) >= 2 * per_partition, 240,
                 f"all records in the store (log: {log})")
        time.sleep(3)  # a straggling duplicate would show up now
    finally:
        assert run.stop() == 0
    keys = [(r["partition"], r["seq"]) for r in json_lines(view.objects()) if "tail" not in r]
    assert len(keys) == len(set(keys)), "duplicates"
    assert set(keys) == {(p, s) for p in (0, 1) for s in range(per_partition)}, "losses"


def outage_loses_and_duplicates_nothing(
        kafka: str, topic: str, name: str, view: StoreView, proxy: BlackoutProxy,
        connector: Callable[[str], dict[str, str]], outage_s: float) -> None:
    """20,000 records into a 1-partition ``topic``; the store, reached through ``proxy``
    (``connector(proxy.url)`` gives the class and store keys), is away for ``outage_s``
    seconds in the middle: the task stays RUNNING, shows the retry, and the files hold
    every record once."""
    values: list[bytes | None] = [orjson.dumps({"seq": i, "pad": "x" * 64})
                                  for i in range(20_000)]
    produce(kafka, topic, values[:10_000])
    config = {"topics": topic, "format.class": "JsonFormat", "flush.size": "500",
              **JSON_VALUES, **connector(proxy.url)}
    with herder_running(kafka, name, config) as herder:
        wait_for(lambda: len(view.names()) >= 1, 60, "the first file")
        proxy.stop()
        produce(kafka, topic, values[10_000:])
        details = set()
        outage_ends = time.monotonic() + outage_s
        while time.monotonic() < outage_ends:
            assert task_state(herder, name)["state"] == State.RUNNING.value
            details.add(herder.runners()[0].status.detail or "")
            time.sleep(0.5)
        proxy.start()
        wait_for(lambda: line_total(view) >= 20_000, 90, "all records after the outage")
        wait_for(lambda: committed(kafka, f"connect-{name}", topic, 1) == {0: 20_000}, 60,
                 "offsets committed")
        assert "retrying write" in " ".join(details), details
    proxy.stop()
    seqs = [r["seq"] for r in json_lines(view.objects())]
    assert sorted(seqs) == list(range(20_000))


def each_record_reads_back(kafka: str, topic: str, name: str, view: StoreView,
                           connector: dict[str, str], config: dict[str, str],
                           suffix: str, ends_names: bool = False) -> None:
    """500 records in 5 files of the format ``config`` chooses (``connector`` gives the
    class and store keys), read back with that format's standard reader; with
    ``ends_names`` the names hold the last offset too (kafka-connect-hdfs's)."""
    expected: list[Any] = [speeding(i) for i in range(500)]
    if "ByteArrayConverter" in config.get("value.converter", ""):
        expected = [f"raw-{i}-\x01\x02".encode() for i in range(500)]
        produce(kafka, topic, expected)
    else:
        produce(kafka, topic, [orjson.dumps({"schema": ENVELOPE_SCHEMA, "payload": v})
                               for v in expected])
    file_format = config["format.class"].rsplit(".", 1)[-1]
    with herder_running(kafka, name, {
            "topics": topic, "flush.size": "100",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            **connector, **config}):
        wait_for(lambda: len(view.names()) >= 5, 60, "5 files")
    files = view.objects()
    assert sorted(files) == [f"topics/{topic}/partition=0/{topic}+0+{start:010d}"
                             f"{f'+{start + 99:010d}' if ends_names else ''}{suffix}"
                             for start in range(0, 500, 100)]
    assert [v for key in sorted(files) for v in read_back(file_format, key, files[key])] == \
        expected


KEYED_RECORDS = 3000
KEYLESS_AT = 1000
"""The offset of the one record without a key: it fails, and errors.tolerance=all skips it."""


def produce_keyed(kafka: str, topic: str) -> None:
    """``{"seq": i}`` with key ``key-i`` and headers trace=t-i and n=i; one record keyless."""
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 20})
    for i in range(KEYED_RECORDS + 1):
        seq = i - (i > KEYLESS_AT)
        producer.produce(topic, value=orjson.dumps({"seq": seq}) if i != KEYLESS_AT else b"{}",
                         key=None if i == KEYLESS_AT else f"key-{seq}".encode(),
                         headers=[("trace", f"t-{seq}".encode()), ("n", str(seq).encode())],
                         partition=0)
    assert producer.flush(60) == 0


def keys_and_headers_match_their_values_through_a_sigkill(
        tmp_path: Path, kafka: str, topic: str, view: StoreView,
        connector: dict[str, str]) -> None:
    """store.kafka.keys/headers of ``connector`` (name, class and store keys): a .keys.avro
    and a .headers.avro file beside each value file, record by record; the keyless record
    fails alone (errors.tolerance=all) in all three. A SIGKILL, then a rerun from offset 0
    under another name, rewrite every file with the same bytes."""
    produce_keyed(kafka, topic)
    worker, log = worker_properties(tmp_path, kafka), tmp_path / "kanal.log"

    def start(name: str) -> Standalone:
        properties = write_properties(tmp_path / f"{name}.properties", {
            "topics": topic, "format.class": "JsonFormat", "flush.size": "500",
            "store.kafka.keys": "true", "store.kafka.headers": "true",
            "errors.tolerance": "all", **JSON_VALUES, **connector, "name": name})
        return Standalone(worker, properties, log=log).start()

    def run_to_the_end(name: str) -> dict[str, bytes]:
        run = start(name)
        try:
            wait_for(lambda: committed(kafka, f"connect-{name}", topic, 1) ==
                     {0: KEYED_RECORDS + 1}, 180, f"every offset committed (log: {log})")
        finally:
            assert run.stop() == 0
        return view.objects()

    run = start(connector["name"])
    try:
        wait_for(lambda: len(view.names()) >= 3, 120, f"the first files (log: {log})")
    finally:
        run.stop(signal.SIGKILL)
    before_kill = view.objects()
    files = run_to_the_end(connector["name"])
    assert {key: files[key] for key in before_kill} == before_kill, "rewritten differently"
    assert run_to_the_end(f"{connector['name']}-again") == files, "rewritten differently"
    base = f"topics/{topic}/partition=0/{topic}+0+"
    starts = [0, 500, *range(KEYLESS_AT + 1, KEYED_RECORDS + 1, 500)]  # none at the keyless
    assert sorted(files) == sorted(f"{base}{start:010d}{suffix}" for start in starts
                                   for suffix in (".json", ".keys.avro", ".headers.avro"))
    values, keys, headers = [], [], []
    for start in starts:
        name_of = f"{base}{start:010d}"
        values += [r["seq"] for r in json_lines({name_of: files[f"{name_of}.json"]})]
        keys += list(fastavro.reader(io.BytesIO(files[f"{name_of}.keys.avro"])))
        headers += list(fastavro.reader(io.BytesIO(files[f"{name_of}.headers.avro"])))
    assert values == list(range(KEYED_RECORDS))
    assert keys == [f"key-{seq}" for seq in values]
    assert headers == [[{"key": "trace", "value": f"t-{seq}"}, {"key": "n", "value": str(seq)}]
                       for seq in values]
