"""pgoutput decoding over messages captured from PostgreSQL 15, and the value mapping."""

from __future__ import annotations

import decimal
import json
from pathlib import Path

import pytest

from kanal_worker.connectors.postgres_cdc.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    Commit,
    DecodeError,
    Delete,
    Insert,
    Relation,
    Truncate,
    Update,
    decode,
    format_lsn,
    parse_lsn,
)
from kanal_worker.connectors.postgres_cdc.values import (
    column_type,
    literal_default,
    unscaled_bytes,
)

CAPTURED = json.loads((Path(__file__).parent / "data" / "pgoutput-captured.json").read_text())
MESSAGES = [decode(bytes.fromhex(m["hex"])) for m in CAPTURED["messages"]]


def changes() -> list[object]:
    return [m for m in MESSAGES if not isinstance(m, Begin | Commit | Relation)]


def test_transactions_are_framed_by_begin_and_commit_with_ordered_lsns() -> None:
    begins = [m for m in MESSAGES if isinstance(m, Begin)]
    commits = [m for m in MESSAGES if isinstance(m, Commit)]
    assert len(begins) == len(commits) == 8
    for begin, commit in zip(begins, commits, strict=True):
        assert begin.final_lsn == commit.commit_lsn < commit.end_lsn
        assert begin.commit_micros == commit.commit_micros > 1_700_000_000_000_000
    assert [b.xid for b in begins] == sorted(b.xid for b in begins)


def test_relations_carry_names_key_flags_types_and_replica_identity() -> None:
    relations = {m.name: m for m in MESSAGES if isinstance(m, Relation)}
    cars, logs = relations["cars"], relations["logs"]
    assert cars.namespace == "public" and cars.replica_identity == "d"
    assert [(c.name, c.is_key, c.type_oid) for c in cars.columns] == [
        ("id", True, 23), ("name", False, 25), ("big", False, 25)]
    assert logs.replica_identity == "f"
    assert all(c.is_key for c in logs.columns)  # FULL: every column identifies the row


def test_rows_old_rows_toast_deletes_and_truncate() -> None:
    insert, rename, rekey, log_insert, log_update, log_delete, car_delete, truncate = changes()
    assert isinstance(insert, Insert)
    assert insert.new[:2] == ("1", "truck") and len(str(insert.new[2])) == 12800
    assert isinstance(rename, Update) and rename.old is None
    assert rename.new[:2] == ("1", "lorry") and rename.new[2] is UNCHANGED_TOAST
    assert isinstance(rekey, Update) and rekey.old_is_key
    assert rekey.old == ("1", None, None) and rekey.new[0] == "2"
    assert isinstance(log_insert, Insert) and log_insert.new == ("1", None)
    assert isinstance(log_update, Update) and not log_update.old_is_key
    assert log_update.old == ("1", None) and log_update.new == ("1", "é")
    assert isinstance(log_delete, Delete) and log_delete.old == ("1", "é")
    assert isinstance(car_delete, Delete) and car_delete.old_is_key
    assert car_delete.old == ("2", None, None)
    assert isinstance(truncate, Truncate) and len(truncate.relation_ids) == 2
    assert not truncate.cascade and not truncate.restart_identity


def test_truncated_and_unknown_messages_are_rejected_with_the_reason() -> None:
    relation = bytes.fromhex(CAPTURED["messages"][1]["hex"])
    with pytest.raises(DecodeError, match="unterminated string"):
        decode(relation[:9])
    begin = bytes.fromhex(CAPTURED["messages"][0]["hex"])
    with pytest.raises(DecodeError, match="ends at byte 12"):
        decode(begin[:12])
    with pytest.raises(DecodeError, match="unknown pgoutput message 'Z'"):
        decode(b"Z")


def test_lsn_text_round_trips() -> None:
    assert parse_lsn("16/B374D848") == 0x16B374D848
    assert format_lsn(0x16B374D848) == "16/B374D848"


def test_decimals_as_java_writes_their_unscaled_bytes() -> None:
    assert unscaled_bytes(1234567) == bytes.fromhex("12d687")
    assert unscaled_bytes(-1) == b"\xff"
    assert unscaled_bytes(128) == b"\x00\x80"
    assert unscaled_bytes(-128) == b"\x80"
    assert unscaled_bytes(0) == b"\x00"
    variable = column_type("numeric", -1, "precise", "adaptive")
    assert variable.parse("98.7654321") == {"scale": 7, "value": bytes.fromhex("3ade68b1")}
    fixed = column_type("numeric", (12 << 16 | 3) + 4, "precise", "adaptive")
    assert fixed.schema.parameters == {"scale": "3", "connect.decimal.precision": "12"}
    assert fixed.parse("1234.567") == decimal.Decimal("1234.567")
    assert column_type("numeric", -1, "string", "adaptive").parse("-5") == "-5"


@pytest.mark.parametrize(("type_name", "modifier", "mode", "text", "name", "value"), [
    ("time", -1, "adaptive", "13:14:15.123456", "io.debezium.time.MicroTime", 47655123456),
    ("time", 3, "adaptive", "13:14:15.123", "io.debezium.time.Time", 47655123),
    ("time", 3, "adaptive_time_microseconds", "13:14:15.123", "io.debezium.time.MicroTime",
     47655123000),
    ("timestamp", -1, "adaptive", "1900-01-01 00:00:00", "io.debezium.time.MicroTimestamp",
     -2208988800000000),
    ("timestamp", 3, "adaptive", "2024-02-29 13:14:15.123", "io.debezium.time.Timestamp",
     1709212455123),
    ("timestamptz", -1, "adaptive", "2024-02-29 11:14:15.5+00",
     "io.debezium.time.ZonedTimestamp", "2024-02-29T11:14:15.500000Z"),
    ("timetz", -1, "adaptive", "13:14:15+02", "io.debezium.time.ZonedTime", "11:14:15Z"),
    ("date", -1, "adaptive", "1969-12-31", "io.debezium.time.Date", -1),
    ("interval", -1, "adaptive", "P1DT2H3M4.5S", "io.debezium.time.MicroDuration",
     93784500000),
    ("interval", -1, "adaptive", "P1M3D", "io.debezium.time.MicroDuration", 2889000000000),
])
def test_temporal_types_as_debezium_writes_them(type_name: str, modifier: int, mode: str,
                                                text: str, name: str, value: object) -> None:
    mapped = column_type(type_name, modifier, "precise", mode)  # type: ignore[arg-type]
    assert mapped.schema.name == name
    assert mapped.parse(text) == value


def test_literal_defaults_only() -> None:
    text = column_type("text", -1, "precise", "adaptive")
    assert literal_default("'white'::text", text) == "white"
    assert literal_default("'it''s'::character varying", text) == "it's"
    assert literal_default("0", column_type("int4", -1, "precise", "adaptive")) == 0
    assert literal_default("nextval('seq'::regclass)", text) is None
    assert literal_default("now()", text) is None
