"""Azure Blob sink: each format read back with its standard reader, and file naming."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import gzip
import io
from typing import Any

import fastavro
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kanal_worker.api import DataError, TopicPartition
from kanal_worker.api.schema import (
    BOOLEAN,
    BYTES,
    DATE,
    DECIMAL,
    FLOAT64,
    INT8,
    INT32,
    INT64,
    OPTIONAL_STRING,
    STRING,
    TIMESTAMP,
    Schema,
    Type,
    struct,
)
from kanal_worker.connectors.azure_blob.formats import (
    CHUNK,
    AvroFormat,
    BlockSpool,
    ByteArrayFormat,
    FileFormat,
    JsonFormat,
    build_format,
)
from kanal_worker.connectors.azure_blob.parquet import ParquetFormat
from kanal_worker.connectors.azure_blob.settings import AzureBlobSinkSettings
from kanal_worker.connectors.azure_blob.writer import Layout

TS = Schema(Type.INT64, name=TIMESTAMP)
DEC = Schema(Type.BYTES, name=DECIMAL, parameters={"scale": "2"})
DAY = Schema(Type.INT32, name=DATE)
READING = struct([
    ("vehicle_id", STRING), ("speed", FLOAT64), ("gear", INT8), ("ok", BOOLEAN),
    ("note", OPTIONAL_STRING), ("at", TS), ("price", DEC), ("day", DAY), ("raw", BYTES),
    ("tags", Schema(Type.ARRAY, value_schema=STRING)),
    ("counts", Schema(Type.MAP, key_schema=INT32, value_schema=INT64)),
    ("where", struct([("lat", FLOAT64), ("lon", FLOAT64)], name="kanal.Position")),
], name="kanal.telemetry.Reading", version=1)


def reading(i: int) -> dict[str, Any]:
    return {
        "vehicle_id": f"VH-{i:04d}", "speed": 50.0 + i, "gear": i % 6, "ok": i % 2 == 0,
        "note": None if i % 3 else f"note {i}",
        "at": dt.datetime(2024, 5, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i),
        "price": decimal.Decimal(i) / 4, "day": dt.date(2024, 5, 1) + dt.timedelta(days=i),
        "raw": bytes([i % 256, 0, 255]), "tags": ["a", str(i)], "counts": {i: i * 10, -1: 0},
        "where": {"lat": 48.1 + i / 1000, "lon": 2.3},
    }


def write_file(file_format: FileFormat, values: list[Any], schema: Schema | None = None,
               encoded: list[bytes | None] | None = None) -> bytes:
    """Run values through prepare/open/append/finish as the writer does; return the file."""
    spool = BlockSpool()
    prepared = [file_format.prepare(v, schema, encoded[i] if encoded else None)
                for i, v in enumerate(values)]
    writer = file_format.open(prepared[0][0], spool, "topics/t/partition=0/t+0+0000000000")
    for _, payload in prepared:
        writer.append(payload)
    writer.finish()
    return spool.take_rest()


def test_json_lines_match_kafka_connects_json_converter() -> None:
    data = write_file(JsonFormat(None), [reading(1)], READING)
    line = orjson.loads(data)
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert line["at"] == 1714521601000 and line["day"] == 19845
    assert base64.b64decode(line["raw"]) == bytes([1, 0, 255])
    assert int.from_bytes(base64.b64decode(line["price"]), "big", signed=True) == 25
    assert line["counts"] == [[1, 10], [-1, 0]]
    assert line["where"] == {"lat": 48.101, "lon": 2.3} and line["note"] is None


def test_json_writes_values_other_than_structs_as_jackson_does() -> None:
    # Confluent's JsonFormat hands a value that is not a Struct to Jackson: numbers
    # exact, maps keyed by their keys' text, bytes as base64, dates as milliseconds
    counts = Schema(Type.MAP, key_schema=INT32, value_schema=INT64)
    assert write_file(JsonFormat(None), [{1: 10, -1: 0}], counts) == b'{"1":10,"-1":0}\n'
    values = [{"price": decimal.Decimal("0.00000001"), "big": decimal.Decimal("1E+3"),
               "raw": b"\x01\x02", "at": dt.datetime(1970, 1, 1, 0, 0, 0, 5000, tzinfo=dt.UTC)}]
    assert write_file(JsonFormat(None), values) == \
        b'{"price":1E-8,"big":1E+3,"raw":"AQI=","at":5}\n'


def test_json_reuses_the_original_bytes_unless_they_span_lines() -> None:
    original = b'{"b": 1,  "a": [1, 2]}'
    pretty = b'{\n  "a": 1\n}'
    data = write_file(JsonFormat(None), [{"b": 1, "a": [1, 2]}, {"a": 1}],
                      encoded=[original, pretty])
    assert data == original + b"\n" + b'{"a":1}\n'


def test_gzip_json_round_trips_and_does_not_depend_on_timing() -> None:
    values = [{"seq": i, "pad": "x" * 200} for i in range(3 * CHUNK // 200)]
    data = write_file(JsonFormat(6), values)
    assert [orjson.loads(line) for line in gzip.decompress(data).splitlines()] == values
    assert data == write_file(JsonFormat(6), values)  # no timestamp in the gzip header


def test_avro_from_connect_schema_round_trips() -> None:
    values = [reading(i) for i in range(5)]
    data = write_file(AvroFormat("deflate"), values, READING)
    reader = fastavro.reader(io.BytesIO(data))
    writer_schema: Any = reader.writer_schema
    assert writer_schema["name"] == "kanal.telemetry.Reading"
    back: list[Any] = list(reader)
    for original, read in zip(values, back, strict=True):
        assert read["counts"] == [{"key": k, "value": v} for k, v in original["counts"].items()]
        assert {k: v for k, v in read.items() if k != "counts"} == \
            {k: v for k, v in original.items() if k != "counts"}


def test_avro_files_carry_the_converters_schema_as_confluents_do() -> None:
    # Confluent's AvroFormat writes AvroData's schema, connect.* metadata included
    writer_schema: Any = fastavro.reader(io.BytesIO(
        write_file(AvroFormat("null"), [reading(1)], READING))).writer_schema
    assert writer_schema["connect.name"] == "kanal.telemetry.Reading"
    assert writer_schema["connect.version"] == 1
    fields = {f["name"]: f["type"] for f in writer_schema["fields"]}
    assert fields["gear"]["connect.type"] == "int8"
    assert fields["counts"]["items"]["name"] == "io.confluent.connect.avro.MapEntry"


def test_avro_infers_schemas_of_schemaless_values() -> None:
    values = [{"id": i, "name": f"n{i}", "score": i / 2, "tags": ["x"], "meta": {"ok": True}}
              for i in range(3)]
    data = write_file(AvroFormat("null"), values)
    assert list(fastavro.reader(io.BytesIO(data))) == values


def test_avro_rejects_a_bad_record_before_it_touches_the_file() -> None:
    file_format = AvroFormat("null")
    with pytest.raises(DataError, match=r"value.speed = 'fast' is not a float64"):
        file_format.prepare({**reading(0), "speed": "fast"}, READING, None)
    with pytest.raises(DataError, match="mixes element types"):
        file_format.prepare({"a": [1, "x"]}, None, None)


def test_parquet_round_trips_with_codec_in_the_extension() -> None:
    values = [reading(i) for i in range(5)]
    file_format = ParquetFormat("zstd")
    assert file_format.extension == ".zstd.parquet"
    table = pq.read_table(io.BytesIO(write_file(file_format, values, READING)))
    assert table.schema.field("at").type == pa.timestamp("ms", tz="UTC")
    rows = table.to_pylist()
    for original, read in zip(values, rows, strict=True):
        assert read["counts"] == list(original["counts"].items())
        assert {k: v for k, v in read.items() if k != "counts"} == \
            {k: v for k, v in original.items() if k != "counts"}


def test_parquet_wraps_primitive_values_and_infers_schemaless_ones() -> None:
    strings = pq.read_table(io.BytesIO(write_file(ParquetFormat("snappy"), ["a", "b"], STRING)))
    assert strings.to_pylist() == [{"value": "a"}, {"value": "b"}]
    values = [{"id": 1, "name": "x"}, {"id": 2, "name": None}]
    assert pq.read_table(io.BytesIO(write_file(ParquetFormat("none"), values))).to_pylist() == \
        values


def test_byte_array_writes_raw_values_with_the_separator() -> None:
    data = write_file(ByteArrayFormat(".bin", b"\n", None), [b"\x00\x01", b"abc", "text"])
    assert data == b"\x00\x01\nabc\ntext\n"
    packed = write_file(ByteArrayFormat(".bin", b"", 9), [b"ab", b"cd"])
    assert gzip.decompress(packed) == b"abcd"
    with pytest.raises(DataError, match="ByteArrayConverter"):
        ByteArrayFormat(".bin", b"\n", None).prepare({"a": 1}, None, None)


def blocks_of_the_whole(chunks: list[bytes], block_size: int) -> tuple[list[bytes], bytes]:
    """The complete blocks of everything written, and what is left after them."""
    data = b"".join(chunks)
    cut = len(data) - len(data) % block_size
    return [data[i:i + block_size] for i in range(0, cut, block_size)], data[cut:]


@given(st.lists(st.lists(st.binary(max_size=40), max_size=6), min_size=1, max_size=6),
       st.integers(1, 30))
def test_spool_blocks_are_those_cut_from_everything_written(
        writes: list[list[bytes]], block_size: int) -> None:
    spool = BlockSpool()
    taken: list[bytes] = []
    for chunks in writes:
        for chunk in chunks:
            spool.write(chunk)
        taken += spool.take_blocks(block_size)
        assert spool.held < block_size
    rest = spool.take_rest()
    everything = [chunk for chunks in writes for chunk in chunks]
    assert (taken, rest) == blocks_of_the_whole(everything, block_size)
    assert spool.tell() == sum(map(len, everything))


@given(st.lists(st.lists(st.binary(max_size=30).filter(lambda b: b"\n" not in b),
                         min_size=1, max_size=5), max_size=6),
       st.sampled_from([None, 1]))
def test_line_files_are_the_lines_however_they_are_appended(
        runs: list[list[bytes]], gzip_level: int | None) -> None:
    spool = BlockSpool()
    writer = JsonFormat(gzip_level).open(None, spool, "f")
    for index, run in enumerate(runs):
        if index % 2:
            writer.append_run(run)
        else:
            for line in run:
                writer.append(line)
    writer.finish()
    data = spool.take_rest()
    expected = b"".join(line + b"\n" for run in runs for line in run)
    assert (gzip.decompress(data) if gzip_level is not None else data) == expected
    assert writer.pending == 0


def test_spool_hands_out_exact_blocks_and_keeps_counting() -> None:
    spool = BlockSpool()
    spool.write(b"a" * 10)
    assert spool.take_blocks(4) == [b"aaaa", b"aaaa"]
    spool.write(b"bcd")
    assert spool.take_blocks(4) == [b"aabc"] and spool.tell() == 13
    assert spool.take_rest() == b"d" and spool.take_rest() == b""


@pytest.mark.parametrize(("config", "extension"), [
    ({"format.class": "io.confluent.connect.azure.blob.format.json.JsonFormat"}, ".json"),
    ({"format.class": "JsonFormat", "az.compression.type": "gzip"}, ".json.gz"),
    ({"format.class": "io.confluent.connect.azure.blob.format.avro.AvroFormat"}, ".avro"),
    ({"format.class": "io.confluent.connect.azure.blob.format.parquet.ParquetFormat"},
     ".snappy.parquet"),
    ({"format.class": "ParquetFormat", "parquet.codec": "none"}, ".parquet"),
    ({"format.class": "io.confluent.connect.azure.blob.format.bytearray.ByteArrayFormat"},
     ".bin"),
    ({"format.class": "ByteArrayFormat", "az.compression.type": "GZIP",
      "format.bytearray.extension": ".raw"}, ".raw.gz"),
])
def test_file_names_as_confluent_writes_them(config: dict[str, str], extension: str) -> None:
    settings: AzureBlobSinkSettings = AzureBlobSinkSettings.parse(
        {"flush.size": "1", "azblob.account.name": "acct", **config})
    layout = Layout.from_settings(settings, build_format(settings))
    name = layout.blob_name(TopicPartition("vehicle.speeding", 3), "partition=3", 42)
    assert name == f"topics/vehicle.speeding/partition=3/vehicle.speeding+3+0000000042{extension}"


def test_naming_settings_change_every_part_of_the_name() -> None:
    settings: AzureBlobSinkSettings = AzureBlobSinkSettings.parse({
        "flush.size": "1", "azblob.account.name": "acct", "format.class": "JsonFormat",
        "topics.dir": "exports", "directory.delim": "|", "file.delim": "_",
        "filename.offset.zero.pad.width": "4"})
    layout = Layout.from_settings(settings, build_format(settings))
    assert layout.blob_name(TopicPartition("t", 0), "partition=0", 7) == \
        "exports|t|partition=0|t_0_0007.json"
