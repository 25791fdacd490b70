"""Avro records of flat schemas encoded column by column with Arrow.

fastavro encodes a record in ~4 µs when its fields are unions (every optional field
is ``["null", type]``): most of a schemaless JSON record's cost in an Avro file. A
record whose fields are primitives (or unions of null and a primitive) encodes as the
concatenation of its fields' encodings, so a run of records is encoded a field at a
time, each field a handful of Arrow kernels over the run (varints, little-endian
numbers, length-prefixed strings), and the fields joined row by row. The bytes are
those fastavro writes; anything else (nested, named or logical types, a varint of more
than 8 bytes, a value Arrow refuses) is left to fastavro.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

Encoded = tuple[bytes, list[int]]
"""Records' encodings concatenated, and the end offset of each record."""

_ARROW = {"boolean": pa.bool_(), "int": pa.int32(), "long": pa.int64(),
          "float": pa.float32(), "double": pa.float64(), "string": pa.string(),
          "bytes": pa.binary()}
_WIDTH = {"float": 4, "double": 8}
_NOTHING = pa.scalar(b"", pa.binary())
_SEVEN_BYTE_LIMIT = 1 << 56
"""Zigzag values from here on take more than the 8 varint bytes packed in a uint64."""


class RowEncoder:
    """Encodes records of one record schema of primitive fields, given as rows (maps
    by field name) or as columns (an Arrow array per field, of ``types``)."""

    def __init__(self, fields: list[tuple[str, str, int | None, int]]) -> None:
        self.fields = fields
        """(name, primitive type, index of the null branch, index of the value branch)"""
        self.names = [name for name, _, _, _ in fields]
        self.types = [_ARROW[kind] for _, kind, _, _ in fields]

    def __call__(self, rows: list[dict[str, Any]]) -> Encoded | None:
        try:
            arrays = [pa.array([row.get(name) for row in rows], type=kind)
                      for name, kind in zip(self.names, self.types, strict=True)]
        except (pa.ArrowException, OverflowError, TypeError):
            return None
        return self.columns(arrays)

    def batch(self, columns: list[tuple[Any, ...]]) -> pa.RecordBatch | None:
        """Values of the fields, in order, as a record batch of ``types``; None when
        Arrow refuses one (rows then take the way they always took)."""
        try:
            return pa.RecordBatch.from_arrays(
                [pa.array(column, type=kind) for column, kind in zip(columns, self.types,
                                                                      strict=True)],
                names=self.names)
        except (pa.ArrowException, OverflowError, TypeError):
            return None

    def batches(self, batches: list[pa.RecordBatch]) -> Encoded | None:
        """The records of ``batches`` (from ``batch``), in order."""
        return self.columns([pa.concat_arrays([batch.column(i) for batch in batches])
                             for i in range(len(self.fields))])

    def columns(self, arrays: list[pa.Array]) -> Encoded | None:
        """The records whose fields are ``arrays``, or None (a varint of more than 8
        bytes)."""
        fields = self.fields
        count = len(arrays[0])
        try:
            # the varints of every field (numbers, string lengths) in one pass: Arrow's
            # cost is per kernel call more than per value
            texts: dict[int, pa.Array] = {}
            numbers: list[pa.Array] = []
            for i, ((_, kind, _, _), values) in enumerate(zip(fields, arrays, strict=True)):
                if kind in ("string", "bytes"):
                    texts[i] = values.fill_null(b"" if kind == "bytes" else "").cast(
                        pa.binary())
                    numbers.append(pc.binary_length(texts[i]).cast(pa.int64()))
                elif kind in ("int", "long"):
                    numbers.append(values.fill_null(0).cast(pa.int64()))
            varints = _varints(pa.concat_arrays(numbers)) if numbers else None
            if numbers and varints is None:
                return None
            # a record is the concatenation of its fields' pieces: union index, varint
            # (number or length), then the bytes of a string or a fixed-size number
            pieces: list[pa.Array] = []
            used = 0
            for i, ((_, kind, null_index, value_index), values) in enumerate(
                    zip(fields, arrays, strict=True)):
                if null_index is not None:
                    pieces.append(_union_index(values, null_index, value_index, count))
                if kind in ("string", "bytes", "int", "long"):
                    assert varints is not None
                    pieces.append(_unless_null(values, varints.slice(used * count, count)))
                    used += 1
                if i in texts:
                    pieces.append(_unless_null(values, texts[i]))
                elif kind == "boolean":
                    pieces.append(_unless_null(values, _fixed(
                        values.fill_null(False).cast(pa.uint8()), 1)))
                elif kind in _WIDTH:
                    pieces.append(_unless_null(values, _fixed(values.fill_null(0.0),
                                                              _WIDTH[kind])))
        except (pa.ArrowException, OverflowError, TypeError):
            return None
        joined = pc.binary_join_element_wise(*pieces, _NOTHING)
        bounds = pa.Array.from_buffers(pa.int32(), count + 1, [None, joined.buffers()[1]],
                                       offset=joined.offset).to_pylist()
        start = bounds[0]
        data = joined.buffers()[2][start:bounds[-1]].to_pybytes()
        return data, [end - start for end in bounds[1:]]


def row_encoder(avro_schema: Any) -> RowEncoder | None:
    """The encoder of records of ``avro_schema`` (the writer schema as JSON), or None
    when it is not a record of primitive fields or this machine is big-endian."""
    if sys.byteorder != "little" or not isinstance(avro_schema, dict) or \
            avro_schema.get("type") != "record":
        return None
    fields: list[tuple[str, str, int | None, int]] = []
    for field in avro_schema.get("fields", []):
        kind = field["type"]
        null_index = value_index = None
        if isinstance(kind, list) and len(kind) == 2 and "null" in kind:
            null_index = kind.index("null")
            value_index = 1 - null_index
            kind = kind[value_index]
        if not isinstance(kind, str) or kind not in _ARROW:
            return None
        fields.append((field["name"], kind, null_index, value_index or 0))
    if not fields:
        return None
    return RowEncoder(fields)


def _fixed(values: pa.Array, width: int) -> pa.Array:
    """Little-endian numbers as binary values of ``width`` bytes (their memory)."""
    data = values.buffers()[1]
    return pa.Array.from_buffers(pa.binary(width), len(values), [None, data],
                                 offset=values.offset).cast(pa.binary())


def _varints(values: pa.Array) -> pa.Array | None:
    """Avro's zigzag varints of int64 ``values`` (no nulls)."""
    count = len(values)
    sign = pc.negate(pc.less(values, 0).cast(pa.int64()))  # -1 or 0
    zigzag = pc.bit_wise_xor(pc.shift_left(values, 1), sign).cast(pa.uint64(), safe=False)
    if pc.max(zigzag).as_py() >= _SEVEN_BYTE_LIMIT:
        return None
    # the varint's bytes packed little-endian in a uint64 per value, and its length
    packed = pc.bit_wise_and(zigzag, _u64(0x7F))
    sizes = _ones(count)
    for k in range(1, 8):
        more = pc.greater_equal(zigzag, _u64(1 << (7 * k))).cast(pa.uint64())
        group = pc.bit_wise_and(pc.shift_right(zigzag, _u64(7 * k)), _u64(0x7F))
        # byte k holds bits 7k.. and byte k - 1 says that it follows (its top bit)
        packed = pc.bit_wise_or(packed, pc.bit_wise_or(pc.shift_left(group, _u64(8 * k)),
                                                       pc.shift_left(more, _u64(8 * k - 1))))
        sizes = pc.add(sizes, more.cast(pa.int32()))
    # the first ``size`` bytes of each uint64, one after the other
    ends = pc.cumulative_sum(sizes).cast(pa.int32())
    total = ends[-1].as_py()
    to_source = pc.subtract(pc.multiply(_arange(count), 8), pc.subtract(ends, sizes))
    source = pc.add(_arange(total), pc.run_end_decode(
        pa.RunEndEncodedArray.from_arrays(ends, to_source)))
    data = pc.take(pa.Array.from_buffers(pa.uint8(), 8 * count, [None, packed.buffers()[1]]),
                   source)
    offsets = pa.concat_arrays([pa.array([0], pa.int32()), ends])
    return pa.Array.from_buffers(pa.binary(), count, [
        None, offsets.buffers()[1], data.buffers()[1].slice(data.offset)])


_ARANGE = pa.array([], pa.int32())


def _arange(count: int) -> pa.Array:
    """0, 1, ..., count - 1 (built once, grown when a longer one is asked for)."""
    global _ARANGE
    if len(_ARANGE) < count:
        _ARANGE = pa.array(range(max(count, 2 * len(_ARANGE), 1 << 16)), pa.int32())
    return _ARANGE.slice(0, count)


def _ones(count: int) -> pa.Array:
    return pc.add(pc.multiply(_arange(count), 0), 1).cast(pa.int32())


@cache
def _u64(value: int) -> pa.Scalar:
    return pa.scalar(value, pa.uint64())


def _constant(value: bytes, count: int) -> pa.Array:
    """``count`` times the byte ``value`` as a binary array (faster to join than a
    scalar)."""
    return pa.Array.from_buffers(pa.binary(), count, [None, _arange(count + 1).buffers()[1],
                                                      pa.py_buffer(value * count)])


def _union_index(values: pa.Array, null_index: int, value_index: int, count: int) -> pa.Array:
    """The union branch of each value: the null branch for nulls."""
    present = _constant(bytes([2 * value_index]), count)
    if not values.null_count:
        return present
    return pc.if_else(values.is_valid(), present, _constant(bytes([2 * null_index]), count))


def _unless_null(values: pa.Array, encoded: pa.Array) -> pa.Array:
    """``encoded``, empty where ``values`` is null (a null is its union index alone)."""
    if not values.null_count:
        return encoded
    return pc.if_else(values.is_valid(), encoded, _NOTHING)
