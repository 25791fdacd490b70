"""B0 (raw consume, the broker's limit) and B1 (FileStreamSink: Kanal against Apache)."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.measure import LineCounter, Sample, run_raw, watch
from bench.systems import ConnectWorker, Kanal, delete_groups, wait_committed
from bench.workload import Workload
from kanal_worker.runtime.sink import FETCH_DEFAULTS

APACHE_FILE_SINK = "org.apache.kafka.connect.file.FileStreamSinkConnector"
STRING = "org.apache.kafka.connect.storage.StringConverter"
JSON = "org.apache.kafka.connect.json.JsonConverter"
INSERT_FIELD = {
    "transforms": "tag",
    "transforms.tag.type": "org.apache.kafka.connect.transforms.InsertField$Value",
    "transforms.tag.static.field": "pipeline",
    "transforms.tag.static.value": "bench",
}


@dataclass(frozen=True)
class FileSinkVariant:
    """What both systems are asked to do with the same records."""

    name: str
    kanal: dict[str, str]
    apache: dict[str, str]
    doc: str


VARIANTS = {
    "passthrough": FileSinkVariant(
        "passthrough",
        kanal={"key.converter": STRING, "value.converter": STRING},
        apache={"key.converter": STRING, "value.converter": STRING},
        doc="the JSON bytes of each record become one line of the file, read as text by "
            "StringConverter on both sides (a JsonConverter would print each map with "
            "Java's toString(), on both sides too)."),
    "decode-encode": FileSinkVariant(
        "decode-encode",
        kanal={"key.converter": STRING, "value.converter": JSON,
               "value.converter.schemas.enable": "false", **INSERT_FIELD},
        apache={"key.converter": STRING, "value.converter": JSON,
                "value.converter.schemas.enable": "false", **INSERT_FIELD},
        doc="every record is parsed, changed by InsertField$Value (static field "
            "pipeline=bench) and written again as the changed map's Java toString(), by "
            "both."),
}


def raw_consume(workload: Workload, bootstrap: str, run: int,
                settings: dict[str, str], variant: str) -> Sample:
    """B0: ``python -m bench.raw consume`` in its own process."""
    sample = Sample("B0 raw consume", variant, "confluent-kafka", run, workload.records)
    run_raw(sample, "consume", bootstrap, workload.topic, str(workload.records),
            json.dumps(settings), timeout=workload.timeout)
    sample.extra["settings"] = settings
    return sample


def b0(workload: Workload, bootstrap: str, run: int) -> list[Sample]:
    return [raw_consume(workload, bootstrap, run, dict(FETCH_DEFAULTS), "kanal fetch settings"),
            raw_consume(workload, bootstrap, run, {}, "librdkafka defaults")]


def kanal_file_sink(workload: Workload, bootstrap: str, run: int, variant: FileSinkVariant,
                    workdir: Path, tasks: int = 1, bench: str = "B1 file sink",
                    python_args: list[str] | None = None) -> Sample:
    name = f"bench-kanal-{uuid.uuid4().hex[:8]}"
    out = workdir / f"{name}.jsonl"
    connector = {"name": name, "connector.class": APACHE_FILE_SINK, "tasks.max": str(tasks),
                 "topics": workload.topic, "file": str(out), **variant.kanal}
    kanal = Kanal(workdir / name, bootstrap, [connector], python_args=python_args)
    sample = Sample(bench, variant.name, "kanal", run, workload.records,
                    extra={"tasks": tasks})
    try:
        kanal.start()
        window = watch(LineCounter(out), workload.records, kanal.pid, workload.timeout,
                       started=kanal.started, alive=kanal.alive)
        sample.peak_rss_mb = kanal.peak_rss_mb() if kanal.alive() else 0.0
        window.fill(sample)
        sample.extra["output_bytes"] = out.stat().st_size if out.exists() else 0
        if sample.ok and not wait_committed(bootstrap, f"connect-{name}", workload.topic,
                                            workload.partitions, workload.records, 60):
            sample.ok, sample.note = False, "offsets not committed within 60 s"
    finally:
        kanal.stop()
        if not sample.ok:
            sample.note += " | " + kanal.tail(5).replace("\n", " / ")
        out.unlink(missing_ok=True)
        shutil.rmtree(workdir / name, ignore_errors=True)
        delete_groups(bootstrap, f"connect-{name}")
    return sample


def apache_file_sink(workload: Workload, bootstrap: str, run: int, variant: FileSinkVariant,
                     workdir: Path, peer: ConnectWorker, tasks: int = 1,
                     bench: str = "B1 file sink") -> Sample:
    name = f"bench-apache-{uuid.uuid4().hex[:8]}"
    out = workdir / f"{name}.jsonl"
    config = {"connector.class": APACHE_FILE_SINK, "tasks.max": str(tasks),
              "topics": workload.topic, "file": str(out), **variant.apache}
    sample = Sample(bench, variant.name, "apache", run, workload.records,
                    extra={"tasks": tasks})
    others = [c for c in peer.connectors() if not c.startswith("bench-")]
    if others:
        sample.note = f"peer also ran {len(others)} other connector(s)"
    try:
        started = time.monotonic()
        peer.create(name, config)
        window = watch(LineCounter(out), workload.records, peer.pid, workload.timeout,
                       started=started)
        window.fill(sample)
        sample.extra["output_bytes"] = out.stat().st_size if out.exists() else 0
        if sample.ok and not wait_committed(bootstrap, f"connect-{name}", workload.topic,
                                            workload.partitions, workload.records, 60):
            sample.ok, sample.note = False, "offsets not committed within 60 s"
    finally:
        peer.delete(name)
        out.unlink(missing_ok=True)
        delete_groups(bootstrap, f"connect-{name}")
    return sample


def b1(workload: Workload, bootstrap: str, run: int, workdir: Path,
       peer: ConnectWorker | None, variants: list[str]) -> list[Sample]:
    """Kanal then Apache, for each variant: the two alternate within every run."""
    samples = []
    for variant in (VARIANTS[v] for v in variants):
        samples.append(kanal_file_sink(workload, bootstrap, run, variant, workdir))
        if peer is not None:
            samples.append(apache_file_sink(workload, bootstrap, run, variant, workdir, peer))
    return samples


def scale(workload: Workload, bootstrap: str, run: int, workdir: Path,
          peer: ConnectWorker | None) -> list[Sample]:
    """1 against 2 tasks on the same 6-partition topic, passthrough."""
    variant = VARIANTS["passthrough"]
    samples = []
    for tasks in (1, 2):
        samples.append(kanal_file_sink(workload, bootstrap, run, variant, workdir, tasks,
                                       bench=f"scale {tasks} task(s)"))
        if peer is not None:
            samples.append(apache_file_sink(workload, bootstrap, run, variant, workdir, peer,
                                            tasks, bench=f"scale {tasks} task(s)"))
    return samples

