import base64
import datetime as dt
import decimal
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kanal_worker.api import DataError
from kanal_worker.api.schema import DECIMAL, INT32, STRING, TIMESTAMP, Schema, Type, struct
from kanal_worker.converters.json import ENVELOPE_ERROR, JsonConverter, schema_from_json
from kanal_worker.converters.simple import (
    ByteArrayConverter,
    SimpleHeaderConverter,
    StringConverter,
)


def test_json_schemaless_reads_plain_json_and_marks_it_reusable() -> None:
    converter = JsonConverter({"schemas.enable": "false"}, is_key=False)
    result = converter.to_connect("t", b'{"a": 1, "b": [true, null]}')
    assert result.schema is None
    assert result.value == {"a": 1, "b": [True, None]}
    assert result.plain_json


def test_json_envelope_is_required_by_default_with_apaches_message() -> None:
    converter = JsonConverter({}, is_key=False)
    with pytest.raises(DataError) as info:
        converter.to_connect("t", b'{"a": 1}')
    assert str(info.value) == ENVELOPE_ERROR
    assert "schemas.enable=false" in str(info.value)


def test_json_envelope_round_trip_with_struct() -> None:
    converter = JsonConverter({"schemas.enable": "true"}, is_key=False)
    schema = struct([("id", INT32), ("name", STRING.with_(optional=True))], name="Thing")
    data = converter.from_connect("t", schema, {"id": 7, "name": None})
    assert data is not None
    document = orjson.loads(data)
    assert document == {
        "schema": {"type": "struct", "fields": [
            {"type": "int32", "optional": False, "field": "id"},
            {"type": "string", "optional": True, "field": "name"}],
            "optional": False, "name": "Thing"},
        "payload": {"id": 7, "name": None}}
    back = converter.to_connect("t", data)
    assert back.value == {"id": 7, "name": None}
    assert back.schema is not None and back.schema.name == "Thing"


APACHE_DECIMALS = json.loads(
    (Path(__file__).parents[1] / "golden" / "converters" / "json-converter-decimals.json")
    .read_text())
"""What Apache's JsonConverter writes for Decimal values under each decimal.format,
recorded by dev/golden/record_json_converter.py."""


@pytest.mark.parametrize("case", APACHE_DECIMALS, ids=[c["value"] for c in APACHE_DECIMALS])
def test_json_decimals_are_written_as_apache_writes_them_in_both_formats(
        case: dict[str, Any]) -> None:
    schema = Schema(Type.BYTES, name=DECIMAL, parameters={"scale": str(case["scale"])})
    value = decimal.Decimal(case["value"])
    written = {fmt: JsonConverter({"schemas.enable": "false", "decimal.format": fmt}, False)
               .from_connect("t", schema, value) for fmt in ("BASE64", "NUMERIC")}
    assert written == {"BASE64": case["BASE64"].encode(), "NUMERIC": case["NUMERIC"].encode()}
    envelope = JsonConverter({"decimal.format": "NUMERIC"}, False)
    data = envelope.from_connect("t", schema, value)
    assert data is not None and data.endswith(b'"payload":' + case["NUMERIC"].encode() + b"}")
    assert envelope.to_connect("t", data).value == value


def test_json_schemaless_maps_with_other_keys_become_pairs_as_in_apache() -> None:
    converter = JsonConverter({"schemas.enable": "false"}, False)
    assert converter.from_connect("t", None, {1: "a"}) == b'[[1,"a"]]'
    assert converter.from_connect("t", None, {"k": [1, b"\x01"]}) == b'{"k":[1,"AQ=="]}'
    with pytest.raises(DataError, match="Decimal does not have a corresponding schema type"):
        converter.from_connect("t", None, [decimal.Decimal("1.5")])


def test_json_logical_types_match_apache_encoding() -> None:
    converter = JsonConverter({"schemas.enable": "false"}, is_key=False)
    decimal_schema = Schema(Type.BYTES, name=DECIMAL, parameters={"scale": "2"})
    encoded = converter.from_connect("t", decimal_schema, decimal.Decimal("12.34"))
    assert encoded == orjson.dumps(base64.b64encode((1234).to_bytes(2, "big")).decode())
    ts_schema = Schema(Type.INT64, name=TIMESTAMP)
    moment = dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
    assert converter.from_connect("t", ts_schema, moment) == b"1704164645678"


def test_json_malformed_bytes_raise_data_error() -> None:
    with pytest.raises(DataError, match="serialization error"):
        JsonConverter({"schemas.enable": "false"}, False).to_connect("t", b"{nope")


def test_json_schema_document_types() -> None:
    schema = schema_from_json({"type": "map", "keys": {"type": "string"},
                               "values": {"type": "array", "items": {"type": "int64"}},
                               "optional": True})
    assert schema.type == Type.MAP and schema.optional
    assert schema.value_schema is not None and schema.value_schema.type == Type.ARRAY
    with pytest.raises(DataError, match="Unknown schema type"):
        schema_from_json({"type": "decimal128"})


def test_string_and_bytes_converters() -> None:
    strings = StringConverter({}, False)
    assert strings.to_connect("t", "héllo".encode()).value == "héllo"
    assert strings.from_connect("t", None, "héllo") == "héllo".encode()
    assert strings.to_connect("t", None).value is None
    raw = ByteArrayConverter({}, False)
    assert raw.to_connect("t", b"\x00\x01").value == b"\x00\x01"
    with pytest.raises(DataError, match="not compatible"):
        raw.from_connect("t", None, "text")


@settings(max_examples=200)
@given(values=st.lists(st.one_of(st.text(), st.none(), st.binary(),
                                 st.integers(-2**63, 2**63 - 1),
                                 st.dictionaries(st.text(max_size=3), st.integers(0, 9))),
                       max_size=8),
       encoding=st.sampled_from(["UTF8", "ISO-8859-1", "UTF-16"]))
def test_string_converter_batches_convert_as_each_value_does(values: list[Any],
                                                             encoding: str) -> None:
    strings = StringConverter({"converter.encoding": encoding}, False)
    try:
        expected = [strings.from_connect("t", STRING, value) for value in values]
    except UnicodeEncodeError:  # text outside ISO-8859-1
        with pytest.raises(UnicodeEncodeError):
            strings.from_connect_batch("t", STRING, values)
        return
    assert strings.from_connect_batch("t", STRING, values) == expected


def test_simple_header_converter_infers_types() -> None:
    headers = SimpleHeaderConverter({})
    assert headers.to_connect_header("t", "n", b"42").value == 42
    assert headers.to_connect_header("t", "b", b"true").value is True
    assert headers.to_connect_header("t", "s", b"plain text").value == "plain text"
    assert headers.from_connect_header("t", "n", None, 42) == b"42"


ENVELOPE_SCHEMAS = [
    b'{"type": "struct", "optional": false, "fields": [{"field": "x", "type": "int64",'
    b' "optional": true}, {"field": "y", "type": "double", "optional": true},'
    b' {"field": "s", "type": "string", "optional": true}]}',
    b'{"type":"int64","optional":true}',
    b'{"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "optional": true,'
    b' "parameters": {"scale": "2"}}',
    b'null', b'{"optional": true}', b'[1]', b'{"type": "string", "optional": true, NaN}',
]
PAYLOADS = [b'{"x": 1, "y": 2.5, "s": "a"}', b'{"x": 1, "x": 2}', b'{"x": %d}' % 2**70,
            b'{"y": 1e400}', b'{"y": NaN}', b'5', b'12345678901234567890123', b'null',
            b'"AQI="', b'"text"', b'{"s": "\\ud800"}', b'[1, 2', b'{"x": 1.5}']


def converted_or_error(converter: JsonConverter, data: bytes) -> Any:
    try:
        converted = converter.to_connect("t", data)
    except Exception as exc:  # the same failure either way, whatever it is
        return (type(exc), str(exc))
    return (converted.schema, converted.value)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ENVELOPE_SCHEMAS), st.sampled_from(PAYLOADS),
                          st.sampled_from([b"", b' "payload": 0,', b' "extra": 1,'])),
                min_size=1, max_size=6))
def test_envelopes_read_by_schema_text_equal_whole_envelope_reads(
        items: list[tuple[bytes, bytes, bytes]]) -> None:
    """Envelopes whose schema is looked up by its text convert exactly as those read
    whole: duplicate keys, numbers beyond a double, NaN, decimals and errors included."""
    by_text = JsonConverter({"schemas.enable": "true"}, is_key=False)
    whole = JsonConverter({"schemas.enable": "true"}, is_key=False)
    whole._envelope_by_schema_text = lambda data: None  # type: ignore[method-assign]
    for schema, payload, extra in items:
        data = b'{"schema": %b,%b "payload": %b}' % (schema, extra, payload)
        assert converted_or_error(by_text, data) == converted_or_error(whole, data)
