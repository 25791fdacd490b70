"""A variant's transform chain alone, in process (no Kafka): ``apply_columns`` of every
step on a B1 variant's polls, with the native map rebuild a step at a time, with it once
for each run of steps that plan their maps (``MapPlanChain``, as the runtime runs them),
and with the per-value Python path, alternately.

    python -m bench.transforms [--variant json-3smt|json-schemas-smt] [--records N]
                               [--rounds R]

The workload's values are converted as the sink runtime converts a poll (the variant's
converter, polls of its default 2000 records, decoded before timing); each round puts
every poll through the chain as the runtime does. Prints the CPU microseconds per record
(``time.process_time``, best of the rounds) of each path; all must give the same values
(items, their order and each map's table). The cyclic collector runs with a task's
thresholds (``tune_gc``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any
from unittest.mock import patch

from bench.sinks import VARIANTS
from bench.workload import records
from kanal_worker import native
from kanal_worker.api.records import ConvertedBatch, RecordLists, SinkColumns
from kanal_worker.runtime.codec import build_codec
from kanal_worker.runtime.sink import DEFAULT_BATCH
from kanal_worker.runtime.task import tune_gc
from kanal_worker.runtime.transforms import Step, build_chain
from kanal_worker.transforms._util import MapPlanChain, map_plan_chains

TRANSFORMED = ("json-3smt", "json-schemas-smt")
"""The variants with transforms."""


def polls(variant: str, count: int) -> list[SinkColumns]:
    """The first ``count`` readings of ``variant`` as the columns of polls, converted."""
    config = VARIANTS[variant].config
    converter = build_codec(config, {}).value
    values = [value for _, value in records(count, VARIANTS[variant].form)]
    columns = []
    for start in range(0, count, DEFAULT_BATCH):
        data = values[start:start + DEFAULT_BATCH]
        size = len(data)
        converted = converter.to_connect_batch("bench", data)
        assert len(converted.values) == size  # decoded now, not while timed
        columns.append(SinkColumns(
            origin=RecordLists(topics=["bench"] * size, partitions=[0] * size,
                               offsets=list(range(start, start + size)),
                               timestamps=[(0, -1)] * size),
            headers=[None] * size, keys=ConvertedBatch([None] * size, [None] * size),
            values=converted, encoded=[None] * size, texts=[None] * size))
    return columns


def transformed(chain: list[Step], plan_chains: dict[int, MapPlanChain],
                columns: SinkColumns) -> SinkColumns:
    done = 0
    while done < len(chain):  # the runtime's column path (bench chains have no predicates)
        at_once = plan_chains.get(done)
        result = (at_once or chain[done].transform).apply_columns(columns)
        assert result is not None, f"{chain[done].class_name} has no column form"
        columns, done = result, done + (len(at_once.steps) if at_once else 1)
    return columns


def python_maps() -> AbstractContextManager[Any]:
    """The per-value Python path, as without the extension."""
    return patch.object(native, "map_rebuilder", lambda: None)


def cpu_per_record(chain: list[Step], plan_chains: dict[int, MapPlanChain],
                   columns: list[SinkColumns], count: int) -> tuple[float, list[Any]]:
    """CPU microseconds per record of the chain on every poll, and the values it gave."""
    start = time.process_time()
    results = [transformed(chain, plan_chains, poll) for poll in columns]
    spent = (time.process_time() - start) / count * 1e6
    return spent, [(type(v), getattr(v, "table", None), list(v.items())
                    if isinstance(v, dict) else v)
                   for result in results for v in result.values.values]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=TRANSFORMED, default="json-3smt")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tune_gc()
    chain = build_chain(VARIANTS[args.variant].config)
    columns = polls(args.variant, args.records)
    count = sum(len(poll.offsets) for poll in columns)
    plan_chains = map_plan_chains([step.transform for step in chain])
    paths: dict[str, Callable[[], tuple[float, list[Any]]]] = {
        "python": lambda: _in_python(chain, columns, count),
        "native, a step at a time": lambda: cpu_per_record(chain, {}, columns, count),
        "native, one pass": lambda: cpu_per_record(chain, plan_chains, columns, count)}
    times: dict[str, list[float]] = {name: [] for name in paths}
    values: dict[str, list[Any]] = {}
    for _ in range(args.rounds):
        for name, run in paths.items():
            spent, values[name] = run()
            times[name].append(spent)
    if any(given != values["python"] for given in values.values()):
        raise SystemExit("the native map rebuild gave other values than the Python path")
    for name, spent in times.items():
        print(f"{name}: {min(spent):.3f} µs/record (best of {args.rounds}; "
              f"all: {', '.join(f'{s:.3f}' for s in spent)})")


def _in_python(chain: list[Step], columns: list[SinkColumns], count: int
               ) -> tuple[float, list[Any]]:
    with python_maps():
        return cpu_per_record(chain, {}, columns, count)


if __name__ == "__main__":
    main()
