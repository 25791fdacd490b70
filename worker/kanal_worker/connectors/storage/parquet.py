"""Parquet files (pyarrow), imported only by connectors that write Parquet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from kanal_worker.api.schema import DATE, DECIMAL, DECIMAL_SCALE, TIME, TIMESTAMP, Schema, Type
from kanal_worker.connectors.storage import schemas
from kanal_worker.connectors.storage.formats import (
    PARQUET_EXTENSIONS,
    PARQUET_ROW_GROUP,
    BlockSpool,
    FileFormat,
    FileWriter,
    Segment,
    schema_segments,
)
from kanal_worker.converters.avro_data import DECIMAL_PRECISION

ROWS_PER_BATCH = 2000
"""Records appended one at a time gathered before they become Arrow columns (which the
memory ceiling counts exactly)."""


class ParquetFormat(FileFormat):
    """Parquet files; a non-struct value becomes a single column named ``value``."""

    rooted_in_struct = True

    def __init__(self, codec: str) -> None:
        self.codec = codec
        self.extension = PARQUET_EXTENSIONS[codec] + ".parquet"
        self._arrow: dict[int, tuple[Schema, pa.Schema]] = {}

    def prepare(self, value: Any, schema: Schema | None,
                encoded: bytes | None) -> tuple[Schema | None, Any]:
        schema = schemas.fit(value, schema)
        if schema.type != Type.STRUCT:
            return schema, {"value": value}
        return schema, value

    def prepare_run(self, values: Callable[[], list[Any]], schema: Schema | None,
                    encoded: list[bytes | None]) -> list[Segment] | None:
        return schema_segments(values(), schema, _rows, self._columns)

    def _columns(self, schema: Schema, run: list[Any],
                 columns: list[tuple[Any, ...]]) -> pa.RecordBatch | list[Any]:
        """The run as a record batch; as rows when Arrow refuses a value (an int
        beyond int64), which then fails where it always did, in the file's writer."""
        arrow_schema = self.arrow_schema(schema)
        try:
            return pa.record_batch([pa.array(column, type=field.type) for column, field
                                    in zip(columns, arrow_schema, strict=True)],
                                   schema=arrow_schema)
        except (pa.ArrowException, OverflowError):
            return run

    def arrow_schema(self, schema: Schema) -> pa.Schema:
        cached = self._arrow.get(id(schema))
        if cached is None or cached[0] is not schema:
            if schema.type == Type.STRUCT:
                fields = [pa.field(f.name, arrow_type(f.schema), nullable=f.schema.optional)
                          for f in schema.fields]
            else:
                fields = [pa.field("value", arrow_type(schema), nullable=schema.optional)]
            cached = self._arrow[id(schema)] = (schema, pa.schema(fields))
        return cached[1]

    def open(self, schema: Schema | None, spool: BlockSpool, blob_name: str) -> FileWriter:
        assert schema is not None
        return ParquetFileWriter(spool, self.arrow_schema(schema), self.codec)


def _rows(schema: Schema, run: list[Any]) -> list[Any]:
    return run if schema.type == Type.STRUCT else [{"value": value} for value in run]


class ParquetFileWriter(FileWriter):
    """Holds the file's rows as Arrow record batches, one built per appended run (or
    per ``ROWS_PER_BATCH`` records appended one by one), and writes a row group every
    ``PARQUET_ROW_GROUP`` records."""

    def __init__(self, spool: BlockSpool, schema: pa.Schema, codec: str) -> None:
        self.schema = schema
        self.writer = pq.ParquetWriter(pa.PythonFile(spool, mode="w"), schema,
                                       compression=codec)
        self.rows: list[dict[str, Any]] = []
        self.batches: list[pa.RecordBatch] = []
        self.held = 0
        self.held_bytes = 0
        self.row_bytes = 0
        """Arrow bytes per record so far, to count the records not yet converted."""

    def append(self, payload: dict[str, Any]) -> None:
        self.rows.append(payload)
        # a file's first record is converted at once: its size estimates the records
        # gathered later, which the memory ceiling counts
        if len(self.rows) >= ROWS_PER_BATCH or not self.row_bytes:
            self._convert()

    def append_run(self, payloads: list[dict[str, Any]]) -> None:
        self.rows.extend(payloads)
        self._convert()

    def append_columns(self, batch: pa.RecordBatch) -> None:
        if self.rows:  # records appended one at a time join the run's batch, as rows do
            self.append_run(batch.to_pylist())
        else:
            self._hold(batch, batch.num_rows)

    def _convert(self) -> None:
        """The rows gathered so far as one record batch, column by column."""
        if self.rows:
            rows, self.rows = self.rows, []
            self._hold(pa.record_batch([pa.array([row.get(f.name) for row in rows],
                                                 type=f.type)
                                        for f in self.schema], schema=self.schema), len(rows))

    def _hold(self, batch: pa.RecordBatch, rows: int) -> None:
        """Hold ``batch`` of ``rows`` records (a batch of no columns has no rows)."""
        self.batches.append(batch)
        self.held += rows
        self.held_bytes += batch.nbytes
        self.row_bytes = batch.nbytes // rows
        while self.held >= PARQUET_ROW_GROUP:
            self._write_group(PARQUET_ROW_GROUP)

    def _write_group(self, size: int) -> None:
        held = pa.Table.from_batches(self.batches, schema=self.schema)
        # one chunk per row group: the pages come out as if the group was one batch
        self.writer.write_table(held.slice(0, size).combine_chunks(), row_group_size=size)
        rest = held.slice(size)
        self.batches, self.held, self.held_bytes = rest.to_batches(), rest.num_rows, rest.nbytes

    @property
    def pending(self) -> int:
        return self.held_bytes + len(self.rows) * self.row_bytes

    def finish(self) -> None:
        self._convert()
        if self.held:
            self._write_group(self.held)
        self.writer.close()


def arrow_type(schema: Schema) -> pa.DataType:
    params = schema.parameters or {}
    if schema.name == DECIMAL:
        return pa.decimal128(int(params.get(DECIMAL_PRECISION, "38")),
                             int(params.get(DECIMAL_SCALE, "0")))
    logical = {DATE: pa.date32(), TIME: pa.time32("ms"),
               TIMESTAMP: pa.timestamp("ms", tz="UTC")}.get(schema.name or "")
    if logical is not None:
        return logical
    match schema.type:
        case Type.STRUCT:
            return pa.struct([pa.field(f.name, arrow_type(f.schema), nullable=f.schema.optional)
                              for f in schema.fields])
        case Type.ARRAY:
            assert schema.value_schema is not None
            return pa.list_(arrow_type(schema.value_schema))
        case Type.MAP:
            assert schema.key_schema is not None and schema.value_schema is not None
            return pa.map_(arrow_type(schema.key_schema), arrow_type(schema.value_schema))
    return {Type.INT8: pa.int8(), Type.INT16: pa.int16(), Type.INT32: pa.int32(),
            Type.INT64: pa.int64(), Type.FLOAT32: pa.float32(), Type.FLOAT64: pa.float64(),
            Type.BOOLEAN: pa.bool_(), Type.STRING: pa.string(), Type.BYTES: pa.binary()}[
        schema.type]
