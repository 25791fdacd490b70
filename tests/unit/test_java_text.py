"""Connect values printed as Java prints them, and read from JSON envelopes as they are
printed (the expected strings are Apache's, from
tests/golden/sinks)."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kanal_worker.api import DataError
from kanal_worker.api.java_text import JavaHashMap, LinkedHashMap, java_items, java_string
from kanal_worker.api.schema import (
    DATE,
    FLOAT32,
    INT32,
    STRING,
    TIMESTAMP,
    Schema,
    Type,
    optional,
    struct,
)
from kanal_worker.converters.json import struct_reader, to_connect_value


def test_hash_maps_iterate_in_javas_bucket_order_and_grow_past_three_quarters() -> None:
    twelve = {f"sensor{i}": i for i in range(12)}
    assert java_string(twelve) == (
        "{sensor4=4, sensor11=11, sensor5=5, sensor2=2, sensor3=3, sensor10=10, sensor8=8, "
        "sensor9=9, sensor6=6, sensor7=7, sensor0=0, sensor1=1}")
    thirteen = {f"sensor{i}": i for i in range(13)}
    assert java_string(thirteen).startswith("{sensor11=11, sensor12=12, sensor10=10, ")
    # "Aa" and "BB" share a hash code: the bucket keeps insertion order
    assert java_string({"ünï": "cödé", "Aa": 1, "BB": 2}) == "{Aa=1, BB=2, ünï=cödé}"


def test_numbers_lists_and_nulls_print_as_java_types() -> None:
    assert java_string({"small": 0.0001, "big": 1e21, "neg": -0.0, "whole": 100.0}) == \
        "{small=1.0E-4, big=1.0E21, neg=0.0, whole=100.0}"
    assert java_string([1, 2.5, "x", None, True, []]) == "[1, 2.5, x, null, true, []]"
    assert java_string(0.1, FLOAT32) == "0.1"


def test_structs_leave_out_fields_without_a_value() -> None:
    schema = struct([("vehicle", optional(STRING)), ("gear", optional(INT32)),
                     ("zones", Schema(Type.MAP, optional=True, key_schema=INT32,
                                      value_schema=optional(STRING))),
                     ("at", Schema(Type.INT64, name=TIMESTAMP, optional=True)),
                     ("day", Schema(Type.INT32, name=DATE, optional=True))])
    value = {"vehicle": "truck-7", "gear": None, "zones": {3: "c", 1: "a", 2: None},
             "at": dt.datetime(2024, 5, 1, 10, 15, 30, 123000, tzinfo=dt.UTC),
             "day": dt.date(2024, 5, 1)}
    printed = java_string(value, schema)
    assert printed.startswith("Struct{vehicle=truck-7,zones={1=a, 2=null, 3=c},at=Wed May 01 ")
    assert java_string({"gear": None}, schema) == "Struct{}"
    assert java_string(decimal.Decimal("-0.05")) == "-0.05"


PRIMITIVES = st.one_of(
    st.text(max_size=6), st.integers(), st.booleans(), st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=1e-3, max_value=1e7, exclude_max=True),
    st.sampled_from([1e-3, 9.99e-4, -1e-3, 1e7, -9999999.5, 0.0, -0.0, 1e8, 2.5e-5]))
"""Items of flat maps and structs: the templates print some, the rest item by item."""


def item_by_item(value: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{key}={java_string(item)}" for key, item in java_items(value)) + "}"


@given(st.dictionaries(st.text(max_size=4), PRIMITIVES, max_size=14),
       st.sampled_from([None, 1, 4, 16, 64]))
def test_flat_maps_print_by_template_as_item_by_item(items: dict[str, Any],
                                                     table: int | None) -> None:
    value = dict(items) if table is None else JavaHashMap.filled(items.items(), table)
    assert java_string(value) == item_by_item(value)
    linked = LinkedHashMap(items)
    assert java_string(linked) == item_by_item(linked)


STRUCT_FIELDS = [(name, Schema(kind, optional=True)) for name, kind in (
    ("s", Type.STRING), ("i", Type.INT64), ("d", Type.FLOAT64), ("{b}", Type.BOOLEAN),
    ("d2", Type.FLOAT64))]


@given(st.lists(PRIMITIVES, min_size=len(STRUCT_FIELDS), max_size=len(STRUCT_FIELDS)))
def test_structs_print_by_template_as_field_by_field(items: list[Any]) -> None:
    schema = struct(STRUCT_FIELDS)
    value = {name: item for (name, _), item in zip(STRUCT_FIELDS, items, strict=True)}
    assert java_string(value, schema) == "Struct{" + ",".join(
        f"{f.name}={java_string(value[f.name], f.schema)}" for f in schema.fields
        if value[f.name] is not None) + "}"


@given(st.one_of(st.dictionaries(st.sampled_from(["s", "i", "d", "{b}", "d2", "x"]),
                                 PRIMITIVES), PRIMITIVES),
       st.booleans())
def test_struct_reader_reads_as_to_connect_value(payload: Any, optional: bool) -> None:
    schema = struct([*STRUCT_FIELDS[:4], ("d2", Schema(Type.FLOAT64, default=1.5)),
                     ("t", Schema(Type.INT64, name=TIMESTAMP, optional=True))],
                    optional=optional)
    try:
        expected: Any = to_connect_value(schema, payload)
    except DataError as exc:
        expected = str(exc)
    try:
        read: Any = struct_reader(schema)(payload)
    except DataError as exc:
        read = str(exc)
    assert read == expected
