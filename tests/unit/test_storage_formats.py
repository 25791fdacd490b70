"""Formats encoding runs of records: Avro's bytes are those fastavro writes record by
record, and what Parquet and Avro hold back counts against the memory ceiling."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kanal_worker.api.schema import Schema
from kanal_worker.connectors.storage import schemas
from kanal_worker.connectors.storage.avro_arrow import row_encoder
from kanal_worker.connectors.storage.formats import AvroFormat, BlockSpool
from tests.unit.test_azure_writer import MemoryContainer
from tests.unit.test_storage_core import MIB, s3_task, write_under_ceiling

FLAT = {"type": "record", "name": "reading", "fields": [
    {"name": "vehicle", "type": ["null", "string"], "default": None},
    {"name": "at", "type": "long"},
    {"name": "speed", "type": ["null", "double"], "default": None},
    {"name": "gear", "type": ["int", "null"]},
    {"name": "level", "type": "float"},
    {"name": "ok", "type": ["null", "boolean"], "default": None},
    {"name": "raw", "type": ["null", "bytes"], "default": None},
]}
LONGS = st.integers(-(1 << 55), (1 << 55) - 1) | st.sampled_from(
    [0, -1, 63, -64, 64, 127, 128, 16383, 16384, -(1 << 55), (1 << 55) - 1])
ROWS = st.lists(st.fixed_dictionaries({
    "vehicle": st.none() | st.text(max_size=300),
    "at": LONGS,
    "speed": st.none() | st.floats(allow_nan=False),
    "gear": st.none() | st.integers(-(1 << 31), (1 << 31) - 1),
    "level": st.floats(width=32, allow_nan=False),
    "ok": st.none() | st.booleans(),
    "raw": st.none() | st.binary(max_size=200),
}), min_size=1, max_size=300)


def fastavro_rows(avro: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[bytes, list[int]]:
    parsed = fastavro.parse_schema(avro)
    out, ends = io.BytesIO(), []
    for row in rows:
        fastavro.schemaless_writer(out, parsed, row)
        ends.append(out.tell())
    return out.getvalue(), ends


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS)
def test_columns_encode_the_bytes_fastavro_writes(rows: list[dict[str, Any]]) -> None:
    encode = row_encoder(FLAT)
    assert encode is not None
    assert encode(rows) == fastavro_rows(FLAT, rows)


def test_what_columns_cannot_encode_is_left_to_fastavro() -> None:
    nested = {"type": "record", "name": "r", "fields": [
        {"name": "where", "type": {"type": "record", "name": "w",
                                   "fields": [{"name": "lat", "type": "double"}]}}]}
    logical = {"type": "record", "name": "r", "fields": [
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}
    assert row_encoder(nested) is None and row_encoder(logical) is None
    assert row_encoder({"type": "array", "items": "long"}) is None
    encode = row_encoder({"type": "record", "name": "r", "fields": [{"name": "n",
                                                                      "type": "long"}]})
    assert encode is not None
    assert encode([{"n": 1 << 62}]) is None  # a varint longer than 8 bytes
    assert encode([{"n": "text"}]) is None  # a value Arrow refuses


def avro_file(rows: list[Any], one_by_one: bool, schema: Schema | None = None) -> bytes:
    file_format = AvroFormat("deflate")
    spool = BlockSpool()
    prepared = [file_format.prepare(row, schema, None) for row in rows]
    writer = file_format.open(prepared[0][0], spool, "t+0+0000000000.avro")
    if one_by_one:
        for _, payload in prepared:
            writer.append(payload)
    else:
        for start in range(0, len(rows), 777):
            writer.append_run([payload for _, payload in prepared[start:start + 777]])
    writer.finish()
    return spool.take_rest()


def test_files_written_in_runs_are_fastavros_files() -> None:
    rows = [{"vehicle": f"VH-{i:04d}", "at": 1_714_521_600_000 + i, "speed": 50.5 + i,
             "note": None if i % 3 else "é" * (i % 7)} for i in range(12_345)]
    schema = schemas.infer(rows[0])
    parsed = fastavro.parse_schema(AvroFormat("deflate")._compiled(schema)[1])
    reference = io.BytesIO()
    fastavro.writer(reference, parsed, rows, codec="deflate",
                    sync_marker=avro_file(rows[:1], True)[-16:])
    assert avro_file(rows, one_by_one=False) == reference.getvalue()
    assert avro_file(rows, one_by_one=True) == reference.getvalue()
    assert list(fastavro.reader(io.BytesIO(reference.getvalue()))) == rows


@pytest.mark.parametrize("format_class", ["ParquetFormat", "AvroFormat"])
def test_rows_held_for_a_row_group_or_a_block_count_against_the_ceiling(
        format_class: str) -> None:
    """Parquet holds up to 50,000 rows per file before a row group is written: 16
    partitions of 1 KB rows would hold ~16 MB; the ceiling keeps them under 2 MiB."""
    store = MemoryContainer()
    task = s3_task(store, 16, **{"format.class": format_class, "flush.size": "100000",
                                 "kanal.max.buffered.bytes": str(2 * MIB)})
    write_under_ceiling(task, 2 * MIB, 25, 40)
    assert store.blobs, "files were committed early"
