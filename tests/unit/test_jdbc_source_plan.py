"""The JDBC source's decisions that need no database: offsets, SQL of each mode, tables
per task, SQL → Connect types."""

from __future__ import annotations

import datetime as dt
import decimal
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy.types as sqltypes
from sqlalchemy.dialects import mysql, postgresql

from kanal_worker.api.schema import DECIMAL, FLOAT64, INT16, INT64, STRING, TIMESTAMP, Type
from kanal_worker.connectors.jdbc.source import JdbcSourceConnector
from kanal_worker.connectors.jdbc.source_plan import (
    Criteria,
    Offset,
    TableId,
    missing_entries,
    owns,
    select_tables,
    split_evenly,
)
from kanal_worker.connectors.jdbc.types import connect_column

UTC = ZoneInfo("UTC")


def test_offset_is_confluents_map_and_reads_back_to_the_microsecond() -> None:
    moment = dt.datetime(2026, 12, 6, 8, 30, 15, 123456, tzinfo=dt.UTC)
    offset = Offset(moment, 42)
    stored = offset.to_map()
    millis = int(moment.timestamp()) * 1000 + 123
    # Java's Timestamp: milliseconds, and the second's fraction in nanoseconds
    assert stored == {"incrementing": 42, "timestamp": millis, "timestamp_nanos": 123456000}
    assert Offset.from_map(stored) == offset
    assert Offset.from_map({"incrementing": 7}).to_map() == {"incrementing": 7}
    assert Offset.from_map({"timestamp": millis}).timestamp == moment.replace(microsecond=123000)
    assert Offset.from_map(None) == Offset()


def test_partition_names_the_table_as_confluent_does() -> None:
    assert TableId(None, "public", "vehicles").partition() == {
        "protocol": "1", "table": "public.vehicles"}
    assert TableId("fleet", None, "vehicles").partition() == {
        "protocol": "1", "table": "fleet.vehicles"}
    assert TableId(None, "public", "vehicles").legacy_partition() == {"table": "vehicles"}


def quote(name: str) -> str:
    return f'"{name}"'


def test_each_mode_builds_confluents_where_clause() -> None:
    assert Criteria("bulk", None, ()).clause(quote) == ""
    assert Criteria("incrementing", "id", ()).clause(quote) == \
        ' WHERE "id" > :last_id ORDER BY "id" ASC'
    assert Criteria("timestamp", None, ("updated",)).clause(quote) == \
        ' WHERE "updated" > :begin AND "updated" < :end ORDER BY "updated" ASC'
    both = Criteria("timestamp+incrementing", "id", ("modified", "created")).clause(quote)
    ts = 'COALESCE("modified","created")'
    assert both == (f' WHERE {ts} < :end AND (({ts} = :begin AND "id" > :last_id) '
                    f'OR {ts} > :begin) ORDER BY {ts},"id" ASC')


def test_parameters_start_before_everything_and_continue_after_the_offset() -> None:
    begin = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    criteria = Criteria("timestamp+incrementing", "id", ("ts",))
    assert criteria.parameters(Offset(), begin, end) == {"begin": begin, "end": end,
                                                         "last_id": -1}
    seen = dt.datetime(2025, 5, 5, tzinfo=dt.UTC)
    assert criteria.parameters(Offset(seen, 9), begin, end) == {"begin": seen, "end": end,
                                                                "last_id": 9}
    assert Criteria("incrementing", "id", ()).parameters(Offset(None, 3), begin, end) == \
        {"last_id": 3}
    assert Criteria("incrementing", "id", ()).next_offset(Offset(None, 3), seen, 4) == \
        Offset(None, 4)


def test_whitelist_and_blacklist_match_plain_and_qualified_names() -> None:
    tables = [TableId(None, "public", "vehicles"), TableId(None, "audit", "vehicles"),
              TableId(None, "public", "drivers")]
    assert select_tables(tables, ["drivers"], []) == [TableId(None, "public", "drivers")]
    assert select_tables(tables, ["audit.vehicles"], []) == [TableId(None, "audit", "vehicles")]
    assert select_tables(tables, [], ["vehicles"]) == [TableId(None, "public", "drivers")]
    assert missing_entries(tables, ["drivers", "trips", "x.drivers"]) == ["trips", "x.drivers"]


def test_whitelisted_tables_are_spread_evenly_over_the_tasks() -> None:
    connector = JdbcSourceConnector()
    config = {"table.whitelist": "a,b,c,d,e", "mode": "bulk", "topic.prefix": "db-"}
    configs = connector.task_configs(config, 2)
    assert [c["tables"] for c in configs] == ["a,b,c", "d,e"]
    assert [c["tables"] for c in connector.task_configs(config, 9)] == list("abcde")
    assert split_evenly([], 3) == []


def test_discovered_tables_are_owned_by_exactly_one_task() -> None:
    connector = JdbcSourceConnector()
    configs = connector.task_configs({"mode": "bulk", "topic.prefix": "db-"}, 3)
    assert [c["table.share"] for c in configs] == ["0/3", "1/3", "2/3"]
    tables = [TableId(None, "public", f"t{i}") for i in range(60)]
    owners = [[k for k in range(3) if owns(t, (k, 3))] for t in tables]
    assert all(len(o) == 1 for o in owners)
    assert {o[0] for o in owners} == {0, 1, 2}


def test_query_mode_is_one_task() -> None:
    configs = JdbcSourceConnector().task_configs(
        {"query": "SELECT 1", "mode": "bulk", "topic.prefix": "q"}, 4)
    assert len(configs) == 1


@pytest.mark.parametrize(("column", "mapping", "expected"), [
    (sqltypes.Numeric(10, 2), "none", "decimal:2"),
    (sqltypes.Numeric(10, 0), "precision_only", INT64),
    (sqltypes.Numeric(4, 0), "best_fit", INT16),
    (sqltypes.Numeric(10, 2), "best_fit", FLOAT64),
    (sqltypes.Numeric(30, 2), "best_fit", "decimal:2"),
    (sqltypes.Numeric(30, 2), "best_fit_eager_double", FLOAT64),
    (postgresql.NUMERIC(), "none", STRING),
])
def test_numeric_mapping(column: sqltypes.TypeEngine[object], mapping: str,
                         expected: object) -> None:
    schema, _ = connect_column(column, False, mapping, UTC)  # type: ignore[arg-type]
    if isinstance(expected, str):
        assert schema.name == DECIMAL and schema.parameters == {"scale": expected[-1]}
    else:
        assert schema == expected


def test_values_become_connect_values() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    schema, convert = connect_column(postgresql.TIMESTAMP(), True, "none", berlin)
    assert schema.name == TIMESTAMP and schema.optional
    assert convert is not None
    assert convert(dt.datetime(2026, 7, 1, 12, 0)) == dt.datetime(2026, 7, 1, 10, 0,
                                                                  tzinfo=dt.UTC)
    schema, convert = connect_column(sqltypes.Numeric(6, 2), False, "none", UTC)
    assert convert is not None and convert(decimal.Decimal("1.5")) == decimal.Decimal("1.50")
    schema, convert = connect_column(mysql.TINYINT(), False, "none", UTC)
    assert schema.type == Type.INT8
    schema, convert = connect_column(postgresql.JSONB(), False, "none", UTC)
    assert schema == STRING and convert is not None and convert({"a": 1}) == '{"a":1}'
    schema, convert = connect_column(mysql.TIME(), False, "none", UTC)
    assert convert is not None and convert(dt.timedelta(hours=3, seconds=5)) == dt.time(3, 0, 5)
