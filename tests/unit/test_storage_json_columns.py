"""Runs of schemaless JSON read as Arrow columns: the same segments and the same file
bytes as decoding every value and inferring its schema, whatever the run holds."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kanal_worker.connectors.storage.formats import BlockSpool, Segment, schema_segments
from kanal_worker.connectors.storage.json_columns import column_segments
from kanal_worker.connectors.storage.parquet import ParquetFormat, _rows
from kanal_worker.converters.json import JsonConverter

DECODE = JsonConverter({"schemas.enable": "false"}, False)
KEYS = st.sampled_from(["id", "temp", "é", "名前", "a b", 'q"k', "x\\y", "tab\t", ""])
LEAVES = (st.none() | st.booleans() | st.text(max_size=8) |
          st.sampled_from([0, 1, -1, 1.0, -0.0, 1e-7, 2.5e300, 1 << 63, -(1 << 63),
                           (1 << 63) - 1, 1 << 64, 1e308]) |
          st.integers(-(1 << 62), 1 << 62) | st.floats(allow_nan=False, allow_infinity=False))
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3) |
                      st.dictionaries(KEYS, inner, max_size=3), max_leaves=6)
OBJECTS = st.dictionaries(KEYS, VALUES, min_size=1, max_size=4)
SPELLINGS = st.sampled_from(["compact", "spaced", "ascii"])


def spelled(value: Any, spelling: str) -> bytes:
    """``value`` as JSON, compact as orjson writes it or with spaces and escapes."""
    if spelling == "compact":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return json.dumps(value, ensure_ascii=spelling == "ascii").encode()


@st.composite
def runs(draw: st.DrawFn) -> list[bytes]:
    """Runs of a few shapes repeated with changing values, shapes changing midway."""
    shapes = draw(st.lists(OBJECTS, min_size=1, max_size=3))
    spelling = draw(SPELLINGS)
    run = []
    for _ in range(draw(st.integers(1, 4))):
        shape = draw(st.sampled_from(shapes))
        for _ in range(draw(st.integers(1, 5))):
            run.append(spelled(draw(_refilled(shape)), spelling))
    return run


def _refilled(value: Any) -> st.SearchStrategy[Any]:
    """Values of ``value``'s shape, mostly, with other leaves of the same kind."""
    if isinstance(value, dict):
        return st.fixed_dictionaries({k: _refilled(v) for k, v in value.items()})
    if isinstance(value, list):
        return st.just(value) | st.lists(st.sampled_from(value), max_size=4) \
            if value else st.just(value)
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(-(1 << 64), 1 << 64) | st.just(value)
    if isinstance(value, float):
        return st.floats(allow_nan=False, allow_infinity=False) | st.just(1.0)
    if isinstance(value, str):
        return st.text(max_size=6)
    return st.none() | st.just(0)


def files(file_format: ParquetFormat, found: list[Segment]) -> list[tuple[bytes, int]]:
    """Each segment written as a file: its bytes and what it held before the end."""
    written = []
    for schema, _, payloads in found:
        spool = BlockSpool()
        writer = file_format.open(schema, spool, "t+0+0000000000.parquet")
        if isinstance(payloads, list):
            writer.append_run(payloads)
        else:
            writer.append_columns(payloads)
        pending = writer.pending
        writer.finish()
        written.append((spool.take_rest(), pending))
    return written


def outcome(file_format: ParquetFormat, found: list[Segment] | None) -> Any:
    if found is None:
        return None
    try:
        written = files(file_format, found)
    except (pa.ArrowException, OverflowError) as exc:
        return type(exc)
    return [(schema, count) for schema, count, _ in found], written


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run=runs())
def test_parquet_runs_read_as_columns_are_the_decoded_runs(run: list[bytes]) -> None:
    file_format = ParquetFormat("snappy")
    values = DECODE.to_connect_batch("t", list(run)).values
    decoded = outcome(file_format, schema_segments(values, None, _rows))
    read = outcome(file_format, file_format.prepare_run(lambda: values, None, list(run)))
    assert read == decoded


def test_a_run_changing_shape_is_read_as_columns_cut_where_decoding_cuts_it() -> None:
    first = [orjson.dumps({"id": i, "temp": 20.5, "tags": ["a"], "at": {"x": 1}})
             for i in range(5)]
    second = [orjson.dumps({"id": i, "temp": 20, "tags": ["a"], "at": {"x": 1}})
              for i in range(3)]
    file_format = ParquetFormat("snappy")
    found = column_segments(first + second + first, file_format.arrow_schema)
    assert found is not None
    assert [count for _, count, _ in found] == [5, 3, 5]
    assert found[0][0] is found[2][0] and found[0][0] != found[1][0]
    assert found[1][2].column("temp").to_pylist() == [20, 20, 20]


def test_what_columns_cannot_read_exactly_is_decoded() -> None:
    arrow_schema = ParquetFormat("snappy").arrow_schema
    for run in ([b'{"n": 1}', b'{"n": 9223372036854775808}'],  # beyond int64
                [b'{"x": 1e400}'],  # beyond a double: decoded as a Decimal
                [b'{"s": "\\ud800"}'],  # a lone surrogate
                [b'{"a": 1, "a": 2}'],  # a key twice
                [b'{"\\u0061": 1}'],  # a key not spelled as orjson spells it
                [b"[1, 2]"], [b"{}"], [b"null"]):
        assert column_segments(run, arrow_schema) is None, run
