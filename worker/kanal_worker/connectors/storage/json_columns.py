"""Runs of schemaless JSON values read into Arrow columns, without Python values.

A schemaless value's file is keyed on the schema inferred from its shape
(``schemas.infer``): key order, int or float, nested maps and lists, nulls. Decoding
every value into Python to see its shape costs more than encoding it. Here only the
first value of each stretch is decoded; its shape becomes a regular expression that
matches exactly the JSON texts of that shape (the same keys, spelled as orjson writes
them, in the same order; integers where it holds an int, numbers with a fraction or an
exponent where it holds a float; null where it holds null; lists with at least one
element of its element shape), matched against the whole run by Arrow. The values of
each stretch are then read by Arrow's JSON reader with the Arrow schema of the inferred
one. Whatever this cannot do exactly as decoding would (a value that is not a map,
empty maps, numbers beyond int64 or a double, surrogate escapes, a key the first value
spells another way) gives None: the run is then decoded as before.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from kanal_worker.api import DataError
from kanal_worker.api.schema import Schema
from kanal_worker.connectors.storage import schemas

ColumnSegment = tuple[Schema, int, pa.Table]
"""Values of one inferred schema: the schema, their count and their columns."""

MAX_STRETCHES = 8
"""Changes of shape in a run after which decoding it is cheaper than matching it."""

_SPACE = r"[ \t\n\r]*"
_COMMA = _SPACE + "," + _SPACE
# a valid JSON number is an integer exactly when it has neither fraction nor exponent;
# the characters after its digits cannot run on into the next token
_INTEGER = r"-?[0-9]+"
_FLOAT = r"-?[0-9]+[.eE][0-9eE+.\-]*"
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_BOOLEAN = "(?:true|false)"
_SURROGATE_ESCAPES = (b"\\ud", b"\\uD")
"""orjson refuses a lone surrogate that Arrow's reader would take: left to decoding."""


def column_segments(encoded: list[bytes],
                    arrow_schema: Callable[[Schema], pa.Schema]) -> list[ColumnSegment] | None:
    """The run of JSON texts ``encoded`` cut where the inferred schema changes, as
    ``schema_segments`` cuts the decoded values, each stretch's values as a table of
    ``arrow_schema(schema)``; None when the run must be decoded."""
    if any(escape in text for text in encoded for escape in _SURROGATE_ESCAPES):
        return None
    texts = pa.array(encoded, pa.binary())
    found: list[ColumnSegment] = []
    start = 0
    while start < len(encoded):
        if len(found) == MAX_STRETCHES:
            return None
        shape = _first_shape(encoded[start])
        if shape is None:
            return None
        schema, pattern = shape
        same = pc.match_substring_regex(texts.slice(start), pattern)
        other = pc.index(same, False).as_py()
        if other == 0:  # keys spelled another way than orjson spells them
            return None
        end = len(encoded) if other < 0 else start + other
        columns = _read(encoded[start:end], arrow_schema(schema))
        if columns is None:
            return None
        found.append((schema, end - start, columns))
        start = end
    return found


def _first_shape(text: bytes) -> tuple[Schema, str] | None:
    """The inferred schema of the value ``text`` holds and the pattern of its shape."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    pattern = _pattern(value)
    if pattern is None:
        return None
    try:
        return schemas.infer(value), f"^{_SPACE}{pattern}{_SPACE}$"
    except DataError:
        return None


def _pattern(value: Any) -> str | None:
    """A regular expression matching JSON texts of ``value``'s shape, or None."""
    if isinstance(value, dict):
        if not value:
            return None
        fields = []
        for key, item in value.items():
            inner = _pattern(item)
            if inner is None:
                return None
            fields.append(re.escape(orjson.dumps(key).decode()) + _SPACE + ":" + _SPACE +
                          inner)
        return r"\{" + _SPACE + _COMMA.join(fields) + _SPACE + r"\}"
    if isinstance(value, list):
        present = [item for item in value if item is not None]
        if not present:
            element = "null"
            return r"\[" + _SPACE + f"(?:{element}(?:{_COMMA}{element})*)?" + _SPACE + r"\]"
        inner = _pattern(present[0])
        if inner is None:
            return None
        element = f"(?:{inner}|null)"
        # at least one element is not null, or the list's shape would be another
        return (r"\[" + _SPACE + f"(?:null{_COMMA})*{inner}(?:{_COMMA}{element})*" + _SPACE +
                r"\]")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return _BOOLEAN
    if isinstance(value, int):
        return _INTEGER
    if isinstance(value, float):
        return _FLOAT
    if isinstance(value, str):
        return _STRING
    return None


def _read(texts: list[bytes], schema: pa.Schema) -> pa.Table | None:
    """``texts`` (JSON objects matching ``schema``'s shape) read as one table."""
    data = b"\n".join(texts)
    lines_apart = data.count(b"\n") == len(texts) - 1 and b"\r" not in data
    try:
        table = pj.read_json(
            io.BytesIO(data),
            read_options=pj.ReadOptions(use_threads=False, block_size=max(len(data), 1)),
            parse_options=pj.ParseOptions(explicit_schema=schema,
                                          newlines_in_values=not lines_apart))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # a number beyond int64 or a double: decoding says what to do
    if table.num_rows != len(texts) or not table.schema.equals(schema):
        return None
    return table.combine_chunks()
