"""Parquet files (pyarrow), imported only by connectors that write Parquet."""

from __future__ import annotations

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
)
from kanal_worker.converters.avro_data import DECIMAL_PRECISION


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


class ParquetFileWriter(FileWriter):
    """Buffers columns and writes a row group every ``PARQUET_ROW_GROUP`` records."""

    def __init__(self, spool: BlockSpool, schema: pa.Schema, codec: str) -> None:
        self.schema = schema
        self.writer = pq.ParquetWriter(pa.PythonFile(spool, mode="w"), schema,
                                       compression=codec)
        self.columns: dict[str, list[Any]] = {name: [] for name in schema.names}
        self.rows = 0

    def append(self, payload: dict[str, Any]) -> None:
        for name, column in self.columns.items():
            column.append(payload.get(name))
        self.rows += 1
        if self.rows >= PARQUET_ROW_GROUP:
            self._write_group()

    def _write_group(self) -> None:
        if self.rows:
            batch = pa.record_batch([pa.array(self.columns[f.name], type=f.type)
                                     for f in self.schema], schema=self.schema)
            self.writer.write_batch(batch, row_group_size=self.rows)
            self.columns = {name: [] for name in self.schema.names}
            self.rows = 0

    def finish(self) -> None:
        self._write_group()
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
