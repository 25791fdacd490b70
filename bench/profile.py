"""Where a task's time goes: ``kanal standalone`` moving the workload under py-spy
(every thread, native frames of the interpreter hidden), summarised per function.

    python -m bench.profile [--variant string|bytearray|json|json-3smt|json-schemas-smt|
                                       avro-parquet|azure-json|azure-json-hourly|
                                       azure-parquet|azure-avro|
                                       file-source|generator] [--records N] [--tasks N]

The B1 variants (FileStreamSink), B2's Avro -> Parquet and schemaless JSON (as JSON
files in one folder per partition or in hourly folders, as Parquet or as Avro files)
into Azurite, and B3's FileStreamSource and telemetry
generator. Writes bench/results/profile-<variant>.txt: the share of the task thread's
samples spent in each function (self) and under it (inclusive), then each thread's share
and the same over all threads. The object-store variants sample waiting threads too
(py-spy ``--idle``): the task thread's wait for its uploads shows there. Needs py-spy
(``pip install py-spy``).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.env import RESULTS, scratch, stack
from bench.measure import LineCounter
from bench.registry import Registry
from bench.sinks import PASSTHROUGH_VARIANT, VARIANTS, file_sink_config
from bench.sources import (
    TopicCounter,
    drop_topic,
    file_source_config,
    generator_config,
    new_topic,
)
from bench.storage import (
    AVRO_INPUT,
    Committed,
    azure_store,
    complete_files,
    sink_config,
)
from bench.systems import Kanal, delete_groups
from bench.workload import ensure


def summarise(raw: Path, focus: str = "SinkTaskRunner._loop", top: int = 30) -> str:
    """Self and inclusive shares of the stacks that pass through ``focus``."""
    own: collections.Counter[str] = collections.Counter()
    under: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not any(focus in frame for frame in frames):
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            under[frame] += n
    lines = [f"{total} samples under {focus}", "", "self:"]
    lines += [f"{n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"{n / total:6.1%}  {frame}" for frame, n in under.most_common(top)]
    return "\n".join(lines) + "\n"


def summarise_threads(raw: Path, top: int = 12) -> str:
    """Every thread's share of the samples and where each spends them (self): an
    object-store sink's uploads run on threads of their own that take the GIL from the
    task thread."""
    threads: collections.Counter[str] = collections.Counter()
    own: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        total += n
        # with --threads the root frame names the thread (after the process's, with
        # --subprocesses); a pool's threads share a name but for the number at its end
        process = ""
        while frames[0].startswith("process "):  # the worker's, then a task process's
            process = frames.pop(0).split(":", 1)[0] + ", "
        thread = process + re.sub(r"_\d+$", "", frames[0].split(": ", 1)[-1])
        threads[thread] += n
        own[thread][frames[-1]] += n
    lines = [f"{total} samples in all threads"]
    for thread, n in threads.most_common():
        if n < total / 50:
            continue
        lines += ["", f"{n / total:6.1%}  {thread}, self:"]
        lines += [f"{m / total:6.1%}  {frame}" for frame, m in own[thread].most_common(top)]
    return "\n".join(lines) + "\n"


@dataclass
class Profiled:
    """What one profile runs: Kanal's connector, how far it got, and how to clean up."""

    description: str
    connector: dict[str, str]
    progress: Callable[[], int]
    target: int
    focus: str = "SinkTaskRunner._loop"
    cleanup: Callable[[], None] = lambda: None
    idle: bool = False
    """Whether waiting threads are sampled too: an object-store sink's task thread waits
    for its uploads, which is time the records are not moving."""
    processes: bool = False
    """Whether the worker's task processes are sampled too (``tasks.max`` above 1)."""


def file_sink(variant: str, records: int, workdir: Path, tasks: int) -> Profiled:
    env = stack("kafka")
    chosen = VARIANTS[variant]
    workload = ensure(env.bootstrap, records, form=chosen.form)
    out = workdir / "out.jsonl"
    return Profiled(f"FileStreamSink {variant}" + (f", {tasks} tasks" if tasks > 1 else ""),
                    {"name": f"bench-profile-{uuid.uuid4().hex[:8]}",
                     **file_sink_config(workload, chosen, out, tasks)},
                    LineCounter(out), workload.records, processes=tasks > 1)


def object_store(fmt: str, records: int, workdir: Path, registry: str) -> Profiled:
    env = stack("kafka", "azurite")
    assert env.azurite is not None
    workload = ensure(env.bootstrap, records, form="avro" if fmt in AVRO_INPUT else "json")
    store = azure_store(env.azurite)
    name = f"bench-profile-{uuid.uuid4().hex[:8]}"
    committed = Committed(env.bootstrap, f"connect-{name}", workload)

    def cleanup() -> None:
        committed.close()
        store.drop(name)
        delete_groups(env.bootstrap, f"connect-{name}")
    return Profiled(f"AzureBlobStorageSinkConnector {fmt}",
                    {"name": name, **sink_config(workload, store, name, fmt, registry)},
                    committed, complete_files(workload), cleanup=cleanup, idle=True)


def source(variant: str, records: int, workdir: Path) -> Profiled:
    env = stack("kafka")
    workload = ensure(env.bootstrap, records)
    topic = new_topic(env.bootstrap)
    counter = TopicCounter(env.bootstrap, topic)

    def cleanup() -> None:
        counter.close()
        drop_topic(env.bootstrap, topic)
    if variant == "generator":
        description, config = "VehicleTelemetrySource", generator_config(workload, topic)
    else:
        description, config = "FileStreamSource", file_source_config(workload, workdir, topic)
    return Profiled(description, {"name": f"bench-profile-{uuid.uuid4().hex[:8]}", **config},
                    counter, workload.records, focus="SourceTaskRunner._loop",
                    cleanup=cleanup)


OBJECT_STORE = {"avro-parquet": "avro-parquet", "azure-json": "json",
                "azure-json-hourly": "json-hourly", "azure-parquet": "parquet",
                "azure-avro": "avro"}
"""B2's variants, each with its bench.storage format."""
OTHERS = (*OBJECT_STORE, "file-source", "generator")
"""Variants beside B1's: B2's into Azurite, B3's FileStreamSource and telemetry
generator."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.profile", description=__doc__)
    parser.add_argument("--variant", default=PASSTHROUGH_VARIANT,
                        choices=sorted(VARIANTS) + list(OTHERS))
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--tasks", type=int, default=1,
                        help="tasks.max of a FileStreamSink variant; above 1 the tasks run "
                             "in task processes, sampled together")
    args = parser.parse_args(argv)
    if args.tasks > 1 and args.variant not in VARIANTS:
        parser.error("--tasks applies to the FileStreamSink variants only")
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    workdir = scratch() / f"profile-{uuid.uuid4().hex[:8]}"
    workdir.mkdir(parents=True)
    raw = workdir / "py-spy.txt"
    with Registry() as registry:
        if args.variant in OBJECT_STORE:
            profiled = object_store(OBJECT_STORE[args.variant], args.records, workdir,
                                    registry)
        elif args.variant in ("file-source", "generator"):
            profiled = source(args.variant, args.records, workdir)
        else:
            profiled = file_sink(args.variant, args.records, workdir, args.tasks)
        try:
            reached = record(profiled, workdir, raw, py_spy, args.rate)
        finally:
            profiled.cleanup()
    text = summarise(raw, profiled.focus) + "\n" + summarise_threads(raw)
    tasks = f"-{args.tasks}-tasks" if args.tasks > 1 else ""
    target = RESULTS / f"profile-{args.variant}{tasks}.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f"kanal standalone, {profiled.description}, "
                      f"{reached:,} of {profiled.target:,} records\n\n{text}")
    print(text)
    print(f"profile in {target}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def record(profiled: Profiled, workdir: Path, raw: Path, py_spy: str, rate: int) -> int:
    """Run Kanal under py-spy until ``profiled.target`` records; the count reached."""
    env = stack("kafka")
    kanal = Kanal(workdir, env.bootstrap, [profiled.connector], python_args=[
        py_spy, "record", "--threads", *(["--idle"] if profiled.idle else []),
        *(["--subprocesses"] if profiled.processes else []),
        "--format", "raw", "-r", str(rate), "-o", str(raw), "--", sys.executable])
    kanal.start()
    deadline = time.monotonic() + 120 + profiled.target / 2000
    while (reached := profiled.progress()) < profiled.target and \
            time.monotonic() < deadline and kanal.alive():
        time.sleep(0.1)
    # stop the worker itself (py-spy's child): py-spy then writes what it sampled
    children = Path(f"/proc/{kanal.pid}/task/{kanal.pid}/children").read_text().split()
    for child in children:
        with open(f"/proc/{child}/cmdline", "rb") as handle:
            if b"standalone" in handle.read():
                os.kill(int(child), signal.SIGTERM)
    kanal.stop(signal.SIGINT, timeout=60)
    return reached


if __name__ == "__main__":
    raise SystemExit(main())
