"""B0 (raw consume, the broker's limit) and B1 (FileStreamSink: Kanal against Apache)."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench.measure import LineCounter, Sample, output_digest, run_raw, watch
from bench.systems import ConnectWorker, Kanal, delete_groups, wait_committed
from bench.workload import Workload
from kanal_worker.runtime.sink import FETCH_DEFAULTS

APACHE_FILE_SINK = "org.apache.kafka.connect.file.FileStreamSinkConnector"
STRING = "org.apache.kafka.connect.storage.StringConverter"
BYTE_ARRAY = "org.apache.kafka.connect.converters.ByteArrayConverter"
JSON = "org.apache.kafka.connect.json.JsonConverter"
SCHEMALESS = {"key.converter": STRING, "value.converter": JSON,
              "value.converter.schemas.enable": "false"}
INSERT_FIELD = {
    "transforms.tag.type": "org.apache.kafka.connect.transforms.InsertField$Value",
    "transforms.tag.static.field": "pipeline",
    "transforms.tag.static.value": "bench",
}
THREE_SMTS = {
    "transforms": "tag,drop,cast", **INSERT_FIELD,
    "transforms.drop.type": "org.apache.kafka.connect.transforms.ReplaceField$Value",
    "transforms.drop.exclude": "fuel_level",
    "transforms.cast.type": "org.apache.kafka.connect.transforms.Cast$Value",
    "transforms.cast.spec": "speed_kmh:int32,seq:string",
}


@dataclass(frozen=True)
class FileSinkVariant:
    """One FileStreamSink configuration, given unchanged to both systems."""

    name: str
    config: dict[str, str]
    doc: str
    form: str = "json"
    """the workload topic it reads (``bench.workload.FORMS``)"""
    known_difference: str = ""
    """why the two outputs differ by design, when they do (README lists it)"""
    passthrough: bool = True
    """what the targets count it as: passthrough (>= 2x) or transform path (>= 1.5x)"""


VARIANTS = {v.name: v for v in (
    FileSinkVariant(
        "string", {"key.converter": STRING, "value.converter": STRING},
        "StringConverter for keys and values: the JSON text of each record becomes one "
        "line, unchanged."),
    FileSinkVariant(
        "bytearray", {"key.converter": BYTE_ARRAY, "value.converter": BYTE_ARRAY},
        "ByteArrayConverter for keys and values: each value is a byte array.",
        known_difference="Apache's FileStreamSink prints a byte[] with Java's "
                         "Object.toString(), an identity hash ([B@1b2c3d4e); Kanal writes "
                         "the bytes"),
    FileSinkVariant(
        "json", dict(SCHEMALESS),
        "JsonConverter (schemas.enable=false) for values, StringConverter for keys: each "
        "value becomes a map, printed with Java's Map.toString()."),
    FileSinkVariant(
        "json-3smt", {**SCHEMALESS, **THREE_SMTS},
        "schemaless JSON through InsertField$Value (static pipeline=bench), "
        "ReplaceField$Value (exclude fuel_level) and Cast$Value (speed_kmh:int32, "
        "seq:string), printed with Map.toString().",
        passthrough=False),
    FileSinkVariant(
        "json-schemas-smt",
        {"key.converter": STRING, "value.converter": JSON,
         "value.converter.schemas.enable": "true", "transforms": "tag", **INSERT_FIELD},
        "JSON with schemas (the envelope of JsonConverter) into a Struct, InsertField$Value "
        "(static pipeline=bench) adds a field to the schema and the value, printed with "
        "Struct.toString().",
        form="json-schemas", passthrough=False),
)}
PASSTHROUGH_VARIANT = "string"
"""The variant the control-plane benchmarks and profiles use by default."""
SCALE_VARIANTS = (PASSTHROUGH_VARIANT, "json-3smt")
"""What ``scale`` runs with 1 and 2 tasks: a passthrough, which one task already moves at
the broker's pace on a small machine, and the transform chain, whose task is CPU-bound, so
a second task shows whether it gets a core of its own."""


def raw_consume(workload: Workload, bootstrap: str, run: int,
                settings: dict[str, str], variant: str, native: bool = False) -> Sample:
    """B0: ``python -m bench.raw consume`` in its own process (``native-consume``: through
    Kanal's native fetch)."""
    sample = Sample("B0 raw consume", variant, "kanal native fetch" if native
                    else "confluent-kafka", run, workload.records)
    run_raw(sample, "bench.raw", ["native-consume" if native else "consume", bootstrap,
                                  workload.topic, str(workload.records), json.dumps(settings)],
            workload.timeout)
    sample.extra["settings"] = settings
    return sample


def b0(workload: Workload, bootstrap: str, run: int) -> list[Sample]:
    return [raw_consume(workload, bootstrap, run, dict(FETCH_DEFAULTS), "kanal fetch settings"),
            raw_consume(workload, bootstrap, run, dict(FETCH_DEFAULTS), "kanal fetch settings",
                        native=True),
            raw_consume(workload, bootstrap, run, {}, "librdkafka defaults")]


def file_sink_config(workload: Workload, variant: FileSinkVariant, out: Path,
                     tasks: int) -> dict[str, str]:
    """The connector configuration both systems get (only the name and file differ)."""
    return {"connector.class": APACHE_FILE_SINK, "tasks.max": str(tasks),
            "topics": workload.topic, "file": str(out), **variant.config}


def kanal_file_sink(workload: Workload, bootstrap: str, run: int, variant: FileSinkVariant,
                    workdir: Path, tasks: int = 1, bench: str = "B1 file sink",
                    python_args: list[str] | None = None) -> Sample:
    name = f"bench-kanal-{uuid.uuid4().hex[:8]}"
    out = workdir / f"{name}.jsonl"
    connector = {"name": name, **file_sink_config(workload, variant, out, tasks)}
    kanal = Kanal(workdir / name, bootstrap, [connector], python_args=python_args)
    sample = Sample(bench, variant.name, "kanal", run, workload.records,
                    extra={"tasks": tasks})
    try:
        kanal.start()
        window = watch(LineCounter(out), workload.records, kanal.pid, workload.timeout,
                       started=kanal.started, alive=kanal.alive)
        sample.peak_rss_mb = kanal.peak_rss_mb() if kanal.alive() else 0.0
        window.fill(sample)
        if sample.ok and not wait_committed(bootstrap, f"connect-{name}", workload.topic,
                                            workload.partitions, workload.records, 60):
            sample.ok, sample.note = False, "offsets not committed within 60 s"
    finally:
        kanal.stop()
        describe_output(sample, out)
        if not sample.ok:
            sample.note += " | " + kanal.tail(5).replace("\n", " / ")
        out.unlink(missing_ok=True)
        shutil.rmtree(workdir / name, ignore_errors=True)
        delete_groups(bootstrap, f"connect-{name}")
    return sample


def describe_output(sample: Sample, out: Path) -> None:
    """Size and order-insensitive digest of the file, compared across systems by
    ``bench.report.Summary.outputs``."""
    sample.extra["output_bytes"] = out.stat().st_size if out.exists() else 0
    found = output_digest(out)
    sample.extra["output_digest"] = found["digest"]
    sample.extra["first_line"] = found["first_line"]


def apache_file_sink(workload: Workload, bootstrap: str, run: int, variant: FileSinkVariant,
                     workdir: Path, peer: ConnectWorker, tasks: int = 1,
                     bench: str = "B1 file sink") -> Sample:
    name = f"bench-apache-{uuid.uuid4().hex[:8]}"
    out = workdir / f"{name}.jsonl"
    config = file_sink_config(workload, variant, out, tasks)
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
        if sample.ok and not wait_committed(bootstrap, f"connect-{name}", workload.topic,
                                            workload.partitions, workload.records, 60):
            sample.ok, sample.note = False, "offsets not committed within 60 s"
    finally:
        peer.delete(name)
        describe_output(sample, out)
        out.unlink(missing_ok=True)
        delete_groups(bootstrap, f"connect-{name}")
    return sample


def b1(workloads: Mapping[str, Workload], bootstrap: str, run: int, workdir: Path,
       peer: ConnectWorker | None, variants: list[str]) -> list[Sample]:
    """Kanal then Apache, for each variant: the two alternate within every run (Apache
    first in even runs, so neither always runs on the cache the other warmed)."""
    samples = []
    for variant in (VARIANTS[v] for v in variants):
        workload = workloads[variant.form]
        kanal = partial(kanal_file_sink, workload, bootstrap, run, variant, workdir)
        if peer is None:
            samples.append(kanal())
            continue
        apache = partial(apache_file_sink, workload, bootstrap, run, variant, workdir, peer)
        for system in ((kanal, apache) if run % 2 else (apache, kanal)):
            samples.append(system())
    return samples


def scale(workloads: Mapping[str, Workload], bootstrap: str, run: int, workdir: Path,
          peer: ConnectWorker | None) -> list[Sample]:
    """1 against 2 tasks on the same 6-partition topic, for each of ``SCALE_VARIANTS``."""
    samples = []
    for variant in map(VARIANTS.__getitem__, SCALE_VARIANTS):
        for tasks in (1, 2):
            samples.append(kanal_file_sink(workloads[variant.form], bootstrap, run, variant,
                                           workdir, tasks, bench=f"scale {tasks} task(s)"))
            if peer is not None:
                samples.append(apache_file_sink(workloads[variant.form], bootstrap, run,
                                                variant, workdir, peer, tasks,
                                                bench=f"scale {tasks} task(s)"))
    return samples

