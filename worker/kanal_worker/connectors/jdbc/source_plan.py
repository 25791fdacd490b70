"""What the JDBC source reads, decided without a database: which tables a task owns, the
SQL of each mode, and offsets in Confluent kafka-connect-jdbc's format.

Offsets keep Confluent's shape so that a connector moved over from Kafka Connect (its
offsets copied with the REST offsets API) resumes where it stopped: per table the source
partition ``{"protocol": "1", "table": "<qualified name>"}`` (``{"query": "query"}`` in
query mode) and the offset ``{"incrementing": n, "timestamp": ms, "timestamp_nanos": ns}``
with the keys of the mode.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["bulk", "incrementing", "timestamp", "timestamp+incrementing"]

QUERY_PARTITION: dict[str, Any] = {"query": "query"}
PROTOCOL_VERSION = "1"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, order=True)
class TableId:
    """A table as the database lists it; ``catalog`` is MySQL's database, ``schema``
    PostgreSQL's schema (the other is None, as their drivers report them)."""

    catalog: str | None
    schema: str | None
    name: str

    @property
    def qualified(self) -> str:
        """Confluent's unquoted fully qualified name: the partition's ``table``."""
        return ".".join(part for part in (self.catalog, self.schema, self.name) if part)

    def partition(self) -> dict[str, Any]:
        return {"protocol": PROTOCOL_VERSION, "table": self.qualified}

    def legacy_partition(self) -> dict[str, Any]:
        """The partition of Confluent's offsets before protocol 1 (table name only)."""
        return {"table": self.name}

    def matches(self, entry: str) -> bool:
        """Whether a table.whitelist / table.blacklist entry names this table: its name,
        or its name qualified as far as the entry goes (``schema.table``, ``db.table``)."""
        parts = [p for p in (self.catalog, self.schema, self.name) if p]
        wanted = entry.split(".")
        return parts[-len(wanted):] == wanted if len(wanted) <= len(parts) else False


def select_tables(tables: Sequence[TableId], whitelist: Sequence[str],
                  blacklist: Sequence[str]) -> list[TableId]:
    """The listed tables the lists let through, sorted."""
    chosen = [t for t in tables
              if (not whitelist or any(t.matches(e) for e in whitelist))
              and not any(t.matches(e) for e in blacklist)]
    return sorted(chosen)


def missing_entries(tables: Sequence[TableId], entries: Sequence[str]) -> list[str]:
    """The entries of a table list that name no table."""
    return [e for e in entries if not any(t.matches(e) for t in tables)]


def split_evenly(items: Sequence[str], groups: int) -> list[list[str]]:
    """``items`` in at most ``groups`` contiguous groups whose sizes differ by at most one
    (Kafka Connect's ``ConnectorUtils.groupPartitions``)."""
    count = min(groups, len(items))
    size, extra = divmod(len(items), count) if count else (0, 0)
    result, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        result.append(list(items[start:end]))
        start = end
    return result


def owns(table: TableId, share: tuple[int, int]) -> bool:
    """Whether task ``share[0]`` of ``share[1]`` reads ``table`` when tasks discover the
    tables themselves: a hash of the name decides, so every task agrees without talking
    to the others and a table appearing later never moves another one."""
    index, count = share
    return zlib.crc32(table.qualified.encode()) % count == index


def parse_share(text: str) -> tuple[int, int] | None:
    """``"k/n"`` → (k, n); empty → None."""
    if not text:
        return None
    index, _, count = text.partition("/")
    return int(index), int(count)


@dataclass(frozen=True)
class Offset:
    """Where a table was read up to: the last row's timestamp and incrementing value."""

    timestamp: dt.datetime | None = None
    incrementing: int | None = None

    def to_map(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        if self.incrementing is not None:
            result["incrementing"] = self.incrementing
        if self.timestamp is not None:
            micros = epoch_micros(self.timestamp)
            # Java's Timestamp: getTime() in milliseconds, getNanos() the whole second's
            # fraction in nanoseconds (so it repeats the milliseconds)
            result["timestamp"] = micros // 1000
            result["timestamp_nanos"] = micros % 1_000_000 * 1000
        return result

    @classmethod
    def from_map(cls, stored: Mapping[str, Any] | None) -> Offset:
        if not stored:
            return cls()
        incrementing = stored.get("incrementing")
        millis = stored.get("timestamp")
        timestamp = None
        if millis is not None:
            nanos = stored.get("timestamp_nanos")
            micros = (int(millis) // 1000 * 1_000_000 + int(nanos) // 1000 if nanos is not None
                      else int(millis) * 1000)
            timestamp = EPOCH + dt.timedelta(microseconds=micros)
        return cls(timestamp, int(incrementing) if incrementing is not None else None)


def epoch_micros(moment: dt.datetime) -> int:
    """Microseconds since the epoch of an aware datetime (naive ones are UTC)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    delta = aware - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class Criteria:
    """The WHERE and ORDER BY a mode appends to ``SELECT * FROM table`` or to the query,
    as Confluent builds them, with named parameters ``begin``, ``end`` and ``last_id``."""

    mode: Mode
    incrementing: str | None
    timestamps: tuple[str, ...]

    def clause(self, quote: Callable[[str], str]) -> str:
        if self.mode == "bulk":
            return ""
        inc = quote(self.incrementing) if self.incrementing else ""
        if len(self.timestamps) == 1:
            ts = quote(self.timestamps[0])
        else:
            ts = "COALESCE(" + ",".join(quote(c) for c in self.timestamps) + ")"
        if self.mode == "incrementing":
            return f" WHERE {inc} > :last_id ORDER BY {inc} ASC"
        if self.mode == "timestamp":
            return f" WHERE {ts} > :begin AND {ts} < :end ORDER BY {ts} ASC"
        # an update of an older row has a newer timestamp; a row with the last row's
        # timestamp counts only after it by id, so nothing repeats and nothing is missed
        return (f" WHERE {ts} < :end AND (({ts} = :begin AND {inc} > :last_id) "
                f"OR {ts} > :begin) ORDER BY {ts},{inc} ASC")

    @property
    def uses_timestamps(self) -> bool:
        return self.mode in ("timestamp", "timestamp+incrementing")

    @property
    def uses_incrementing(self) -> bool:
        return self.mode in ("incrementing", "timestamp+incrementing")

    def parameters(self, offset: Offset, begin_default: dt.datetime,
                   end: dt.datetime | None) -> dict[str, Any]:
        """Bind values for ``clause`` (``end``: the timestamp modes' upper bound)."""
        params: dict[str, Any] = {}
        if self.uses_timestamps:
            assert end is not None, "the timestamp modes need an upper bound"
            params["begin"] = offset.timestamp or begin_default
            params["end"] = end
        if self.uses_incrementing:
            params["last_id"] = offset.incrementing if offset.incrementing is not None else -1
        return params

    def next_offset(self, previous: Offset, timestamp: dt.datetime | None,
                    incrementing: int | None) -> Offset:
        """The offset after a row with these column values."""
        return Offset(timestamp if self.uses_timestamps else previous.timestamp,
                      incrementing if self.uses_incrementing else previous.incrementing)
