"""Flatten: nested structs or maps become one level, names joined by a delimiter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from kanal_worker.api.config import Settings, setting
from kanal_worker.api.errors import DataError
from kanal_worker.api.java_text import LinkedHashMap, java_items
from kanal_worker.api.records import ConnectRecord
from kanal_worker.api.schema import Schema, Type
from kanal_worker.transforms._util import (
    APACHE_PACKAGE,
    NullSafeTransform,
    SchemaCache,
    checked,
    copy_basics,
    field_value,
    infer_type,
    java_class_name,
    require_map,
    require_struct,
    struct_schema_like,
)

R = TypeVar("R", bound=ConnectRecord)

PURPOSE = "flattening"
_KEPT_AS_IS = (Type.INT8, Type.INT16, Type.INT32, Type.INT64, Type.FLOAT32, Type.FLOAT64,
               Type.BOOLEAN, Type.STRING, Type.BYTES, Type.ARRAY)


class FlattenSettings(Settings):
    delimiter: str = setting(
        ".", key="delimiter",
        doc="Delimiter to insert between field names from the input record when generating "
            "field names for the output record")


class Flatten(NullSafeTransform[R]):
    """Flatten a nested data structure, generating names for each field by concatenating the
    field names at each level with a configurable delimiter character. Applies to Struct when
    schema present, or a Map in the case of schemaless data. Array fields and their contents
    are not modified."""

    settings = FlattenSettings

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: FlattenSettings = FlattenSettings.parse(config)
        self.delimiter = parsed.delimiter
        self.cache = SchemaCache()

    def _name(self, prefix: str, name: str) -> str:
        return f"{prefix}{self.delimiter}{name}" if prefix else name

    def schemaless(self, value: Any, record: Any) -> Any:
        flat = LinkedHashMap()
        self._flatten_map(require_map(value, PURPOSE), "", flat)
        return flat

    def with_schema(self, value: Any, schema: Schema, record: Any) -> tuple[Schema, Any]:
        require_struct(value, schema, PURPOSE)
        updated = self.cache.get(schema, self._flat_schema)
        flat_struct: dict[str, Any] = {}
        self._flatten_struct(value, schema, "", flat_struct)
        for field in updated.fields:
            flat_struct[field.name] = checked(field.name, field.schema,
                                              flat_struct.get(field.name))
        return updated, flat_struct

    def _flatten_map(self, value: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
        for key, item in java_items(value):  # Apache walks the map in Java's order
            name = self._name(prefix, key)
            if item is None:
                out[name] = None
                continue
            inferred = infer_type(item)
            if inferred is None:
                raise DataError(f"Flatten transformation was passed a value of type class "
                                f"{java_class_name(item)} which is not supported by Connect's "
                                "data API")
            if inferred == Type.MAP:
                self._flatten_map(require_map(item, PURPOSE), name, out)
            else:
                out[name] = item

    def _flat_schema(self, schema: Schema) -> Schema:
        fields: list[tuple[str, Schema]] = []
        default = schema.default if isinstance(schema.default, dict) else None
        self._flat_fields(schema, "", fields, schema.optional, default)
        return struct_schema_like(schema, fields)

    def _flat_fields(self, schema: Schema, prefix: str, out: list[tuple[str, Schema]],
                     optional: bool, parent_default: Mapping[str, Any] | None) -> None:
        for field in schema.fields:
            name = self._name(prefix, field.name)
            field_optional = optional or field.schema.optional
            default = field.schema.default
            if default is None and parent_default is not None:
                default = field_value(parent_default, field, True)
            if field.schema.type in _KEPT_AS_IS:
                copied = copy_basics(field.schema)
                out.append((name, copied.with_(optional=field_optional, default=default)))
            elif field.schema.type == Type.STRUCT:
                self._flat_fields(field.schema, name, out, field_optional,
                                  default if isinstance(default, dict) else None)
            else:
                raise DataError(f"Flatten transformation does not support "
                                f"{field.schema.type.name} for record with schemas (for field "
                                f"{name}).")

    def _flatten_struct(self, value: Mapping[str, Any] | None, schema: Schema, prefix: str,
                        out: dict[str, Any]) -> None:
        if value is None:
            return
        for field in schema.fields:
            name = self._name(prefix, field.name)
            if field.schema.type in _KEPT_AS_IS:
                out[name] = field_value(value, field, True)
            elif field.schema.type == Type.STRUCT:
                self._flatten_struct(field_value(value, field, True), field.schema, name, out)
            else:
                raise DataError(f"Flatten transformation does not support "
                                f"{field.schema.type.name} for record with schemas (for field "
                                f"{name}).")


class FlattenKey(Flatten[R]):
    operates_on = "key"
    aliases = (f"{APACHE_PACKAGE}Flatten$Key",)


class FlattenValue(Flatten[R]):
    operates_on = "value"
    aliases = (f"{APACHE_PACKAGE}Flatten$Value",)
