"""Runs of schemaless JSON objects of one shape, inferred and gathered a field at a time
(``schemas.infer_columns``): the same segments, the same file bytes and the same
failures as inferring every value, whatever the run holds; and runs of values with a
schema checked a field at a time (``schemas.fits_by_columns``) as ``check`` checks them."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kanal_worker.api import DataError
from kanal_worker.api.schema import DATE, Schema, Type, struct
from kanal_worker.connectors.storage import schemas
from kanal_worker.connectors.storage.formats import AvroFormat, BlockSpool, FileFormat, Segment
from kanal_worker.connectors.storage.parquet import ParquetFormat
from kanal_worker.converters.json import JsonConverter

DECODE = JsonConverter({"schemas.enable": "false"}, False)
KEYS = st.sampled_from(["id", "temp", "é", "名前", "a b", 'q"k', ""])
NUMBERS = st.sampled_from([0, 1, -1, 1.0, -0.0, 1e-7, 2.5e300, (1 << 63) - 1, -(1 << 63),
                           1 << 63, 1 << 64, 1 << 70]) | st.integers() | st.floats(
    allow_nan=False, allow_infinity=False)
LEAVES = st.none() | st.booleans() | st.text(max_size=8) | NUMBERS
NESTED = st.lists(LEAVES, max_size=3) | st.dictionaries(KEYS, LEAVES, max_size=2)
SHAPES = st.dictionaries(KEYS, LEAVES | NESTED, min_size=1, max_size=5)


def _same_kind(value: Any) -> st.SearchStrategy[Any]:
    """Values of ``value``'s type, mostly of its shape."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(-(1 << 64), 1 << 64) | NUMBERS.filter(lambda n: type(n) is int)
    if isinstance(value, float):
        return st.floats(allow_nan=False, allow_infinity=False) | st.just(1.0)
    if isinstance(value, str):
        return st.text(max_size=6)
    if isinstance(value, dict):  # now and then a nested map of another shape
        return st.fixed_dictionaries({k: _same_kind(v) for k, v in value.items()}) | NESTED
    if isinstance(value, list):
        return st.just(value) | st.lists(st.sampled_from(value), max_size=4) \
            if value else st.just(value) | NESTED
    return st.just(value)


@st.composite
def runs(draw: st.DrawFn) -> list[bytes]:
    """JSON of a run: stretches of values of a few shapes, so the shape changes in the
    middle of a run or never; now and then one value of another shape or not a map."""
    shapes = draw(st.lists(SHAPES, min_size=1, max_size=3))
    texts = []
    for _ in range(draw(st.integers(1, 3))):
        shape = draw(st.sampled_from(shapes))
        for _ in range(draw(st.integers(1, 6))):
            value = draw(st.fixed_dictionaries({k: _same_kind(v) for k, v in shape.items()}))
            texts.append(json.dumps(value, ensure_ascii=False).encode())
    if draw(st.booleans()):
        texts.insert(draw(st.integers(0, len(texts))),
                     draw(st.sampled_from([b"[1]", b'"text"', b"{}", b'{"id": 1}',
                                           b'{"id": 1.5}', b'{"id": null}', b'{"id": [1.5]}',
                                           b'{"id": [1, 1.5]}', b'{"id": {"x": 1}}'])))
    return texts


def written(file_format: FileFormat, found: list[Segment] | None) -> Any:
    """The schemas and counts of ``found``, each segment's file bytes and what its
    writer held before the end; or the failure writing them."""
    if found is None:
        return None
    files = []
    try:
        for schema, _, payloads in found:
            spool = BlockSpool()
            writer = file_format.open(schema, spool, "t+0+0000000000")
            if isinstance(payloads, list):
                writer.append_run(payloads)
            else:
                writer.append_columns(payloads)
            pending = writer.pending
            writer.finish()
            files.append((spool.take_rest(), pending))
    except (pa.ArrowException, OverflowError, ValueError) as exc:
        return type(exc)
    return [(id(schema), count) for schema, count, _ in found], files


@pytest.mark.parametrize("make_format", [lambda: ParquetFormat("snappy"),
                                         lambda: AvroFormat("deflate")],
                         ids=["parquet", "avro"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run=runs())
def test_runs_inferred_by_columns_are_those_inferred_value_by_value(
        make_format: Any, run: list[bytes]) -> None:
    file_format = make_format()
    values = DECODE.to_connect_batch("t", run).values
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(schemas, "infer_columns", lambda run: None)
        reference = written(file_format, file_format.prepare_run(lambda: values, None, run))
    by_columns = written(file_format, file_format.prepare_run(lambda: values, None, run))
    assert by_columns == reference


def test_a_run_of_one_shape_is_inferred_once_by_columns() -> None:
    run = [{"id": i, "temp": 20.5, "name": "é", "ok": True, "gone": None,
            "at": {"x": i, "tags": [None, "a"]}, "path": [[i]]} for i in range(4)]
    uniform = schemas.infer_columns(run)
    assert uniform is not None
    assert uniform[0] is schemas.infer(run[0])
    assert uniform[1][:5] == [(0, 1, 2, 3), (20.5,) * 4, ("é",) * 4, (True,) * 4, (None,) * 4]
    assert uniform[1][5:] == [tuple(row["at"] for row in run), tuple(row["path"] for row in run)]


@pytest.mark.parametrize("run", [
    [{"id": 1, "temp": 1.5}, {"id": 2, "temp": 2}],  # an int among floats
    [{"id": 1, "temp": 1.5}, {"temp": 2.5, "id": 2}],  # keys in another order
    [{"id": 1}, {"id": None}],  # a null among ints
    [{"id": 1}, {"id": True}],  # a bool among ints
    [{"id": 1}, {"id": 1, "temp": 1.5}],  # another field
    [{"id": [1]}, {"id": [1.5]}], [{"id": {"x": 1}}, {"id": {"y": 1}}],  # nested shapes
    [{"id": [1]}, {"id": {"x": 1}}], [{"id": bytearray(b"x")}],
    [{"id": 1}, ["id"]], [{"i": 1, "d": 2}, "id"], [{}],  # not maps of one shape
])
def test_runs_of_more_than_one_shape_are_inferred_value_by_value(
        run: list[Any]) -> None:
    assert schemas.infer_columns(run) is None


@pytest.mark.parametrize("make_format", [lambda: ParquetFormat("none"),
                                         lambda: AvroFormat("null")], ids=["parquet", "avro"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.tuples(st.integers(1, 900), st.sampled_from(["one", "run", "columns"])),
                     max_size=8))
def test_a_file_takes_records_one_by_one_in_runs_and_as_columns_alike(
        make_format: Any, cuts: list[tuple[int, str]]) -> None:
    rows = [{"id": i, "temp": i / 7, "name": f"VH-{i % 13}", "ok": i % 3 == 0}
            for i in range(sum(size for size, _ in cuts) or 1)]
    file_format = make_format()
    schema = schemas.infer(rows[0])

    def file(cut: list[tuple[int, str]]) -> tuple[bytes, list[int]]:
        spool = BlockSpool()
        writer = file_format.open(schema, spool, "t+0+0000000000")
        held, start = [], 0
        for size, how in cut:
            run = rows[start:start + size]
            found = file_format.prepare_run(run.copy, None, [None] * size)
            assert found is not None and len(found) == 1
            payloads = found[0][2]
            if how == "one":
                for row in run:
                    writer.append(file_format.prepare(row, None, None)[1])
            elif how == "run":
                writer.append_run([file_format.prepare(row, None, None)[1] for row in run])
            else:
                assert not isinstance(payloads, list)
                writer.append_columns(payloads)
            held.append(writer.pending)
            start += size
        writer.finish()
        return spool.take_rest(), held

    as_runs = [(size, "run" if how == "columns" else how) for size, how in cuts]
    assert file(cuts) == file(as_runs)
    assert file(cuts)[0] == file([(size, "run") for size, _ in cuts])[0]


PRIMITIVES = [Type.INT8, Type.INT16, Type.INT32, Type.INT64, Type.FLOAT32, Type.FLOAT64,
              Type.BOOLEAN, Type.STRING, Type.BYTES]
FIELD_VALUES = (st.none() | st.booleans() | st.text(max_size=3) | st.binary(max_size=3) |
                st.binary(max_size=3).map(bytearray) | st.floats(allow_nan=False) |
                st.integers(-(1 << 64), 1 << 64) | st.integers(-200, 200) |
                st.sampled_from([127, 128, -128, -129, (1 << 31) - 1, 1 << 31, -(1 << 63),
                                 (1 << 63) - 1, 1 << 63]))


@st.composite
def checked_runs(draw: st.DrawFn) -> tuple[Schema, list[dict[str, Any]]]:
    """A struct schema of primitive fields, optional or not, some with defaults, and
    values that mostly fit it."""
    names = draw(st.lists(KEYS, min_size=1, max_size=4, unique=True))
    fields = [(name, Schema(draw(st.sampled_from(PRIMITIVES)), optional=draw(st.booleans())))
              for name in names]
    if draw(st.booleans()):
        name, field = fields[0]
        fields[0] = (name, field.with_(default=draw(st.sampled_from([0, 1, "x", True]))))
    schema = struct(fields, name=draw(st.none() | st.just("kanal.Reading")))
    fitting = {
        Type.INT8: st.integers(-128, 127), Type.INT16: st.integers(-(1 << 15), (1 << 15) - 1),
        Type.INT32: st.integers(-(1 << 31), (1 << 31) - 1),
        Type.INT64: st.integers(-(1 << 63), (1 << 63) - 1),
        Type.FLOAT32: st.floats() | st.integers(), Type.FLOAT64: st.floats() | st.integers(),
        Type.BOOLEAN: st.booleans(), Type.STRING: st.text(max_size=3),
        Type.BYTES: st.binary(max_size=3)}
    run = []
    for _ in range(draw(st.integers(1, 8))):
        value = {name: draw(fitting[field.type] | st.none() if draw(st.integers(0, 9))
                            else FIELD_VALUES) for name, field in fields}
        if not draw(st.integers(0, 9)):
            value.pop(names[0])
        run.append(value)
    return schema, run


def fits(run: list[Any], schema: Schema) -> bool:
    try:
        for value in run:
            schemas.check(value, schema)
    except DataError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(case=checked_runs())
def test_runs_checked_by_columns_are_those_checked_value_by_value(
        case: tuple[Schema, list[dict[str, Any]]]) -> None:
    schema, run = case
    assert schemas.fits_by_columns(run, schema) == fits(run, schema)


def test_what_columns_do_not_check_is_checked_value_by_value() -> None:
    reading = struct([("at", Schema(Type.INT64))])
    assert schemas.fits_by_columns([{"at": 1}], reading)
    for schema, run in [
            (struct([("at", Schema(Type.INT32, name=DATE))]), [{"at": 1}]),  # logical
            (struct([("where", reading)]), [{"where": {"at": 1}}]),  # nested
            (Schema(Type.INT64), [1]),  # not a struct
            (reading, [{"at": 1}, MappingProxyType({"at": 1})])]:  # not only dicts
        assert not schemas.fits_by_columns(run, schema)
