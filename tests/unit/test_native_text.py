"""The native printer (``kanal_worker.native._text``) writes exactly the lines the Python
reference (``java_string``) writes, for every value; without it, Python prints them."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kanal_worker import native
from kanal_worker.api import java_text
from kanal_worker.api.java_text import JavaHashMap, LinkedHashMap, java_lines, java_string
from kanal_worker.api.schema import (
    BOOLEAN,
    BYTES,
    DECIMAL,
    FLOAT32,
    FLOAT64,
    INT8,
    INT16,
    INT32,
    INT64,
    OPTIONAL_STRING,
    STRING,
    Schema,
    Type,
    optional,
    struct,
)
from kanal_worker.connectors.file import lines
from kanal_worker.native import _text  # type: ignore[attr-defined]
from kanal_worker.runtime.transforms import build_chain
from tests.unit import test_sink_fast_path as fast


def reference(values: list[Any], schemas: list[Schema | None]) -> bytes:
    return "".join(java_string(value, schema) + "\n"
                   for value, schema in zip(values, schemas, strict=True)).encode()


def native_lines(values: list[Any], schemas: list[Schema | None]) -> bytes | None:
    printed: bytes | None = _text.java_lines(values, schemas, java_string,
                                             java_text._java_order,
                                             java_text._native_struct_names, JavaHashMap,
                                             LinkedHashMap)
    return printed


SAME_HASH = ["Aa", "BB", "AaAa", "AaBB", "BBAa", "BBBB", "AaAaAa", "BBBBBB"]
KEYS = st.one_of(st.sampled_from([*SAME_HASH, "speed_kmh", "lat", "lon", "seq", "", "{", "}"]),
                 st.text(max_size=6),
                 st.text(st.characters(min_codepoint=0x10000, max_codepoint=0x1F9FF),
                         max_size=3))
FLOATS = st.one_of(
    st.sampled_from([1e-3, -1e-3, 1e7, -1e7, 9999999.999999998, -9999999.999999998,
                     0.0009999999999999998, 0.001000000000000001, 0.0, -0.0, 5e-324,
                     1.7976931348623157e308, float("nan"), float("inf"), float("-inf"),
                     127.94, 0.1, 100.0, 1e6]),
    st.floats(min_value=1e-3, max_value=1e7, exclude_max=True),
    st.floats(min_value=-1e7, max_value=-1e-3, exclude_min=True),
    st.floats())
INTS = st.one_of(st.integers(), st.integers(min_value=2**62, max_value=2**70),
                 st.integers(min_value=-(2**70), max_value=-(2**62)),
                 st.sampled_from([0, -1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1]))
SCALARS = st.one_of(st.text(max_size=8), INTS, FLOATS, st.booleans(), st.none())
ITEMS = st.one_of(SCALARS, SCALARS, SCALARS,
                  st.dictionaries(KEYS, SCALARS, max_size=3), st.lists(SCALARS, max_size=3))


@st.composite
def polls(draw: st.DrawFn) -> list[Any]:
    """Values as a poll brings them: runs of maps of one key set (the key objects shared,
    or equal copies), key sets alternating, and odd values in between."""
    key_sets = draw(st.lists(st.lists(KEYS, max_size=40, unique=True), min_size=1,
                             max_size=3))
    values: list[Any] = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 9))
        if kind <= 6:
            keys = key_sets[draw(st.integers(0, len(key_sets) - 1))]
            if kind == 6:  # equal keys, other objects
                keys = ["".join(list(key)) for key in keys]
            items = draw(st.lists(ITEMS if kind == 5 else SCALARS, min_size=len(keys),
                                  max_size=len(keys)))
            values.append(dict(zip(keys, items, strict=True)))
        elif kind == 7:
            values.append(draw(ITEMS))
        elif kind == 8:
            values.append(draw(st.sampled_from([JavaHashMap, LinkedHashMap]))(
                draw(st.dictionaries(KEYS, SCALARS, max_size=5))))
        else:
            values.append(draw(st.dictionaries(INTS, SCALARS, max_size=3)))
    return values


@settings(max_examples=400)
@given(polls())
def test_native_lines_are_the_reference_lines(values: list[Any]) -> None:
    schemas: list[Schema | None] = [None] * len(values)
    assert native_lines(values, schemas) == reference(values, schemas)
    assert java_lines(values, schemas) == reference(values, schemas)


def hash_map(draw: st.DrawFn, items: dict[Any, Any]) -> dict[Any, Any]:
    """A transform's map of ``items``: a JavaHashMap of a drawn table, a copy or a
    linked map."""
    kind = draw(st.integers(0, 4))
    if kind <= 2:
        return JavaHashMap(items, table=(16, 32, 64)[kind])
    if kind == 3:
        return JavaHashMap.copy_of(items)
    return LinkedHashMap(items)


@st.composite
def map_polls(draw: st.DrawFn) -> list[Any]:
    """Polls of the maps transforms make: key sets shared between maps of a table and
    across tables, as a chain of transforms makes them."""
    key_sets = draw(st.lists(st.lists(KEYS, max_size=40, unique=True), min_size=1,
                             max_size=3))
    values: list[Any] = []
    for _ in range(draw(st.integers(0, 12))):
        keys = key_sets[draw(st.integers(0, len(key_sets) - 1))]
        items = draw(st.lists(ITEMS if draw(st.integers(0, 5)) == 0 else SCALARS,
                              min_size=len(keys), max_size=len(keys)))
        values.append(hash_map(draw, dict(zip(keys, items, strict=True))))
    return values


@settings(max_examples=400)
@given(map_polls())
def test_transformed_maps_print_as_the_reference(values: list[Any]) -> None:
    schemas: list[Schema | None] = [None] * len(values)
    assert native_lines(values, schemas) == reference(values, schemas)


def test_a_map_without_a_table_is_printed_by_the_reference() -> None:
    unset = dict.__new__(JavaHashMap)
    dict.update(unset, {f"k{i}": i for i in range(13)})
    assert native_lines([unset], [None]) == reference([unset], [None])


PRINTABLE: list[tuple[Schema, st.SearchStrategy[Any]]] = [
    (INT8, st.integers(-(2**7), 2**7 - 1)), (INT16, st.integers(-(2**15), 2**15 - 1)),
    (INT32, st.integers(-(2**31), 2**31 - 1)), (INT64, INTS), (FLOAT64, FLOATS),
    (BOOLEAN, st.booleans()), (STRING, st.text(max_size=8))]
NOT_PRINTABLE: list[tuple[Schema, st.SearchStrategy[Any]]] = [
    (FLOAT32, FLOATS), (BYTES, st.binary(max_size=4)),
    (Schema(Type.BYTES, name=DECIMAL, parameters={"scale": "2"}),
     st.decimals(places=2, allow_nan=False, allow_infinity=False))]
FIELD_NAMES = st.one_of(KEYS, st.sampled_from(["a", "b", "speed_kmh", "{x}", "a=b"]))


@st.composite
def struct_polls(draw: st.DrawFn) -> tuple[list[Any], list[Schema | None]]:
    """Structs under a few generated schemas: optional and required fields of every
    printable type, with nulls, odd items (lists, ints under doubles, big numbers) and
    now and then a field of a type printed by the reference or a nested struct."""
    schemas: list[tuple[Schema, list[st.SearchStrategy[Any]]]] = []
    for _ in range(draw(st.integers(1, 3))):
        names = draw(st.lists(FIELD_NAMES, max_size=12, unique=True))
        fields, items = [], []
        for name in names:
            kind = draw(st.integers(0, 19))
            if kind == 0:
                field, item = draw(st.sampled_from(NOT_PRINTABLE))
            elif kind == 1:
                field = struct([("z", OPTIONAL_STRING)], optional=True)
                item = st.fixed_dictionaries({"z": st.text(max_size=3)})
            else:
                field, item = draw(st.sampled_from(PRINTABLE))
            if draw(st.booleans()):
                field = optional(field)
            fields.append((name, field))
            items.append(st.one_of(item, st.none()) if kind == 1 else st.one_of(
                item, item, item, st.none(), SCALARS, st.lists(SCALARS, max_size=2)))
        schema = struct(fields, name=draw(st.sampled_from([None, "bench.Value"])))
        schemas.append((schema, items))
    values: list[Any] = []
    value_schemas: list[Schema | None] = []
    for _ in range(draw(st.integers(0, 12))):
        schema, items = schemas[draw(st.integers(0, len(schemas) - 1))]
        drawn = {f.name: draw(item) for f, item in zip(schema.fields, items, strict=True)}
        value = {name: item for name, item in drawn.items()
                 if item is not None or draw(st.booleans())}  # absent or null
        kind = draw(st.integers(0, 9))  # now and then a null, or in another mapping
        values.append(None if kind == 0 else JavaHashMap(value) if kind == 1 else value)
        value_schemas.append(schema)
    return values, value_schemas


@settings(max_examples=400)
@given(struct_polls())
def test_structs_print_as_the_reference(poll: tuple[list[Any], list[Schema | None]]) -> None:
    values, schemas = poll
    assert native_lines(values, schemas) == reference(values, schemas)
    assert java_lines(values, schemas) == reference(values, schemas)


def test_a_struct_prints_its_fields_in_schema_order_without_nulls() -> None:
    schema = struct([("b", INT32), ("a", optional(STRING)), ("c", FLOAT64), ("d", BOOLEAN),
                     ("e", optional(INT64))])
    values = [{"a": "x", "b": 1, "c": 2.5, "d": True, "e": None}, {"b": 2, "c": 3, "d": False}]
    assert native_lines(values, [schema] * 2) == reference(values, [schema] * 2) == \
        b"Struct{b=1,a=x,c=2.5,d=true}\nStruct{b=2,c=3,d=false}\n"


def test_a_struct_schema_seen_again_is_asked_once_per_poll() -> None:
    schemas = [struct([("a", INT64), (f"f{i}", STRING)]) for i in range(10)]
    asked: list[Schema] = []

    def names(schema: Schema) -> tuple[str, ...] | None:
        asked.append(schema)
        return java_text._native_struct_names(schema)

    values = [{"a": i, f"f{i % 10}": "x"} for i in range(40)]
    poll = [schemas[i % 10] for i in range(40)]
    assert _text.java_lines(values, poll, java_string, java_text._java_order, names,
                            JavaHashMap, LinkedHashMap) == reference(values, poll)
    assert len(asked) == 40  # ten schemas, eight remembered: each pushed out in turn
    asked.clear()
    poll = [schemas[i % 2] for i in range(40)]
    _text.java_lines(values, poll, java_string, java_text._java_order, names,
                     JavaHashMap, LinkedHashMap)
    assert len(asked) == 2


@pytest.mark.parametrize(("converters", "values"), [
    (fast.JSON_VALUES, [b'{"x": %d, "y": 2.5, "n": {"z": "a"}, "w": %d.25}' % (i, i)
                        for i in range(40)]),
    (fast.JSON_VALUES, [b'{"x": %d, "speed": %d, "b": true, "c": null}' % (i, i)
                        for i in range(40)]),
    ({"key.converter": fast.STRING, "value.converter": fast.JSON},
     [fast.ENVELOPE % i for i in range(40)]),
])
@pytest.mark.parametrize("chain", [fast.CHAIN, {
    "transforms": "tag",
    "transforms.tag.type": "org.apache.kafka.connect.transforms.InsertField$Value",
    "transforms.tag.static.field": "pipeline", "transforms.tag.static.value": "p"}])
def test_transformed_polls_print_as_the_reference(
        converters: dict[str, str], values: list[bytes], chain: dict[str, str]) -> None:
    """The maps and structs the real transforms make, printed by lines()."""
    task = fast.runner(converters)
    task.chain = build_chain(chain)
    batch, kept = fast.convert(task, [fast.message("a", 0, i, b"k", value,
                                                   timestamp=(1, 1000 + i))
                                      for i, value in enumerate(values)])
    transformed, _ = task._transform_all(batch, kept)
    printed = lines(transformed)
    assert printed == reference(list(transformed.values), list(transformed.value_schemas))
    assert printed == native_lines(list(transformed.values), list(transformed.value_schemas))


SHORT_DECIMALS = st.builds(lambda digits, places: digits / 10**places,
                           st.integers(-(10**15), 10**15), st.integers(0, 10))


@settings(max_examples=300)
@given(st.lists(st.one_of(SHORT_DECIMALS, FLOATS, FLOATS.map(lambda x: math.nextafter(x, 0))),
                max_size=50))
def test_doubles_print_as_the_reference(doubles: list[float]) -> None:
    """Doubles with few decimals are printed without dtoa: still repr's digits."""
    values: list[Any] = [*doubles, dict(zip(map(str, range(len(doubles))), doubles,
                                            strict=True))]
    assert native_lines(values, [None] * len(values)) == reference(values, [None] * len(values))


def test_values_with_a_schema_are_printed_by_the_reference() -> None:
    values: list[Any] = ["text", 7, 0.1, {"a": 1}, None]
    schemas: list[Schema | None] = [STRING, INT64, FLOAT32, None, STRING]
    assert native_lines(values, schemas) == reference(values, schemas) == \
        b"text\n7\n0.1\n{a=1}\nnull\n"


def test_a_key_set_seen_again_keeps_its_order() -> None:
    keys = [f"sensor{i}" for i in range(13)]
    values = [dict(zip(keys[:size], range(size), strict=True))
              for size in (13, 12, 13, 0, 12, 1) * 4]
    assert native_lines(values, [None] * len(values)) == reference(values, [None] * len(values))


def test_text_that_cannot_be_encoded_fails_as_in_python() -> None:
    for values in (["\ud800"], [1, {"k": "\udfff"}], [{"\ud800": 1}], [{"a": 1, "\ud800": 2}]):
        with pytest.raises(UnicodeEncodeError) as expected:
            reference(values, [None] * len(values))
        with pytest.raises(UnicodeEncodeError) as got:
            java_lines(values, [None] * len(values))
        assert str(got.value) == str(expected.value)
    assert native_lines(["\ud800"], [None]) is None  # handed back, Python raises


def test_lists_of_unequal_length_are_left_to_python() -> None:
    assert native_lines([1, 2], [None]) is None
    assert native_lines([1], [None, None]) is None


def test_errors_of_the_callbacks_are_raised() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    with pytest.raises(RuntimeError, match="no text"):
        native_lines([{"a": 1}, Unprintable()], [None, None])
    for order in [(), (0, 0), (0, 5), ("0", 1)]:
        for value in [{"a": 1, "b": 2}, JavaHashMap({"a": 1, "b": 2}, table=32)]:
            with pytest.raises((ValueError, TypeError)):
                _text.java_lines([value], [None], java_string,
                                 lambda keys, table=16, order=order: order,
                                 java_text._native_struct_names, JavaHashMap, LinkedHashMap)
    with pytest.raises(TypeError):
        _text.java_lines([[1]], [None], lambda value, schema: 1, java_text._java_order,
                         java_text._native_struct_names, JavaHashMap, LinkedHashMap)
    schema = struct([("a", INT64)])
    for names in [["a"], (1,), 7]:
        with pytest.raises(TypeError):
            _text.java_lines([{"a": 1}], [schema], java_string, java_text._java_order,
                             lambda schema, names=names: names, JavaHashMap, LinkedHashMap)
    with pytest.raises(RuntimeError, match="no names"):
        _text.java_lines([{"a": 1}], [schema], java_string, java_text._java_order,
                         _raise, JavaHashMap, LinkedHashMap)


def _raise(schema: Schema) -> None:
    raise RuntimeError("no names")


def test_references_are_released() -> None:
    key, item = "".join(["key", "x"]), 10**3 + 7
    schema = struct([(key, INT64), ("b", FLOAT64)])
    values = [{key: item, "b": 1.5}, {key: [item]}, {key: item},
              JavaHashMap({key: item, "b": 1.5}, table=64), LinkedHashMap({key: item}),
              {key: item, "b": 1.5}, {key: item, "b": [1.5]}]
    schemas: list[Schema | None] = [None] * 5 + [schema, schema]
    native_lines(values, schemas)  # the key orders cached in Python hold the keys
    before = sys.getrefcount(key), sys.getrefcount(item), sys.getrefcount(schema)
    for _ in range(100):
        native_lines(values, schemas)
    assert (sys.getrefcount(key), sys.getrefcount(item), sys.getrefcount(schema)) == before


@pytest.fixture
def no_printer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    native.text_printer.cache_clear()
    yield
    monkeypatch.undo()
    native.text_printer.cache_clear()


def test_without_the_extension_python_prints(no_printer: None, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delattr(native, "_text")  # the import then fails
    monkeypatch.setitem(sys.modules, "kanal_worker.native._text", None)
    caplog.set_level(logging.WARNING)
    values: list[Any] = [{"b": 1, "a": 2.5}, "s", None]
    assert native.text_printer() is None
    assert java_lines(values, [None] * 3) == java_lines(values, [None] * 3) == \
        b"{a=2.5, b=1}\ns\nnull\n"
    assert caplog.text.count("the extension is not built") == 1


def test_turned_off_python_prints(no_printer: None, monkeypatch: pytest.MonkeyPatch,
                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(native, "TEXT_ENABLED", False)
    assert native.text_printer() is None
    assert java_lines([{"a": 1}], [None]) == b"{a=1}\n"
    assert "KANAL_NATIVE_TEXT=0" in caplog.text
