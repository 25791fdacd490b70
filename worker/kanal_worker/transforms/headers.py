"""DropHeaders, HeaderFrom and InsertHeader: the transforms that edit record headers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import ValidationInfo, field_validator

from kanal_worker.api.config import CommaList, Settings, setting
from kanal_worker.api.errors import DataError
from kanal_worker.api.java_text import JavaHashMap
from kanal_worker.api.plugins import Transformation
from kanal_worker.api.records import ConnectRecord, Header
from kanal_worker.api.schema import Schema
from kanal_worker.transforms._java import parse_literal
from kanal_worker.transforms._util import (
    APACHE_PACKAGE,
    KeyOrValueTransform,
    SchemaCache,
    field_value,
    replace_null_with_default_setting,
    require_map,
    require_struct,
    struct_schema_like,
)

R = TypeVar("R", bound=ConnectRecord)


def non_empty(values: list[str]) -> list[str]:
    if not values:
        raise ValueError("Empty list")
    return values


class DropHeadersSettings(Settings):
    headers: CommaList = setting(key="headers", importance="HIGH",
                                 doc="The name of the headers to be removed.")

    _non_empty = field_validator("headers")(non_empty)


class DropHeaders(Transformation[R]):
    """Removes one or more headers from each record."""

    settings = DropHeadersSettings
    aliases = (f"{APACHE_PACKAGE}DropHeaders",)

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: DropHeadersSettings = DropHeadersSettings.parse(config)
        self.headers = frozenset(parsed.headers)

    def apply(self, record: R) -> R:
        return record.replace(headers=[h for h in record.headers if h.key not in self.headers])


class HeaderFromSettings(Settings):
    fields: CommaList = setting(
        key="fields", importance="HIGH",
        doc="Field names in the record whose values are to be copied or moved to headers.")
    headers: CommaList = setting(
        key="headers", importance="HIGH",
        doc="Header names, in the same order as the field names listed in the fields "
            "configuration property.")
    operation: Literal["move", "copy"] = setting(
        key="operation", importance="HIGH",
        doc="Either move if the fields are to be moved to the headers (removed from the "
            "key/value), or copy if the fields are to be copied to the headers (retained in "
            "the key/value).")
    replace_null_with_default: bool = replace_null_with_default_setting()

    _fields_non_empty = field_validator("fields")(non_empty)

    @field_validator("headers")
    @classmethod
    def _same_length(cls, headers: list[str], info: ValidationInfo) -> list[str]:
        non_empty(headers)
        fields = info.data.get("fields")
        if fields is not None and len(fields) != len(headers):
            raise ValueError("'fields' config must have the same number of elements as "
                             "'headers' config.")
        return headers


class HeaderFrom(KeyOrValueTransform[R]):
    """Moves or copies fields in the key/value of a record into that record's headers.
    Corresponding elements of ``fields`` and ``headers`` together identify a field and the
    header it should be moved or copied to."""

    settings = HeaderFromSettings

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: HeaderFromSettings = HeaderFromSettings.parse(config)
        self.pairs = list(zip(parsed.fields, parsed.headers, strict=True))
        self.moved = frozenset(parsed.fields)
        self.move = parsed.operation == "move"
        self.purpose = f"header {parsed.operation}"
        self.replace_null_with_default = parsed.replace_null_with_default
        self.cache = SchemaCache()

    def apply(self, record: R) -> R:
        schema = self.operating_schema(record)
        value = self.operating_value(record)
        headers = list(record.headers)
        if schema is None:
            original = require_map(value, self.purpose)
            updated = JavaHashMap.copy_of(original)
            for name, header in self.pairs:
                if self.move:
                    updated.pop(name, None)
                headers.append(Header(header, original.get(name), None))
            return self.new_record(record, None, updated).replace(headers=headers)
        struct = require_struct(value, schema, self.purpose)
        updated_schema = schema
        updated_struct = struct
        if self.move:
            updated_schema = self.cache.get(schema, self._without_moved)
            updated_struct = {f.name: self._value(struct, schema, f.name)
                              for f in updated_schema.fields}
        for field_name, header in self.pairs:
            field = schema.field(field_name)
            if field is None:
                raise DataError(f"Field {field_name} does not exist in the "
                                f"{self.operates_on} schema; cannot {self.purpose}")
            headers.append(Header(header, self._value(struct, schema, field_name),
                                  field.schema))
        return self.new_record(record, updated_schema, updated_struct).replace(headers=headers)

    def _value(self, struct: Mapping[str, Any], schema: Schema, name: str) -> Any:
        field = schema.field(name)
        assert field is not None
        return field_value(struct, field, self.replace_null_with_default)

    def _without_moved(self, schema: Schema) -> Schema:
        return struct_schema_like(schema, [(f.name, f.schema) for f in schema.fields
                                           if f.name not in self.moved])


class HeaderFromKey(HeaderFrom[R]):
    operates_on = "key"
    aliases = (f"{APACHE_PACKAGE}HeaderFrom$Key",)


class HeaderFromValue(HeaderFrom[R]):
    operates_on = "value"
    aliases = (f"{APACHE_PACKAGE}HeaderFrom$Value",)


class InsertHeaderSettings(Settings):
    header: str = setting(key="header", importance="HIGH", doc="The name of the header.")
    value_literal: str = setting(
        key="value.literal", importance="HIGH",
        doc="The literal value that is to be set as the header value on all records.")


class InsertHeader(Transformation[R]):
    """Add a header to each record. The literal is typed the way Kafka Connect's
    ``Values.parseString`` types it (booleans, the narrowest integer, floats, ISO dates)."""

    settings = InsertHeaderSettings
    aliases = (f"{APACHE_PACKAGE}InsertHeader",)

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: InsertHeaderSettings = InsertHeaderSettings.parse(config)
        self.header = parsed.header
        self.schema, self.value = parse_literal(parsed.value_literal)

    def apply(self, record: R) -> R:
        return record.replace(headers=[*record.headers,
                                       Header(self.header, self.value, self.schema)])
