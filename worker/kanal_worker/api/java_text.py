"""Connect values printed as Apache's Java prints them (``String.valueOf``).

Apache's FileStreamSink writes ``String.valueOf(record.value())``, so the same records give
the same file only when Kanal prints each value the way Java prints the type Apache holds
it in: ``Struct{a=1,b=x}`` (fields without a value left out), a ``HashMap`` as
``{b=x, a=1}`` in the order Java's hash table iterates, an ``ArrayList`` as ``[1, 2]``,
numbers as ``Double.toString`` / ``Float.toString``, decimals as ``BigDecimal.toString``
and Date, Time and Timestamp as ``java.util.Date.toString`` in the local time zone.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import math
import struct
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from kanal_worker.api.schema import DATE, TIME, TIMESTAMP, Schema, Type

HASH_MAP_CAPACITY = 16
"""``new HashMap<>()``'s first table; it doubles when more than 3/4 full."""


class JavaHashMap(dict[Any, Any]):
    """A schemaless map Apache made with a table size of its own: a transform's copy
    (``new HashMap<>(map)``) or a map sized in advance (``new HashMap<>(n)``). Java iterates
    a hash map by bucket, so the table size decides the order it prints in; a plain
    ``dict`` is a ``new HashMap<>()`` filled in its order."""

    __slots__ = ("table",)

    def __init__(self, items: Iterable[tuple[Any, Any]] = (), *,
                 table: int = HASH_MAP_CAPACITY) -> None:
        super().__init__(items)
        self.table = table

    @classmethod
    def copy_of(cls, original: Mapping[Any, Any]) -> JavaHashMap:
        """``new HashMap<>(original)`` as Java 17 sizes it: a table for the entries at 3/4
        load plus one (later JDKs round up instead), filled in the original's order."""
        copy = cls(java_items(original))
        copy.table = _copy_table(len(original))
        return copy

    @classmethod
    def sized(cls, size: int) -> JavaHashMap:
        """``new HashMap<>(size)``, empty."""
        return cls(table=_power_of_two(size))


class LinkedHashMap(dict[Any, Any]):
    """A schemaless map Java iterates in insertion order (``new LinkedHashMap<>()``)."""


@lru_cache(maxsize=256)
def _copy_table(size: int) -> int:
    """The table ``new HashMap<>(map)`` starts with for a map of ``size`` entries."""
    return _power_of_two(int(size / 0.75 + 1.0) if size else HASH_MAP_CAPACITY)


def _power_of_two(at_least: int) -> int:
    """``HashMap.tableSizeFor``: the smallest power of two not below ``at_least`` (min 1)."""
    return 1 << max(0, at_least - 1).bit_length()


def java_items(value: Mapping[Any, Any], key_schema: Schema | None = None
               ) -> list[tuple[Any, Any]]:
    """The entries of ``value`` in the order Java iterates the map Apache holds for it."""
    if isinstance(value, LinkedHashMap):
        return list(value.items())
    order = _hash_map_order(tuple(value), key_schema.type if key_schema is not None else None,
                            getattr(value, "table", HASH_MAP_CAPACITY))
    if order is None:
        return list(value.items())
    return list(zip(order, map(value.__getitem__, order), strict=True))


def to_float32(value: float) -> float:
    """Round to the nearest float32, as Java's ``floatValue()`` does (overflow is infinity)."""
    return float(ctypes.c_float(value).value)


def double_to_string(value: float) -> str:
    """``Double.toString``: plain notation in [1e-3, 1e7), else ``d.dddE±n``."""
    if 1e-3 <= abs(value) < 1e7:
        return repr(value)  # the same shortest digits, and Python's notation is plain here
    return _java_decimal(value, repr(value))


def float_to_string(value: float) -> str:
    """``Float.toString``: the shortest digits that read back as the same float32."""
    if math.isnan(value) or math.isinf(value):
        return _java_decimal(value, repr(value))
    for precision in range(1, 10):
        text = f"{value:.{precision}g}"
        if to_float32(float(text)) == value:
            return _java_decimal(value, text)
    return _java_decimal(value, repr(value))


def _java_decimal(value: float, shortest: str) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    mantissa, _, exponent_text = shortest.lstrip("-").partition("e")
    digits = mantissa.replace(".", "")
    point = mantissa.index(".") if "." in mantissa else len(mantissa)
    exponent = int(exponent_text or 0) + point - 1
    stripped = digits.lstrip("0")
    exponent -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    if 1e-3 <= abs(value) < 1e7:
        if exponent >= 0:
            whole = digits[:exponent + 1].ljust(exponent + 1, "0")
            fraction = digits[exponent + 1:] or "0"
        else:
            whole, fraction = "0", "0" * (-exponent - 1) + digits
        return f"{sign}{whole}.{fraction}"
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{exponent}"




def java_string(value: Any, schema: Schema | None = None) -> str:
    """``String.valueOf`` of ``value`` as Apache holds it under ``schema`` (None: the
    schemaless types JsonConverter gives: HashMap, ArrayList, Long, Double, ...)."""
    if schema is None:
        printer = _SCHEMALESS.get(type(value))
        if printer is not None:
            return printer(value)
    elif value is not None:
        if schema.name in (TIMESTAMP, DATE, TIME):
            return _date_string(value)
        if schema.type == Type.STRUCT:
            return "Struct{" + ",".join(
                f"{field.name}={java_string(item, field.schema)}" for field in schema.fields
                if (item := value.get(field.name)) is not None) + "}"
        if schema.type == Type.MAP:
            return _map_string(value, schema.key_schema, schema.value_schema)
        if schema.type == Type.ARRAY:
            return _list_string(value, schema.value_schema)
        if schema.type == Type.FLOAT32 and isinstance(value, float):
            return float_to_string(value)
    return _any_string(value)


def _any_string(value: Any) -> str:
    """A value of a type not found by its exact class (subclasses, bytes, dates)."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _double_string(value)
    if isinstance(value, Mapping):
        return _map_string(value, None, None)
    if isinstance(value, list | tuple):
        return _list_string(value, None)
    if isinstance(value, bytes | bytearray | memoryview):
        # Java prints an array's identity ([B@4db6b2fb), which says nothing: the bytes do
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, dt.date | dt.time):
        return _date_string(value)
    return str(value)  # integers; BigDecimal.toString and Decimal's agree


def _double_string(value: float) -> str:
    if 1e-3 <= abs(value) < 1e7:  # double_to_string's plain range, checked first: it is hot
        return repr(value)
    # JsonConverter reads numbers as BigDecimal, which has no negative zero
    return double_to_string(value) if value else "0.0"


def _list_string(items: Any, item_schema: Schema | None) -> str:
    return "[" + ", ".join([java_string(item, item_schema) for item in items]) + "]"


def _map_string(value: Mapping[Any, Any], key_schema: Schema | None,
                value_schema: Schema | None) -> str:
    if key_schema is None and value_schema is None:  # schemaless: one lookup per item
        printer = _SCHEMALESS.get
        return "{" + ", ".join([
            f"{key if type(key) is str else java_string(key)}="
            f"{(printer(type(item)) or _any_string)(item)}"
            for key, item in java_items(value)]) + "}"
    return "{" + ", ".join([
        f"{key if type(key) is str else java_string(key, key_schema)}="
        f"{java_string(item, value_schema)}"
        for key, item in java_items(value, key_schema)]) + "}"


_SCHEMALESS: dict[type, Callable[[Any], str]] = {
    str: str,
    int: str,
    float: _double_string,
    bool: lambda value: "true" if value else "false",
    type(None): lambda value: "null",
    dict: lambda value: _map_string(value, None, None),
    JavaHashMap: lambda value: _map_string(value, None, None),
    LinkedHashMap: lambda value: _map_string(value, None, None),
    list: lambda value: _list_string(value, None),
}
"""Printers of the exact classes schemaless values come in, found in one lookup."""


@lru_cache(maxsize=1024)
def _hash_map_order(keys: tuple[Any, ...], key_type: Type | None,
                    table: int) -> tuple[Any, ...] | None:
    """The keys in the order a ``HashMap`` whose table started at ``table`` and was
    filled with them in this order iterates: by bucket (the spread hash modulo the table
    size, which doubles past 3/4 load), then by insertion; None when that is their order
    already. Records of a topic mostly share their keys, so the order is computed once
    per key set. (A bucket of 8 or more colliding keys becomes a tree in Java; that is
    left out.)"""
    capacity = table
    while len(keys) > capacity * 3 // 4:
        capacity *= 2
    try:
        buckets = [_spread(_java_hash(key, key_type)) & (capacity - 1) for key in keys]
    except TypeError:
        return None  # a key type Java hashes in ways not modelled: keep the given order
    order = tuple(keys[i] for i in sorted(range(len(keys)), key=buckets.__getitem__))
    return None if order == keys else order


def _spread(hash_code: int) -> int:
    return hash_code ^ (hash_code >> 16)


def _java_hash(key: Any, key_type: Type | None) -> int:
    """``hashCode()`` of the Java object Apache holds for ``key``, as an unsigned int."""
    if isinstance(key, str):
        code = 0
        for unit in struct.unpack(f">{len(key.encode('utf-16-be')) // 2}H",
                                  key.encode("utf-16-be")):
            code = (31 * code + unit) & 0xFFFFFFFF
        return code
    if isinstance(key, bool):
        return 1231 if key else 1237
    if isinstance(key, int):
        if key_type in (None, Type.INT64):  # Long: the two halves folded
            bits = key & 0xFFFFFFFFFFFFFFFF
            return (bits ^ (bits >> 32)) & 0xFFFFFFFF
        return key & 0xFFFFFFFF
    if isinstance(key, float):
        if key_type == Type.FLOAT32:
            return int.from_bytes(struct.pack(">f", key))
        bits = int.from_bytes(struct.pack(">d", key))
        return (bits ^ (bits >> 32)) & 0xFFFFFFFF
    raise TypeError(f"no Java hash for {type(key).__name__}")


def _date_string(value: dt.datetime | dt.date | dt.time) -> str:
    """``java.util.Date.toString``: ``Wed May 01 10:15:30 UTC 2024`` in the local zone;
    a Date is its day's midnight UTC, a Time that time on 1970-01-01 UTC."""
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    else:
        moment = dt.datetime.combine(dt.date(1970, 1, 1), value.replace(tzinfo=dt.UTC))
    local = moment.astimezone()
    return f"{local:%a %b %d %H:%M:%S} {local.tzname()} {local.year}"
