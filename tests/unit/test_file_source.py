"""FileStreamSourceTask reads its file by block: the lines, values and offsets it returns
are those of a read line by line, however the file grows between polls."""

from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kanal_worker.api.records import SourceBatch
from kanal_worker.api.schema import STRING
from kanal_worker.connectors.file import FileSourceSettings, FileStreamSourceTask


class Context:
    def __init__(self, offset: dict[str, Any] | None = None) -> None:
        self.stored = offset

    @property
    def task_id(self) -> str:
        return "file-0"

    def offset(self, source_partition: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.stored

    def request_commit(self) -> None:
        pass


def by_line(content: bytes) -> list[tuple[str, int]]:
    """Each whole line's value and the offset after it, read one line at a time."""
    read, position = [], 0
    with BytesIO(content) as stream:
        for line in iter(stream.readline, b""):
            if not line.endswith(b"\n"):
                break
            position += len(line)
            read.append((line.rstrip(b"\n").rstrip(b"\r").decode("utf-8", errors="replace"),
                         position))
    return read


def task(path: Path, batch_size: int = 2000, offset: dict[str, Any] | None = None
         ) -> FileStreamSourceTask:
    source = FileStreamSourceTask(FileSourceSettings.parse(
        {"file": str(path), "topic": "lines", "batch.size": str(batch_size)}), Context(offset))
    source.start()
    return source


def drain(source: FileStreamSourceTask, polls: int = 50) -> list[tuple[str, int]]:
    read: list[tuple[str, int]] = []
    for _ in range(polls):
        polled = source.poll()
        if not polled:
            break
        assert isinstance(polled, SourceBatch)
        assert len(polled) <= source.settings.batch_size
        read += [(value, offset["position"])
                 for value, offset in zip(polled.values, polled.source_offsets, strict=True)]
    return read


lines = st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")) |
                 st.sampled_from([b"a\r", b"\xff\xfe", b"\xe2\x82", b"caf\xc3\xa9", b""]),
                 max_size=30)


@settings(max_examples=60, deadline=None)
@given(lines=lines, cuts=st.lists(st.integers(0, 400), max_size=4),
       batch_size=st.integers(1, 7), tail=st.binary(max_size=5))
def test_block_reads_return_what_line_reads_return(
        tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], cuts: list[int],
        batch_size: int, tail: bytes) -> None:
    content = b"".join(line + b"\n" for line in lines) + tail.replace(b"\n", b"")
    path = tmp_path_factory.mktemp("file") / "in.txt"
    path.write_bytes(b"")
    source = task(path, batch_size)
    read: list[tuple[str, int]] = []
    written = 0
    for cut in [*sorted(cut for cut in cuts if cut < len(content)), len(content)]:
        with path.open("ab") as handle:  # the file grows while it is read
            handle.write(content[written:cut])
        written = max(written, cut)
        read += drain(source)
    source.stop()
    assert read == by_line(content)


def test_a_batch_is_strings_with_the_time_it_was_read(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"one\r\ntwo\n")
    polled = task(path).poll()
    assert isinstance(polled, SourceBatch)
    assert polled.topic == "lines" and polled.source_partition == {"filename": str(path)}
    assert polled.value_schema == STRING and polled.timestamp is not None
    records = polled.records()
    assert [(r.value, r.source_offset, r.timestamp) for r in records] == [
        ("one", {"position": 5}, polled.timestamp), ("two", {"position": 9}, polled.timestamp)]


def test_a_restarted_task_resumes_after_the_stored_position(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"first\nsecond\nthird\n")
    assert drain(task(path, offset={"position": 6})) == [("second", 13), ("third", 19)]


def test_a_partial_last_line_waits_for_its_end(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"whole\nhal")
    source = task(path)
    assert drain(source) == [("whole", 6)]
    assert source.poll() == []
    with path.open("ab") as handle:
        handle.write(b"f\n")
    assert drain(source) == [("half", 11)]


def test_a_batch_needs_an_offset_per_value() -> None:
    with pytest.raises(ValueError, match="an offset per value"):
        SourceBatch(topic="t", source_partition={}, values=["a", "b"],
                    source_offsets=[{"position": 1}])
