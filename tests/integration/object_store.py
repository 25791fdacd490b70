"""What the object-store sink tests share beyond ``storage_data``: a herder running one
connector, the seed's records, the SIGKILL run and the store outage, each checked
exactly once."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from kanal_worker.connectors.telemetry import reading
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.standalone import StandaloneHerder
from kanal_worker.runtime.status import State
from tests.integration.blackout import BlackoutProxy
from tests.integration.standalone import Standalone, wait_for, worker_properties, write_properties
from tests.integration.storage_data import (
    HOUR,
    HOURLY,
    JSON_VALUES,
    START,
    json_lines,
    late_readings,
)
from tests.kafka_helpers import committed, produce


@contextmanager
def herder_running(kafka: str, name: str, config: dict[str, str]) -> Iterator[StandaloneHerder]:
    """``config`` (with its connector.class) run by an in-process standalone herder."""
    herder = StandaloneHerder({"bootstrap.servers": kafka, "offset.flush.interval.ms": "1000",
                               "listeners": ""}, "test:8083", MemoryOffsetStore())
    herder.put_connector(name, {"tasks.max": "1", **config})
    try:
        yield herder
    finally:
        herder.stop_all()


def first_task(herder: StandaloneHerder, name: str) -> dict[str, Any]:
    task: dict[str, Any] = herder.connector_status(name)["tasks"][0]
    return task


def produce_seed(kafka: str, topic: str) -> dict[int, list[bytes | None]]:
    """600 speeding readings 20 s apart in each of 2 partitions (the seed's topic)."""
    produced: dict[int, list[bytes | None]] = {}
    for partition in (0, 1):
        values: list[bytes | None] = [orjson.dumps(reading(partition, seq, 50, START, 20_000))
                                      for seq in range(600)]
        produce(kafka, topic, values, partition=partition)
        produced[partition] = values
    return produced


def sigkill_run(tmp_path: Path, kafka: str, topic: str, connector: dict[str, str],
                count: Callable[[], int], files: Callable[[], Mapping[str, bytes]],
                per_partition: int, seed: str) -> None:
    """Produce ``per_partition`` late and out-of-order readings into each of 2
    partitions, run ``kanal standalone`` with ``connector`` and SIGKILL it 4 times (after
    a random number of new files or a random time, whichever comes first), then let it
    finish: every record must be in the store exactly once. ``count`` says how many
    files the store holds, ``files`` reads them."""
    for partition in (0, 1):
        produce(kafka, topic, late_readings(partition, per_partition, 11), partition=partition)
    worker = worker_properties(tmp_path, kafka)
    properties = write_properties(tmp_path / "sink.properties", {
        "topics": topic, "format.class": "JsonFormat", "flush.size": "1000",
        "rotate.interval.ms": str(HOUR), "kanal.max.open.files.per.partition": "3",
        **connector, **HOURLY, **JSON_VALUES})
    log = tmp_path / "kanal.log"
    rng = random.Random(seed)
    for _ in range(4):
        target = count() + rng.randint(2, 40)
        run = Standalone(worker, properties, log=log).start()
        try:
            wait_for(lambda: run.logged(f": assigned {topic}".encode()), 120,  # noqa: B023
                     f"the partitions assigned (log: {log})")
            deadline = time.monotonic() + rng.uniform(0.5, 4)
            wait_for(lambda: count() >= target  # noqa: B023
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
        wait_for(lambda: sum(d.count(b"\n") for d in files().values()) >= 2 * per_partition,
                 240, f"all records in the store (log: {log})")
        time.sleep(3)  # a straggling duplicate would show up now
    finally:
        assert run.stop() == 0
    keys = [(r["partition"], r["seq"]) for r in json_lines(dict(files())) if "tail" not in r]
    assert len(keys) == len(set(keys)), "duplicates"
    assert set(keys) == {(p, s) for p in (0, 1) for s in range(per_partition)}, "losses"


def outage_run(kafka: str, topic: str, name: str, config: dict[str, str],
               proxy: BlackoutProxy, files: Callable[[], Mapping[str, bytes]],
               seconds: float) -> set[str]:
    """20,000 records into a one-partition ``topic`` through ``config``, whose store is
    reached through ``proxy``; the store is cut off for ``seconds`` after the first file
    while half of the records are still to come. The task must stay RUNNING, and every
    record must arrive exactly once and be committed. Returns the task status details
    seen during the outage."""
    values: list[bytes | None] = [orjson.dumps({"seq": i, "pad": "x" * 64})
                                  for i in range(20_000)]
    produce(kafka, topic, values[:10_000])
    with herder_running(kafka, name, {"topics": topic, "format.class": "JsonFormat",
                                      "flush.size": "500", **JSON_VALUES, **config}) as herder:
        wait_for(lambda: len(files()) >= 1, 60, "the first file")
        proxy.stop()
        produce(kafka, topic, values[10_000:])
        details = set()
        outage_ends = time.monotonic() + seconds
        while time.monotonic() < outage_ends:
            assert first_task(herder, name)["state"] == State.RUNNING.value
            details.add(herder.runners()[0].status.detail or "")
            time.sleep(0.5)
        proxy.start()
        wait_for(lambda: sum(d.count(b"\n") for d in files().values()) >= 20_000, 120,
                 "all records after the outage")
        wait_for(lambda: committed(kafka, f"connect-{name}", topic, 1) == {0: 20_000}, 60,
                 "offsets committed")
    proxy.stop()
    assert sorted(r["seq"] for r in json_lines(dict(files()))) == list(range(20_000))
    return details
