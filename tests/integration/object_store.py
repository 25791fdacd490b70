"""What the object-store sink tests share: the seed's data, each format's standard
reader, the checks of exactly-once file sets, and a proxy that takes a store away."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import random
import re
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pyarrow.parquet as pq

from kanal_worker.connectors.telemetry import reading
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.standalone import StandaloneHerder
from tests.integration.standalone import Standalone, wait_for, worker_properties, write_properties
from tests.kafka_helpers import produce

HOUR = 3_600_000
START = int(dt.datetime(2024, 5, 1, 6, 0, tzinfo=dt.UTC).timestamp() * 1000)
JSON_VALUES = {"value.converter": "org.apache.kafka.connect.json.JsonConverter",
               "value.converter.schemas.enable": "false",
               "key.converter": "org.apache.kafka.connect.storage.StringConverter"}
HOURLY = {"partitioner.class": "io.confluent.connect.storage.partitioner.HourlyPartitioner",
          "locale": "en-US", "timezone": "UTC", "timestamp.extractor": "RecordField",
          "timestamp.field": "timestamp"}


def json_lines(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(line) for data in files.values() for line in data.splitlines()]


ENVELOPE_SCHEMA = {"type": "struct", "name": "kanal.Speeding", "optional": False, "fields": [
    {"field": "vehicle_id", "type": "string", "optional": False},
    {"field": "speed_kmh", "type": "float64", "optional": False},
    {"field": "lane", "type": "int32", "optional": False},
    {"field": "flagged", "type": "boolean", "optional": False},
    {"field": "note", "type": "string", "optional": True},
    {"field": "tags", "type": "array", "items": {"type": "string"}, "optional": False}]}


def speeding(i: int) -> dict[str, Any]:
    return {"vehicle_id": f"VH-{i % 97:04d}", "speed_kmh": 90 + i % 70 + 0.25,
            "lane": i % 4, "flagged": i % 5 == 0, "note": None if i % 3 else f"n{i}",
            "tags": ["radar", f"zone-{i % 7}"]}


def read_back(file_format: str, name: str, data: bytes) -> list[Any]:
    if file_format == "AvroFormat":
        return list(fastavro.reader(io.BytesIO(data)))
    if file_format == "ParquetFormat":
        rows: list[Any] = pq.read_table(io.BytesIO(data)).to_pylist()
        return rows
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    if file_format == "ByteArrayFormat":
        return data.splitlines()
    return [orjson.loads(line) for line in data.splitlines()]


def late_readings(partition: int, count: int, seed: int) -> list[bytes | None]:
    """Readings 10 s apart, one in five up to two hours late (out of order)."""
    rng = random.Random(seed * 7 + partition)
    values: list[bytes | None] = []
    for seq in range(count):
        value = reading(seed, seq, 40, START, 10_000)
        if rng.random() < 0.2:
            value["timestamp"] -= rng.randrange(2 * HOUR)
        value["partition"] = partition
        values.append(orjson.dumps(value))
    return values


class BlackoutProxy:
    """A TCP forwarder the test can switch off: while off, connections are refused and
    open ones are cut, like a storage endpoint that went away (data in Azurite stays)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.listener: socket.socket | None = None
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BlackoutProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        assert self.listener is not None
        self.listener.close()
        with self.lock:
            for conn in self.connections:
                with suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self.connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.connections += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in selector.select():
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()




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


def task_state(herder: StandaloneHerder, name: str) -> dict[str, Any]:
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


def check_hourly_files(files: Mapping[str, bytes], topic: str, extension: str,
                       produced: dict[int, list[bytes | None]]) -> None:
    """Every produced record is in exactly one file, byte for byte, in its hour's folder,
    in a file named by its first offset."""
    pattern = re.compile(rf"topics/{re.escape(topic)}/year=(\d{{4}})/month=(\d\d)/day=(\d\d)/"
                         rf"hour=(\d\d)/{re.escape(topic)}\+([01])\+(\d{{10}}){extension}")
    seen: dict[int, dict[int, bytes]] = {p: {} for p in produced}
    for name, data in files.items():
        match = pattern.fullmatch(name)
        assert match, name
        year, month, day, hour, partition, start = map(int, match.groups())
        lines = data.splitlines()
        assert produced[partition].index(lines[0]) == start  # named by its first offset
        for line in lines:
            offset = produced[partition].index(line)  # bytes kept exactly as produced
            assert offset not in seen[partition]
            seen[partition][offset] = line
            at = dt.datetime.fromtimestamp(orjson.loads(line)["timestamp"] / 1000, dt.UTC)
            assert (at.year, at.month, at.day, at.hour) == (year, month, day, hour)
    assert {p: sorted(s) for p, s in seen.items()} == \
        {p: list(range(len(v))) for p, v in produced.items()}


def sigkill_run(tmp_path: Path, kafka: str, topic: str, connector: dict[str, str],
                files: Callable[[], Mapping[str, bytes]], per_partition: int,
                seed: str) -> None:
    """Produce ``per_partition`` late and out-of-order readings into each of 2
    partitions, run ``kanal standalone`` with ``connector`` and SIGKILL it 4 times (after
    a random number of new files or a random time, whichever comes first), then let it
    finish: every record must be in the store exactly once."""
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
        target = len(files()) + rng.randint(2, 40)
        run = Standalone(worker, properties, log=log).start()
        try:
            wait_for(lambda: run.logged(f": assigned {topic}".encode()), 120,  # noqa: B023
                     f"the partitions assigned (log: {log})")
            deadline = time.monotonic() + rng.uniform(0.5, 4)
            wait_for(lambda: len(files()) >= target  # noqa: B023
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
    keys = [(r["partition"], r["seq"]) for r in json_lines(files()) if "tail" not in r]
    assert len(keys) == len(set(keys)), "duplicates"
    assert set(keys) == {(p, s) for p in (0, 1) for s in range(per_partition)}, "losses"
