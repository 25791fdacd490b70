"""TimestampConverter and the SimpleDateFormat patterns it shares with TimestampRouter."""

from __future__ import annotations

import datetime as dt

import pytest

from kanal_worker.api.errors import ConfigError, DataError
from kanal_worker.api.records import SinkRecord
from kanal_worker.api.schema import DATE, TIME, TIMESTAMP, Schema, Type, struct
from kanal_worker.transforms._dateformat import SimpleDateFormat
from kanal_worker.transforms.timestamp import TimestampConverterKey, TimestampConverterValue

UTC = dt.UTC
MOMENT = dt.datetime(2024, 5, 1, 10, 15, 30, 123000, tzinfo=UTC)
TS = Schema(Type.INT64, name=TIMESTAMP, version=1)


def sink(value: object, schema: Schema | None = None) -> SinkRecord:
    return SinkRecord(topic="t", kafka_offset=0, key=value, key_schema=schema, value=value,
                      value_schema=schema)


@pytest.mark.parametrize(("target", "precision", "expected", "schema"), [
    ("unix", "milliseconds", 1714558530123, Schema(Type.INT64)),
    ("unix", "seconds", 1714558530, Schema(Type.INT64)),
    ("unix", "microseconds", 1714558530123000, Schema(Type.INT64)),
    ("unix", "nanoseconds", 1714558530123000000, Schema(Type.INT64)),
    ("Date", "milliseconds", dt.date(2024, 5, 1), Schema(Type.INT32, name=DATE, version=1)),
    ("Time", "milliseconds", dt.time(10, 15, 30, 123000),
     Schema(Type.INT32, name=TIME, version=1)),
    ("Timestamp", "milliseconds", MOMENT, TS),
])
def test_whole_value_from_timestamp(target: str, precision: str, expected: object,
                                    schema: Schema) -> None:
    convert = TimestampConverterValue({"target.type": target, "unix.precision": precision})
    out = convert.apply(sink(MOMENT, TS))
    assert (out.value, out.value_schema) == (expected, schema)


def test_unix_input_truncates_toward_zero_like_java() -> None:
    convert = TimestampConverterValue({"target.type": "Timestamp",
                                       "unix.precision": "microseconds"})
    out = convert.apply(sink(-1500, Schema(Type.INT64)))
    assert out.value == dt.datetime(1970, 1, 1, tzinfo=UTC) - dt.timedelta(milliseconds=1)


def test_field_of_struct_and_of_schemaless_map() -> None:
    schema = struct([("at", Schema(Type.STRING, optional=True)), ("n", Schema(Type.INT32))])
    convert = TimestampConverterValue({"field": "at", "target.type": "unix",
                                       "format": "yyyy-MM-dd HH:mm:ss.SSS"})
    out = convert.apply(sink({"at": "2024-05-01 10:15:30.123", "n": 1}, schema))
    assert out.value == {"at": 1714558530123, "n": 1}
    assert out.value_schema == struct([("at", Schema(Type.INT64, optional=True)),
                                       ("n", Schema(Type.INT32))])
    schemaless = TimestampConverterKey({"field": "at", "target.type": "Timestamp"})
    assert schemaless.apply(sink({"at": 0})).key == {"at": dt.datetime(1970, 1, 1, tzinfo=UTC)}


def test_errors() -> None:
    convert = TimestampConverterValue({"target.type": "Date", "format": "yyyy-MM-dd"})
    with pytest.raises(DataError, match=r"Could not parse timestamp: value \(garbage\) does not "
                                        r"match pattern \(yyyy-MM-dd\)"):
        convert.apply(sink("garbage", Schema(Type.STRING)))
    with pytest.raises(DataError, match=r"Schema Schema\{INT32\} does not correspond to a known "
                                        "timestamp type format"):
        convert.apply(sink(1, Schema(Type.INT32)))
    with pytest.raises(DataError, match=r"TimestampConverter does not support class "
                                        r"java\.lang\.Boolean objects as timestamps"):
        convert.apply(sink(True))


@pytest.mark.parametrize(("config", "key", "message"), [
    ({"target.type": "string"}, "format", "TimestampConverter requires format option to be "
     "specified when using string timestamps"),
    ({"target.type": "epoch"}, "target.type",
     "String must be one of: string, unix, Date, Time, Timestamp"),
    ({"target.type": "unix", "unix.precision": "minutes"}, "unix.precision",
     "String must be one of: nanoseconds, microseconds, milliseconds, seconds"),
    ({"target.type": "string", "format": "yyyy-qq"}, "format",
     "TimestampConverter requires a SimpleDateFormat-compatible pattern for string "
     "timestamps: yyyy-qq"),
])
def test_configuration(config: dict[str, str], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        TimestampConverterValue(config)
    assert (raised.value.key, raised.value.message) == (key, message)


@pytest.mark.parametrize(("pattern", "text"), [
    ("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'", "2024-05-01T10:15:30.123Z"),
    ("EEE, d MMM yyyy HH:mm:ss Z", "Wed, 1 May 2024 10:15:30 +0000"),
    ("yyMMddHHmmss", "240501101530"),
    ("h:mm a, EEEE MMMM d", "10:15 AM, Wednesday May 1"),
    ("D 'day' ''yy", "122 day '24"),
])
def test_simple_date_format_output(pattern: str, text: str) -> None:
    assert SimpleDateFormat(pattern).format(MOMENT) == text


def test_simple_date_format_parses_leniently_with_zones() -> None:
    parse = SimpleDateFormat("yyyy-MM-dd HH:mm XXX").parse
    assert parse("2024-05-01 12:15 +02:00") == dt.datetime(2024, 5, 1, 10, 15, tzinfo=UTC)
    assert SimpleDateFormat("yyyy-MM-dd").parse("2024-13-01 trailing") == \
        dt.datetime(2025, 1, 1, tzinfo=UTC)
    assert SimpleDateFormat("yyyyMMdd").parse("20240501") == dt.datetime(2024, 5, 1, tzinfo=UTC)
    with pytest.raises(DataError):
        SimpleDateFormat("yyyy").parse("nope")
