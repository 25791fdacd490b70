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
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson

from kanal_worker.api.schema import DATE, TIME, TIMESTAMP, Schema, Type
from kanal_worker.native import text_printer

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
        return cls.filled(_java_pairs(original, None), copy_table(len(original)))

    @classmethod
    def copy_or_reuse(cls, original: Mapping[Any, Any], owned: bool) -> JavaHashMap:
        """``copy_of(original)``, or ``original`` itself given the copy's table when it is
        ``owned`` (nobody else holds it) and already in the order the copy is filled in
        (its Java order): then the two are equal item for item, in order and table, and
        a chain of transforms copies a map once instead of once per step."""
        if owned and type(original) is cls and _reorder(tuple(original), None,
                                                         original.table) is None:
            original.table = copy_table(len(original))
            return original
        return cls.copy_of(original)

    @classmethod
    def filled(cls, items: Iterable[tuple[Any, Any]], table: int) -> JavaHashMap:
        """``cls(items, table=table)`` without running ``__init__`` in Python: transforms
        make a map per record."""
        made = dict.__new__(cls)
        dict.update(made, items)
        made.table = table
        return made

    @classmethod
    def sized(cls, size: int) -> JavaHashMap:
        """``new HashMap<>(size)``, empty."""
        return cls(table=_power_of_two(size))


class LinkedHashMap(dict[Any, Any]):
    """A schemaless map Java iterates in insertion order (``new LinkedHashMap<>()``)."""


@lru_cache(maxsize=256)
def copy_table(size: int) -> int:
    """The table ``new HashMap<>(map)`` starts with for a map of ``size`` entries."""
    return _power_of_two(int(size / 0.75 + 1.0) if size else HASH_MAP_CAPACITY)


def _power_of_two(at_least: int) -> int:
    """``HashMap.tableSizeFor``: the smallest power of two not below ``at_least`` (min 1)."""
    return 1 << max(0, at_least - 1).bit_length()


def java_items(value: Mapping[Any, Any], key_schema: Schema | None = None
               ) -> list[tuple[Any, Any]]:
    """The entries of ``value`` in the order Java iterates the map Apache holds for it."""
    return list(_java_pairs(value, key_schema.type if key_schema is not None else None))


def _java_pairs(value: Mapping[Any, Any], key_type: Type | None) -> Iterable[tuple[Any, Any]]:
    if isinstance(value, LinkedHashMap):
        return value.items()
    reorder = _reorder(tuple(value), key_type, getattr(value, "table", HASH_MAP_CAPACITY))
    if reorder is None:
        return value.items()
    order, pick = reorder
    return zip(order, pick(value), strict=True)


@lru_cache(maxsize=1024)
def _reorder(keys: tuple[Any, ...], key_type: Type | None, table: int
             ) -> tuple[tuple[Any, ...], Picker] | None:
    """``_hash_map_order`` of the keys and what picks a map's items in it; None when
    they are in that order."""
    order = _hash_map_order(keys, key_type, table)
    return None if order is None else (order, picker(order))


Picker = Callable[[Any], tuple[Any, ...]]
"""Picks items of a map (by key) or of a tuple (by position) as a tuple."""


def picker(keys: Sequence[Any]) -> Picker:
    """What picks the items of ``keys`` from a map (or tuple) as a tuple, at C speed."""
    if not keys:
        return lambda value: ()
    if len(keys) == 1:  # itemgetter of one key gives the item, not a tuple
        key = keys[0]
        return lambda value: (value[key],)
    return itemgetter(*keys)


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
            printed = _struct_string(value, schema)
            if printed is not None:
                return printed
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


def java_lines(values: list[Any], schemas: list[Schema | None]) -> bytes:
    """``java_string`` of each value under its schema and a newline, as UTF-8: what
    FileStreamSink writes for a poll. The native printer (``kanal_worker.native``) prints
    the common values, flat maps, flat structs and scalars, in C, and calls
    ``java_string`` for the others; without it, or when it hands the poll back, every
    value is printed here."""
    native = text_printer()
    if native is not None:
        printed = native(values, schemas, java_string, _java_order, _native_struct_names,
                         JavaHashMap, LinkedHashMap)
        if printed is not None:
            return printed
    return "".join([f"{java_string(value, schema)}\n"
                    for value, schema in zip(values, schemas, strict=True)]).encode()


def java_positions(keys: tuple[Any, ...], table: int | None) -> tuple[int, ...]:
    """``_java_order`` of a map's keys in ``table``; None: a LinkedHashMap's (insertion
    order)."""
    return tuple(range(len(keys))) if table is None else _java_order(keys, table)


@lru_cache(maxsize=1024)
def _java_order(keys: tuple[str, ...], table: int = HASH_MAP_CAPACITY) -> tuple[int, ...]:
    """The positions in ``keys`` (a map's, in insertion order) of the keys in the order
    a Java ``HashMap`` whose table started at ``table`` (a plain dict's: ``new
    HashMap<>()``) filled with them iterates: the order ``_schemaless_map_string`` prints
    them in."""
    order = _hash_map_order(keys, None, table)
    if order is None:
        return tuple(range(len(keys)))
    position = {key: i for i, key in enumerate(keys)}
    return tuple(position[key] for key in order)


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
    if key_schema is None and value_schema is None:
        return _schemaless_map_string(value)
    return "{" + ", ".join([
        f"{key if type(key) is str else java_string(key, key_schema)}="
        f"{java_string(item, value_schema)}"
        for key, item in java_items(value, key_schema)]) + "}"


def _schemaless_map_string(value: Mapping[Any, Any]) -> str:
    """``_map_string`` of a schemaless map. Records of a topic mostly share their keys
    and value types: a map of text keys and of strings, integers and doubles in
    ``Double.toString``'s plain range is printed by a ``_Template`` made once per keys,
    types and table, its doubles by one ``orjson.dumps`` (whose shortest digits are
    Python's ``repr``'s and Java's in that range, and 25 times faster); any other map
    item by item."""
    template = _template(tuple(value), tuple(map(type, value.values())),
                         None if isinstance(value, LinkedHashMap)
                         else getattr(value, "table", HASH_MAP_CAPACITY))
    if template is not None:
        text, items, doubles = template
        printed = _format(text, items(value), None if doubles is None else doubles(value))
        if printed is not None:
            return printed
    printer = _SCHEMALESS.get
    return "{" + ", ".join([
        f"{key if type(key) is str else java_string(key)}="
        f"{(printer(type(item)) or _any_string)(item)}"
        for key, item in java_items(value)]) + "}"


def _format(text: str, items: tuple[Any, ...], doubles: tuple[float, ...] | None
            ) -> str | None:
    """``text.format`` of ``items`` and of the text of ``doubles``; None when a double
    is outside ``Double.toString``'s plain range (or not a number)."""
    if doubles is None:
        return text.format(*items)
    printed = orjson.dumps(doubles)  # NaN and infinities are null: not printed alike
    if min(map(abs, doubles)) >= 1e-3 and max(map(abs, doubles)) < 1e7 and \
            b"null" not in printed:
        return text.format(*items, *printed[1:-1].decode().split(","))
    return None


def _placeholders(names: Sequence[str], types: Sequence[type]) -> tuple[list[str], list[int]]:
    """``name={n}`` for each of ``names`` (escaped for ``str.format``), the doubles'
    slots after the items, and the positions of the doubles."""
    at = [i for i, kind in enumerate(types) if kind is float]
    slot = {i: len(types) + j for j, i in enumerate(at)}
    return [f"{name.replace('{', '{{').replace('}', '}}')}={{{slot.get(i, i)}}}"
            for i, name in enumerate(names)], at


_STRUCT_PRINTABLE = frozenset({Type.STRING, Type.INT8, Type.INT16, Type.INT32, Type.INT64,
                               Type.FLOAT64, Type.BOOLEAN})
_struct_names: dict[int, tuple[Schema, tuple[str, ...] | None]] = {}


def _struct_string(value: Mapping[str, Any], schema: Schema) -> str | None:
    """``Struct.toString`` by a template made once per schema and item types when every
    field is a string, an integer or a double in the plain range (None otherwise)."""
    names = _printable_names(schema)
    if not names:
        return None
    items = tuple(map(value.get, names))
    template = _struct_template(names, tuple(map(type, items)))
    if template is None:
        return None
    text, doubles = template
    return _format(text, items, None if doubles is None else doubles(items))


def _native_struct_names(schema: Schema) -> tuple[str, ...] | None:
    """The field names of a struct schema whose structs the native printer prints (every
    field of a plain printable type: the fields ``_struct_string`` takes), else None."""
    if schema.type != Type.STRUCT or schema.name in (TIMESTAMP, DATE, TIME):
        return None
    return _printable_names(schema)


def _printable_names(schema: Schema) -> tuple[str, ...] | None:
    """The names of a struct schema's fields when each is a plain string, integer,
    double or boolean (remembered per schema object), else None."""
    cached = _struct_names.get(id(schema))
    if cached is None or cached[0] is not schema:
        if len(_struct_names) >= 1024:
            _struct_names.clear()
        printable = all(f.schema.name is None and f.schema.type in _STRUCT_PRINTABLE
                        for f in schema.fields)
        cached = _struct_names[id(schema)] = (
            schema, tuple(f.name for f in schema.fields) if printable else None)
    return cached[1]


@lru_cache(maxsize=1024)
def _struct_template(names: tuple[str, ...], types: tuple[type, ...]
                     ) -> tuple[str, Picker | None] | None:
    """The ``str.format`` template of a struct's text and what picks its doubles from
    the items; None unless every item is a str, int or float (a null is left out)."""
    if not set(types) <= {str, int, float}:
        return None
    placeholders, at = _placeholders(names, types)
    text = "Struct{{" + ",".join(placeholders) + "}}"
    return text, (picker(at) if at else None)


_Template = tuple[str, Picker, Picker | None]
"""A ``str.format`` template of a map's text, what picks its arguments (the items in
Java's order, followed by the text of the doubles), and what picks the doubles."""


@lru_cache(maxsize=1024)
def _template(keys: tuple[Any, ...], types: tuple[type, ...],
              table: int | None) -> _Template | None:
    """The template of a map of ``keys`` whose items are of ``types`` in its order, a
    ``HashMap`` whose table started at ``table`` (None: a ``LinkedHashMap``); None
    unless every key is text and every item a str, int or float."""
    if not keys or not all(type(key) is str for key in keys) or \
            not set(types) <= {str, int, float}:
        return None
    order = keys if table is None else (_hash_map_order(keys, None, table) or keys)
    by_key = dict(zip(keys, types, strict=True))
    placeholders, at = _placeholders(order, [by_key[key] for key in order])
    doubles = [order[i] for i in at]
    text = "{{" + ", ".join(placeholders) + "}}"
    return text, picker(list(order)), picker(doubles) if doubles else None


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
