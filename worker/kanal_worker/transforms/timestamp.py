"""TimestampConverter: between Unix epochs, formatted strings and Connect's Date, Time and
Timestamp logical types, for a field or the whole key or value."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationInfo, field_validator

from kanal_worker.api.config import Settings, setting
from kanal_worker.api.errors import DataError
from kanal_worker.api.java_text import JavaHashMap
from kanal_worker.api.records import ConnectRecord
from kanal_worker.api.schema import (
    DATE,
    EPOCH,
    TIME,
    TIMESTAMP,
    Schema,
    Type,
    date_days,
    time_millis,
    timestamp_millis,
)
from kanal_worker.transforms._dateformat import SimpleDateFormat
from kanal_worker.transforms._util import (
    APACHE_PACKAGE,
    KeyOrValueTransform,
    SchemaCache,
    field_value,
    java_class_name,
    replace_null_with_default_setting,
    require_map,
    require_struct,
    struct_schema_like,
)

R = TypeVar("R", bound=ConnectRecord)

PURPOSE = "converting timestamp formats"
MILLIS_PER_DAY = 86_400_000
LONG_MIN, LONG_MAX = -(1 << 63), (1 << 63) - 1
TARGET_TYPES = ("string", "unix", "Date", "Time", "Timestamp")
UNIX_PRECISIONS = ("nanoseconds", "microseconds", "milliseconds", "seconds")
_MILLIS_PER_UNIT = {"seconds": 1000, "milliseconds": 1}
_UNITS_PER_MILLI = {"microseconds": 1000, "nanoseconds": 1_000_000}
_LOGICAL_TYPE = {TIMESTAMP: "Timestamp", DATE: "Date", TIME: "Time"}


def _one_of(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"String must be one of: {', '.join(allowed)}")
    return value


class TimestampConverterSettings(Settings):
    field: str = setting(
        "", key="field", importance="HIGH",
        doc="The field containing the timestamp, or empty if the entire value is a timestamp")
    target_type: str = setting(
        key="target.type", importance="HIGH",
        doc="The desired timestamp representation: string, unix, Date, Time, or Timestamp")
    format: str = setting(
        "", key="format", validate_default=True,
        doc="A SimpleDateFormat-compatible format for the timestamp. Used to generate the "
            "output when type=string or used to parse the input if the input is a string.")
    unix_precision: str = setting(
        "milliseconds", key="unix.precision", importance="LOW",
        doc="The desired Unix precision for the timestamp: seconds, milliseconds, "
            "microseconds, or nanoseconds. Used to generate the output when type=unix or used "
            "to parse the input if the input is a Long. Note: This SMT will cause precision "
            "loss during conversions from, and to, values with sub-millisecond components.")
    replace_null_with_default: bool = replace_null_with_default_setting()

    @field_validator("target_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        return _one_of(value, TARGET_TYPES)

    @field_validator("unix_precision")
    @classmethod
    def _known_precision(cls, value: str) -> str:
        return _one_of(value, UNIX_PRECISIONS)

    @field_validator("format")
    @classmethod
    def _usable_format(cls, pattern: str, info: ValidationInfo) -> str:
        if info.data.get("target_type") == "string" and not pattern.strip():
            raise ValueError("TimestampConverter requires format option to be specified when "
                             "using string timestamps")
        if pattern.strip():
            try:
                SimpleDateFormat(pattern)
            except ValueError:
                raise ValueError("TimestampConverter requires a SimpleDateFormat-compatible "
                                 f"pattern for string timestamps: {pattern}") from None
        return pattern


def _saturating(value: int) -> int:
    return max(LONG_MIN, min(LONG_MAX, value))


def _truncating_div(value: int, divisor: int) -> int:
    """Java's integer division, which rounds toward zero."""
    quotient = abs(value) // divisor
    return -quotient if value < 0 else quotient


def _millis(value: dt.datetime | dt.date | dt.time) -> int:
    if isinstance(value, dt.datetime):
        return timestamp_millis(value)
    if isinstance(value, dt.date):
        return date_days(value) * MILLIS_PER_DAY
    return time_millis(value)


def _moment(millis: int) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=millis)


def _target_schema(target: str, optional: bool) -> Schema:
    if target == "string":
        return Schema(Type.STRING, optional=optional)
    if target == "unix":
        return Schema(Type.INT64, optional=optional)
    logical = {"Date": DATE, "Time": TIME, "Timestamp": TIMESTAMP}[target]
    return Schema(Type.INT64 if target == "Timestamp" else Type.INT32, optional=optional,
                  name=logical, version=1)


def _schema_text(schema: Schema) -> str:
    kind = schema.type.name
    return f"Schema{{{schema.name}:{kind}}}" if schema.name else f"Schema{{{kind}}}"


class TimestampConverter(KeyOrValueTransform[R]):
    """Convert timestamps between different formats such as Unix epoch, strings, and Connect
    Date/Timestamp types. Applies to individual fields or to the entire value."""

    settings = TimestampConverterSettings

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: TimestampConverterSettings = TimestampConverterSettings.parse(config)
        self.field = parsed.field
        self.target = parsed.target_type
        self.format = SimpleDateFormat(parsed.format) if parsed.format.strip() else None
        self.unix_precision = parsed.unix_precision
        self.replace_null_with_default = parsed.replace_null_with_default
        self.cache = SchemaCache()

    def apply(self, record: R) -> R:
        schema = self.operating_schema(record)
        value = self.operating_value(record)
        if schema is None:
            if value is None or not self.field:
                return self.new_record(record, None, self.convert(value, None))
            updated = JavaHashMap.copy_of(require_map(value, PURPOSE))
            updated[self.field] = self.convert(updated.get(self.field), None)
            return self.new_record(record, None, updated)
        if not self.field:
            return self.new_record(record, _target_schema(self.target, schema.optional),
                                   self.convert(value, source_type(schema)))
        if value is not None:
            require_struct(value, schema, PURPOSE)
        elif schema.type != Type.STRUCT:
            raise DataError("Cannot list fields on non-struct type")
        updated_schema = self.cache.get(schema, self._converted_schema)
        return self.new_record(record, updated_schema, self._convert_struct(value, schema))

    def _converted_schema(self, schema: Schema) -> Schema:
        fields = [(f.name, _target_schema(self.target, f.schema.optional)
                   if f.name == self.field else f.schema) for f in schema.fields]
        updated = struct_schema_like(schema, fields)
        if schema.optional:
            updated = updated.with_(optional=True)
        if isinstance(schema.default, dict):
            updated = updated.with_(default=self._convert_struct(schema.default, schema))
        return updated

    def _convert_struct(self, value: Mapping[str, Any] | None, schema: Schema
                        ) -> dict[str, Any] | None:
        if value is None:
            return None
        converted = {}
        for field in schema.fields:
            current = field_value(value, field, self.replace_null_with_default)
            converted[field.name] = (self.convert(current, source_type(field.schema))
                                     if field.name == self.field else current)
        return converted

    def convert(self, value: Any, source: str | None) -> Any:
        """``value`` of type ``source`` (inferred when None) in the target representation."""
        if value is None:
            return None
        if source is None:
            source = infer_source_type(value)
        return self._to_target(self._to_millis(value, source))

    def _to_millis(self, value: Any, source: str) -> int:
        if source == "string":
            if not isinstance(value, str):
                raise DataError("Expected string timestamp to be a String, but found class "
                                f"{java_class_name(value)}")
            if self.format is None:
                raise DataError("TimestampConverter requires format option to be specified "
                                "when using string timestamps")
            try:
                return _millis(self.format.parse(value))
            except (DataError, ValueError, OverflowError):
                raise DataError(f"Could not parse timestamp: value ({value}) does not match "
                                f"pattern ({self.format.pattern})") from None
        if source == "unix":
            if isinstance(value, bool) or not isinstance(value, int):
                raise DataError("Expected Unix timestamp to be a Long, but found class "
                                f"{java_class_name(value)}")
            if self.unix_precision in _MILLIS_PER_UNIT:
                return _saturating(value * _MILLIS_PER_UNIT[self.unix_precision])
            return _truncating_div(value, _UNITS_PER_MILLI[self.unix_precision])
        if not isinstance(value, dt.datetime | dt.date | dt.time):
            raise DataError(f"Expected {source} to be a java.util.Date, but found class "
                            f"{java_class_name(value)}")
        return _millis(value)

    def _to_target(self, millis: int) -> Any:
        if self.target == "string":
            assert self.format is not None  # settings require a format for strings
            return self.format.format(_moment(millis))
        if self.target == "unix":
            if self.unix_precision in _MILLIS_PER_UNIT:
                return _truncating_div(millis, _MILLIS_PER_UNIT[self.unix_precision])
            return _saturating(millis * _UNITS_PER_MILLI[self.unix_precision])
        if self.target == "Date":
            return _moment(millis).date()
        if self.target == "Time":
            return _moment(millis % MILLIS_PER_DAY).time()
        return _moment(millis)


def source_type(schema: Schema) -> str:
    """The timestamp representation a schema describes (Apache's timestampTypeFromSchema)."""
    if schema.name in _LOGICAL_TYPE:
        return _LOGICAL_TYPE[schema.name]
    if schema.type == Type.STRING:
        return "string"
    if schema.type == Type.INT64:
        return "unix"
    raise DataError(f"Schema {_schema_text(schema)} does not correspond to a known timestamp "
                    "type format")


def infer_source_type(value: Any) -> str:
    """Schemaless values: dates and times are Timestamps, integers Unix times, text strings."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return "Timestamp"
    if isinstance(value, int) and not isinstance(value, bool):
        return "unix"
    if isinstance(value, str):
        return "string"
    raise DataError(f"TimestampConverter does not support class {java_class_name(value)} "
                    "objects as timestamps")


class TimestampConverterKey(TimestampConverter[R]):
    operates_on = "key"
    aliases = (f"{APACHE_PACKAGE}TimestampConverter$Key",)


class TimestampConverterValue(TimestampConverter[R]):
    operates_on = "value"
    aliases = (f"{APACHE_PACKAGE}TimestampConverter$Value",)
