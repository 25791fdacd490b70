"""File formats: JSON lines, Avro container files, Parquet and raw bytes.

Every format writes into a ``BlockSpool``, which hands out the file's bytes in blocks
of the store's part size (``azblob.block.size``, ``s3.part.size``) for staging while
the file is still open, so memory per open file stays around one block. Output is a
pure function of the records written (gzip without a timestamp, Avro sync markers
derived from the file name, Parquet row groups cut every ``PARQUET_ROW_GROUP`` records,
compression fed in fixed-size chunks): a replay writes the same bytes, not only the
same records.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import IO, Any, cast

import fastavro
import orjson

from kanal_worker.api import DataError
from kanal_worker.api.schema import (
    Schema,
    Type,
)
from kanal_worker.connectors.storage import schemas
from kanal_worker.connectors.storage.settings import StorageSinkSettings
from kanal_worker.converters.avro_data import avro_datum, to_avro_schema
from kanal_worker.converters.json import JsonConverter, dumps

CHUNK = 1 << 20
"""Bytes of lines gathered before they go to the compressor or the spool."""
PARQUET_ROW_GROUP = 50_000
PARQUET_EXTENSIONS = {"none": "", "snappy": ".snappy", "gzip": ".gz", "zstd": ".zstd",
                      "brotli": ".br"}


class BlockSpool(io.RawIOBase):
    """A write-only stream that keeps only what was not yet handed out as blocks.

    ``tell`` counts every byte ever written, as Parquet's writer expects of a file.
    """

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []
        self._held = 0
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        if chunk:
            self._chunks.append(chunk)
            self._held += len(chunk)
            self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    @property
    def held(self) -> int:
        return self._held

    def take_blocks(self, block_size: int) -> list[bytes]:
        """Every complete block of ``block_size`` bytes written so far."""
        if self._held < block_size:
            return []
        data = b"".join(self._chunks)
        cut = len(data) - len(data) % block_size
        self._chunks = [data[cut:]] if cut < len(data) else []
        self._held = len(data) - cut
        return [data[i:i + block_size] for i in range(0, cut, block_size)]

    def take_rest(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks, self._held = [], 0
        return data


class FileWriter(ABC):
    """Writes one file's records (already checked by ``FileFormat.prepare``)."""

    @abstractmethod
    def append(self, payload: Any) -> None: ...

    @abstractmethod
    def finish(self) -> None:
        """Write what remains (trailers, footers) into the spool."""

    @property
    def pending(self) -> int:
        """Encoded bytes held back from the spool (for the task's memory ceiling)."""
        return 0


class FileFormat(ABC):
    extension: str
    rooted_in_struct = False
    """Whether files need a struct per record: keys and headers then go in one, as
    Confluent's storage sinks envelope them for Parquet (``RecordKey.key``,
    ``RecordHeaders.headers``)."""

    @abstractmethod
    def prepare(self, value: Any, schema: Schema | None,
                encoded: bytes | None) -> tuple[Schema | None, Any]:
        """Check one record value and turn it into what ``FileWriter.append`` takes.

        Returns the schema that files are keyed on (None for schemaless formats or
        values) and the payload; raises DataError for a value the format cannot hold.
        ``encoded`` is the value's own JSON when the converter kept it.
        """

    @abstractmethod
    def open(self, schema: Schema | None, spool: BlockSpool, blob_name: str) -> FileWriter: ...


# -- line formats: JSON and bytes --------------------------------------------------------


class LineWriter(FileWriter):
    """Gathers encoded lines and feeds them in ``CHUNK``-sized pieces to the spool or
    to gzip (fixed pieces keep compressed output independent of batch boundaries)."""

    def __init__(self, spool: BlockSpool, gzip_level: int | None) -> None:
        self.sink: io.RawIOBase | gzip.GzipFile = spool
        if gzip_level is not None:
            self.sink = gzip.GzipFile(fileobj=spool, mode="wb", mtime=0,
                                      compresslevel=gzip_level)
        self.lines: list[bytes] = []
        self.size = 0

    def append(self, payload: bytes) -> None:
        self.lines.append(payload)
        self.size += len(payload)
        if self.size >= CHUNK:
            data = b"".join(self.lines)
            cut = len(data) - len(data) % CHUNK
            for start in range(0, cut, CHUNK):
                self.sink.write(data[start:start + CHUNK])
            rest = data[cut:]
            self.lines, self.size = ([rest], len(rest)) if rest else ([], 0)

    @property
    def pending(self) -> int:
        return self.size

    def finish(self) -> None:
        self.sink.write(b"".join(self.lines))
        self.lines, self.size = [], 0
        if isinstance(self.sink, gzip.GzipFile):
            self.sink.close()


class JsonFormat(FileFormat):
    """One JSON document per line, as Confluent's JsonFormat writes them: a Struct through
    JsonConverter without schemas, any other value as Jackson writes it (maps keyed by the
    keys' text). Unchanged values reuse the bytes they came from."""

    def __init__(self, gzip_level: int | None) -> None:
        self.gzip_level = gzip_level
        self.extension = ".json" + (".gz" if gzip_level is not None else "")
        self.converter = JsonConverter({"schemas.enable": "false"}, False)

    def prepare(self, value: Any, schema: Schema | None,
                encoded: bytes | None) -> tuple[Schema | None, bytes]:
        if encoded is not None and b"\n" not in encoded and b"\r" not in encoded:
            return schema, encoded + b"\n"
        if schema is not None and not self.converter.is_plain(schema):
            schemas.check(value, schema)
            if schema.type == Type.STRUCT:
                value = self.converter.to_json_value(schema, value)
        return schema, dumps(value, orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)

    def open(self, schema: Schema | None, spool: BlockSpool, blob_name: str) -> FileWriter:
        return LineWriter(spool, self.gzip_level)


class ByteArrayFormat(FileFormat):
    """Raw values (from ByteArrayConverter) joined by ``format.bytearray.separator``."""

    def __init__(self, extension: str, separator: bytes, gzip_level: int | None) -> None:
        self.extension = extension + (".gz" if gzip_level is not None else "")
        self.separator = separator
        self.gzip_level = gzip_level

    def prepare(self, value: Any, schema: Schema | None,
                encoded: bytes | None) -> tuple[Schema | None, bytes]:
        if isinstance(value, bytes | bytearray):
            return None, bytes(value) + self.separator
        if isinstance(value, str):
            return None, value.encode() + self.separator
        raise DataError(f"ByteArrayFormat writes bytes values (use ByteArrayConverter); got "
                        f"{type(value).__name__}")

    def open(self, schema: Schema | None, spool: BlockSpool, blob_name: str) -> FileWriter:
        return LineWriter(spool, self.gzip_level)


# -- Avro --------------------------------------------------------------------------------


class AvroFormat(FileFormat):
    """Avro object container files; the writer schema comes from the Connect schema
    (Confluent's AvroData mapping) or is inferred from schemaless values."""

    extension = ".avro"

    def __init__(self, codec: str) -> None:
        self.codec = codec
        self._parsed: dict[int, tuple[Schema, Any, Callable[[Any], Any]]] = {}

    def prepare(self, value: Any, schema: Schema | None,
                encoded: bytes | None) -> tuple[Schema | None, Any]:
        schema = schemas.fit(value, schema)
        return schema, self._compiled(schema)[2](value)

    def _compiled(self, schema: Schema) -> tuple[Schema, Any, Callable[[Any], Any]]:
        cached = self._parsed.get(id(schema))
        if cached is None or cached[0] is not schema:
            # the top level is never a union: null values never reach a file
            avro = to_avro_schema(schema.with_(optional=False) if schema.optional else schema)
            try:
                parsed = fastavro.parse_schema(avro)
            except fastavro.schema.SchemaParseException as exc:
                raise DataError(f"The value schema has no Avro equivalent: {exc}") from None
            cached = self._parsed[id(schema)] = (schema, parsed, avro_datum(schema))
        return cached

    def open(self, schema: Schema | None, spool: BlockSpool, blob_name: str) -> FileWriter:
        assert schema is not None
        return AvroWriter(spool, self._compiled(schema)[1], self.codec,
                          hashlib.md5(blob_name.encode()).digest())


class AvroWriter(FileWriter):
    def __init__(self, spool: BlockSpool, parsed: Any, codec: str, sync_marker: bytes) -> None:
        self.writer = fastavro.write.Writer(cast(IO[bytes], spool), parsed, codec=codec,
                                            validator=False, sync_marker=sync_marker)

    def append(self, payload: Any) -> None:
        self.writer.write(payload)

    def finish(self) -> None:
        self.writer.flush()


# -- choosing ----------------------------------------------------------------------------


def build_format(settings: StorageSinkSettings, format_class: str | None = None) -> FileFormat:
    """The format of ``format.class``, or of ``format_class`` (the keys' or headers' files)
    with the same codecs and compression."""
    gzip_level = None
    if settings.compression_type == "gzip":
        gzip_level = 6 if settings.compression_level < 0 else settings.compression_level
    match format_class or settings.format_class:
        case "AvroFormat":
            return AvroFormat(settings.avro_codec)
        case "ParquetFormat":
            # pyarrow costs ~40 MB of memory: load it only for connectors that write Parquet
            from kanal_worker.connectors.storage.parquet import ParquetFormat
            return ParquetFormat(settings.parquet_codec)
        case "ByteArrayFormat":
            return ByteArrayFormat(settings.format_bytearray_extension,
                                   settings.format_bytearray_separator.encode(), gzip_level)
    return JsonFormat(gzip_level)


def format_problems(settings: StorageSinkSettings) -> dict[str, list[str]]:
    """Format settings this machine cannot honour, by key."""
    if settings.store_kafka_headers and settings.headers_format_class == "ByteArrayFormat":
        return {"headers.format.class": ["ByteArrayFormat writes bytes, not the list of "
                                         "headers; use AvroFormat, JsonFormat or "
                                         "ParquetFormat"]}
    if settings.format_class == "AvroFormat" and settings.avro_codec != "null":
        try:
            fastavro.writer(io.BytesIO(), {"type": "string"}, ["probe"],
                            codec=settings.avro_codec)
        except (ValueError, ImportError) as exc:
            return {"avro.codec": [f"avro.codec={settings.avro_codec} is not available here "
                                   f"({exc}); choose null, deflate, bzip2 or xz"]}
    return {}
