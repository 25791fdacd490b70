"""The native map rebuild (``kanal_worker.native._maps``) gives InsertField, ReplaceField
and Cast on columns exactly the values, schemas and errors of their per-value Python, for
every configuration, map class, table, key order and item; without it, Python rebuilds
each map."""

from __future__ import annotations

import decimal
import logging
import struct as packing
import sys
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bench.transforms import python_maps
from kanal_worker import native
from kanal_worker.api.errors import DataError
from kanal_worker.api.java_text import JavaHashMap, LinkedHashMap, double_to_string
from kanal_worker.api.records import ConvertedBatch, RecordLists, SinkColumns
from kanal_worker.api.schema import INT64, STRING, Schema, optional, struct
from kanal_worker.native import _maps  # type: ignore[attr-defined]
from kanal_worker.transforms._util import MapPlan, MapPlanChain, NullSafeTransform, map_plan_chains
from kanal_worker.transforms.cast import CastKey, CastValue
from kanal_worker.transforms.insert import InsertFieldKey, InsertFieldValue
from kanal_worker.transforms.replace import ReplaceFieldKey, ReplaceFieldValue
from tests.unit.test_native_text import FLOATS, INTS, KEYS, SCALARS

NAMES = ["a", "b", "c", "Aa", "BB", "speed_kmh", "seq", "fuel_level", "x"]
"""Field names both the configurations and the maps draw, so that they meet."""
MAP_KEYS = st.one_of(st.sampled_from(NAMES), st.sampled_from(NAMES), KEYS)
ODD_ITEMS = st.one_of(
    st.binary(max_size=3), st.sampled_from([decimal.Decimal("1.50"), bytearray(b"z")]),
    st.lists(SCALARS, max_size=2), st.dictionaries(st.sampled_from(NAMES), SCALARS, max_size=2),
    st.sampled_from(["12", "-7", "1.5", "true", "NaN", " 3 ", "99999999999", "x"]))
ITEMS = st.one_of(SCALARS, SCALARS, SCALARS, INTS, FLOATS, ODD_ITEMS)
TYPES = ["int8", "int16", "int32", "int64", "float32", "float64", "string", "boolean"]
STRUCT = struct([("a", INT64), ("b", optional(STRING)), ("seq", optional(INT64))])


@st.composite
def configs(draw: st.DrawFn) -> tuple[type[NullSafeTransform[Any]], dict[str, str]]:
    """One of the three transforms, on keys or values, in a drawn configuration."""
    names = st.sampled_from(NAMES)
    kind = draw(st.integers(0, 2))
    on_keys = draw(st.integers(0, 4)) == 0
    if kind == 0:
        config = {"static.field": draw(names) + draw(st.sampled_from(["", "?", "!"])),
                  "static.value": draw(st.text(max_size=4))}
        if draw(st.integers(0, 4)) == 0:  # a record field: the whole column in Python
            config["topic.field"] = draw(names)
        return (InsertFieldKey if on_keys else InsertFieldValue), config
    if kind == 1:
        config = {}
        for key in ("exclude", "include"):
            if draw(st.booleans()):
                config[key] = ",".join(draw(st.lists(names, max_size=4)))
        if draw(st.booleans()):
            config["renames"] = ",".join(f"{old}:{new}" for old, new in draw(
                st.lists(st.tuples(names, names), max_size=3)))
        return (ReplaceFieldKey if on_keys else ReplaceFieldValue), config
    if draw(st.integers(0, 5)) == 0:  # the whole value: no map plan
        spec = draw(st.sampled_from(TYPES))
    else:
        spec = ",".join(f"{field}:{target}" for field, target in draw(
            st.lists(st.tuples(names, st.sampled_from(TYPES)), min_size=1, max_size=4)))
    return (CastKey if on_keys else CastValue), {"spec": spec}


def a_map(draw: st.DrawFn, items: dict[Any, Any]) -> Any:
    """``items`` as a converter or a transform holds them: a plain dict, a JavaHashMap of
    a drawn table, a copy, a LinkedHashMap, or a map of a class of its own."""
    kind = draw(st.integers(0, 9))
    if kind <= 3:
        return items
    if kind <= 6:
        return JavaHashMap(items, table=(1, 16, 64)[kind - 4])
    if kind == 7:
        return JavaHashMap.copy_of(items)
    if kind == 8:
        return LinkedHashMap(items)
    return Mapped(items)


class Mapped(dict[Any, Any]):
    """A dict subclass the native side does not rebuild."""


@st.composite
def polls(draw: st.DrawFn) -> tuple[list[Any], list[Schema | None]]:
    """A column: runs of maps sharing key sets (the same key objects or equal copies),
    nulls, structs under a schema, and values that are not maps."""
    key_sets = draw(st.lists(st.lists(MAP_KEYS, max_size=12, unique=True), min_size=1,
                             max_size=3))
    values: list[Any] = []
    schemas: list[Schema | None] = []
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(st.integers(0, 12))
        schema: Schema | None = None
        if kind <= 8:
            keys = key_sets[draw(st.integers(0, len(key_sets) - 1))]
            if kind == 8:
                keys = ["".join(list(key)) for key in keys]
            items = draw(st.lists(ITEMS, min_size=len(keys), max_size=len(keys)))
            value: Any = a_map(draw, dict(zip(keys, items, strict=True)))
        elif kind == 9:
            value = None
            schema = draw(st.sampled_from([None, STRUCT]))
        elif kind == 10:
            value = {"a": draw(INTS.filter(lambda n: -(2**63) <= n < 2**63)),
                     "b": draw(st.one_of(st.none(), st.text(max_size=3))),
                     "seq": draw(st.one_of(st.none(), st.integers(0, 9)))}
            schema = STRUCT
        elif kind == 11:
            value = draw(ITEMS)
        else:
            value = draw(st.dictionaries(INTS, SCALARS, max_size=3))
        values.append(value)
        schemas.append(schema)
    return values, schemas


def fresh(value: Any) -> Any:
    """A copy of ``value``'s maps (their class, table and order), the rest shared."""
    if isinstance(value, JavaHashMap):
        return JavaHashMap.filled(((k, fresh(v)) for k, v in value.items()), value.table)
    if isinstance(value, dict):
        copy = dict.__new__(type(value))
        dict.update(copy, ((k, fresh(v)) for k, v in value.items()))
        return copy
    if isinstance(value, list):
        return [fresh(item) for item in value]
    return value


def shape(value: Any) -> Any:
    """What of ``value`` is observable: classes, tables, item order, exact numbers (a NaN
    by its bits)."""
    if isinstance(value, dict):
        return (type(value).__name__, getattr(value, "table", None),
                [(shape(k), shape(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ["list", *map(shape, value)]
    if isinstance(value, float):
        return ("float", packing.pack(">d", value))
    return (type(value).__name__, value)


def columns(values: list[Any], schemas: list[Schema | None], on_keys: bool,
            chain_owned: bool) -> SinkColumns:
    size = len(values)
    side = ConvertedBatch(list(schemas), [fresh(value) for value in values],
                          chain_owned=chain_owned)
    other = ConvertedBatch([None] * size, [None] * size)
    return SinkColumns(
        origin=RecordLists(topics=["t"] * size, partitions=[1] * size, offsets=list(range(size)),
                           timestamps=[(1, 1000 + i) for i in range(size)]), headers=[None] * size,
        keys=side if on_keys else other, values=other if on_keys else side,
        encoded=[None] * size, texts=[None] * size)


def outcome(transform: NullSafeTransform[Any], poll: SinkColumns) -> Any:
    """The shapes of the transformed side's values and its schemas, or the error."""
    try:
        result = transform.apply_columns(poll)
    except Exception as exc:  # the error is the outcome compared
        return ("raised", type(exc), str(exc))
    side = result.keys if transform.operates_on == "key" else result.values
    return [shape(value) for value in side.values], side.schemas, side.chain_owned


@settings(max_examples=600)
@given(configs(), polls(), st.booleans())
def test_columns_are_the_per_value_python_columns(
        config: tuple[type[NullSafeTransform[Any]], dict[str, str]],
        poll: tuple[list[Any], list[Schema | None]], chain_owned: bool) -> None:
    kind, settings_ = config
    transform = kind(settings_)
    values, schemas = poll
    on_keys = transform.operates_on == "key"
    with python_maps():
        expected = outcome(transform, columns(values, schemas, on_keys, chain_owned))
    given_poll = columns(values, schemas, on_keys, chain_owned)
    side = given_poll.keys if on_keys else given_poll.values
    before = [shape(value) for value in side.values]
    assert outcome(transform, given_poll) == expected
    if not chain_owned:  # a converter's maps are left as they are
        assert [shape(value) for value in side.values] == before


def one_by_one(steps: list[NullSafeTransform[Any]], poll: SinkColumns,
               through_chain: bool = False) -> Any:
    """The shapes, schemas and ownership of the side the steps rewrite, applied one after
    the other on columns (the path without ``MapPlanChain``; with it when
    ``through_chain``), or the error."""
    chain = map_plan_chains(steps)[0] if through_chain else None
    try:
        if chain is not None:
            assert chain.steps == tuple(steps)
            poll = chain.apply_columns(poll)
        else:
            for step in steps:
                poll = step.apply_columns(poll)
    except Exception as exc:  # the error is the outcome compared
        return ("raised", type(exc), str(exc))
    side = poll.keys if steps[0].operates_on == "key" else poll.values
    return [shape(value) for value in side.values], side.schemas, side.chain_owned


def at_once(steps: list[NullSafeTransform[Any]], poll: SinkColumns) -> Any:
    """As ``one_by_one``, through the ``MapPlanChain`` of the steps."""
    return one_by_one(steps, poll, through_chain=True)


@settings(max_examples=600)
@given(st.lists(configs(), min_size=2, max_size=6), st.booleans(), polls(), st.booleans())
def test_a_run_of_steps_in_one_pass_is_the_steps_one_by_one(
        drawn: list[tuple[type[NullSafeTransform[Any]], dict[str, str]]], on_keys: bool,
        poll: tuple[list[Any], list[Schema | None]], chain_owned: bool) -> None:
    """Random runs of InsertField, ReplaceField and Cast give, in one pass, the values
    (class, table, items in order), schemas and ownership of the steps one by one, natively
    and in Python; the poll fails where they fail, and each row alone fails with the error
    of the step it fails in; a converter's maps are left as they were."""
    side_name = "key" if on_keys else "value"
    steps = [step for step in (kind(config) for kind, config in drawn)
             if MapPlanChain.joins(step) and step.operates_on == side_name]
    assume(len(steps) >= 2)
    values, schemas = poll
    with python_maps():
        in_python = one_by_one(steps, columns(values, schemas, on_keys, chain_owned))
    expected = one_by_one(steps, columns(values, schemas, on_keys, chain_owned))
    given_poll = columns(values, schemas, on_keys, chain_owned)
    side = given_poll.keys if on_keys else given_poll.values
    before = [shape(value) for value in side.values]
    got = at_once(steps, given_poll)
    if expected[0] == "raised":
        assert got[0] == in_python[0] == "raised"
        for value, schema in zip(values, schemas, strict=True):
            assert at_once(steps, columns([value], [schema], on_keys, chain_owned)) == \
                one_by_one(steps, columns([value], [schema], on_keys, chain_owned))
    else:
        assert got == expected == in_python
    if not chain_owned:
        assert [shape(value) for value in side.values] == before


def test_a_run_is_the_steps_that_plan_maps_on_one_side_without_a_predicate() -> None:
    insert = InsertFieldValue({"static.field": "p", "static.value": "v"})
    cast = CastValue({"spec": "a:int8"})
    record_field = InsertFieldValue({"topic.field": "t"})
    key_cast = CastKey({"spec": "a:int8"})
    chains = map_plan_chains([insert, cast, None, insert, cast, key_cast, record_field,
                              CastValue({"spec": "int8"}), insert, cast, cast])
    assert {at: chain.steps for at, chain in chains.items()} == {
        0: (insert, cast), 3: (insert, cast), 8: (insert, cast, cast)}


def test_composed_plans_read_the_input_and_keep_casts_that_do_not_compose_apart() -> None:
    insert = InsertFieldValue({"static.field": "s", "static.value": "7"})
    rename = ReplaceFieldValue({"renames": "a:b,b:a", "exclude": "c"})
    to_int = CastValue({"spec": "a:int8,s:int32"})
    (chain,) = map_plan_chains([insert, rename, to_int, to_int]).values()
    plan = chain._planned(("a", "b", "c"), 16)
    assert plan is not None and plan[:4] == (("a", "b", "s"), (1, 0, -1), (None, None, "7"),
                                             (1, 0, 3))
    (apart,) = map_plan_chains([to_int, CastValue({"spec": "a:string"})]).values()
    assert apart._planned(("a",), 16) is None
    poll = columns([{"a": 300, "b": 2, "c": 3}, {"a": 1.5}], [None, None], False, False)
    assert [dict(value) for value in chain.apply_columns(poll).values.values] == [
        {"a": 2, "b": 300, "s": 7}, {"b": 1.5, "a": None, "s": 7}]
    assert [dict(value) for value in apart.apply_columns(poll).values.values] == [
        {"a": "44", "b": 2, "c": 3, "s": None}, {"a": "1", "s": None}]
    dropped = ReplaceFieldValue({"exclude": "a"})
    (unread,) = map_plan_chains([to_int, dropped]).values()
    assert unread._planned(("a",), 16) is None  # its cast may fail: the steps' Python


CAST_ITEMS = st.one_of(INTS, FLOATS, st.booleans(), st.none(), st.text(max_size=4),
                       st.sampled_from([2**100, -(2**100), 10**400, 2**63, -(2**63) - 1,
                                        2**31, -(2**31) - 1, 255, 128, -129, 32768,
                                        3.4028235677973366e38, 3.4028234663852886e38,
                                        1e39, -1e39, 2.0**63, -(2.0**63), 2.0**31 - 0.5,
                                        -(2.0**31) - 0.5, 1.5e-45, 0.7e-45, -0.0,
                                        "10", "x"]), ODD_ITEMS)


@settings(max_examples=500)
@given(st.sampled_from(TYPES), st.lists(CAST_ITEMS, max_size=20))
def test_casts_are_the_python_casts(target: str, items: list[Any]) -> None:
    """Each item cast alone (a failing one fails its own map only)."""
    transform = CastValue({"spec": f"f:{target}"})
    for item in items:
        values: list[Any] = [{"f": item, "g": 1}]
        with python_maps():
            expected = outcome(transform, columns(values, [None], False, False))
        assert outcome(transform, columns(values, [None], False, False)) == expected


def test_the_bench_chain_gives_the_python_maps() -> None:
    insert = InsertFieldValue({"static.field": "pipeline", "static.value": "bench"})
    replace = ReplaceFieldValue({"exclude": "fuel_level"})
    cast = CastValue({"spec": "speed_kmh:int32,seq:string"})
    values = [{"vehicle_id": f"VH-{i:04d}", "timestamp": 1700000000000 + i,
               "speed_kmh": 127.94 + i, "fuel_level": 5.61, "lat": 52.0, "lon": 6.3,
               "seq": i} for i in range(30)]

    def run() -> Any:
        poll = columns(values, [None] * len(values), False, False)
        for step in (insert, replace, cast):
            poll = step.apply_columns(poll)
        return [shape(value) for value in poll.values.values]

    with python_maps():
        expected = run()
    assert run() == expected
    assert expected[0] == shape(JavaHashMap.filled(
        [("speed_kmh", 127), ("pipeline", "bench"), ("lon", 6.3), ("vehicle_id", "VH-0000"),
         ("lat", 52.0), ("seq", "0"), ("timestamp", 1700000000000)], 16))


def test_an_error_is_the_per_value_error_of_its_row() -> None:
    cast = CastValue({"spec": "seq:int32"})
    values: list[Any] = [{"seq": 1}, {"seq": "x"}, {"seq": [1]}]
    with pytest.raises(DataError) as got:
        cast.apply_columns(columns(values, [None] * 3, False, False))
    with python_maps(), pytest.raises(DataError) as expected:
        cast.apply_columns(columns(values, [None] * 3, False, False))
    assert str(got.value) == str(expected.value) == \
        "Value (x) was out of range for requested data type"
    with pytest.raises(DataError, match="Only Map objects supported"):
        cast.apply_columns(columns([{"seq": 1}, [1]], [None] * 2, False, False))


def test_many_key_sets_in_a_poll_keep_their_plans() -> None:
    """More key sets than the native side remembers in a call, in turn."""
    replace = ReplaceFieldValue({"exclude": "k3", "renames": "k1:one"})
    keys = [f"k{i}" for i in range(14)]
    values = [dict.fromkeys(keys[:size], size) for size in (*range(14), *range(13, -1, -1)) * 3]
    asked: list[tuple[Any, ...]] = []
    plan = replace.map_plan

    def counted(keys: tuple[Any, ...], table: int | None) -> MapPlan:
        asked.append(keys)
        return plan(keys, table)

    replace.map_plan = counted  # type: ignore[method-assign]
    got = outcome(replace, columns(values, [None] * len(values), False, False))
    with python_maps():
        assert got == outcome(replace, columns(values, [None] * len(values), False, False))
    assert len(asked) == 14  # each key set planned once, kept in Python between calls


def test_malformed_plans_are_refused() -> None:
    def rebuild(plan: Any) -> Any:
        return _maps.rebuild([{"a": 1}], [None], False, lambda keys, table: plan,
                             lambda index: None, JavaHashMap, LinkedHashMap,
                             double_to_string)

    for plan in [(), ("a",), (("a",), (0,), (None,), (0,), "16"),
                 (("a",), (1,), (None,), (0,), 16), (("a",), (-2,), (None,), (0,), 16),
                 (("a",), (0,), (None,), (9,), 16), (("a", "b"), (0,), (None,), (0,), 16),
                 (["a"], (0,), (None,), (0,), 16)]:
        with pytest.raises(TypeError):
            rebuild(plan)
    assert rebuild((("b",), (0,), (None,), (0,), 4)) == [{"b": 1}]
    assert rebuild(None) == [None]  # no plan: the fallback's value
    with pytest.raises(ValueError):
        _maps.rebuild([{"a": 1}], [], False, lambda keys, table: None, lambda index: None,
                      JavaHashMap, LinkedHashMap, double_to_string)
    with pytest.raises(TypeError):  # its table must be a slot the native side can set
        _maps.rebuild([], [], False, None, None, TableProperty, LinkedHashMap,
                      double_to_string)


class TableProperty(dict[Any, Any]):
    @property
    def table(self) -> int:
        return 16


def test_errors_of_the_callbacks_are_raised() -> None:
    def failing(*args: Any) -> Any:
        raise RuntimeError("callback")

    plan = MapPlan(("a",), (0,), (None,), (7,), 4)
    for plan_for, fallback, to_text, value in [
            (failing, None, double_to_string, {"a": 1}),
            (lambda keys, table: None, failing, double_to_string, {"a": 1}),
            (lambda keys, table: plan, failing, double_to_string, {"a": b"x"}),
            (lambda keys, table: plan, None, failing, {"a": 1.5})]:
        with pytest.raises(RuntimeError, match="callback"):
            _maps.rebuild([value], [None], False, plan_for, fallback, JavaHashMap,
                          LinkedHashMap, to_text)


def test_references_are_released() -> None:
    key, item, constant = "".join(["key", "x"]), 10**3 + 7, "".join(["con", "stant"])
    plan = MapPlan((key, "c", "s"), (0, -1, 0), (None, constant, None), (0, 0, 7), 32)
    values: list[Any] = [{key: item}, JavaHashMap({key: item}, table=64),
                         LinkedHashMap({key: item}), {key: [item]}, [item], None]
    in_place = MapPlan((key, "c"), (0, -1), (None, constant), (7, 0), 32)
    counts = [sys.getrefcount(obj) for obj in (key, item, constant, plan, in_place)]
    for owned in (False, True, False, True):
        for handed in (plan, in_place):
            _maps.rebuild(values, [None] * len(values), owned,
                          lambda keys, table, handed=handed: handed,
                          lambda index: values[index], JavaHashMap, LinkedHashMap,
                          double_to_string)
        values[1] = JavaHashMap({key: item}, table=64)  # changed in place: as it was
    del handed
    assert [sys.getrefcount(obj) for obj in (key, item, constant, plan, in_place)] == counts


def test_an_owned_java_hash_map_is_changed_in_place_where_the_plan_keeps_its_keys() -> None:
    keeps = MapPlan(("a", "b", "c"), (0, -1, -1), (None, "B", "C"), (3, 0, 0), 8)
    drops = MapPlan(("b",), (1,), (None,), (0,), 8)
    for owned, plan, kind, changed in [
            (True, keeps, JavaHashMap, True), (False, keeps, JavaHashMap, False),
            (True, keeps, dict, False), (True, keeps, LinkedHashMap, False),
            (True, drops, JavaHashMap, False)]:
        value = kind({"a": 1.5, "b": 2}) if kind is not JavaHashMap else JavaHashMap(
            {"a": 1.5, "b": 2}, table=16)
        [result] = _maps.rebuild([value], [None], owned,
                                 lambda keys, table, plan=plan: plan, None, JavaHashMap,
                                 LinkedHashMap, double_to_string)
        assert (result is value) == changed
        assert shape(result) == shape(JavaHashMap.filled(
            [("a", 1), ("b", "B"), ("c", "C")] if plan is keeps else [("b", 2)], 8))


def test_a_map_falling_back_is_handed_over_unchanged() -> None:
    """Its items are cast before any is set: the fallback sees the map as it came."""
    plan = MapPlan(("a", "b"), (0, 1), (None, None), (3, 7), 16)
    value = JavaHashMap({"a": 1.5, "b": b"x"}, table=16)
    seen: list[Any] = []
    _maps.rebuild([value], [None], True, lambda keys, table: plan,
                  lambda index: seen.append(shape(value)), JavaHashMap, LinkedHashMap,
                  double_to_string)
    assert seen == [shape(JavaHashMap({"a": 1.5, "b": b"x"}, table=16))]


def test_without_the_extension_each_map_is_rebuilt_in_python(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(native, "MAPS_ENABLED", False)
    native.map_rebuilder.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            assert native.map_rebuilder() is None
        assert "KANAL_NATIVE_MAPS=0" in caplog.text
        insert = InsertFieldValue({"static.field": "p", "static.value": "v"})
        poll = insert.apply_columns(columns([{"a": 1}], [None], False, False))
        assert poll.values.values == [{"a": 1, "p": "v"}]
    finally:
        monkeypatch.undo()
        native.map_rebuilder.cache_clear()
    assert native.map_rebuilder() is _maps.rebuild

