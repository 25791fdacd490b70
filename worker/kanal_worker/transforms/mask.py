"""MaskField: replace field values with their type's empty value or a replacement."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import field_validator

from kanal_worker.api.config import CommaList, Settings, setting
from kanal_worker.api.errors import DataError
from kanal_worker.api.java_text import JavaHashMap, to_float32
from kanal_worker.api.records import ConnectRecord
from kanal_worker.api.schema import DECIMAL, EPOCH, Schema, Type
from kanal_worker.transforms import _java
from kanal_worker.transforms._util import (
    APACHE_PACKAGE,
    KeyOrValueTransform,
    field_value,
    infer_type,
    java_class_name,
    non_empty,
    replace_null_with_default_setting,
    require_map,
    require_struct,
)

R = TypeVar("R", bound=ConnectRecord)

PURPOSE = "mask fields"
_INTEGERS = (Type.INT8, Type.INT16, Type.INT32, Type.INT64)


class MaskFieldSettings(Settings):
    fields: CommaList = setting(key="fields", importance="HIGH", doc="Names of fields to mask.")
    replacement: str | None = setting(
        None, key="replacement", importance="LOW",
        doc="Custom value replacement, that will be applied to all 'fields' values (numeric or "
            "non-empty string values only).")
    replace_null_with_default: bool = replace_null_with_default_setting()

    _fields_given = field_validator("fields")(non_empty)

    @field_validator("replacement")
    @classmethod
    def _non_empty_string(cls, replacement: str | None) -> str | None:
        if replacement == "":
            raise ValueError("String must be non-empty")
        return replacement


class MaskField(KeyOrValueTransform[R]):
    """Mask specified fields with a valid null value for the field type (i.e. 0, false, empty
    string, and so on). For numeric and string fields, an optional replacement value can be
    specified that is converted to the correct type."""

    settings = MaskFieldSettings

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: MaskFieldSettings = MaskFieldSettings.parse(config)
        self.fields = list(dict.fromkeys(parsed.fields))
        self.masked_names = frozenset(self.fields)
        self.replacement = parsed.replacement
        self.replace_null_with_default = parsed.replace_null_with_default

    def apply(self, record: R) -> R:
        schema = self.operating_schema(record)
        value = self.operating_value(record)
        if schema is None:
            original = require_map(value, PURPOSE)
            updated = JavaHashMap.copy_of(original)
            for name in self.fields:
                updated[name] = self._masked(original.get(name), None)
            return self.new_record(record, None, updated)
        struct = require_struct(value, schema, PURPOSE)
        masked = {}
        for field in schema.fields:
            current = field_value(struct, field, self.replace_null_with_default)
            masked[field.name] = (self._masked(current, field.schema)
                                  if field.name in self.masked_names else current)
        return self.new_record(record, schema, masked)

    def _masked(self, value: Any, schema: Schema | None) -> Any:
        if value is None:
            return None
        type_ = schema.type if schema is not None else infer_type(value)
        if self.replacement is None:
            return _empty_value(value, type_, schema)
        return _replacement(value, type_, schema, self.replacement)


def _empty_value(value: Any, type_: Type | None, schema: Schema | None) -> Any:
    if isinstance(value, bool):
        return False
    if isinstance(value, decimal.Decimal):
        return decimal.Decimal(0)
    if isinstance(value, dt.datetime):
        return EPOCH
    if isinstance(value, dt.date):
        return dt.date(1970, 1, 1)
    if isinstance(value, dt.time):
        return dt.time(0)
    if type_ in _INTEGERS:
        return 0
    if type_ in (Type.FLOAT32, Type.FLOAT64):
        return 0.0
    if type_ == Type.STRING:
        return ""
    if type_ == Type.ARRAY:
        return []
    if type_ == Type.MAP:
        return {}
    raise DataError(f"Cannot mask value of type: class {java_class_name(value, schema)}")


def _replacement(value: Any, type_: Type | None, schema: Schema | None, text: str) -> Any:
    if isinstance(value, decimal.Decimal) or (schema is not None and schema.name == DECIMAL):
        try:
            return decimal.Decimal(text)
        except decimal.InvalidOperation:
            raise DataError(f"Unable to convert {text} (class java.lang.String) to number"
                            ) from None
    if isinstance(value, bool) or type_ not in (*_INTEGERS, Type.FLOAT32, Type.FLOAT64,
                                                Type.STRING):
        raise DataError(f"Cannot mask value of type class {java_class_name(value, schema)} "
                        "with custom replacement.")
    if type_ == Type.STRING:
        return text
    literal_schema, literal = _java.parse_literal(text)
    if literal_schema is None or literal_schema.type not in (*_INTEGERS, Type.FLOAT32,
                                                             Type.FLOAT64):
        raise DataError(f"Unable to convert {text} (class java.lang.String) to number")
    if type_ in (Type.FLOAT32, Type.FLOAT64):
        number = float(literal)
        return to_float32(number) if type_ == Type.FLOAT32 else number
    assert type_ is not None
    whole = int(literal)
    bits = {Type.INT8: 8, Type.INT16: 16, Type.INT32: 32, Type.INT64: 64}[type_]
    if not -(1 << (bits - 1)) <= whole < (1 << (bits - 1)):
        raise DataError(f"Value {text} is out of range for {type_.name}")
    return whole


class MaskFieldKey(MaskField[R]):
    operates_on = "key"
    aliases = (f"{APACHE_PACKAGE}MaskField$Key",)


class MaskFieldValue(MaskField[R]):
    operates_on = "value"
    aliases = (f"{APACHE_PACKAGE}MaskField$Value",)
