"""Azure Blob sink: Joda patterns, time zones, partitioners and timestamp extractors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kanal_worker.api import ConfigError, DataError, SinkRecord
from kanal_worker.api.schema import INT32, INT64, STRING, TIMESTAMP, Schema, Type, struct
from kanal_worker.connectors.azure_blob.partitioners import (
    TimeBasedPartitioner,
    build_extractor,
    build_partitioner,
    partitioner_problems,
)
from kanal_worker.connectors.azure_blob.settings import AzureBlobSinkSettings
from kanal_worker.connectors.azure_blob.timeformat import (
    JodaPattern,
    PatternError,
    bucket_start,
    parse_zone,
)

MOMENT = dt.datetime(2015, 12, 7, 15, 4, 5, 678000, tzinfo=dt.UTC)  # a Monday
BASE = {"format.class": "JsonFormat", "flush.size": "10", "azblob.account.name": "acct",
        "azblob.account.key": "a2V5"}


def parse(**config: str) -> AzureBlobSinkSettings:
    result: AzureBlobSinkSettings = AzureBlobSinkSettings.parse({**BASE, **config})
    return result


def record(value: Any, schema: Schema | None = None, partition: int = 0,
           timestamp: int | None = None) -> SinkRecord:
    return SinkRecord(topic="t", kafka_partition=partition, kafka_offset=0, value=value,
                      value_schema=schema, timestamp=timestamp)


def millis(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.mark.parametrize(("pattern", "expected"), [
    ("'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH", "year=2015/month=12/day=07/hour=15"),
    ("YYYY-MM-dd'T'HH:mm:ss.SSS", "2015-12-07T15:04:05.678"),
    ("yyyy/M/d/H", "2015/12/7/15"),
    ("yy", "15"),
    ("MMM MMMM EEE EEEE", "Dec December Mon Monday"),
    ("D w e a hh kk KK", "341 50 1 PM 03 15 03"),
    ("S SSSS", "6 6780"),
    ("'it''s' ''", "it's '"),
    ("'dt'=YYYYMMdd", "dt=20151207"),
    ("Z ZZ ZZZ z", "+0000 +00:00 UTC UTC"),
    ("G C", "AD 20"),
])
def test_joda_patterns_print_as_joda(pattern: str, expected: str) -> None:
    assert JodaPattern(pattern).format(MOMENT) == expected


def test_joda_pattern_in_a_zone_prints_local_time_and_offset() -> None:
    paris = parse_zone("Europe/Paris")
    moment = MOMENT.astimezone(paris)
    assert JodaPattern("HH:mm Z ZZZ z").format(moment) == "16:04 +0100 Europe/Paris CET"


@pytest.mark.parametrize(("pattern", "message"), [
    ("YYYY/qq", "Illegal pattern component: qq"),
    ("'hour'=HH/B", "Illegal pattern component: B"),
    ("dt=YYYY", "Illegal pattern component: t"),
    ("zzzz", "long time zone names"),
])
def test_bad_patterns_are_refused_with_jodas_message(pattern: str, message: str) -> None:
    with pytest.raises(PatternError, match=message):
        JodaPattern(pattern)


def test_text_fields_are_flagged_for_the_locale_check() -> None:
    assert JodaPattern("'m'=MMM").uses_text
    assert not JodaPattern("'m'=MM/'d'=dd").uses_text


@pytest.mark.parametrize(("zone_id", "offset_hours"), [
    ("UTC", 0.0), ("+05:30", 5.5), ("-0800", -8.0), ("+02", 2.0), ("Asia/Tokyo", 9.0)])
def test_zones_as_joda_names_them(zone_id: str, offset_hours: float) -> None:
    offset = parse_zone(zone_id).utcoffset(dt.datetime(2024, 1, 15))
    assert offset == dt.timedelta(hours=offset_hours)


def test_unknown_zone_has_jodas_message() -> None:
    with pytest.raises(ValueError, match="The datetime zone id 'Mars/Olympus' is not recognised"):
        parse_zone("Mars/Olympus")


def test_buckets_align_in_local_time() -> None:
    hour = 3_600_000
    at = millis(dt.datetime(2024, 5, 1, 13, 47, tzinfo=dt.UTC))
    assert bucket_start(hour, at, dt.UTC) == millis(dt.datetime(2024, 5, 1, 13, tzinfo=dt.UTC))
    kolkata = parse_zone("Asia/Kolkata")  # +05:30: local hours start at UTC half hours
    assert bucket_start(hour, at, kolkata) == millis(
        dt.datetime(2024, 5, 1, 13, 30, tzinfo=dt.UTC))


def test_daily_buckets_follow_daylight_saving_time() -> None:
    paris = parse_zone("Europe/Paris")
    day = 24 * 3_600_000
    # 2024-03-31 is 23 hours long in Paris; its bucket still starts at local midnight
    at = millis(dt.datetime(2024, 3, 31, 20, tzinfo=paris))
    assert bucket_start(day, at, paris) == millis(dt.datetime(2024, 3, 31, tzinfo=paris))
    summer = millis(dt.datetime(2024, 7, 1, 0, 30, tzinfo=paris))
    assert bucket_start(day, summer, paris) == millis(dt.datetime(2024, 7, 1, tzinfo=paris))


def test_hourly_partitioner_paths() -> None:
    partitioner = build_partitioner(parse(**{
        "partitioner.class": "io.confluent.connect.storage.partitioner.HourlyPartitioner",
        "locale": "en-US", "timezone": "America/New_York"}))
    at = millis(dt.datetime(2024, 1, 2, 5, 30, tzinfo=dt.UTC))
    encoded, bucket = partitioner.encode(record({}), at)
    assert encoded == "year=2024/month=01/day=02/hour=00"
    assert bucket == millis(dt.datetime(2024, 1, 2, 5, tzinfo=dt.UTC))


def test_daily_and_time_based_partitioner_paths() -> None:
    at = millis(dt.datetime(2024, 1, 2, 5, 30, tzinfo=dt.UTC))
    daily = build_partitioner(parse(**{"partitioner.class": "DailyPartitioner",
                                          "locale": "en", "timezone": "UTC"}))
    assert daily.encode(record({}), at)[0] == "year=2024/month=01/day=02"
    ten_minutes = build_partitioner(parse(**{
        "partitioner.class": "TimeBasedPartitioner", "partition.duration.ms": "600000",
        "path.format": "'dt'=YYYY-MM-dd/'minute'=HHmm/", "locale": "en-US", "timezone": "UTC"}))
    assert ten_minutes.encode(record({}), at)[0] == "dt=2024-01-02/minute=0530"


@pytest.mark.parametrize(("partitioner", "expected"), [
    ("DailyPartitioner", "year=2024_month=01_day=02"),
    ("HourlyPartitioner", "year=2024_month=01_day=02_hour=05"),
])
def test_hourly_and_daily_ignore_path_format_and_join_with_the_directory_delimiter(
        partitioner: str, expected: str) -> None:
    """As storage-common: the fixed fields joined by directory.delim; a path.format (even
    one Joda refuses) and partition.duration.ms given with them are ignored."""
    parsed = parse(**{"partitioner.class": partitioner, "locale": "en", "timezone": "UTC",
                      "directory.delim": "_", "path.format": "YYYY/qq",
                      "partition.duration.ms": "1000"})
    assert partitioner_problems(parsed) == {}
    at = millis(dt.datetime(2024, 1, 2, 5, 30, tzinfo=dt.UTC))
    assert build_partitioner(parsed).encode(record({}), at)[0] == expected


def test_a_bad_path_format_is_refused_only_for_the_time_based_partitioner() -> None:
    time_based = {"partitioner.class": "TimeBasedPartitioner", "locale": "en",
                  "timezone": "UTC", "partition.duration.ms": "1000", "path.format": "YYYY/qq"}
    assert partitioner_problems(parse(**time_based)) == {
        "path.format": ["Illegal pattern component: qq"]}
    assert partitioner_problems(parse(**{**time_based,
                                         "partitioner.class": "DefaultPartitioner"})) == {}


def test_default_and_field_partitioners() -> None:
    assert build_partitioner(parse()).encode(record({}, partition=7), None) == \
        ("partition=7", None)
    schema = struct([("region", STRING), ("id", INT32), ("ok", Schema(Type.BOOLEAN))])
    fields = build_partitioner(parse(**{"partitioner.class": "FieldPartitioner",
                                           "partition.field.name": "region, id,ok"}))
    assert fields.encode(record({"region": "eu", "id": 4, "ok": True}, schema), None)[0] == \
        "region=eu/id=4/ok=true"
    assert fields.encode(record({"region": "us", "id": 9, "ok": False}), None)[0] == \
        "region=us/id=9/ok=false"


def test_field_partitioner_refuses_what_confluents_refuses() -> None:
    fields = build_partitioner(parse(**{"partitioner.class": "FieldPartitioner",
                                           "partition.field.name": "speed"}))
    with pytest.raises(DataError, match="not supported as a partition key"):
        fields.encode(record({"speed": 1.5}), None)
    with pytest.raises(DataError, match="struct or map value"):
        fields.encode(record("text"), None)


def test_timestamp_extractors() -> None:
    assert build_extractor(parse(**{"timestamp.extractor": "Record"}))(
        record({}, timestamp=42), 0) == 42
    with pytest.raises(DataError, match="no timestamp"):
        build_extractor(parse(**{"timestamp.extractor": "Record"}))(record({}), 0)
    assert build_extractor(parse())(record({}), 99) == 99  # Wallclock
    field = build_extractor(parse(**{"timestamp.extractor": "RecordField",
                                        "timestamp.field": "meta.at"}))
    assert field(record({"meta": {"at": 1234}}), 0) == 1234
    assert field(record({"meta": {"at": "2024-01-02T03:04:05Z"}}), 0) == millis(
        dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    timestamp_schema = struct([("meta", struct([("at", Schema(Type.INT64, name=TIMESTAMP))]))])
    assert field(record({"meta": {"at": MOMENT}}, timestamp_schema), 0) == millis(MOMENT)
    with pytest.raises(DataError, match="unsupported type"):
        field(record({"meta": {"at": [1]}}), 0)
    with pytest.raises(DataError, match="ISO-8601"):
        field(record({"meta": {"at": "yesterday"}}), 0)
    int_schema = struct([("meta", struct([("at", INT64)]))])
    assert field(record({"meta": {"at": 5}}, int_schema), 0) == 5


def test_confluent_extractor_class_names_are_accepted() -> None:
    parsed = parse(**{"timestamp.extractor": "io.confluent.connect.storage.partitioner."
                                                 "TimeBasedPartitioner$RecordTimestampExtractor"})
    assert parsed.timestamp_extractor == "Record"


@pytest.mark.parametrize(("config", "key", "message"), [
    ({"partitioner.class": "HourlyPartitioner", "timezone": "UTC"}, "locale",
     "Locale cannot be empty."),
    ({"partitioner.class": "HourlyPartitioner", "locale": "en"}, "timezone",
     "Timezone cannot be empty."),
    ({"partitioner.class": "TimeBasedPartitioner", "locale": "en", "timezone": "UTC",
      "path.format": "YYYY"}, "partition.duration.ms",
     "Partition duration needs to be a positive."),
    ({"partitioner.class": "TimeBasedPartitioner", "locale": "en", "timezone": "UTC",
      "partition.duration.ms": "1000"}, "path.format", "Path format cannot be empty."),
    ({"partitioner.class": "FieldPartitioner"}, "partition.field.name",
     "Partition field name cannot be null or empty when using FieldPartitioner."),
])
def test_partitioner_problems_use_confluents_messages(config: dict[str, str], key: str,
                                                      message: str) -> None:
    parsed = parse(**config)
    assert message in partitioner_problems(parsed)[key]
    with pytest.raises(ConfigError) as raised:
        build_partitioner(parsed)
    assert raised.value.key == key


@settings(max_examples=200, deadline=None)
@given(zone_id=st.sampled_from(["Europe/Paris", "America/New_York", "Australia/Lord_Howe",
                                "Asia/Kolkata", "Pacific/Chatham", "Africa/Casablanca",
                                "UTC", "-03:30"]),
       duration=st.sampled_from([15 * 60_000, 3_600_000, 2 * 3_600_000, 24 * 3_600_000,
                                 7 * 24 * 3_600_000]),
       start=st.sampled_from([millis(dt.datetime(2024, 3, 31, tzinfo=dt.UTC)),
                              millis(dt.datetime(2024, 10, 27, tzinfo=dt.UTC)),
                              millis(dt.datetime(2024, 3, 10, tzinfo=dt.UTC)),
                              millis(dt.datetime(2024, 4, 7, tzinfo=dt.UTC)),
                              millis(dt.datetime(1965, 6, 1, tzinfo=dt.UTC))]),
       steps=st.lists(st.integers(-3 * 3_600_000, 3 * 3_600_000), min_size=1, max_size=60))
def test_cached_buckets_agree_with_the_computation(zone_id: str, duration: int, start: int,
                                                   steps: list[int]) -> None:
    """Around DST changes the partitioner's bucket cache gives what bucket_start gives."""
    zone = parse_zone(zone_id)
    partitioner = TimeBasedPartitioner(duration, "YYYY-MM-dd-HH-mm", zone)
    at = start
    for step in steps:
        at += step
        assert partitioner.encode(record({}), at)[1] == bucket_start(duration, at, zone)
