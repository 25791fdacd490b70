"""A refresh of a shared offset store never takes back offsets this worker committed
while it was reading (the duplicates an exactly-once source replayed after a restart)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from kanal_worker.runtime.offsets import SharedOffsetStore, partition_key

PARTITION = {"vehicle": "v1"}
KEY = partition_key(PARTITION)


class ScriptedStore(SharedOffsetStore):
    """Reads return ``snapshot``; ``during_read`` runs while a read is under way, as the
    commits of the worker's other tasks do."""

    def __init__(self, snapshot: dict[str, dict[str, dict[str, Any]]]) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.during_read: Callable[[], None] = lambda: None
        self.reads = 0

    def read_all(self, *, through_open_transactions: bool = False
                 ) -> dict[str, dict[str, dict[str, Any]]]:
        self.reads += 1
        self.during_read()
        return {connector: dict(offsets) for connector, offsets in self.snapshot.items()}

    def put(self, connector: str, offsets: dict[str, dict[str, Any] | None]) -> None:
        self.applied(connector, offsets)


def test_offsets_committed_during_a_read_survive_it() -> None:
    store = ScriptedStore({"gen": {KEY: {"seq": 100}}})
    store.during_read = lambda: store.applied("gen", {KEY: {"seq": 250}})
    store.refresh()
    assert store.get("gen", PARTITION) == {"seq": 250}


def test_later_commits_win_over_earlier_ones_and_deletions_hold() -> None:
    other = partition_key({"vehicle": "v2"})
    store = ScriptedStore({"gen": {KEY: {"seq": 100}, other: {"seq": 7}}})

    def two_commits() -> None:
        store.applied("gen", {KEY: {"seq": 150}})
        store.applied("gen", {KEY: {"seq": 200}, other: None})

    store.during_read = two_commits
    store.refresh()
    assert store.get("gen", PARTITION) == {"seq": 200}
    assert store.get("gen", {"vehicle": "v2"}) is None


def test_what_others_wrote_is_caught_up_with() -> None:
    store = ScriptedStore({})
    store.applied("gen", {KEY: {"seq": 1}})
    store.snapshot = {"gen": {KEY: {"seq": 40}}, "other": {KEY: {"seq": 3}}}
    store.refresh()
    assert store.get("gen", PARTITION) == {"seq": 40}
    assert store.get("other", PARTITION) == {"seq": 3}


def test_a_commit_after_the_refresh_is_applied_directly() -> None:
    store = ScriptedStore({"gen": {KEY: {"seq": 10}}})
    store.refresh()
    store.applied("gen", {KEY: {"seq": 11}})
    assert store.get("gen", PARTITION) == {"seq": 11}


def test_refreshes_run_one_at_a_time() -> None:
    store = ScriptedStore({"gen": {KEY: {"seq": 1}}})
    inside = threading.Event()
    release = threading.Event()
    overlapping: list[int] = []
    active = [0]

    def slow_read() -> None:
        active[0] += 1
        overlapping.append(active[0])
        inside.set()
        release.wait(5)
        active[0] -= 1

    store.during_read = slow_read
    first = threading.Thread(target=store.refresh)
    first.start()
    assert inside.wait(5)
    second = threading.Thread(target=store.refresh)
    second.start()
    second.join(0.2)
    assert second.is_alive(), "a second refresh must wait for the first"
    release.set()
    first.join(5)
    second.join(5)
    assert store.reads == 2 and max(overlapping) == 1


def test_a_failed_read_keeps_the_cache_and_stops_recording() -> None:
    store = ScriptedStore({"gen": {KEY: {"seq": 5}}})
    store.refresh()

    def fail() -> None:
        raise TimeoutError("offsets topic unreachable")

    store.during_read = fail
    with pytest.raises(TimeoutError):
        store.refresh()
    assert store.get("gen", PARTITION) == {"seq": 5}
    store.applied("gen", {KEY: {"seq": 6}})
    store.during_read = lambda: None
    store.snapshot = {"gen": {KEY: {"seq": 6}}}
    store.refresh()
    assert store.get("gen", PARTITION) == {"seq": 6}
