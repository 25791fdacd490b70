"""B3: sources into Kafka. Kanal's generator and FileStreamSource, Apache's
FileStreamSource and a raw confluent-kafka producer, each into a fresh topic."""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench.measure import LineDigest, Sample, run_raw, watch
from bench.sinks import STRING
from bench.systems import ConnectWorker, Kanal
from bench.workload import PARTITIONS, SEED, START_MS, STEP_MS, VEHICLES, Workload, write_lines
from kanal_worker.runtime.sink import FETCH_DEFAULTS

APACHE_FILE_SOURCE = "org.apache.kafka.connect.file.FileStreamSourceConnector"


def file_source_config(workload: Workload, workdir: Path, topic: str) -> dict[str, str]:
    """The FileStreamSource configuration both systems get (the name aside)."""
    return {"connector.class": APACHE_FILE_SOURCE, "tasks.max": "1", "topic": topic,
            "file": str(lines_file(workdir, workload.records)),
            "key.converter": STRING, "value.converter": STRING}


def describe_topic(sample: Sample, bootstrap: str, topic: str) -> None:
    """The ``LineDigest`` of the values a source wrote into ``topic``, compared across
    systems as the sinks' files are (``bench.report.Summary.outputs``)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kanal-bench-digest",
                         "enable.auto.commit": False, "log_level": 0, **FETCH_DEFAULTS})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    digest, deadline = LineDigest(), time.monotonic() + 60 + sample.records / 20_000
    try:
        while digest.count < sample.records and time.monotonic() < deadline:
            digest.add([m.value() or b"" for m in consumer.consume(10_000, 1.0)
                        if m.error() is None])
    finally:
        consumer.close()
    found = digest.result()
    sample.extra["output_digest"] = found["digest"]
    sample.extra["first_line"] = found["first_line"]


def new_topic(bootstrap: str) -> str:
    name = f"bench.source.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(30)
    return name


def drop_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    with contextlib.suppress(Exception):  # left for the broker's retention
        admin.delete_topics([topic])[topic].result(30)


class TopicCounter:
    """Records in a topic: the sum of its partitions' high watermarks."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer({"bootstrap.servers": bootstrap,
                                  "group.id": "kanal-bench-watermarks", "log_level": 0})

    def __call__(self) -> int:
        try:
            return sum(self.consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                           timeout=5, cached=False)[1]
                       for p in range(PARTITIONS))
        except KafkaException:  # a topic this new may not be known to the client yet
            return 0

    def close(self) -> None:
        self.consumer.close()


def lines_file(workdir: Path, count: int) -> Path:
    path = workdir / f"telemetry-{count}.jsonl"
    if not path.exists():
        write_lines(path, count)
    return path


def _measure(bootstrap: str, topic: str, target: int, pid: int | None, started: float,
             alive: Callable[[], bool], sample: Sample) -> Sample:
    counter = TopicCounter(bootstrap, topic)
    try:
        window = watch(counter, target, pid, 120 + target / 2000, started=started,
                       interval=0.05, alive=alive)
    finally:
        counter.close()
    return window.fill(sample)


def generator_config(workload: Workload, topic: str) -> dict[str, str]:
    """Kanal's telemetry generator producing the workload's records into ``topic``."""
    return {"connector.class": "VehicleTelemetrySource", "tasks.max": "1", "topic": topic,
            "count": str(workload.records), "seed": str(SEED), "vehicles": str(VEHICLES),
            "start.timestamp.ms": str(START_MS), "timestamp.step.ms": str(STEP_MS)}


def kanal_source(workload: Workload, bootstrap: str, run: int, workdir: Path,
                 variant: str) -> Sample:
    topic = new_topic(bootstrap)
    name = f"bench-kanal-src-{uuid.uuid4().hex[:8]}"
    if variant == "generator":
        connector = {"name": name, **generator_config(workload, topic)}
    else:
        connector = {"name": name, **file_source_config(workload, workdir, topic)}
    sample = Sample("B3 source", variant, "kanal", run, workload.records)
    return measure_kanal(Kanal(workdir / name, bootstrap, [connector]), sample, bootstrap,
                         topic, digest=variant == "file")


def measure_kanal(kanal: Kanal, sample: Sample, bootstrap: str, topic: str,
                  digest: bool = False) -> Sample:
    """Run ``kanal`` until ``topic`` holds the sample's records (and with ``digest``,
    describe what it wrote there); then stop it and drop its files and the topic."""
    try:
        kanal.start()
        _measure(bootstrap, topic, sample.records, kanal.pid, kanal.started, kanal.alive,
                 sample)
        sample.peak_rss_mb = max(sample.peak_rss_mb,
                                 kanal.peak_rss_mb() if kanal.alive() else 0.0)
        if digest and sample.ok:
            describe_topic(sample, bootstrap, topic)
    finally:
        kanal.stop()
        if not sample.ok:
            sample.note += " | " + kanal.tail(5).replace("\n", " / ")
        shutil.rmtree(kanal.workdir, ignore_errors=True)
        drop_topic(bootstrap, topic)
    return sample


def apache_source(workload: Workload, bootstrap: str, run: int, workdir: Path,
                  peer: ConnectWorker) -> Sample:
    topic = new_topic(bootstrap)
    name = f"bench-apache-src-{uuid.uuid4().hex[:8]}"
    config = file_source_config(workload, workdir, topic)
    sample = Sample("B3 source", "file", "apache", run, workload.records)
    try:
        started = time.monotonic()
        peer.create(name, config)
        _measure(bootstrap, topic, workload.records, peer.pid, started, lambda: True, sample)
        if sample.ok:
            describe_topic(sample, bootstrap, topic)
    finally:
        peer.delete(name)
        drop_topic(bootstrap, topic)
    return sample


def raw_produce(workload: Workload, bootstrap: str, run: int, workdir: Path) -> Sample:
    topic = new_topic(bootstrap)
    sample = Sample("B3 source", "file lines", "confluent-kafka", run, workload.records,
                    note="pre-generated bytes")
    try:
        run_raw(sample, "bench.raw", ["produce", bootstrap, topic,
                                      str(lines_file(workdir, workload.records))],
                workload.timeout)
    finally:
        drop_topic(bootstrap, topic)
    return sample


def b3(workload: Workload, bootstrap: str, run: int, workdir: Path,
       peer: ConnectWorker | None) -> list[Sample]:
    """The raw producer, Kanal's generator, then Kanal's and Apache's FileStreamSource of
    the same configuration (Apache first in even runs)."""
    samples = [raw_produce(workload, bootstrap, run, workdir),
               kanal_source(workload, bootstrap, run, workdir, "generator")]
    kanal = partial(kanal_source, workload, bootstrap, run, workdir, "file")
    if peer is None:
        return [*samples, kanal()]
    apache = partial(apache_source, workload, bootstrap, run, workdir, peer)
    return samples + [system() for system in ((kanal, apache) if run % 2 else (apache, kanal))]
