"""Records to rows in the JDBC sink: keys, whitelists, logical types, refusals."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from kanal_worker.api import DataError, Schema, SinkRecord, Type
from kanal_worker.api.schema import STRING, TIMESTAMP, optional, struct
from kanal_worker.connectors.jdbc.rows import RowBuilder
from kanal_worker.connectors.jdbc.sink_settings import JdbcSinkSettings, sink_problems
from kanal_worker.connectors.jdbc.types import ValueKind

AT = Schema(Type.INT64, optional=True, name=TIMESTAMP)
VALUE = struct([("id", STRING), ("at", AT), ("note", optional(STRING))])


def builder(**config: str) -> RowBuilder:
    settings = JdbcSinkSettings.parse({"connection.url": "jdbc:sqlite::memory:", **config})
    return RowBuilder(settings, "postgresql")


def record(value: Any, key: Any = None, schema: Schema | None = VALUE,
           key_schema: Schema | None = None) -> SinkRecord:
    return SinkRecord(topic="fleet", kafka_partition=2, kafka_offset=7, key=key, value=value,
                      key_schema=key_schema, value_schema=schema)


def test_kafka_coordinates_are_the_key_and_the_table_follows_the_topic() -> None:
    op = builder(**{"pk.mode": "kafka", "table.name.format": "kafka_${topic}"}).build(
        record({"id": "v1", "at": 0, "note": None}))
    assert op is not None
    assert op.table == "kafka_fleet"
    assert op.key == ("fleet", 2, 7)
    assert list(op.row) == ["__connect_topic", "__connect_partition", "__connect_offset", "id",
                            "at", "note"]


def test_timestamps_are_written_in_db_timezone() -> None:
    op = builder(**{"db.timezone": "Europe/Berlin"}).build(
        record({"id": "v1", "at": 1_767_323_045_678, "note": None}))
    assert op is not None
    assert op.row["at"] == dt.datetime(2026, 1, 2, 4, 4, 5, 678000)  # UTC+1 in January


def test_a_primitive_key_needs_one_pk_field_and_tombstones_delete_by_it() -> None:
    with pytest.raises(DataError, match=r"pk\.fields must name exactly one column"):
        builder(**{"pk.mode": "record_key"}).build(record({"id": "v1"}, key="v1",
                                                          key_schema=STRING))
    deleting = builder(**{"pk.mode": "record_key", "pk.fields": "id",
                          "delete.enabled": "true"})
    op = deleting.build(record(None, key="v1", schema=None, key_schema=STRING))
    assert op is not None and op.delete and op.row == {"id": "v1"}
    assert builder().build(record(None, key="v1", schema=None)) is None  # skipped


def test_a_missing_key_field_names_the_record_the_field_and_the_table() -> None:
    with pytest.raises(DataError) as caught:
        builder(**{"pk.mode": "record_value", "pk.fields": "vehicle_id"}).build(
            record({"speed": 3}, schema=None))
    assert str(caught.value) == ("record fleet-2 offset 7: primary key field 'vehicle_id' "
                                 "(pk.fields) is missing or null in the record value for "
                                 "table fleet.")


def test_schemaless_values_carry_their_kinds_and_the_whitelist_applies() -> None:
    op = builder(**{"fields.whitelist": "speed,tags,gone"}).build(
        record({"speed": 3.5, "tags": ["a"], "gone": None, "other": 1}, schema=None))
    assert op is not None
    assert {c.name: c.kind for c in op.columns} == {"speed": ValueKind.DOUBLE,
                                                    "tags": ValueKind.JSON, "gone": None}
    with pytest.raises(DataError, match="needs a struct or a JSON object"):
        builder().build(record("just text", schema=STRING))


def test_key_combinations_are_checked_together() -> None:
    def problems(**config: str) -> dict[str, list[str]]:
        return sink_problems(JdbcSinkSettings.parse({"connection.url": "jdbc:sqlite:x.db",
                                                     **config}))
    assert problems() == {}
    assert list(problems(**{"delete.enabled": "true"})) == ["delete.enabled"]
    assert list(problems(**{"insert.mode": "update"})) == ["pk.mode"]
    assert list(problems(**{"pk.mode": "kafka", "pk.fields": "a,b"})) == ["pk.fields"]
