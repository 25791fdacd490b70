"""SetSchemaMetadata: set the name and/or version of the key or value schema."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import ValidationInfo, field_validator

from kanal_worker.api.config import Settings, setting
from kanal_worker.api.errors import DataError
from kanal_worker.api.records import ConnectRecord
from kanal_worker.api.schema import Schema, Type
from kanal_worker.transforms._util import (
    APACHE_PACKAGE,
    KeyOrValueTransform,
    SchemaCache,
    field_value,
    replace_null_with_default_setting,
    require_schema,
)

R = TypeVar("R", bound=ConnectRecord)


class SetSchemaMetadataSettings(Settings):
    schema_name: str | None = setting(None, key="schema.name", importance="HIGH",
                                      doc="Schema name to set.")
    schema_version: int | None = setting(None, key="schema.version", importance="HIGH",
                                         doc="Schema version to set.", validate_default=True)
    replace_null_with_default: bool = replace_null_with_default_setting()

    @field_validator("schema_version")
    @classmethod
    def _name_or_version(cls, version: int | None, info: ValidationInfo) -> int | None:
        if version is None and info.data.get("schema_name") is None:
            raise ValueError("Neither schema name nor version configured")
        if version is not None and not -(1 << 31) <= version < (1 << 31):
            raise ValueError("Not a number of type INT")
        return version


class SetSchemaMetadata(KeyOrValueTransform[R]):
    """Set the schema name, version or both on the record's key or value schema."""

    settings = SetSchemaMetadataSettings

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: SetSchemaMetadataSettings = SetSchemaMetadataSettings.parse(config)
        self.schema_name = parsed.schema_name
        self.schema_version = parsed.schema_version
        self.replace_null_with_default = parsed.replace_null_with_default
        self.cache = SchemaCache()

    def apply(self, record: R) -> R:
        value = self.operating_value(record)
        schema = self.operating_schema(record)
        if value is None and schema is None:
            return record
        schema = require_schema(schema, "updating schema metadata")
        if schema.type != Type.STRUCT:
            # Apache copies the fields of every schema, and only structs have fields
            raise DataError("Cannot list fields on non-struct type")
        updated = self.cache.get(schema, self._renamed)
        if isinstance(value, dict):
            value = {f.name: field_value(value, f, self.replace_null_with_default)
                     for f in updated.fields}
        return self.new_record(record, updated, value)

    def _renamed(self, schema: Schema) -> Schema:
        return schema.with_(
            name=self.schema_name if self.schema_name is not None else schema.name,
            version=self.schema_version if self.schema_version is not None else schema.version)


class SetSchemaMetadataKey(SetSchemaMetadata[R]):
    operates_on = "key"
    aliases = (f"{APACHE_PACKAGE}SetSchemaMetadata$Key",)


class SetSchemaMetadataValue(SetSchemaMetadata[R]):
    operates_on = "value"
    aliases = (f"{APACHE_PACKAGE}SetSchemaMetadata$Value",)
