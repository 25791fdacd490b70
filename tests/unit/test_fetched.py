"""A poll's columns (``runtime.fetch.Fetched``) read as confluent-kafka's messages read:
row by row for ``errors.*`` and the dead letter queue, a selection of rows, and polls held
during a retry joined in order."""

from __future__ import annotations

from confluent_kafka import Message
from hypothesis import given
from hypothesis import strategies as st

from kanal_worker.runtime.fetch import Fetched
from kanal_worker.runtime.sink import MIN_POLL, POLL_BYTES, poll_size

MESSAGES = [
    Message(topic="a", partition=0, offset=5, key=b"k1", value=b"v1",
            timestamp=(1, 1_700_000_000_000)),
    Message(topic="a", partition=1, offset=7, key=None, value=None, timestamp=(0, -1)),
    Message(topic="b", partition=0, offset=9, key=b"k3", value=b"v3",
            headers=[("h", b"1"), ("n", None)], timestamp=(2, 123)),
]


def _as_messages(fetched: Fetched) -> list[tuple[object, ...]]:
    return [(r.topic(), r.partition(), r.offset(), r.key(), r.value(), r.timestamp(),
             r.headers()) for r in fetched.rows()]


def _of(messages: list[Message]) -> list[tuple[object, ...]]:
    return [(m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.timestamp(),
             m.headers()) for m in messages]


def test_rows_read_as_the_messages_they_came_from() -> None:
    fetched = Fetched.of_messages(MESSAGES)
    assert len(fetched) == 3
    assert _as_messages(fetched) == _of(MESSAGES)
    assert fetched.headers == [None, None, [("h", b"1"), ("n", None)]]


def test_a_poll_counts_the_bytes_of_its_values() -> None:
    assert Fetched.of_messages(MESSAGES).value_bytes == 4  # the null value counts nothing
    assert Fetched.of_messages(MESSAGES).select([1]).value_bytes == 0


@given(st.integers(1, 100_000), st.integers(0, 1 << 30), st.integers(1, 100_000))
def test_polls_of_large_records_hold_fewer(records: int, value_bytes: int,
                                           max_poll_records: int) -> None:
    size = poll_size(records, value_bytes, max_poll_records)
    assert size <= max_poll_records
    assert size >= min(MIN_POLL, max_poll_records)
    if size > MIN_POLL:  # what fits in the budget at the last poll's record size
        assert size * max(value_bytes // records, 1) <= POLL_BYTES


def test_a_poll_of_the_benchmarks_records_keeps_its_size_and_one_of_envelopes_shrinks() -> None:
    assert poll_size(2000, 2000 * 129, 2000) == 2000
    assert poll_size(2000, 2000 * 603, 2000) == POLL_BYTES // 603
    assert poll_size(500, 500 * 603, 10) == 10


def test_a_poll_without_headers_says_so_once() -> None:
    fetched = Fetched.of_messages(MESSAGES[:2])
    assert fetched.headers is None
    assert fetched.header_lists() == [None, None]
    assert fetched.row(1).headers() is None


def test_a_selection_keeps_the_rows_asked_for_in_order() -> None:
    fetched = Fetched.of_messages(MESSAGES)
    assert _as_messages(fetched.select([2, 0])) == _of([MESSAGES[2], MESSAGES[0]])
    assert fetched.select(range(3)) is fetched
    assert len(fetched.select([])) == 0
    assert fetched.select([0, 1]).headers is None


def test_held_polls_join_in_order() -> None:
    parts = [Fetched.of_messages(MESSAGES[:1]), Fetched.of_messages(MESSAGES[1:])]
    joined = Fetched.concat(parts)
    assert _as_messages(joined) == _of(MESSAGES)
    assert Fetched.concat(parts[:1]) is parts[0]


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 2)), max_size=40))
def test_last_offsets_and_topic_runs_read_the_columns(where: list[tuple[str, int]]) -> None:
    fetched = Fetched([t for t, _ in where], [p for _, p in where], list(range(len(where))),
                      [(0, -1)] * len(where), None, [None] * len(where), [None] * len(where))
    last: dict[tuple[str, int], int] = {}
    for offset, tp in enumerate(where):
        last.setdefault(tp, offset)
        last[tp] = offset
    assert fetched.last_offsets() == last
    assert list(fetched.last_offsets()) == list(last)
    runs = fetched.topic_runs()
    assert [topic for topic, start, end in runs for _ in range(start, end)] == fetched.topics
    starts = [i for i in range(len(where)) if i == 0 or where[i][0] != where[i - 1][0]]
    assert [start for _, start, _ in runs] == starts
    assert [end for _, _, end in runs] == [*starts[1:], len(where)][:len(starts)]
