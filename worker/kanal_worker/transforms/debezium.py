"""ExtractNewRecordState: a Debezium change event reduced to the row it leaves behind.

The one SMT nearly every Debezium-to-sink pipeline uses: the value becomes the event's
``after`` struct (named ``<prefix>.<schema>.<table>.Value``, required), so sinks see plain
rows. Deletes and tombstones are handled as ``delete.tombstone.handling.mode`` says, and
``add.fields`` / ``add.headers`` copy fields of the envelope or its ``source`` block
(``op``, ``table``, ``source.ts_ms``, ...) into the row or the headers. Records that are
not change events (heartbeats, for example) pass unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator

from kanal_worker.api.config import CommaList, Settings, setting
from kanal_worker.api.plugins import Transformation
from kanal_worker.api.records import ConnectRecord, Header
from kanal_worker.api.schema import OPTIONAL_STRING, Schema, Type, optional, struct

R = TypeVar("R", bound=ConnectRecord)

DEBEZIUM_PACKAGE = "io.debezium.transforms."
DeleteMode = Literal["drop", "tombstone", "rewrite", "rewrite-with-tombstone",
                     "delete-to-tombstone"]
DELETED_FIELD = "deleted"
"""``__deleted``: ``"true"`` on a rewritten delete, ``"false"`` on every other row."""


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


class ExtractNewRecordStateSettings(Settings):
    delete_tombstone_handling_mode: Annotated[DeleteMode | None, BeforeValidator(_lower)] = \
        setting(None, key="delete.tombstone.handling.mode",
                doc="drop: drop deletes and tombstones. tombstone (default): a delete becomes "
                    "a tombstone, the connector's own tombstone is dropped. rewrite: a delete "
                    "becomes its old row with __deleted=true, tombstones are dropped. "
                    "rewrite-with-tombstone: rewrite and keep tombstones. "
                    "delete-to-tombstone: deletes become tombstones, tombstones are kept.")
    drop_tombstones: bool = setting(
        True, key="drop.tombstones",
        doc="Deprecated by Debezium, read when delete.tombstone.handling.mode is unset: "
            "whether tombstones are dropped.")
    delete_handling_mode: Annotated[Literal["drop", "rewrite", "none"], BeforeValidator(
        _lower)] = setting(
        "none", key="delete.handling.mode",
        doc="Deprecated by Debezium, read when delete.tombstone.handling.mode is unset: "
            "drop, rewrite or none (a delete becomes a tombstone).")
    add_fields: CommaList = setting(
        [], key="add.fields",
        doc="Envelope fields (op, ts_ms) or source fields (table, schema, db, lsn, txId, "
            "source.ts_ms, ...) added to the row as __<name> (dots become underscores).")
    add_fields_prefix: str = setting("__", key="add.fields.prefix",
                                     doc="The prefix of added field names.")
    add_headers: CommaList = setting(
        [], key="add.headers",
        doc="Envelope or source fields added as headers named __<name>, like add.fields.")
    add_headers_prefix: str = setting("__", key="add.headers.prefix",
                                      doc="The prefix of added header names.")

    def mode(self) -> DeleteMode:
        """The delete handling, from the current key or the deprecated ones."""
        if self.delete_tombstone_handling_mode is not None:
            return self.delete_tombstone_handling_mode
        legacy: dict[tuple[str, bool], DeleteMode] = {
            ("none", True): "tombstone", ("none", False): "delete-to-tombstone",
            ("drop", True): "drop", ("drop", False): "drop",
            ("rewrite", True): "rewrite", ("rewrite", False): "rewrite-with-tombstone"}
        return legacy[(self.delete_handling_mode, self.drop_tombstones)]


class ExtractNewRecordState(Transformation[R]):
    settings = ExtractNewRecordStateSettings
    aliases = (f"{DEBEZIUM_PACKAGE}ExtractNewRecordState",)

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: ExtractNewRecordStateSettings = ExtractNewRecordStateSettings.parse(config)
        self.mode = parsed.mode()
        self.fields = [(spec, parsed.add_fields_prefix + spec.replace(".", "_"))
                       for spec in parsed.add_fields]
        self.headers = [(spec, parsed.add_headers_prefix + spec.replace(".", "_"))
                        for spec in parsed.add_headers]
        self.deleted = parsed.add_fields_prefix + DELETED_FIELD
        self.schemas: dict[tuple[int, bool], tuple[Schema, Schema]] = {}
        """Row schemas by envelope schema (schemas are not hashable: by id, with the
        envelope kept so its id is not reused)."""

    def apply(self, record: R) -> R | None:
        if record.value is None:
            return record if self.mode in ("rewrite-with-tombstone",
                                           "delete-to-tombstone") else None
        envelope = record.value
        schema = record.value_schema
        if not isinstance(envelope, dict) or "op" not in envelope or "after" not in envelope:
            return record
        if schema is not None and (schema.type != Type.STRUCT or schema.field("after") is None):
            return record
        headers = record.headers + [self._header(name, spec, envelope, schema)
                                    for spec, name in self.headers]
        if envelope["op"] != "d":
            row = envelope["after"]
            return self._row(record, row, schema, envelope, headers, deleted=False)
        if self.mode == "drop":
            return None
        if self.mode in ("rewrite", "rewrite-with-tombstone"):
            return self._row(record, envelope["before"], schema, envelope, headers,
                             deleted=True)
        before = schema.field("before") if schema is not None else None
        tombstone_schema = before.schema if before is not None and \
            self.mode == "tombstone" else None
        return record.replace(value=None, value_schema=tombstone_schema, headers=headers)

    def _row(self, record: R, row: Any, schema: Schema | None, envelope: dict[str, Any],
             headers: list[Header], deleted: bool) -> R:
        rewrite = self.mode in ("rewrite", "rewrite-with-tombstone")
        values = dict(row or {})
        if rewrite:
            values[self.deleted] = "true" if deleted else "false"
        for spec, name in self.fields:
            values[name] = self._lookup(spec, envelope)
        if schema is None:
            return record.replace(value=values, headers=headers)
        return record.replace(value=values, value_schema=self._schema(schema, rewrite),
                              headers=headers)

    def _schema(self, envelope: Schema, rewrite: bool) -> Schema:
        cache_key = (id(envelope), rewrite)
        cached = self.schemas.get(cache_key)
        if cached is not None:
            return cached[1]
        field = envelope.field("after") or envelope.field("before")
        assert field is not None
        fields = [(f.name, f.schema) for f in field.schema.fields]
        if rewrite:
            fields.append((self.deleted, OPTIONAL_STRING))
        fields.extend((name, self._field_schema(spec, envelope)) for spec, name in self.fields)
        built = struct(fields, name=field.schema.name, version=field.schema.version,
                       doc=field.schema.doc)
        if len(self.schemas) > 256:
            self.schemas.clear()
        self.schemas[cache_key] = (envelope, built)
        return built

    @staticmethod
    def _path(spec: str, envelope_fields: Any) -> tuple[str, ...]:
        if "." in spec:
            head, _, tail = spec.partition(".")
            return (head, tail)
        return (spec,) if spec in envelope_fields else ("source", spec)

    def _lookup(self, spec: str, envelope: dict[str, Any]) -> Any:
        value: Any = envelope
        for part in self._path(spec, envelope):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def _field_schema(self, spec: str, envelope: Schema) -> Schema:
        schema: Schema | None = envelope
        for part in self._path(spec, {f.name for f in envelope.fields}):
            found = schema.field(part) if schema is not None else None
            schema = found.schema if found is not None else None
        return optional(schema) if schema is not None else OPTIONAL_STRING

    def _header(self, name: str, spec: str, envelope: dict[str, Any],
                schema: Schema | None) -> Header:
        value = self._lookup(spec, envelope)
        return Header(name, value, self._field_schema(spec, schema) if schema is not None
                      else None)
