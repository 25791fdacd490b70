"""Medians, ratios, the printed table and the JSON file."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.measure import Sample


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else 0.0


class Summary:
    """Medians of each (bench, variant, system) over the runs that reached their target."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples
        groups: dict[tuple[str, str, str], list[Sample]] = defaultdict(list)
        for sample in samples:
            groups[sample.bench, sample.variant, sample.system].append(sample)
        self.groups = groups

    def outputs(self) -> list[dict[str, Any]]:
        """For each (bench, variant) that Kanal and Apache both wrote files for: in how many
        runs the two files held the same lines (order aside), and a first line of each."""
        found = []
        pairs = {(bench, variant) for bench, variant, system in self.groups
                 if system == "kanal"}
        for bench, variant in sorted(pairs):
            digests = {system: {s.run: s for s in self.groups.get((bench, variant, system), [])
                                if s.ok and s.extra.get("output_digest")}
                       for system in ("kanal", "apache")}
            runs = sorted(digests["kanal"].keys() & digests["apache"].keys())
            if not runs:
                continue
            same = sum(digests["kanal"][r].extra["output_digest"]
                       == digests["apache"][r].extra["output_digest"] for r in runs)
            found.append({"bench": bench, "variant": variant, "runs": len(runs),
                          "identical": same,
                          **{f"{system}_first_line": digests[system][runs[0]].extra["first_line"]
                             for system in ("kanal", "apache")}})
        return found

    def rows(self) -> list[dict[str, Any]]:
        verdicts = {(o["bench"], o["variant"]): output_verdict(o) for o in self.outputs()}
        rows = []
        for (bench, variant, system), samples in self.groups.items():
            good = [s for s in samples if s.ok] or samples
            rows.append({
                "bench": bench, "variant": variant, "system": system,
                "runs": len(samples), "ok": sum(s.ok for s in samples),
                "rate": median(s.rate for s in good),
                "rate_min": min(s.rate for s in good), "rate_max": max(s.rate for s in good),
                "startup_s": median(s.startup_s for s in good),
                "cpu_per_million": median(s.cpu_per_million for s in good),
                "peak_rss_mb": median(s.peak_rss_mb for s in good),
                "notes": sorted({s.note for s in samples if s.note}),
                "output": verdicts.get((bench, variant), ""),
                **{k: median(float(s.extra[k]) for s in good if k in s.extra)
                   for k in sorted({k for s in good for k, v in s.extra.items()
                                    if isinstance(v, int | float) and not isinstance(v, bool)})},
            })
        return rows

    def paired_ratio(self, bench: str, variant: str, system: str, other_bench: str,
                     other_variant: str, other_system: str, field: str = "rate") -> float | None:
        """Median of the run-by-run ratios (the two ran back to back in each run)."""
        mine = {s.run: s for s in self.groups.get((bench, variant, system), []) if s.ok}
        theirs = {s.run: s for s in self.groups.get((other_bench, other_variant, other_system),
                                                    []) if s.ok}
        ratios = []
        for run in sorted(mine.keys() & theirs.keys()):
            a = getattr(mine[run], field)
            b = getattr(theirs[run], field)
            if b:
                ratios.append(a / b)
        return median(ratios) if ratios else None


def output_verdict(compared: dict[str, Any]) -> str:
    """``identical`` when the two systems wrote the same lines in every run compared."""
    if compared["identical"] == compared["runs"]:
        return "identical"
    return f"output differs ({compared['runs'] - compared['identical']}/{compared['runs']} runs)"


def table(rows: list[dict[str, Any]]) -> str:
    header = ("bench", "variant", "system", "ok/runs", "records/s (min-max)", "startup s",
              "CPU s/M rec", "peak RSS MB", "broker CPU s/M", "busy cores", "output")
    lines = [header]
    for row in rows:
        rate = (f"{row['rate']:,.0f} ({row['rate_min']:,.0f}-{row['rate_max']:,.0f})"
                if row["rate"] else "-")
        lines.append((row["bench"], row["variant"], row["system"],
                      f"{row['ok']}/{row['runs']}", rate, f"{row['startup_s']:.2f}",
                      f"{row['cpu_per_million']:.2f}" if row["cpu_per_million"] else "-",
                      f"{row['peak_rss_mb']:.0f}" if row["peak_rss_mb"] else "-",
                      *machine_cells(row), row.get("output", "")))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths,
                                                                           strict=True)))
        if n == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


def machine_cells(row: dict[str, Any]) -> tuple[str, str]:
    """The broker's CPU per million records and the cores busy while the records flowed:
    the systems share this machine with the broker, so a rate is bounded by what the two
    leave each other."""
    broker, busy = row.get("broker_cpu_per_million"), row.get("busy_cores")
    return (f"{broker:.2f}" if broker else "-", f"{busy:.2f}" if busy else "-")


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "platform": platform.platform(), "load_avg": os.getloadavg()}


def write(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def markdown(rows: list[dict[str, Any]], found: list[dict[str, Any]],
             b4: list[dict[str, Any]] | None = None) -> str:
    """The summary as Markdown tables (what bench/README.md quotes); ``b4`` holds the rows
    of ``bench.control.rows``."""
    out = ["| bench | variant | system | ok/runs | records/s median (min-max) | startup s "
           "| CPU s / M rec | peak RSS MB | broker CPU s / M rec | busy cores | output |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mb = f" = {r['mb_per_s']:.0f} MB/s" if r.get("mb_per_s") else ""
        out.append(f"| {r['bench']} | {r['variant']} | {r['system']} | {r['ok']}/{r['runs']} "
                   f"| {r['rate']:,.0f} ({r['rate_min']:,.0f}-{r['rate_max']:,.0f}){mb} "
                   f"| {r['startup_s']:.2f} | {r['cpu_per_million']:.2f} "
                   f"| {r['peak_rss_mb']:.0f} | {' | '.join(machine_cells(r))} "
                   f"| {r.get('output', '')} |")
    out += ["", "| comparison | ratio | target |", "|---|---|---|"]
    out += [f"| {r['what']} | {r['ratio']:.2f} | {r['target']} |" for r in found]
    if b4:
        out += ["", "| B4 | system | seconds median (min-max) | ok/runs |", "|---|---|---|---|"]
        out += [f"| {r['what']} | {r['system']} | {median_range(r['seconds'])} "
                f"| {len(r['seconds'])}/{r['runs']} |" for r in b4]
    return "\n".join(out) + "\n"


def median_range(values: list[float]) -> str:
    """Median (min-max)."""
    if not values:
        return "-"
    return f"{median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


if __name__ == "__main__":
    import sys

    from bench.control import rows as b4_rows  # bench.control imports this module

    results = json.loads(Path(sys.argv[1]).read_text())
    print(markdown(results["summary"], results["ratios"],
                   b4_rows(results["B4"]) if "B4" in results else None))
