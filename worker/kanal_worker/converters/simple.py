"""StringConverter, ByteArrayConverter and SimpleHeaderConverter."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import orjson

from kanal_worker.api import DataError, Schema, SchemaAndValue, Settings, Type, setting
from kanal_worker.api.plugins import Converter, HeaderConverter
from kanal_worker.api.records import ConvertedBatch
from kanal_worker.api.schema import OPTIONAL_BYTES, OPTIONAL_STRING


class StringConverterSettings(Settings):
    encoding: str = setting("UTF8", key="converter.encoding",
                            doc="The name of the Java character set used to encode strings.")


def _python_encoding(java_name: str) -> str:
    return {"UTF8": "utf-8", "UTF-8": "utf-8", "ISO-8859-1": "latin-1"}.get(
        java_name.upper(), java_name)


class StringConverter(Converter):
    settings = StringConverterSettings
    aliases = ("org.apache.kafka.connect.storage.StringConverter",)

    def __init__(self, config: Mapping[str, str], is_key: bool) -> None:
        super().__init__(config, is_key)
        side = "key" if is_key else "value"
        chosen = config.get("converter.encoding") or config.get(f"{side}.converter.encoding")
        self.encoding = _python_encoding(chosen or "UTF8")

    def to_connect(self, topic: str, data: bytes | None) -> SchemaAndValue:
        if data is None:
            return SchemaAndValue(OPTIONAL_STRING, None)
        try:
            return SchemaAndValue(OPTIONAL_STRING, data.decode(self.encoding))
        except UnicodeDecodeError as exc:
            raise DataError(f"Failed to deserialize string: {exc}") from exc

    def to_connect_batch(self, topic: str, data: list[bytes | None]) -> ConvertedBatch:
        """Decoded only when read if every item is known to decode (every byte is a
        character: a sink that never reads the keys never decodes them). In UTF-8 the
        values are verbatim: a sink printing them copies the bytes."""
        schemas: list[Schema | None] = [OPTIONAL_STRING] * len(data)
        utf8 = self.encoding == "utf-8"
        if self.encoding == "latin-1" or (utf8 and b"".join(filter(None, data)).isascii()):
            return ConvertedBatch(schemas, partial(self._decode_all, data), verbatim=utf8)
        return ConvertedBatch(schemas, self._decode_all(data), verbatim=utf8)

    def _decode_all(self, data: list[bytes | None]) -> list[str | None]:
        encoding = self.encoding
        return [None if item is None else item.decode(encoding) for item in data]

    def from_connect(self, topic: str, schema: Schema | None, value: Any) -> bytes | None:
        if value is None:
            return None
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode(self.encoding)
        return _display(value).encode(self.encoding)

    def from_connect_batch(self, topic: str, schema: Schema | None,
                           values: list[Any]) -> list[bytes | None]:
        encoding = self.encoding
        try:  # text, as a file's lines are: one encode each, no type checks
            return [value.encode(encoding) for value in values]
        except AttributeError:  # None, bytes or another type among them
            return super().from_connect_batch(topic, schema, values)


class ByteArrayConverter(Converter):
    aliases = ("org.apache.kafka.connect.converters.ByteArrayConverter",)

    def to_connect(self, topic: str, data: bytes | None) -> SchemaAndValue:
        return SchemaAndValue(OPTIONAL_BYTES, data)

    def to_connect_batch(self, topic: str, data: list[bytes | None]) -> ConvertedBatch:
        return ConvertedBatch([OPTIONAL_BYTES] * len(data), list(data), verbatim=True)

    def from_connect(self, topic: str, schema: Schema | None, value: Any) -> bytes | None:
        if schema is not None and schema.type != Type.BYTES:
            raise DataError(f"Invalid schema type for ByteArrayConverter: {schema.type}")
        if value is not None and not isinstance(value, bytes | bytearray | memoryview):
            raise DataError(
                f"ByteArrayConverter is not compatible with objects of type {type(value)}")
        return None if value is None else bytes(value)


class SimpleHeaderConverter(HeaderConverter):
    """Header values as strings; numbers, booleans, lists and maps keep their type."""

    aliases = ("org.apache.kafka.connect.storage.SimpleHeaderConverter",)

    def to_connect_header(self, topic: str, key: str, data: bytes | None) -> SchemaAndValue:
        if data is None:
            return SchemaAndValue(None, None)
        text = data.decode("utf-8", errors="replace")
        parsed = _infer(text)
        return SchemaAndValue(_schema_of(parsed), parsed)

    def from_connect_header(self, topic: str, key: str, schema: Schema | None,
                            value: Any) -> bytes | None:
        if value is None:
            return None
        if isinstance(value, bytes):
            return value
        return _display(value).encode()


def _infer(text: str) -> Any:
    """Apache's Values.parseString, for the types headers carry in practice."""
    if text in ("true", "false"):
        return text == "true"
    if text and (text[0] in "-0123456789" or text[0] in "[{"):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
        if isinstance(value, int | float | list | dict) and not isinstance(value, bool):
            return value
    return text


def _schema_of(value: Any) -> Schema | None:
    if isinstance(value, bool):
        return Schema(Type.BOOLEAN)
    if isinstance(value, int):
        return Schema(Type.INT64) if abs(value) >= 2**31 else Schema(Type.INT32)
    if isinstance(value, float):
        return Schema(Type.FLOAT64)
    if isinstance(value, str):
        return Schema(Type.STRING)
    return None


def _display(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value, default=str).decode()
    return str(value)
