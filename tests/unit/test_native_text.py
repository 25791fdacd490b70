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
from kanal_worker.api.schema import FLOAT32, INT64, STRING, Schema
from kanal_worker.native import _text  # type: ignore[attr-defined]


def reference(values: list[Any], schemas: list[Schema | None]) -> bytes:
    return "".join(java_string(value, schema) + "\n"
                   for value, schema in zip(values, schemas, strict=True)).encode()


def native_lines(values: list[Any], schemas: list[Schema | None]) -> bytes | None:
    printed: bytes | None = _text.java_lines(values, schemas, java_string,
                                             java_text._java_order)
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
        with pytest.raises((ValueError, TypeError)):
            _text.java_lines([{"a": 1, "b": 2}], [None], java_string,
                             lambda keys, order=order: order)
    with pytest.raises(TypeError):
        _text.java_lines([[1]], [None], lambda value, schema: 1, java_text._java_order)


def test_references_are_released() -> None:
    key, item = "".join(["key", "x"]), 10**3 + 7
    values = [{key: item, "b": 1.5}, {key: [item]}, {key: item}]
    native_lines(values, [None] * 3)  # the key orders cached in Python hold the keys
    before = sys.getrefcount(key), sys.getrefcount(item)
    for _ in range(100):
        native_lines(values, [None] * 3)
    assert (sys.getrefcount(key), sys.getrefcount(item)) == before


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
