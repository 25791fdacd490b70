"""Task placement: balanced, sticky, and never two live copies of a task."""

from __future__ import annotations

from collections import Counter

from kanal_operator.scheduling import assign


def test_new_tasks_spread_over_workers() -> None:
    placement = assign([0, 1, 2, 3], {}, ["w1", "w2"], {})
    assert Counter(placement.values()) == {"w1": 2, "w2": 2}


def test_placement_counts_other_connectors_load() -> None:
    assert assign([0], {}, ["w1", "w2"], {"w1": 3, "w2": 1}) == {0: "w2"}


def test_tasks_stay_on_live_workers() -> None:
    # totals 1 and 2 are balanced enough: moving would cost a restart
    placement = assign([0, 1], {0: "w2", 1: "w2"}, ["w1", "w2"], {"w1": 1})
    assert placement == {0: "w2", 1: "w2"}


def test_tasks_of_a_dead_worker_move_at_once() -> None:
    placement = assign([0, 1], {0: "gone", 1: "w2"}, ["w1", "w2"], {})
    assert placement == {0: "w1", 1: "w2"}


def test_a_joining_worker_gets_load_one_task_per_round() -> None:
    previous = {0: "w1", 1: "w1", 2: "w1", 3: "w1"}
    first = assign([0, 1, 2, 3], previous, ["w1", "w2"], {})
    assert first == {0: "w1", 1: "w1", 2: "w1", 3: None}  # revoked, placed next round
    # the old worker still runs task 3: it waits
    assert assign([0, 1, 2, 3], first, ["w1", "w2"], {}, held={3})[3] is None
    second = assign([0, 1, 2, 3], first, ["w1", "w2"], {})
    assert second == {0: "w1", 1: "w1", 2: None, 3: "w2"}  # placed 3, revoked the next
    third = assign([0, 1, 2, 3], second, ["w1", "w2"], {})
    assert third == {0: "w1", 1: "w1", 2: "w2", 3: "w2"}
    assert assign([0, 1, 2, 3], third, ["w1", "w2"], {}) == third  # balanced: stable


def test_held_tasks_wait_for_the_old_worker_to_stop() -> None:
    assert assign([0], {}, ["w1", "w2"], {}, held={0}) == {0: None}


def test_no_workers_no_placement() -> None:
    assert assign([0, 1], {0: "w1"}, [], {}) == {0: None, 1: None}
