"""Decoding of PostgreSQL's ``pgoutput`` logical replication messages (protocol version 1).

The server sends one message per ``XLogData`` payload: Begin, Relation (a table's columns,
before its first change and after every change of its definition), Insert, Update,
Delete, Truncate, Commit, and Origin/Type messages that carry nothing this connector
uses. Column values arrive in their text form; ``values`` turns them into Connect data.
The format is PostgreSQL's "Logical Replication Message Formats" chapter.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PG_EPOCH_MICROS = 946_684_800_000_000
"""PostgreSQL timestamps count microseconds from 2000-01-01; Unix ones from 1970."""

UNCHANGED_TOAST = object()
"""A TOASTed value the change did not touch, so the server did not send it."""


class DecodeError(ValueError):
    """A message that is not what protocol version 1 of pgoutput sends."""


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    commit_micros: int
    """Unix epoch microseconds of the commit."""
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    commit_lsn: int
    end_lsn: int
    commit_micros: int


@dataclass(frozen=True, slots=True)
class RelationColumn:
    name: str
    type_oid: int
    type_modifier: int
    is_key: bool


@dataclass(frozen=True, slots=True)
class Relation:
    relation_id: int
    namespace: str
    name: str
    replica_identity: str
    """``d`` default (primary key), ``n`` nothing, ``f`` full, ``i`` an index."""
    columns: tuple[RelationColumn, ...]


Tuple = tuple[object, ...]
"""Column values in relation order: text (str), None for NULL, or UNCHANGED_TOAST."""


@dataclass(frozen=True, slots=True)
class Insert:
    relation_id: int
    new: Tuple


@dataclass(frozen=True, slots=True)
class Update:
    relation_id: int
    old: Tuple | None
    """The old row: all columns with REPLICA IDENTITY FULL, the key columns ('K') when
    the key changed, else None."""
    old_is_key: bool
    new: Tuple


@dataclass(frozen=True, slots=True)
class Delete:
    relation_id: int
    old: Tuple
    old_is_key: bool


@dataclass(frozen=True, slots=True)
class Truncate:
    relation_ids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True, slots=True)
class Ignored:
    """Origin, Type and logical decoding messages: nothing to capture."""

    tag: str


Message = Begin | Commit | Relation | Insert | Update | Delete | Truncate | Ignored

_INT8 = struct.Struct(">b")
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT64 = struct.Struct(">q")
_UINT64 = struct.Struct(">Q")


class _Reader:
    __slots__ = ("data", "position")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def _unpack(self, layout: struct.Struct) -> int:
        try:
            (value,) = layout.unpack_from(self.data, self.position)
        except struct.error:
            raise DecodeError(f"message ends at byte {len(self.data)} inside a field at "
                              f"byte {self.position}") from None
        self.position += layout.size
        return int(value)

    def int8(self) -> int:
        return self._unpack(_INT8)

    def int16(self) -> int:
        return self._unpack(_INT16)

    def int32(self) -> int:
        return self._unpack(_INT32)

    def uint32(self) -> int:
        return self._unpack(_UINT32)

    def int64(self) -> int:
        return self._unpack(_INT64)

    def lsn(self) -> int:
        return self._unpack(_UINT64)

    def byte(self) -> str:
        if self.position >= len(self.data):
            raise DecodeError(f"message ends at byte {len(self.data)} where a tag was due")
        tag = chr(self.data[self.position])
        self.position += 1
        return tag

    def string(self) -> str:
        end = self.data.find(b"\0", self.position)
        if end < 0:
            raise DecodeError(f"unterminated string at byte {self.position}")
        text = self.data[self.position:end].decode()
        self.position = end + 1
        return text

    def raw(self, length: int) -> bytes:
        if self.position + length > len(self.data):
            raise DecodeError(f"value of {length} bytes at byte {self.position} overruns "
                              f"the message of {len(self.data)}")
        chunk = self.data[self.position:self.position + length]
        self.position += length
        return chunk

    def tuple(self) -> Tuple:
        count = self.int16()
        values: list[object] = []
        for _ in range(count):
            kind = self.byte()
            if kind == "n":
                values.append(None)
            elif kind == "u":
                values.append(UNCHANGED_TOAST)
            elif kind == "t":
                values.append(self.raw(self.int32()).decode())
            else:
                raise DecodeError(f"unknown column kind {kind!r} (binary mode is not asked "
                                  "for)")
        return tuple(values)


def decode(payload: bytes) -> Message:
    """The message in one ``XLogData`` payload of a pgoutput stream."""
    reader = _Reader(payload)
    tag = reader.byte()
    if tag == "B":
        return Begin(reader.lsn(), reader.int64() + PG_EPOCH_MICROS, reader.uint32())
    if tag == "C":
        reader.int8()  # flags: unused by the protocol so far
        return Commit(reader.lsn(), reader.lsn(), reader.int64() + PG_EPOCH_MICROS)
    if tag == "R":
        relation_id, namespace, name = reader.uint32(), reader.string(), reader.string()
        identity = reader.byte()
        columns = tuple(
            RelationColumn(is_key=bool(reader.int8() & 1), name=reader.string(),
                           type_oid=reader.uint32(), type_modifier=reader.int32())
            for _ in range(reader.int16()))
        return Relation(relation_id, namespace, name, identity, columns)
    if tag == "I":
        relation_id = reader.uint32()
        _expect(reader, "N")
        return Insert(relation_id, reader.tuple())
    if tag == "U":
        relation_id = reader.uint32()
        kind = reader.byte()
        old: Tuple | None = None
        if kind in ("K", "O"):
            old = reader.tuple()
            _expect(reader, "N")
        elif kind != "N":
            raise DecodeError(f"update of relation {relation_id}: unexpected tag {kind!r}")
        return Update(relation_id, old, kind == "K", reader.tuple())
    if tag == "D":
        relation_id = reader.uint32()
        kind = reader.byte()
        if kind not in ("K", "O"):
            raise DecodeError(f"delete of relation {relation_id}: unexpected tag {kind!r}")
        return Delete(relation_id, reader.tuple(), kind == "K")
    if tag == "T":
        count, options = reader.int32(), reader.int8()
        return Truncate(tuple(reader.uint32() for _ in range(count)), bool(options & 1),
                        bool(options & 2))
    if tag in ("O", "Y", "M"):
        return Ignored(tag)
    raise DecodeError(f"unknown pgoutput message {tag!r}")


def _expect(reader: _Reader, tag: str) -> None:
    found = reader.byte()
    if found != tag:
        raise DecodeError(f"expected tuple tag {tag!r}, found {found!r}")


def format_lsn(lsn: int) -> str:
    """``16/B374D848``: how PostgreSQL prints a log sequence number."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)
