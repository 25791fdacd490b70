"""Confluent's AvroConverter: Avro with schemas in a Confluent-compatible schema registry.

Wire format: a zero magic byte, the 4-byte big-endian schema id, then the Avro binary
encoding of the value. Schemas and values map as Confluent's ``AvroData`` maps them
(``avro_data``); the registry, subjects and header are the shared registry layer's.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from typing import Any

import fastavro

from kanal_worker.api import DataError, Schema, SchemaAndValue, Type
from kanal_worker.converters.avro_data import (
    avro_datum,
    to_avro_schema,
    to_connect_schema,
    to_connect_value,
)
from kanal_worker.converters.registry import (
    HEADER,
    Lru,
    RegistryConverter,
    RegistrySchema,
    SchemaRegistry,
)

_Writer = tuple[Schema, int, Any, Callable[[Any], Any]]
"""A Connect schema, the id its records are written under, the parsed Avro schema and
what turns values into the data fastavro writes."""


class AvroConverter(RegistryConverter):
    """``io.confluent.connect.avro.AvroConverter``, wire compatible with Confluent's."""

    aliases = ("io.confluent.connect.avro.AvroConverter",)
    schema_type = "AVRO"

    def __init__(self, config: Mapping[str, str], is_key: bool,
                 registry: SchemaRegistry | None = None) -> None:
        super().__init__(config, is_key, registry)
        self._writers: Lru[tuple[str, int], _Writer] = Lru(self.options.schemas_cache_config)

    # -- writing -----------------------------------------------------------------------

    def from_connect(self, topic: str, schema: Schema | None, value: Any) -> bytes | None:
        if value is None and (schema is None or schema.optional):
            return None
        if schema is None:
            schema = _infer_schema(value)
        _, schema_id, parsed, datum = self._writer(topic, schema)
        buffer = io.BytesIO()
        buffer.write(self.header(schema_id))
        try:
            fastavro.schemaless_writer(buffer, parsed, datum(value))
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise DataError(f"Failed to serialize Avro data from topic {topic}: {exc}") from exc
        return buffer.getvalue()

    def _writer(self, topic: str, schema: Schema) -> _Writer:
        """The writer of ``schema``'s values, made once per schema object and topic (the
        runtime passes the same schema object for a run of records)."""
        key = (topic, id(schema))
        cached = self._writers.get(key)
        if cached is not None and cached[0] is schema:
            return cached
        avro = to_avro_schema(schema, self.options.connect_meta_data,
                              self.options.enhanced_avro_schema_support)
        text = json.dumps(avro, separators=(",", ":"))
        schema_id, written = self.writer_schema(topic, RegistrySchema(text, "AVRO"),
                                                _record_name(avro))
        parsed = fastavro.parse_schema(json.loads(written.schema_str))
        return self._writers.put(key, (schema, schema_id, parsed, avro_datum(schema)))

    # -- reading -----------------------------------------------------------------------

    def to_connect(self, topic: str, data: bytes | None) -> SchemaAndValue:
        if data is None:
            return SchemaAndValue(None, None)
        schema_id = self.read_header(topic, data)
        parsed, schema = self.reader(schema_id, self._parse)
        try:
            datum = fastavro.schemaless_reader(io.BytesIO(data[HEADER.size:]), parsed, None,
                                               return_named_type=True,
                                               return_named_type_override=True)
        except (ValueError, EOFError, IndexError, UnicodeDecodeError, TypeError) as exc:
            raise DataError(f"Failed to deserialize Avro data from topic {topic} with schema "
                            f"id {schema_id}: {exc}") from exc
        return SchemaAndValue(schema, to_connect_value(schema, datum))

    def _parse(self, registered: RegistrySchema) -> tuple[Any, Schema]:
        if registered.schema_type not in (None, "AVRO"):
            raise DataError(f"The record's schema is {registered.schema_type}, not Avro; use "
                            f"the converter of that format as {self.side}.converter")
        named: dict[str, Any] = {}
        for text in self.registry.references(registered).values():
            fastavro.parse_schema(json.loads(text), named)
        avro = json.loads(registered.schema_str)
        parsed = fastavro.parse_schema(avro, named)
        return parsed, to_connect_schema(avro, self.options.enhanced_avro_schema_support,
                                         named)


def _record_name(avro: Any) -> str | None:
    """The full name of a record schema (what RecordNameStrategy names its subject)."""
    if not isinstance(avro, dict) or avro.get("type") != "record":
        return None
    return ".".join(p for p in (avro.get("namespace"), avro["name"]) if p)


def _infer_schema(value: Any) -> Schema:
    """A schema for schemaless data, as far as Avro can carry it (Confluent's converter
    requires schemas; Kanal writes primitives and maps of them)."""
    if isinstance(value, bool):
        return Schema(Type.BOOLEAN, optional=True)
    if isinstance(value, int):
        return Schema(Type.INT64, optional=True)
    if isinstance(value, float):
        return Schema(Type.FLOAT64, optional=True)
    if isinstance(value, str):
        return Schema(Type.STRING, optional=True)
    if isinstance(value, bytes | bytearray):
        return Schema(Type.BYTES, optional=True)
    raise DataError(f"AvroConverter needs a schema for {type(value).__name__} values; use a "
                    "converter with schemas upstream or JsonConverter")
