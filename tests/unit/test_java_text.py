"""Connect values printed as Java prints them (the expected strings are Apache's, from
tests/golden/sinks)."""

from __future__ import annotations

import datetime as dt
import decimal

from kanal_worker.api.java_text import java_string
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
