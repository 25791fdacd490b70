"""File formats: JSON lines, Avro container files, Parquet and raw bytes.

A format takes records one at a time (``prepare`` and ``FileWriter.append``) or a run of
them at once (``prepare_run`` and ``FileWriter.append_run``): a run is encoded as a
whole, lines joined once, Parquet columns built once, Avro blocks written in one go,
and the file's bytes are the same either way.

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
from bisect import bisect_left
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, TypeAlias, cast

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

if TYPE_CHECKING:
    import pyarrow as pa

    from kanal_worker.connectors.storage.avro_arrow import RowEncoder

CHUNK = 1 << 20
"""Bytes of lines gathered before they go to the compressor or the spool."""
PARQUET_ROW_GROUP = 50_000
AVRO_ROWS = 2000
"""Avro records gathered before they are encoded together."""
AVRO_BLOCK_BYTES = 16_000
"""Encoded bytes that end an Avro block: fastavro's ``sync_interval``, so files are the
ones fastavro writes record by record."""
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
        """Every complete block of ``block_size`` bytes written so far; each block is
        joined from the chunks it spans, only the chunk across its end cut in two."""
        if self._held < block_size:
            return []
        blocks: list[bytes] = []
        pieces: list[bytes] = []
        size = 0
        for chunk in self._chunks:
            pieces.append(chunk)
            size += len(chunk)
            while size >= block_size:
                over = size - block_size
                last = pieces[-1]
                pieces[-1] = last[:len(last) - over]
                blocks.append(b"".join(pieces))
                pieces = [last[len(last) - over:]] if over else []
                size = over
        self._chunks, self._held = pieces, size
        return blocks

    def take_rest(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks, self._held = [], 0
        return data


class FileWriter(ABC):
    """Writes one file's records (already checked by ``FileFormat.prepare``)."""

    @abstractmethod
    def append(self, payload: Any) -> None: ...

    def append_run(self, payloads: list[Any]) -> None:
        """Append several records' payloads (from ``prepare`` or ``prepare_run``)."""
        for payload in payloads:
            self.append(payload)

    def append_columns(self, batch: pa.RecordBatch) -> None:
        """Append a run's values as Arrow columns (only the writers of formats whose
        ``prepare_run`` makes them take them)."""
        raise NotImplementedError

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

    def prepare_run(self, values: Callable[[], list[Any]], schema: Schema | None,
                    encoded: list[bytes | None]) -> list[Segment] | None:
        """``prepare`` for a run of values sharing the record schema ``schema``: the run
        cut where the format's schema changes, as ``(format schema, count, payloads)``.

        ``values`` decodes the run's values when called (a format copying the bytes
        received may never call it). None when the run must be placed one record at
        a time: a null value (``behavior.on.null.values``) or one the format rejects
        (error handling is per record).
        """
        run = values()
        if None in run:
            return None
        try:
            prepared = [self.prepare(value, schema, None) for value in run]
        except DataError:
            return None
        return segments(prepared)

    @abstractmethod
    def open(self, schema: Schema | None, spool: BlockSpool, blob_name: str) -> FileWriter: ...


Payloads: TypeAlias = "list[Any] | pa.RecordBatch"
"""A run's payloads: one per record, or the values as Arrow columns."""
Segment = tuple[Schema | None, int, Payloads]
"""Records of a run written to one file: their format schema, count and payloads."""


def segments(prepared: list[tuple[Schema | None, Any]]) -> list[Segment]:
    """Consecutive prepared records grouped by format schema."""
    found: list[Segment] = []
    start = 0
    for end in range(1, len(prepared) + 1):
        if end == len(prepared) or prepared[end][0] is not prepared[start][0]:
            found.append((prepared[start][0], end - start,
                          [payload for _, payload in prepared[start:end]]))
            start = end
    return found


def schema_segments(run: list[Any], schema: Schema | None,
                    payloads: Callable[[Schema, list[Any]], list[Any]],
                    from_columns: Callable[[Schema, list[Any], list[tuple[Any, ...]]],
                                           Payloads] | None = None) -> list[Segment] | None:
    """The segments of a run for a format keyed on ``schemas.fit``: the record schema
    after checking every value against it, or schemas inferred from schemaless values
    (the same shape gives the same schema object). ``payloads`` makes a segment's
    payloads from its values, or ``from_columns`` from its values and columns when a
    run of schemaless values has one shape (``schemas.infer_columns``); None as for
    ``FileFormat.prepare_run``."""
    if None in run:
        return None
    try:
        if schema is not None:
            if not schemas.fits_by_columns(run, schema):
                for value in run:
                    schemas.check(value, schema)
            return [(schema, len(run), payloads(schema, run))]
        uniform = schemas.infer_columns(run)
        if uniform is not None:
            inferred_schema, columns = uniform
            return [(inferred_schema, len(run), payloads(inferred_schema, run)
                     if from_columns is None else from_columns(inferred_schema, run, columns))]
        inferred = list(map(schemas.infer, run))
    except DataError:
        return None
    found: list[Segment] = []
    start = 0
    for end in range(1, len(run) + 1):
        if end == len(run) or inferred[end] is not inferred[start]:
            found.append((inferred[start], end - start, payloads(inferred[start], run[start:end])))
            start = end
    return found


# -- line formats: JSON and bytes --------------------------------------------------------


class LineWriter(FileWriter):
    """Writes encoded lines into the spool as they come, or gathers them and feeds them
    in ``CHUNK``-sized pieces to gzip (fixed pieces keep compressed output independent
    of batch boundaries). Payloads are lines without their ``separator``."""

    def __init__(self, spool: BlockSpool, gzip_level: int | None, separator: bytes) -> None:
        self.spool = spool
        self.compressor = None if gzip_level is None else gzip.GzipFile(
            fileobj=spool, mode="wb", mtime=0, compresslevel=gzip_level)
        self.separator = separator
        self.lines: list[bytes] = []
        self.size = 0

    def append(self, payload: bytes) -> None:
        self._gather(payload + self.separator)

    def append_run(self, payloads: list[bytes]) -> None:
        self._gather(self.separator.join([*payloads, b""]))

    def _gather(self, data: bytes) -> None:
        if self.compressor is None:
            # the spool's bytes are the same however they are cut: no copy into pieces
            self.spool.write(data)
            return
        self.lines.append(data)
        self.size += len(data)
        if self.size >= CHUNK:
            data = b"".join(self.lines)
            cut = len(data) - len(data) % CHUNK
            for start in range(0, cut, CHUNK):
                self.compressor.write(data[start:start + CHUNK])
            rest = data[cut:]
            self.lines, self.size = ([rest], len(rest)) if rest else ([], 0)

    @property
    def pending(self) -> int:
        return self.size

    def finish(self) -> None:
        if self.compressor is not None:
            self.compressor.write(b"".join(self.lines))
            self.lines, self.size = [], 0
            self.compressor.close()


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
            return schema, encoded
        if schema is not None and not self.converter.is_plain(schema):
            schemas.check(value, schema)
            if schema.type == Type.STRUCT:
                value = self.converter.to_json_value(schema, value)
        return schema, dumps(value, orjson.OPT_NON_STR_KEYS)

    def prepare_run(self, values: Callable[[], list[Any]], schema: Schema | None,
                    encoded: list[bytes | None]) -> list[Segment] | None:
        if None not in encoded:
            received = cast(list[bytes], encoded)
            together = b"".join(received)
            if b"\n" not in together and b"\r" not in together:
                return [(schema, len(received), received)]  # the values as received
        return super().prepare_run(values, schema, encoded)

    def open(self, schema: Schema | None, spool: BlockSpool, blob_name: str) -> FileWriter:
        return LineWriter(spool, self.gzip_level, b"\n")


class ByteArrayFormat(FileFormat):
    """Raw values (from ByteArrayConverter) joined by ``format.bytearray.separator``."""

    def __init__(self, extension: str, separator: bytes, gzip_level: int | None) -> None:
        self.extension = extension + (".gz" if gzip_level is not None else "")
        self.separator = separator
        self.gzip_level = gzip_level

    def prepare(self, value: Any, schema: Schema | None,
                encoded: bytes | None) -> tuple[Schema | None, bytes]:
        if isinstance(value, bytes | bytearray):
            return None, bytes(value)
        if isinstance(value, str):
            return None, value.encode()
        raise DataError(f"ByteArrayFormat writes bytes values (use ByteArrayConverter); got "
                        f"{type(value).__name__}")

    def open(self, schema: Schema | None, spool: BlockSpool, blob_name: str) -> FileWriter:
        return LineWriter(spool, self.gzip_level, self.separator)


# -- Avro --------------------------------------------------------------------------------


class AvroFormat(FileFormat):
    """Avro object container files; the writer schema comes from the Connect schema
    (Confluent's AvroData mapping) or is inferred from schemaless values."""

    extension = ".avro"

    def __init__(self, codec: str) -> None:
        self.codec = codec
        self._parsed: dict[int, tuple[Schema, Any, Callable[[Any], Any], RowEncoder | None]] = {}

    def prepare(self, value: Any, schema: Schema | None,
                encoded: bytes | None) -> tuple[Schema | None, Any]:
        schema = schemas.fit(value, schema)
        return schema, self._compiled(schema)[2](value)

    def prepare_run(self, values: Callable[[], list[Any]], schema: Schema | None,
                    encoded: list[bytes | None]) -> list[Segment] | None:
        return schema_segments(values(), schema, self._data, self._columns)

    def _data(self, schema: Schema, run: list[Any]) -> list[Any]:
        return list(map(self._compiled(schema)[2], run))

    def _columns(self, schema: Schema, run: list[Any],
                 columns: list[tuple[Any, ...]]) -> Payloads:
        """The run as a record batch for the columnar encoder, when there is one and
        Arrow takes the values; else as the data fastavro writes."""
        encoder = self._compiled(schema)[3]
        batch = None
        if encoder is not None and encoder.names == [field.name for field in schema.fields]:
            batch = encoder.batch(columns)
        return self._data(schema, run) if batch is None else batch

    def _compiled(self, schema: Schema) -> tuple[Schema, Any, Callable[[Any], Any],
                                                 RowEncoder | None]:
        cached = self._parsed.get(id(schema))
        if cached is None or cached[0] is not schema:
            # the top level is never a union: null values never reach a file
            avro = to_avro_schema(schema.with_(optional=False) if schema.optional else schema)
            try:
                parsed = fastavro.parse_schema(avro)
            except fastavro.schema.SchemaParseException as exc:
                raise DataError(f"The value schema has no Avro equivalent: {exc}") from None
            cached = self._parsed[id(schema)] = (schema, parsed, avro_datum(schema),
                                                 _row_encoder(avro))
        return cached

    def open(self, schema: Schema | None, spool: BlockSpool, blob_name: str) -> FileWriter:
        assert schema is not None
        _, parsed, _, encoder = self._compiled(schema)
        return AvroWriter(spool, parsed, self.codec, hashlib.md5(blob_name.encode()).digest(),
                          encoder)


def _row_encoder(avro_schema: Any) -> RowEncoder | None:
    """The columnar encoder of ``avro_schema``'s records where pyarrow is installed
    (it is with the ``parquet`` extra), else None: fastavro encodes them."""
    try:
        from kanal_worker.connectors.storage.avro_arrow import row_encoder
    except ImportError:
        return None
    return row_encoder(avro_schema)


class _Block:
    """A block of encoded records, as ``fastavro``'s ``Writer.write_block`` reads one."""

    def __init__(self, num_records: int, data: bytes) -> None:
        self.num_records = num_records
        self.bytes_ = io.BytesIO(data)


class AvroWriter(FileWriter):
    """Encodes records ``AVRO_ROWS`` at a time (the cost of a columnar encoding is
    mostly per call), column by column when the schema allows (``avro_arrow``), else
    with fastavro, and
    cuts blocks where fastavro's own writer cuts them: after the record that brings a
    block to ``AVRO_BLOCK_BYTES``. The files are those fastavro writes record by record."""

    def __init__(self, spool: BlockSpool, parsed: Any, codec: str, sync_marker: bytes,
                 encoder: RowEncoder | None) -> None:
        self.writer = fastavro.write.Writer(cast(IO[bytes], spool), parsed, codec=codec,
                                            validator=False, sync_marker=sync_marker)
        self.parsed = parsed
        self.encoder = encoder
        self.held: list[list[Any] | pa.RecordBatch] = []
        """Records not yet encoded, in order: runs of rows, and record batches for the
        columnar encoder (``append_columns``)."""
        self.held_records = 0
        self.appended: list[Any] | None = None
        """The last part of ``held`` while records are appended one at a time."""
        self.block: list[bytes] = []
        self.block_bytes = 0
        self.block_records = 0
        self.row_bytes = 0
        """Encoded bytes per record so far, to count the records not yet encoded."""

    def append(self, payload: Any) -> None:
        if self.appended is None:
            self.appended = []
            self.held.append(self.appended)
        self.appended.append(payload)
        self._count(1)

    def append_run(self, payloads: list[Any]) -> None:
        self.appended = None
        self.held.append(payloads)
        self._count(len(payloads))

    def append_columns(self, batch: pa.RecordBatch) -> None:
        self.appended = None
        self.held.append(batch)
        self._count(batch.num_rows)

    def _count(self, records: int) -> None:
        self.held_records += records
        # a file's first records are encoded at once: their size estimates the records
        # held later, which the memory ceiling counts
        if self.held_records >= AVRO_ROWS or not self.row_bytes:
            self._encode()

    def _encode(self) -> None:
        if not self.held_records:
            return
        held, self.held, self.held_records, self.appended = self.held, [], 0, None
        encoded = None
        rows: list[Any] | None = None
        if self.encoder is not None and not any(isinstance(part, list) for part in held):
            encoded = self.encoder.batches(held)
        if encoded is None:
            rows = [row for part in held
                    for row in (part if isinstance(part, list) else part.to_pylist())]
            if self.encoder is not None:
                encoded = self.encoder(rows)
        data, ends = encoded if encoded is not None else self._one_by_one(rows or [])
        self.row_bytes = len(data) // len(ends)
        start = done = 0
        while done < len(ends):
            cut = bisect_left(ends, start + AVRO_BLOCK_BYTES - self.block_bytes, lo=done)
            if cut == len(ends):
                self._hold_block(data[start:], len(ends) - done)
                return
            self._hold_block(data[start:ends[cut]], cut + 1 - done)
            self._dump()
            start, done = ends[cut], cut + 1

    def _one_by_one(self, rows: list[Any]) -> tuple[bytes, list[int]]:
        out, ends = io.BytesIO(), []
        for row in rows:
            fastavro.schemaless_writer(out, self.parsed, row)
            ends.append(out.tell())
        return out.getvalue(), ends

    def _hold_block(self, data: bytes, records: int) -> None:
        self.block.append(data)
        self.block_bytes += len(data)
        self.block_records += records

    def _dump(self) -> None:
        self.writer.write_block(_Block(self.block_records, b"".join(self.block)))
        self.block, self.block_bytes, self.block_records = [], 0, 0

    @property
    def pending(self) -> int:
        return self.block_bytes + self.held_records * self.row_bytes

    def finish(self) -> None:
        self._encode()
        if self.block_records:
            self._dump()
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
