"""InsertField: add the record's topic, partition, offset, timestamp or a static value."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import repeat
from operator import or_
from typing import Any, TypeVar

from pydantic import ValidationInfo, field_validator

from kanal_worker.api.config import Settings, setting
from kanal_worker.api.java_text import JavaHashMap, copy_table, java_positions
from kanal_worker.api.records import ConnectRecord, SinkColumns
from kanal_worker.api.schema import EPOCH, TIMESTAMP, Field, Schema, Type
from kanal_worker.transforms._util import (
    APACHE_PACKAGE,
    MapPlan,
    NullSafeTransform,
    SchemaCache,
    field_value,
    replace_null_with_default_setting,
    require_map,
    require_sink_record,
    require_struct,
    struct_schema_like,
)

R = TypeVar("R", bound=ConnectRecord)

PURPOSE = "field insertion"
OPTIONALITY_DOC = ("Suffix with ! to make this a required field, or ? to keep it optional "
                   "(the default).")


@dataclass(frozen=True)
class InsertionSpec:
    """A field name; ``!`` at its end makes the field required, ``?`` (the default) optional."""

    name: str
    optional: bool

    @classmethod
    def parse(cls, spec: str | None) -> InsertionSpec | None:
        if spec is None:
            return None
        if spec.endswith("?"):
            return cls(spec[:-1], True)
        if spec.endswith("!"):
            return cls(spec[:-1], False)
        return cls(spec, True)

    def schema(self, type_: Type, name: str | None = None) -> Schema:
        return Schema(type_, optional=self.optional, name=name,
                      version=1 if name is not None else None)


class InsertFieldSettings(Settings):
    topic_field: str | None = setting(None, key="topic.field",
                                      doc=f"Field name for Kafka topic. {OPTIONALITY_DOC}")
    partition_field: str | None = setting(
        None, key="partition.field", doc=f"Field name for Kafka partition. {OPTIONALITY_DOC}")
    offset_field: str | None = setting(
        None, key="offset.field",
        doc=f"Field name for Kafka offset - only applicable to sink connectors. "
            f"{OPTIONALITY_DOC}")
    timestamp_field: str | None = setting(
        None, key="timestamp.field", doc=f"Field name for record timestamp. {OPTIONALITY_DOC}")
    static_field: str | None = setting(
        None, key="static.field", doc=f"Field name for static data field. {OPTIONALITY_DOC}",
        validate_default=True)
    static_value: str | None = setting(
        None, key="static.value", doc="Static field value, if field name configured.",
        validate_default=True)
    replace_null_with_default: bool = replace_null_with_default_setting()

    @field_validator("static_field")
    @classmethod
    def _something_to_insert(cls, static_field: str | None, info: ValidationInfo) -> str | None:
        others = ("topic_field", "partition_field", "offset_field", "timestamp_field")
        if static_field is None and all(info.data.get(k) is None for k in others):
            raise ValueError("No field insertion configured")
        return static_field

    @field_validator("static_value")
    @classmethod
    def _static_needs_value(cls, static_value: str | None, info: ValidationInfo) -> str | None:
        static_field = info.data.get("static_field")
        if static_field is not None and static_value is None:
            spec = InsertionSpec.parse(static_field)
            assert spec is not None
            raise ValueError(f"No value specified for static field: {spec.name}")
        return static_value


class InsertField(NullSafeTransform[R]):
    """Insert field(s) using attributes from the record metadata or a configured static
    value."""

    settings = InsertFieldSettings
    makes_new_values = True
    plans_maps = True

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: InsertFieldSettings = InsertFieldSettings.parse(config)
        self.topic = InsertionSpec.parse(parsed.topic_field)
        self.partition = InsertionSpec.parse(parsed.partition_field)
        self.offset = InsertionSpec.parse(parsed.offset_field)
        self.timestamp = InsertionSpec.parse(parsed.timestamp_field)
        self.static = InsertionSpec.parse(parsed.static_field)
        self.static_value = parsed.static_value
        self.replace_null_with_default = parsed.replace_null_with_default
        self.cache = SchemaCache()
        self.reads_record = any(spec is not None for spec in (
            self.topic, self.partition, self.offset, self.timestamp))

    def schemaless(self, value: Any, record: Any) -> Any:
        return self._schemaless(value, record, owned=False)

    def schemaless_owned(self, value: Any, record: Any) -> Any:
        return self._schemaless(value, record, owned=True)

    def _schemaless(self, value: Any, record: Any, owned: bool) -> Any:
        updated = JavaHashMap.copy_or_reuse(require_map(value, PURPOSE), owned)
        self._insert(updated, record, as_datetime=False)
        return updated

    def map_plan(self, keys: tuple[Any, ...], table: int | None) -> MapPlan:
        """The copy in Java's order (``copy_or_reuse``) with the static field set (the
        columns take the record's fields in Python)."""
        sources = list(java_positions(keys, table))
        names = [keys[at] for at in sources]
        constants: list[Any] = [None] * len(names)
        if self.static is not None and self.static_value is not None:
            if self.static.name in names:
                at = names.index(self.static.name)
                sources[at], constants[at] = -1, self.static_value
            else:
                names.append(self.static.name)
                sources.append(-1)
                constants.append(self.static_value)
        return MapPlan(tuple(names), tuple(sources), tuple(constants), (0,) * len(names),
                       copy_table(len(keys)))

    def with_schema(self, value: Any, schema: Schema, record: Any) -> tuple[Schema, Any]:
        struct = require_struct(value, schema, PURPOSE)
        updated_schema = self.cache.get(schema, self._schema_with_insertions)
        updated = {f.name: field_value(struct, f, self.replace_null_with_default)
                   for f in schema.fields}
        self._insert(updated, record, as_datetime=True)
        return updated_schema, {f.name: updated.get(f.name) for f in updated_schema.fields}

    def structs_with_schema(self, values: list[Any], schema: Schema,
                            columns: SinkColumns) -> tuple[Schema, list[Any]] | None:
        """Structs that are plain dicts, their fields read as ``field_value`` reads them
        and the insertions added as ``_insert`` adds them, a field of all at a time."""
        if schema.type != Type.STRUCT or set(map(type, values)) != {dict}:
            return None
        updated_schema = self.cache.get(schema, self._schema_with_insertions)
        field_names = tuple(f.name for f in schema.fields)
        defaulted = ([f.name for f in schema.fields if f.schema.default is not None]
                     if self.replace_null_with_default else [])
        structs = values  # each holds just its fields, in order, none to default: as read
        if set(map(tuple, values)) != {field_names} or any(
                None in list(map(dict.get, values, repeat(name))) for name in defaulted):
            structs = self._read_fields(values, schema)
        added = updated_schema.fields[len(schema.fields):]
        return updated_schema, list(map(or_, structs, self._additions(added, columns)))

    def _read_fields(self, structs: list[dict[str, Any]], schema: Schema) -> list[Any]:
        """New dicts of the fields of ``structs`` as ``field_value`` reads them."""
        if not schema.fields:
            return [{} for _ in structs]
        fields = []
        for field in schema.fields:
            items = list(map(dict.get, structs, repeat(field.name)))
            default = field.schema.default
            if self.replace_null_with_default and default is not None and None in items:
                items = [default if item is None else item for item in items]
            fields.append(items)
        names = [field.name for field in schema.fields]
        return list(map(dict, map(zip, repeat(names), zip(*fields, strict=True))))

    def _additions(self, added: tuple[Field, ...],
                   columns: SinkColumns) -> Iterable[dict[str, Any]]:
        """Per record the inserted fields (``added``, in the updated schema's order) and
        their values, as ``_insert`` sets them."""
        if not self.reads_record:  # then only the static value, the same in every record
            assert self.static is not None
            return repeat({self.static.name: self.static_value}, len(columns))
        inserted: list[list[Any] | tuple[Any, ...]] = []
        if self.topic is not None:
            inserted.append(columns.topics)
        if self.partition is not None:
            inserted.append(columns.partitions)
        if self.offset is not None:
            inserted.append(columns.offsets)
        if self.timestamp is not None:
            inserted.append([EPOCH + dt.timedelta(milliseconds=timestamp) if kind else None
                             for kind, timestamp in columns.timestamps])
        if self.static is not None:
            inserted.append((self.static_value,) * len(columns))
        names = [field.name for field in added]
        return map(dict, map(zip, repeat(names), zip(*inserted, strict=True)))

    def _insert(self, updated: dict[str, Any], record: ConnectRecord | None,
                as_datetime: bool) -> None:
        if record is not None:  # None on columns when only a static field is inserted
            self._insert_from(record, updated, as_datetime)
        if self.static is not None and self.static_value is not None:
            updated[self.static.name] = self.static_value

    def _insert_from(self, record: ConnectRecord, updated: dict[str, Any],
                     as_datetime: bool) -> None:
        if self.topic is not None:
            updated[self.topic.name] = record.topic
        if self.partition is not None and record.kafka_partition is not None:
            updated[self.partition.name] = record.kafka_partition
        if self.offset is not None:
            updated[self.offset.name] = require_sink_record(record, PURPOSE).kafka_offset
        if self.timestamp is not None and record.timestamp is not None:
            updated[self.timestamp.name] = (
                EPOCH + dt.timedelta(milliseconds=record.timestamp) if as_datetime
                else record.timestamp)

    def _schema_with_insertions(self, schema: Schema) -> Schema:
        fields = [(f.name, f.schema) for f in schema.fields]
        if self.topic is not None:
            fields.append((self.topic.name, self.topic.schema(Type.STRING)))
        if self.partition is not None:
            fields.append((self.partition.name, self.partition.schema(Type.INT32)))
        if self.offset is not None:
            fields.append((self.offset.name, self.offset.schema(Type.INT64)))
        if self.timestamp is not None:
            fields.append((self.timestamp.name, self.timestamp.schema(Type.INT64, TIMESTAMP)))
        if self.static is not None:
            fields.append((self.static.name, self.static.schema(Type.STRING)))
        return struct_schema_like(schema, fields)


class InsertFieldKey(InsertField[R]):
    operates_on = "key"
    aliases = (f"{APACHE_PACKAGE}InsertField$Key",)


class InsertFieldValue(InsertField[R]):
    operates_on = "value"
    aliases = (f"{APACHE_PACKAGE}InsertField$Value",)
