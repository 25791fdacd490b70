"""ExtractNewRecordState beyond the golden cases: schemaless events, legacy keys, records
that are not change events."""

from __future__ import annotations

from typing import Any

from kanal_worker.api.records import SourceRecord
from kanal_worker.transforms.debezium import ExtractNewRecordState


def event(op: str, before: Any, after: Any) -> SourceRecord:
    return SourceRecord(topic="p.s.t", key={"id": 1},
                        value={"before": before, "after": after, "op": op, "ts_ms": 5,
                               "source": {"table": "t", "lsn": 42}})


def test_schemaless_events_become_rows_with_added_fields() -> None:
    unwrap = ExtractNewRecordState({"add.fields": "op,table,source.lsn,ts_ms"})
    out = unwrap.apply(event("u", None, {"id": 1, "x": 2}))
    assert out is not None
    assert out.value == {"id": 1, "x": 2, "__op": "u", "__table": "t", "__source_lsn": 42,
                         "__ts_ms": 5}


def test_legacy_keys_choose_the_delete_handling() -> None:
    rewrite = ExtractNewRecordState({"delete.handling.mode": "rewrite",
                                     "drop.tombstones": "false"})
    deleted = rewrite.apply(event("d", {"id": 1}, None))
    assert deleted is not None and deleted.value == {"id": 1, "__deleted": "true"}
    tombstone = SourceRecord(topic="p.s.t", key={"id": 1}, value=None)
    assert rewrite.apply(tombstone) is tombstone
    assert ExtractNewRecordState({"delete.handling.mode": "drop"}).apply(
        event("d", {"id": 1}, None)) is None
    assert ExtractNewRecordState({}).apply(tombstone) is None


def test_other_records_pass_unchanged() -> None:
    heartbeat = SourceRecord(topic="__debezium-heartbeat.p", value={"ts_ms": 1})
    assert ExtractNewRecordState({}).apply(heartbeat) is heartbeat
