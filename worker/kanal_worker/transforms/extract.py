"""ExtractField and HoistField: take one field out of a struct or map, or wrap a value in one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationInfo, field_validator

from kanal_worker.api.config import Settings, setting
from kanal_worker.api.errors import DataError
from kanal_worker.api.records import ConnectRecord
from kanal_worker.api.schema import Schema, struct
from kanal_worker.transforms._fieldpath import (
    SYNTAX_VERSION_DOC,
    SYNTAX_VERSION_KEY,
    SingleFieldPath,
    SyntaxVersion,
    normalize_version,
    parse_v2,
)
from kanal_worker.transforms._util import (
    APACHE_PACKAGE,
    KeyOrValueTransform,
    SchemaCache,
    checked,
    replace_null_with_default_setting,
    require_map,
    require_struct,
)

R = TypeVar("R", bound=ConnectRecord)


class ExtractFieldSettings(Settings):
    field: str = setting(key="field", doc="Field name to extract.")
    replace_null_with_default: bool = replace_null_with_default_setting()
    field_syntax_version: SyntaxVersion = setting(
        "V1", key=SYNTAX_VERSION_KEY, importance="HIGH", doc=SYNTAX_VERSION_DOC,
        validate_default=True)

    @field_validator("field_syntax_version", mode="before")
    @classmethod
    def _case_insensitive(cls, value: object) -> object:
        return normalize_version(value)

    @field_validator("field_syntax_version")
    @classmethod
    def _path_parses(cls, version: SyntaxVersion, info: ValidationInfo) -> SyntaxVersion:
        if version == "V2" and isinstance(info.data.get("field"), str):
            parse_v2(info.data["field"])
        return version


class ExtractField(KeyOrValueTransform[R]):
    """Extract the specified field from a Struct when schema present, or a Map in the case of
    schemaless data. Any null values are passed through unmodified."""

    settings = ExtractFieldSettings
    purpose = "field extraction"

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: ExtractFieldSettings = ExtractFieldSettings.parse(config)
        self.path = SingleFieldPath(parsed.field, parsed.field_syntax_version)
        self.replace_null_with_default = parsed.replace_null_with_default

    def apply(self, record: R) -> R:
        schema = self.operating_schema(record)
        value = self.operating_value(record)
        if schema is None:
            extracted = (None if value is None
                         else self.path.value_from_map(require_map(value, self.purpose)))
            return self.new_record(record, None, extracted)
        if value is not None:
            require_struct(value, schema, self.purpose)
        field = self.path.field_from(schema)
        if field is None:
            raise DataError(f"Unknown field: {self.path.path}",
                            java_class="java.lang.IllegalArgumentException")
        extracted = (None if value is None else
                     self.path.value_from_struct(value, schema, self.replace_null_with_default))
        return self.new_record(record, field.schema, extracted)


class ExtractFieldKey(ExtractField[R]):
    operates_on = "key"
    aliases = (f"{APACHE_PACKAGE}ExtractField$Key",)


class ExtractFieldValue(ExtractField[R]):
    operates_on = "value"
    aliases = (f"{APACHE_PACKAGE}ExtractField$Value",)


class HoistFieldSettings(Settings):
    field: str = setting(key="field", doc="Field name for the single field that will be "
                         "created in the resulting Struct or Map.")


class HoistField(KeyOrValueTransform[R]):
    """Wrap data using the specified field name in a Struct when schema present, or a Map in
    the case of schemaless data."""

    settings = HoistFieldSettings

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: HoistFieldSettings = HoistFieldSettings.parse(config)
        self.field = parsed.field
        self.cache = SchemaCache()

    def apply(self, record: R) -> R:
        schema = self.operating_schema(record)
        value: Any = self.operating_value(record)
        if schema is None:
            return self.new_record(record, None, {self.field: value})
        updated = self.cache.get(schema, self._wrap)
        return self.new_record(record, updated, {self.field: checked(self.field, schema, value)})

    def _wrap(self, schema: Schema) -> Schema:
        return struct([(self.field, schema)])


class HoistFieldKey(HoistField[R]):
    operates_on = "key"
    aliases = (f"{APACHE_PACKAGE}HoistField$Key",)


class HoistFieldValue(HoistField[R]):
    operates_on = "value"
    aliases = (f"{APACHE_PACKAGE}HoistField$Value",)
