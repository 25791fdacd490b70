"""Where a sink task's time goes: ``kanal standalone`` moving the workload under py-spy
(every thread, native frames of the interpreter hidden), summarised per function.

    python -m bench.profile [--variant string|bytearray|json|json-3smt|json-schemas-smt]
                            [--records N]

Writes bench/results/profile-<variant>.txt: the share of the task thread's samples spent
in each function (self) and under it (inclusive). Needs py-spy (``pip install py-spy``).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

from bench.env import RESULTS, scratch, stack
from bench.measure import LineCounter
from bench.sinks import SCALE_VARIANT, VARIANTS, file_sink_config
from bench.systems import Kanal
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.profile", description=__doc__)
    parser.add_argument("--variant", default=SCALE_VARIANT, choices=sorted(VARIANTS))
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    env = stack("kafka")
    variant = VARIANTS[args.variant]
    workload = ensure(env.bootstrap, args.records, form=variant.form)
    workdir = scratch() / f"profile-{uuid.uuid4().hex[:8]}"
    raw = workdir / "py-spy.txt"
    out = workdir / "out.jsonl"
    name = f"bench-profile-{uuid.uuid4().hex[:8]}"
    connector = {"name": name, **file_sink_config(workload, variant, out, 1)}
    kanal = Kanal(workdir, env.bootstrap, [connector], python_args=[
        py_spy, "record", "--format", "raw", "-r", str(args.rate), "-o", str(raw), "--",
        sys.executable])
    kanal.start()
    lines = LineCounter(out)
    deadline = time.monotonic() + workload.timeout
    while lines() < workload.records and time.monotonic() < deadline and kanal.alive():
        time.sleep(0.1)
    # stop the worker itself (py-spy's child): py-spy then writes what it sampled
    children = Path(f"/proc/{kanal.pid}/task/{kanal.pid}/children").read_text().split()
    for child in children:
        with open(f"/proc/{child}/cmdline", "rb") as handle:
            if b"standalone" in handle.read():
                os.kill(int(child), signal.SIGTERM)
    kanal.stop(signal.SIGINT, timeout=60)
    text = summarise(raw)
    target = RESULTS / f"profile-{args.variant}.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f"kanal standalone, FileStreamSink {args.variant}, "
                      f"{lines():,} of {workload.records:,} records\n\n{text}")
    print(text)
    print(f"profile in {target}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
