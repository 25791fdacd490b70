"""Measuring a process from outside: CPU time and memory from /proc (summed over its
process tree), progress by polling.

Every system is measured the same way: a probe counts the records delivered so far (lines
in the output file, committed offsets, records in a topic) while a sampler reads the
CPU time and resident memory of the process doing the work, so a Python worker started
for the run and a JVM that was already running are compared over the same window: from
the first record delivered to the last one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.env import broker_pid

TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants alive now (a worker's task processes, and theirs)."""
    tree, index = [pid], 0
    while index < len(tree):
        try:
            threads = os.listdir(f"/proc/{tree[index]}/task")
        except FileNotFoundError:
            threads = []
        for thread in threads:
            try:
                with open(f"/proc/{tree[index]}/task/{thread}/children") as handle:
                    tree.extend(int(child) for child in handle.read().split())
            except FileNotFoundError:
                continue
        index += 1
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds so far of every thread of ``pid`` and of its process tree:
    the descendants alive now and those that ended and were waited for."""
    total = 0.0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
        except FileNotFoundError:  # ended between listing and reading
            continue
        # utime, stime, and cutime, cstime of children it waited for
        total += sum(int(f) for f in fields[11:15]) / TICKS
    return total


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy, every core and process (``/proc/stat``
    without idle and I/O wait): over a window, the cores in use."""
    with open("/proc/stat") as handle:
        ticks = [int(f) for f in handle.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / TICKS


def memory_mb(pid: int, key: str = "VmRSS") -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of ``pid`` in MiB, summed over
    its process tree: a worker with task processes is measured whole (the sum of peaks is
    at least the peak of the sum, never less)."""
    total, found = 0.0, False
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/status") as handle:
                for line in handle:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1]) / 1024
                        found = True
                        break
        except FileNotFoundError:
            continue
    if not found:
        raise KeyError(key)
    return total


@dataclass
class Sample:
    """One run of one system on one benchmark."""

    bench: str
    variant: str
    system: str
    run: int
    records: int
    startup_s: float = 0.0
    """Launch (process start or REST call) → first record delivered."""
    active_s: float = 0.0
    """First record delivered → last record delivered."""
    active_records: int = 0
    """Records delivered within the active window."""
    cpu_s: float = 0.0
    """CPU seconds of the worker within the active window."""
    cpu_total_s: float = 0.0
    """CPU seconds from launch to the last record (a JVM already running: from the call)."""
    peak_rss_mb: float = 0.0
    ok: bool = True
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Records per second while records flowed."""
        return self.active_records / self.active_s if self.active_s > 0 else 0.0

    @property
    def rate_from_launch(self) -> float:
        """Records per second from launch to the last record: fair where a system works
        before its first record shows (a source that buffers while it starts)."""
        elapsed = self.startup_s + self.active_s
        return self.records / elapsed if elapsed > 0 and self.ok else 0.0

    @property
    def cpu_per_million(self) -> float:
        return self.cpu_s / self.active_records * 1e6 if self.active_records else 0.0

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "rate": round(self.rate, 1),
                "rate_from_launch": round(self.rate_from_launch, 1),
                "cpu_per_million": round(self.cpu_per_million, 3)}


def run_raw(sample: Sample, module: str, args: list[str], timeout: float) -> Sample:
    """Run a raw program (``python -m module args``, which prints one JSON line the way
    ``bench.raw`` does) and fill ``sample`` with what it measured; not ``ok`` when it
    failed or moved fewer than ``sample.records``."""
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                         text=True, timeout=timeout, check=False)
    try:
        result = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        sample.ok, sample.note = False, f"{module} {args[0]} failed: {out.stderr[-500:]}"
        return sample
    sample.startup_s, sample.active_s = result["startup_s"], result["active_s"]
    sample.active_records, sample.cpu_s = result["active_records"], result["cpu_s"]
    sample.cpu_total_s, sample.peak_rss_mb = result["cpu_total_s"], result["peak_rss_mb"]
    sample.ok = result["count"] >= sample.records
    return sample


@dataclass
class Window:
    """What ``watch`` saw."""

    started: float
    first: float | None = None
    first_count: int = 0
    done: float | None = None
    count: int = 0
    cpu_start: float = 0.0
    cpu_first: float = 0.0
    cpu_done: float = 0.0
    rss_max_mb: float = 0.0
    machine_first: float = 0.0
    machine_done: float = 0.0
    broker: int | None = None
    broker_first: float = 0.0
    broker_done: float = 0.0

    def machine(self) -> tuple[float, float]:
        """The machine's busy CPU seconds and the broker's CPU seconds now (one read each:
        the broker's threads are not walked)."""
        broker = 0.0
        if self.broker is not None:
            with contextlib.suppress(FileNotFoundError):
                with open(f"/proc/{self.broker}/stat") as handle:
                    fields = handle.read().rpartition(")")[2].split()
                broker = (int(fields[11]) + int(fields[12])) / TICKS
        return busy_cpu_seconds(), broker

    def fill(self, sample: Sample) -> Sample:
        """Copy the timings into ``sample``; not ``ok`` when the target was not reached."""
        end = self.done if self.done is not None else time.monotonic()
        first = self.first if self.first is not None else end
        sample.startup_s = first - self.started
        sample.active_s = end - first
        sample.active_records = self.count - self.first_count
        sample.cpu_s = self.cpu_done - self.cpu_first
        sample.cpu_total_s = self.cpu_done - self.cpu_start
        sample.peak_rss_mb = max(sample.peak_rss_mb, self.rss_max_mb)
        if sample.active_s > 0:
            sample.extra["busy_cores"] = round(
                (self.machine_done - self.machine_first) / sample.active_s, 3)
        if self.broker is not None and sample.active_records:
            sample.extra["broker_cpu_per_million"] = round(
                (self.broker_done - self.broker_first) / sample.active_records * 1e6, 3)
        if self.done is None:
            sample.ok = False
            sample.note = (sample.note + f" stopped at {self.count}/{sample.records}").strip()
        return sample


def watch(progress: Callable[[], int], target: int, pid: int | None, timeout: float,
          started: float | None = None, interval: float = 0.02,
          alive: Callable[[], bool] = lambda: True) -> Window:
    """Poll ``progress`` until it reaches ``target`` (or ``timeout``), sampling ``pid``."""
    window = Window(started=started if started is not None else time.monotonic(),
                    broker=broker_pid())
    if pid is not None:
        window.cpu_start = window.cpu_first = window.cpu_done = cpu_seconds(pid)
    deadline = window.started + timeout
    previous = window.started
    while True:
        count = progress()
        now = time.monotonic()
        cpu = cpu_seconds(pid) if pid is not None else 0.0
        if pid is not None:
            window.rss_max_mb = max(window.rss_max_mb, memory_mb(pid))
        if count and window.first is None:
            window.first, window.first_count, window.cpu_first = now, count, cpu
            window.machine_first, window.broker_first = window.machine()
            if count >= target:
                # everything arrived between two polls (a tiny workload): time it from
                # the previous poll, a lower bound of the rate rather than none
                window.first, window.first_count = previous, 0
        previous = now
        window.count = count
        if count >= target:
            window.done, window.cpu_done = now, cpu
            window.machine_done, window.broker_done = window.machine()
            return window
        window.cpu_done = cpu
        if now > deadline or not alive():
            window.machine_done, window.broker_done = window.machine()
            return window
        time.sleep(interval)


class LineCounter:
    """Counts the newlines of a growing file, reading only what was appended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0

    def __call__(self) -> int:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0
        if size > self.offset:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                while chunk := handle.read(1 << 22):
                    self.lines += chunk.count(b"\n")
                    self.offset += len(chunk)
        return self.lines


class LineDigest:
    """An order-insensitive digest of lines: the count and the sum of each line's hash
    (equal for the same multiset of lines, whatever the partitions' interleaving), with the
    first line kept to show how two outputs differ."""

    def __init__(self) -> None:
        self.count = self.total = 0
        self.first = b""

    def add(self, lines: list[bytes]) -> None:
        if not self.count and lines:
            self.first = lines[0]
        self.count += len(lines)
        blake2b = hashlib.blake2b
        self.total += sum(int.from_bytes(blake2b(line, digest_size=8).digest())
                          for line in lines)

    def result(self) -> dict[str, Any]:
        return {"lines": self.count, "digest": f"{self.count}:{self.total % (1 << 64):016x}",
                "first_line": self.first[:300].decode(errors="replace")}


def output_digest(path: Path) -> dict[str, Any]:
    """The ``LineDigest`` of a file's lines."""
    digest = LineDigest()
    if path.exists():
        tail = b""
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                digest.add(lines)
        if tail:  # a last line without its newline
            digest.add([tail])
    return digest.result()
