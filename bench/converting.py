"""A sink task's converting and transforming alone, in process (no Kafka): the B1
variant's polls converted by its value converter and put through its transforms on
whole columns, as the sink runtime does.

    python -m bench.converting [--variant json-schemas-smt|...] [--records N] [--rounds R]

The workload's values are made first (polls of the runtime's default 2000 records); the
timed part is ``Converter.to_connect_batch`` of each poll, the values read (a converter
may decode them only when read), then each transform's ``apply_columns``. Prints the CPU
microseconds per record (``time.process_time``, best of the rounds) of converting, of
transforming and of both.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.sinks import VARIANTS
from bench.workload import records
from kanal_worker.api.plugins import Converter, Transformation
from kanal_worker.api.records import ConvertedBatch, RecordLists, SinkColumns
from kanal_worker.runtime.codec import build_codec
from kanal_worker.runtime.sink import DEFAULT_BATCH
from kanal_worker.runtime.transforms import build_chain


def columns_of(converted: ConvertedBatch, start: int) -> SinkColumns:
    """A poll's columns as the runtime builds them, with ``converted`` as its values."""
    size = len(converted.schemas)
    return SinkColumns(
        origin=RecordLists(topics=["bench"] * size, partitions=[0] * size,
                           offsets=list(range(start, start + size)),
                           timestamps=[(0, -1)] * size),
        headers=[None] * size, keys=ConvertedBatch([None] * size, [None] * size),
        values=converted, encoded=[None] * size, texts=[None] * size)


def cpu_per_record(converter: Converter, chain: list[Transformation[Any]],
                   polls: list[list[bytes | None]], count: int) -> tuple[float, float]:
    """CPU microseconds per record of converting every poll, and of transforming them."""
    converting = transforming = 0.0
    for start, data in enumerate(polls):
        began = time.process_time()
        converted = converter.to_connect_batch("bench", data)
        len(converted.values)  # decoded now, if the converter defers it
        converted_at = time.process_time()
        columns: SinkColumns | None = columns_of(converted, start * DEFAULT_BATCH)
        for transform in chain:
            assert columns is not None
            columns = transform.apply_columns(columns)
            assert columns is not None, f"{type(transform).__name__} has no column form"
        transforming += time.process_time() - converted_at
        converting += converted_at - began
    return converting / count * 1e6, transforming / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="json-schemas-smt")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    variant = VARIANTS[args.variant]
    converter = build_codec(variant.config, {}).value
    chain = [step.transform for step in build_chain(variant.config)]
    values: list[bytes | None] = [value for _, value in records(args.records, variant.form)]
    polls = [values[start:start + DEFAULT_BATCH]
             for start in range(0, len(values), DEFAULT_BATCH)]
    rounds = [cpu_per_record(converter, chain, polls, len(values)) for _ in range(args.rounds)]
    best = min(rounds, key=sum)
    print(f"{args.variant}: convert {best[0]:.3f} + transform {best[1]:.3f} = "
          f"{sum(best):.3f} CPU µs/record (best of {args.rounds}; all: "
          f"{', '.join(f'{sum(r):.3f}' for r in rounds)})")


if __name__ == "__main__":
    main()
