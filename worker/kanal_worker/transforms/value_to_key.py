"""ValueToKey: a new key made of fields of the value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import field_validator

from kanal_worker.api.config import CommaList, Settings, setting
from kanal_worker.api.errors import DataError
from kanal_worker.api.java_text import JavaHashMap
from kanal_worker.api.plugins import Transformation
from kanal_worker.api.records import ConnectRecord
from kanal_worker.api.schema import Schema, struct
from kanal_worker.transforms._util import (
    APACHE_PACKAGE,
    SchemaCache,
    checked,
    field_value,
    non_empty,
    replace_null_with_default_setting,
    require_map,
    require_struct,
)

R = TypeVar("R", bound=ConnectRecord)

PURPOSE = "copying fields from value to key"


class ValueToKeySettings(Settings):
    fields: CommaList = setting(
        key="fields", importance="HIGH",
        doc="Field names on the record value to extract as the record key.")
    replace_null_with_default: bool = replace_null_with_default_setting()

    _fields_given = field_validator("fields")(non_empty)


class ValueToKey(Transformation[R]):
    """Replace the record key with a new key formed from a subset of fields in the record
    value."""

    settings = ValueToKeySettings
    aliases = (f"{APACHE_PACKAGE}ValueToKey",)

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: ValueToKeySettings = ValueToKeySettings.parse(config)
        self.fields = parsed.fields
        self.replace_null_with_default = parsed.replace_null_with_default
        self.cache = SchemaCache()

    def apply(self, record: R) -> R:
        if record.value_schema is None:
            value = require_map(record.value, PURPOSE)
            fields = JavaHashMap.sized(len(self.fields))
            fields.update((f, value.get(f)) for f in self.fields)
            return record.replace(key=fields, key_schema=None)
        schema = record.value_schema
        struct_value = require_struct(record.value, schema, PURPOSE)
        key_schema = self.cache.get(schema, self._key_schema)
        key = {}
        for name in self.fields:
            field = schema.field(name)
            assert field is not None  # _key_schema checked every name
            key[name] = checked(name, field.schema, field_value(struct_value, field,
                                                                self.replace_null_with_default))
        return record.replace(key=key, key_schema=key_schema)

    def _key_schema(self, schema: Schema) -> Schema:
        fields = []
        for name in self.fields:
            field = schema.field(name)
            if field is None:
                raise DataError(f"Field does not exist: {name}")
            fields.append((name, field.schema))
        return struct(fields)
