"""FileStreamSink's printing alone, in process (no Kafka): ``lines()`` of a B1 variant's
polls with the native printer and with the Python reference, alternately.

    python -m bench.printing [--variant json|json-3smt|json-schemas-smt] [--records N]
                             [--rounds R]

The workload's values are converted as the sink runtime converts a poll (the variant's
converter, polls of its default 2000 records, values decoded before timing), put through
the variant's transforms on whole columns as the runtime does, and printed by
``kanal_worker.connectors.file.lines``. Prints the CPU microseconds per record
(``time.process_time``, best of the rounds) of each path; both must write the same bytes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from itertools import islice
from typing import Any
from unittest.mock import patch

from bench.sinks import VARIANTS
from bench.workload import records
from kanal_worker.api import java_text
from kanal_worker.api.records import ConvertedBatch, RecordLists, SinkBatch, SinkColumns
from kanal_worker.connectors.file import lines
from kanal_worker.runtime.codec import build_codec
from kanal_worker.runtime.sink import DEFAULT_BATCH
from kanal_worker.runtime.transforms import build_chain

PRINTED = ("json", "json-3smt", "json-schemas-smt")
"""The variants whose values FileStreamSink prints (the others copy text or bytes)."""


def polls(variant: str, count: int) -> list[SinkBatch]:
    """The first ``count`` readings of ``variant`` as the runtime's SinkBatches of one
    poll each, transformed."""
    config = VARIANTS[variant].config
    converter = build_codec(config, {}).value
    chain = build_chain(config)
    values = [value for _, value in records(count, VARIANTS[variant].form)]
    batches = []
    for start in range(0, count, DEFAULT_BATCH):
        data = values[start:start + DEFAULT_BATCH]
        size = len(data)
        converted = converter.to_connect_batch("bench", data)
        batch = SinkBatch.of_columns(SinkColumns(
            origin=RecordLists(topics=["bench"] * size, partitions=[0] * size,
                               offsets=list(range(start, start + size)),
                               timestamps=[(0, -1)] * size),
            headers=[None] * size, keys=ConvertedBatch([None] * size, [None] * size),
            values=converted, encoded=list(data) if converted.plain_json else [None] * size,
            texts=[None] * size))
        for step in chain:  # the runtime's column path (bench chains have no predicates)
            columns = step.transform.apply_columns(batch.columns)
            assert columns is not None, f"{step.class_name} has no column form"
            batch = SinkBatch.of_columns(columns)
        assert len(batch.values) == size  # decoded now, not while timed
        batches.append(batch)
    return batches


def python_printer() -> AbstractContextManager[Any]:
    """The Python reference prints, as without the extension."""
    return patch.object(java_text, "text_printer", lambda: None)


def cpu_per_record(batches: list[SinkBatch], count: int) -> tuple[float, list[bytes]]:
    """CPU microseconds per record of printing every poll, and the polls' text."""
    start = time.process_time()
    printed = [lines(batch) for batch in batches]
    return (time.process_time() - start) / count * 1e6, printed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=PRINTED, default="json")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    batches = polls(args.variant, args.records)
    count = sum(map(len, batches))
    paths: dict[str, Callable[[], tuple[float, list[bytes]]]] = {
        "python": lambda: _in_python(batches, count),
        "native": lambda: cpu_per_record(batches, count)}
    times: dict[str, list[float]] = {name: [] for name in paths}
    texts: dict[str, list[bytes]] = {}
    for _ in range(args.rounds):
        for name, run in paths.items():
            spent, texts[name] = run()
            times[name].append(spent)
    if texts["python"] != texts["native"]:
        raise SystemExit("the native printer wrote other bytes than the Python reference")
    for name, spent in times.items():
        print(f"{name}: {min(spent):.3f} µs/record (best of {args.rounds}; "
              f"all: {', '.join(f'{s:.3f}' for s in spent)})")
    for line in islice(texts["native"][0].splitlines(), 2):
        print(line.decode())


def _in_python(batches: list[SinkBatch], count: int) -> tuple[float, list[bytes]]:
    with python_printer():
        return cpu_per_record(batches, count)


if __name__ == "__main__":
    main()
