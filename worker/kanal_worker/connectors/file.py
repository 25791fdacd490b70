"""FileStreamSource and FileStreamSink, with Apache Kafka's keys and class names."""

from __future__ import annotations

import io
import os
import re
import sys
import time
from itertools import accumulate
from pathlib import Path
from typing import IO, Any, cast

from kanal_worker.api import (
    ConfigError,
    ConnectError,
    Settings,
    SinkBatch,
    SinkConnector,
    SinkTask,
    SinkTaskContext,
    SourceBatch,
    SourceConnector,
    SourceRecord,
    SourceTask,
    SourceTaskContext,
    TopicPartition,
    setting,
)
from kanal_worker.api.java_text import java_lines, java_string
from kanal_worker.api.schema import STRING, Schema


class FileSinkSettings(Settings):
    file: str = setting("", key="file", importance="HIGH",
                        doc="Destination filename; empty writes to standard output.")


class FileStreamSinkTask(SinkTask[FileSinkSettings]):
    """Appends one line per record, each value printed as Apache's Java prints it."""

    def __init__(self, settings: FileSinkSettings, context: SinkTaskContext) -> None:
        super().__init__(settings, context)
        self.out: IO[bytes]
        if settings.file:
            try:
                # unbuffered: each batch reaches the file in one write
                self.out = open(settings.file, "ab", buffering=0)  # noqa: SIM115
                drop_torn_line(self.out)
            except OSError as exc:
                raise ConfigError("file", f"cannot open {settings.file} for writing: "
                                  f"{exc.strerror}; choose a writable path") from None
        else:
            self.out = sys.stdout.buffer

    def write(self, batch: SinkBatch) -> None:
        self.out.write(lines(batch))

    def pre_commit(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        self.out.flush()
        if self.settings.file:
            os.fsync(self.out.fileno())
        return offsets

    def stop(self) -> None:
        self.out.flush()
        if self.settings.file:
            self.out.close()


def drop_torn_line(out: IO[bytes]) -> None:
    """Cut a last line without its newline: a worker killed mid-write left it, and its
    records were never committed, so they come again."""
    size = out.seek(0, os.SEEK_END)
    if size == 0:
        return
    with open(out.name, "rb") as reader:
        tail_start = max(0, size - (1 << 16))
        reader.seek(tail_start)
        tail = reader.read()
    if tail.endswith(b"\n"):
        return
    cut = tail.rfind(b"\n")
    if cut < 0 and tail_start > 0:
        return  # a line longer than the window: leave it rather than guess
    os.truncate(out.fileno(), tail_start + cut + 1)


AS_PRINTED = re.compile(rb"(?:-?[0-9]+|true|false|null)(?:\n(?:-?[0-9]+|true|false|null))*")
"""JSON lines whose values Java prints exactly as their JSON text: integers, booleans, null."""


def lines(batch: SinkBatch) -> bytes:
    """``line`` of every value, joined. When every value is the bytes received or their
    text (StringConverter, ByteArrayConverter), or Java prints every value as the JSON
    text it arrived as (integers, booleans, null), the bytes are copied in one ``join``
    for the whole batch, without decoding them. Otherwise ``java_lines`` prints them
    (flat schemaless maps and scalars in C when the native printer is built)."""
    texts = batch.text_values
    if texts and None not in texts:
        return b"\n".join(cast(list[bytes], texts)) + b"\n"
    encoded = batch.encoded_values
    if encoded and None not in encoded:
        joined = b"\n".join(cast(list[bytes], encoded))
        if AS_PRINTED.fullmatch(joined):
            return joined + b"\n"
    values = batch.values
    if not values or any(issubclass(kind, bytes | bytearray | memoryview)
                         for kind in set(map(type, values))):
        return b"".join(map(line, values, batch.value_schemas))
    return java_lines(values, batch.value_schemas)


def line(value: Any, schema: Schema | None) -> bytes:
    """What Apache's FileStreamSink writes for a value: ``String.valueOf`` of it and a
    newline; byte arrays as they are (Java would print the array's identity)."""
    if isinstance(value, str):
        return value.encode() + b"\n"
    if isinstance(value, bytes):
        return value + b"\n"
    return (java_string(value, schema) + "\n").encode()


class FileStreamSinkConnector(SinkConnector[FileSinkSettings]):
    settings = FileSinkSettings
    task_class = FileStreamSinkTask
    aliases = ("org.apache.kafka.connect.file.FileStreamSinkConnector",)

    def validate(self, settings: FileSinkSettings) -> dict[str, list[str]]:
        if not settings.file:
            return {}
        path = Path(settings.file)
        target = path if path.exists() else path.parent
        if not target.is_dir() and not path.exists():
            return {"file": [f"directory {path.parent} does not exist; create it or choose "
                             "another file"]}
        if not os.access(target, os.W_OK):
            return {"file": [f"{path} is not writable by this worker; fix its permissions "
                             "or choose another file"]}
        return {}


class FileSourceSettings(Settings):
    file: str = setting("", key="file", importance="HIGH",
                        doc="Source filename; empty reads standard input.")
    topic: str = setting(key="topic", importance="HIGH",
                         doc="The topic to publish data to.")
    batch_size: int = setting(2000, key="batch.size", importance="LOW", ge=1,
                              doc="The maximum number of records the task returns per poll.")


READ_BLOCK = 1 << 18
"""Bytes a poll reads from the file when fewer than ``batch.size`` lines are waiting."""


class FileStreamSourceTask(SourceTask[FileSourceSettings]):
    """Emits each line of a file as a string record; resumes at the stored byte position."""

    def __init__(self, settings: FileSourceSettings, context: SourceTaskContext) -> None:
        super().__init__(settings, context)
        self.partition = {"filename": settings.file or "stdin"}
        self.stream: io.BufferedIOBase | None = None
        self.position = 0
        """Where the line after the last one emitted starts: the offset stored with it."""
        self.unread = b""
        """Bytes read past ``position`` and not emitted yet, the last line perhaps partial."""

    def start(self) -> None:
        if not self.settings.file:
            self.stream = cast(io.BufferedIOBase, sys.stdin.buffer)
            return
        try:
            self.stream = open(self.settings.file, "rb")  # noqa: SIM115
        except OSError as exc:
            raise ConnectError(f"cannot read file={self.settings.file}: {exc.strerror}; "
                               "check the path and permissions") from None
        offset = self.context.offset(self.partition)
        if offset is not None:
            self.position = int(offset.get("position", 0))
            self.stream.seek(self.position)

    def poll(self) -> SourceBatch | list[SourceRecord]:
        lines = self._whole_lines()
        if not lines:
            time.sleep(0.1)
            return []
        ends = list(accumulate([len(line) + 1 for line in lines], initial=self.position))
        del ends[0]
        self.position = ends[-1]
        # one decode for the batch: a newline never falls inside a character, so this
        # replaces what a decode per line would
        text = b"\n".join(lines).decode("utf-8", errors="replace")
        values = text.split("\n")
        if "\r" in text:
            values = [value.rstrip("\r") for value in values]
        return SourceBatch(topic=self.settings.topic, source_partition=self.partition,
                           values=values, source_offsets=[{"position": end} for end in ends],
                           value_schema=STRING, timestamp=int(time.time() * 1000))

    def _whole_lines(self) -> list[bytes]:
        """Up to ``batch.size`` lines after those emitted, without their newlines; a line
        still being written waits in ``unread`` for its end."""
        assert self.stream is not None
        batch_size = self.settings.batch_size
        if self.unread.count(b"\n") < batch_size:
            # read1: at most one read of the file or pipe, so standard input never waits
            # for a whole block
            self.unread += self.stream.read1(READ_BLOCK)
        lines = self.unread.split(b"\n", batch_size)
        self.unread = lines.pop()
        return lines

    def stop(self) -> None:
        if self.stream is not None and self.settings.file:
            self.stream.close()


class FileStreamSourceConnector(SourceConnector[FileSourceSettings]):
    settings = FileSourceSettings
    task_class = FileStreamSourceTask
    aliases = ("org.apache.kafka.connect.file.FileStreamSourceConnector",)

    def validate(self, settings: FileSourceSettings) -> dict[str, list[str]]:
        if settings.file and not os.access(settings.file, os.R_OK):
            return {"file": [f"{settings.file} cannot be read by this worker; check the path "
                             "and its permissions"]}
        return {}
