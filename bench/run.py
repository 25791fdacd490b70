"""``make bench``: every benchmark, Kanal and its peers alternating run by run.

    python -m bench.run                 # 1,000,000 records, 3 runs, everything
    python -m bench.run --quick         # 20,000 records, 1 run (what the smoke test runs)
    python -m bench.run --only B0,B1 --runs 5

Prints a table of medians and the ratios the targets are about, and writes everything
(every sample too) to bench/results/bench-<time>.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench import cdc, control, jdbc, mqtt, protobuf, registry, search, sources, storage, web
from bench.env import RESULTS, scratch, stack
from bench.jdbc_source import BENCH as JDBC_SOURCE
from bench.jdbc_source import jdbc_source
from bench.measure import Sample
from bench.report import Summary, machine, output_verdict, stamp, table, write
from bench.sinks import SCALE_VARIANTS, VARIANTS, b0, b1, scale
from bench.systems import ConnectWorker, peer_pid
from bench.workload import ensure

ALL = ("B0", "B1", "B2", "B2s3", "B2gcs", "B3", "B4", "B5", "B6", "scale")
B0_VARIANT = "kanal fetch settings"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny workload (20,000 records), one run, no Apache "
                             "failover with its 5-minute default delay, no Kanal failover "
                             "with dynamic membership")
    parser.add_argument("--records", type=int, help="records in the workload topic")
    parser.add_argument("--runs", type=int, help="runs of each benchmark (medians over them)")
    parser.add_argument("--only", default=",".join(ALL),
                        help=f"comma-separated subset of {', '.join(ALL)}")
    parser.add_argument("--no-peer", action="store_true",
                        help="skip Apache Kafka Connect (Kanal and the raw limits only)")
    parser.add_argument("--formats", default=",".join(storage.FORMATS),
                        help="B2 formats: " + ", ".join(storage.FORMATS))
    parser.add_argument("--output", type=Path, help="JSON results file")
    args = parser.parse_args(argv)
    args.records = args.records or (20_000 if args.quick else 1_000_000)
    args.runs = args.runs or (1 if args.quick else 3)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.only) - set(ALL)
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from "
                     f"{', '.join(ALL)}")
    return args


def ratios(summary: Summary, formats: list[str]) -> list[dict[str, Any]]:
    """The comparisons the targets are about, run-by-run medians."""
    out: list[dict[str, Any]] = []

    def add(what: str, value: float | None, target: str,
            met: Callable[[float], bool]) -> None:
        out.append({"what": what, "ratio": value, "target": target,
                    "met": None if value is None else met(value)})

    for variant in VARIANTS.values():
        name = variant.name
        target, goal = (2.0, ">= 2 (passthrough)") if variant.passthrough else \
            (1.5, ">= 1.5 (transforms)")
        add(f"B1 {name}: Kanal / Apache records/s",
            summary.paired_ratio("B1 file sink", name, "kanal", "B1 file sink", name,
                                 "apache"), goal, lambda r, t=target: r >= t)
        add(f"B1 {name}: Kanal / Apache CPU s per M records",
            summary.paired_ratio("B1 file sink", name, "kanal", "B1 file sink", name,
                                 "apache", "cpu_per_million"), "(lower is better)",
            lambda r: r <= 1)
        add(f"B1 {name}: Kanal / Apache peak RSS",
            summary.paired_ratio("B1 file sink", name, "kanal", "B1 file sink", name,
                                 "apache", "peak_rss_mb"), "<= 0.15", lambda r: r <= 0.15)
        add(f"B1 {name}: Kanal / B0 records/s",
            summary.paired_ratio("B1 file sink", name, "kanal", "B0 raw consume",
                                 B0_VARIANT, "confluent-kafka"), "(the broker's limit)",
            lambda r: r >= 0.7)
    for bench, label in (("B2 azure sink", "B2"), ("B2 s3 sink", "B2 s3"),
                         ("B2 gcs sink", "B2 gcs")):
        for fmt in formats:
            add(f"{label} {fmt}: Kanal / raw upload MB/s",
                summary.paired_ratio(bench, fmt, "kanal", bench, fmt, "raw upload", "rate"),
                ">= 0.50", lambda r: r >= 0.5)
    # the generator has no Apache counterpart: only the file source runs on both
    add("B3 file: Kanal / Apache records/s",
        summary.paired_ratio("B3 source", "file", "kanal", "B3 source", "file", "apache"),
        ">= 2 (String passthrough)", lambda r: r >= 2)
    add("B3 file: Kanal / Apache CPU s per M records",
        summary.paired_ratio("B3 source", "file", "kanal", "B3 source", "file", "apache",
                             "cpu_per_million"), "(lower is better)", lambda r: r <= 1)
    add("B3 file: Kanal / Apache peak RSS",
        summary.paired_ratio("B3 source", "file", "kanal", "B3 source", "file", "apache",
                             "peak_rss_mb"), "<= 0.15", lambda r: r <= 0.15)
    for variant in ("generator", "file"):
        add(f"B3 {variant}: Kanal / raw produce records/s",
            summary.paired_ratio("B3 source", variant, "kanal", "B3 source", "file lines",
                                 "confluent-kafka"), "(higher is better)", lambda r: r >= 0.7)
    for bench, variant in (("B5 http sink", f"batch {web.BATCH}"),
                           ("B5 http source", f"pages of {web.BATCH}")):
        add(f"{bench}: Kanal / raw httpx records/s",
            summary.paired_ratio(bench, variant, "kanal", bench, variant, "httpx"),
            "(higher is better)", lambda r: r >= 0.7)
        add(f"{bench}: Kanal / raw httpx CPU s per M records",
            summary.paired_ratio(bench, variant, "kanal", bench, variant, "httpx",
                                 "cpu_per_million"), "(lower is better)", lambda r: r <= 1)
    add("B5 search sink: Kanal / raw bulk records/s",
        summary.paired_ratio("B5 search sink", "json", "kanal", "B5 search sink", "json",
                             "raw bulk"), ">= 0.80", lambda r: r >= 0.8)
    add("B5 search sink: Kanal / raw bulk CPU s per M records",
        summary.paired_ratio("B5 search sink", "json", "kanal", "B5 search sink", "json",
                             "raw bulk", "cpu_per_million"), "(lower is better)",
        lambda r: r <= 1)
    for variant in ("subscribe", "publish"):
        add(f"B5 mqtt {variant}: Kanal / raw paho records/s from launch",
            summary.paired_ratio("B5 mqtt", variant, "kanal", "B5 mqtt", variant, "paho",
                                 field="rate_from_launch"),
            ">= 0.5 (the client's limit)", lambda r: r >= 0.5)
    for method, system in jdbc.RAW_METHODS.items():
        add(f"B5 jdbc: Kanal / {method} records/s",
            summary.paired_ratio(jdbc.BENCH, jdbc.VARIANT, "kanal", jdbc.BENCH, jdbc.VARIANT,
                                 system), "(higher is better)", lambda r: r >= 0.5)
    add("B6 avro: Kanal AvroConverter / confluent-kafka AvroDeserializer records/s",
        summary.paired_ratio(registry.BENCH, "avro", "kanal", registry.BENCH, "avro",
                             "AvroDeserializer"), "(higher is better)", lambda r: r >= 0.5)
    # the peer has no AvroConverter: a different configuration, so not a peer comparison
    add("B6 avro: Kanal AvroConverter / Apache JsonConverter on the same readings records/s",
        summary.paired_ratio(registry.BENCH, "avro", "kanal", registry.BENCH, "avro",
                             "apache"), ">= 1 (different converters, not the same "
                                        "configuration)", lambda r: r >= 1.0)
    add("B5 jdbc source: Kanal / raw SELECT rows/s",
        summary.paired_ratio(JDBC_SOURCE, "postgres table", "kanal", JDBC_SOURCE,
                             "postgres table", "psycopg SELECT"), "(higher is better)",
        lambda r: r >= 0.5)
    add("B5 cdc: Kanal / raw psycopg2 replication changes/s",
        summary.paired_ratio(cdc.BENCH, cdc.VARIANT, "kanal", cdc.BENCH, cdc.VARIANT, cdc.RAW),
        "(higher is better)", lambda r: r >= 0.3)
    add("B6 protobuf: Kanal / ProtobufDeserializer records/s",
        summary.paired_ratio(protobuf.BENCH, "readings", "kanal", protobuf.BENCH, "readings",
                             "confluent-kafka"), "(higher is better)", lambda r: r >= 0.5)
    for variant in SCALE_VARIANTS:
        for system in ("kanal", "apache"):
            add(f"scale {variant} {system}: 2 tasks / 1 task records/s",
                summary.paired_ratio("scale 2 task(s)", variant, system, "scale 1 task(s)",
                                     variant, system), ">= 1.7", lambda r: r >= 1.7)
    return [r for r in out if r["ratio"] is not None]


def workload_forms(wanted: set[str], formats: list[str]) -> set[str]:
    """The workload topics (``bench.workload.FORMS``) the chosen benchmarks read."""
    forms = {"json"}
    if "B1" in wanted:
        forms |= {variant.form for variant in VARIANTS.values()}
    if "scale" in wanted:
        forms |= {VARIANTS[variant].form for variant in SCALE_VARIANTS}
    if wanted & {"B2", "B2s3", "B2gcs"} and set(formats) & storage.AVRO_INPUT:
        forms.add("avro")
    if "B6" in wanted:
        forms.add("avro")
    return forms


def outputs_line(compared: dict[str, Any]) -> str:
    """Whether both systems wrote the same lines, and what differs (with its reason when
    the difference is by design)."""
    head = f"{compared['bench']} {compared['variant']}: {output_verdict(compared)}"
    if compared["identical"] == compared["runs"]:
        return head
    variant = VARIANTS.get(compared["variant"])
    why = f" (known: {variant.known_difference})" if variant and variant.known_difference \
        else ""
    return (f"{head}{why}\n    kanal first line:  {compared['kanal_first_line'][:160]}"
            f"\n    apache first line: {compared['apache_first_line'][:160]}")


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    wanted = set(args.only)
    services = ["kafka"]
    if "B2" in wanted:
        services.append("azurite")
    if "B2s3" in wanted:
        services.append("s3")
    if "B2gcs" in wanted:
        services.append("gcs")
    if not args.no_peer and wanted & {"B1", "B3", "B4", "B6", "scale"}:
        services.append("connect")
    if "B4" in wanted:
        services.append("k8s")
    if "B5" in wanted:
        services += ["opensearch", "mqtt", "postgres"]
    print(f"bench: starting {', '.join(services)}", flush=True)
    env = stack(*services)
    workload = ensure(env.bootstrap, args.records)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    workloads = {"json": workload}
    for form in sorted(workload_forms(wanted, formats) - {"json"}):
        workloads[form] = ensure(env.bootstrap, args.records, form=form)
    for loaded in workloads.values():
        print(f"bench: {loaded.records:,} records in {loaded.topic} "
              f"({loaded.partitions} partitions, {loaded.mean_value_bytes:.0f}-byte values)",
              flush=True)
    print(f"bench: {args.runs} run(s)", flush=True)
    peer = None if args.no_peer or not env.peer_url else ConnectWorker(env.peer_url, peer_pid())
    workdir = scratch() / stamp()
    workdir.mkdir(parents=True, exist_ok=True)
    samples: list[Sample] = []
    extras: dict[str, Any] = {}
    started = time.monotonic()
    for run in range(1, args.runs + 1):
        steps: list[tuple[str, Callable[[], list[Sample]]]] = []
        if "B0" in wanted:
            steps.append(("B0", partial(b0, workload, env.bootstrap, run)))
        if "B1" in wanted:
            steps.append(("B1", partial(b1, workloads, env.bootstrap, run, workdir, peer,
                                        list(VARIANTS))))
        if "B2" in wanted and env.azurite:
            steps.append(("B2", partial(storage.b2, workloads, env.bootstrap,
                                        storage.azure_store(env.azurite), run, workdir,
                                        formats)))
        if "B2s3" in wanted and env.s3:
            steps.append(("B2s3", partial(storage.b2, workloads, env.bootstrap,
                                          storage.s3_store(env.s3), run, workdir, formats)))
        if "B2gcs" in wanted and env.gcs:
            steps.append(("B2gcs", partial(storage.b2, workloads, env.bootstrap,
                                           storage.gcs_store(env.gcs), run, workdir,
                                           formats)))
        if "B3" in wanted:
            steps.append(("B3", partial(sources.b3, workload, env.bootstrap, run, workdir,
                                        peer)))
        if "B5" in wanted:
            steps.append(("B5 http", partial(web.b5, workload, env.bootstrap, run, workdir)))
        if "B5" in wanted and env.opensearch:
            steps.append(("B5 search", partial(search.b5, workload, env.bootstrap,
                                               env.opensearch, run, workdir)))
        if "B5" in wanted and env.mqtt:
            steps.append(("B5 mqtt", partial(mqtt.b5, workload, env.bootstrap, env.mqtt, run,
                                             workdir)))
        if "B5" in wanted and env.postgres:
            steps.append(("B5 jdbc sink", partial(jdbc.b5, workload, env.bootstrap,
                                                  env.postgres, run, workdir)))
            steps.append(("B5 jdbc source", partial(jdbc_source, workload, env.bootstrap,
                                                    env.postgres, run, workdir)))
            steps.append(("B5 cdc", partial(cdc.b5, workload, env.bootstrap, env.postgres, run,
                                            workdir)))
        if "B6" in wanted:
            steps.append(("B6 avro", partial(registry.b6, workloads, env.bootstrap, run,
                                             workdir, peer)))
            steps.append(("B6 protobuf", partial(protobuf.b6, workload, env.bootstrap, run,
                                                 workdir)))
        if "scale" in wanted:
            steps.append(("scale", partial(scale, workloads, env.bootstrap, run, workdir, peer)))
        for name, step in steps:
            print(f"bench: run {run}/{args.runs} {name}", flush=True)
            try:
                got = step()
            except Exception as exc:  # one broken benchmark must not lose the others
                print(f"bench: {name} failed: {exc!r}", flush=True)
                got = [Sample(name, "-", "-", run, workload.records, ok=False,
                              note=f"{type(exc).__name__}: {exc}")]
            samples.extend(got)
            for sample in got:
                print(f"  {sample.bench} / {sample.variant} / {sample.system}: "
                      f"{sample.rate:,.0f}/s, {sample.cpu_per_million:.2f} CPU s/M, "
                      f"{sample.peak_rss_mb:.0f} MB{'' if sample.ok else ' FAILED'} "
                      f"{sample.note}", flush=True)
    if "B4" in wanted:
        print("bench: B4 control plane", flush=True)
        try:
            extras["B4"] = control.b4(workload, env, peer, workdir, args.runs,
                                      full=not args.quick)
        except Exception as exc:
            extras["B4"] = {"error": f"{type(exc).__name__}: {exc}"}
    shutil.rmtree(workdir, ignore_errors=True)  # sink outputs, the source's input file
    summary = Summary(samples)
    rows = summary.rows()
    found = ratios(summary, formats)
    if "B4" in extras:
        found += control.targets(extras["B4"])
    compared = summary.outputs()
    print()
    print(table(rows))
    if compared:
        print()
        for item in compared:
            print(outputs_line(item))
    if found:
        print()
        width = max(len(r["what"]) for r in found)
        for r in found:
            verdict = {True: "met", False: "MISSED", None: ""}[r["met"]]
            print(f"{r['what'].ljust(width)}  {r['ratio']:.2f}  target {r['target']} {verdict}")
    if "B4" in extras:
        print()
        print(control.describe(extras["B4"]))
    path = args.output or RESULTS / f"bench-{stamp()}.json"
    write(path, {
        "when": stamp(), "machine": machine(), "args": {k: (str(v) if isinstance(v, Path)
                                                             else v)
                                                         for k, v in vars(args).items()},
        "workload": vars(workload), "seconds": round(time.monotonic() - started, 1),
        "variants": {name: {"config": v.config, "doc": v.doc, "workload": v.form,
                            "known_difference": v.known_difference}
                     for name, v in VARIANTS.items()},
        "summary": rows, "ratios": found, "outputs": compared, **extras,
        "samples": [s.as_json() for s in samples]})
    print(f"\nbench: results in {path}")
    return 0 if all(s.ok for s in samples) else 1


if __name__ == "__main__":
    raise SystemExit(main())
