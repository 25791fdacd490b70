"""ReplaceField: keep, drop and rename fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import field_validator

from kanal_worker.api.config import CommaList, Settings, setting
from kanal_worker.api.java_text import (
    HASH_MAP_CAPACITY,
    JavaHashMap,
    LinkedHashMap,
    Picker,
    java_positions,
    picker,
)
from kanal_worker.api.records import ConnectRecord
from kanal_worker.api.schema import Schema
from kanal_worker.transforms._util import (
    APACHE_PACKAGE,
    MapPlan,
    NullSafeTransform,
    SchemaCache,
    field_value,
    replace_null_with_default_setting,
    require_map,
    require_struct,
    struct_schema_like,
)

R = TypeVar("R", bound=ConnectRecord)

PURPOSE = "field replacement"
PLANS = 1024
"""Key sets whose plan a transform keeps (records of a topic mostly share one)."""


def parse_renames(mappings: list[str]) -> dict[str, str]:
    """``old:new`` pairs; a later mapping of the same field wins, as in Apache's HashMap."""
    renames: dict[str, str] = {}
    for mapping in mappings:
        parts = mapping.split(":")
        if len(parts) != 2:
            raise ValueError(f"Invalid rename mapping: {mapping}")
        renames[parts[0]] = parts[1]
    return renames


class ReplaceFieldSettings(Settings):
    exclude: CommaList = setting(
        [], key="exclude",
        doc="Fields to exclude. This takes precedence over the fields to include.")
    include: CommaList = setting(
        [], key="include", doc="Fields to include. If specified, only these fields will be used.")
    renames: CommaList = setting([], key="renames", doc="Field rename mappings.")
    replace_null_with_default: bool = replace_null_with_default_setting()

    @field_validator("renames")
    @classmethod
    def _pairs(cls, renames: list[str]) -> list[str]:
        parse_renames(renames)
        return renames


class ReplaceField(NullSafeTransform[R]):
    """Filter or rename fields."""

    settings = ReplaceFieldSettings
    makes_new_values = True
    plans_maps = True

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: ReplaceFieldSettings = ReplaceFieldSettings.parse(config)
        self.exclude = frozenset(parsed.exclude)
        self.include = frozenset(parsed.include)
        self.renames = parse_renames(parsed.renames)
        self.reverse_renames = {new: old for old, new in self.renames.items()}
        self.replace_null_with_default = parsed.replace_null_with_default
        self.cache = SchemaCache()
        self._plans: dict[tuple[tuple[Any, ...], int | None], tuple[list[Any], Picker, int]] = {}

    def _kept(self, name: str) -> bool:
        return name not in self.exclude and (not self.include or name in self.include)

    def schemaless(self, value: Any, record: Any) -> Any:
        original = require_map(value, PURPOSE)
        table = None if isinstance(original, LinkedHashMap) else getattr(
            original, "table", HASH_MAP_CAPACITY)
        names, pick, new_table = self._plan(tuple(original), table)
        return JavaHashMap.filled(zip(names, pick(original), strict=True), new_table)

    def _plan(self, keys: tuple[Any, ...], table: int | None
              ) -> tuple[list[Any], Picker, int]:
        """For a map of ``keys`` (a hash map with ``table``, None: a linked map): the
        names of the fields kept,
        renamed, in Java's order, what picks their items, and the new map's table.
        Records mostly share their keys: planned once per key set."""
        plan = self._plans.get((keys, table))
        if plan is None:
            kept = [keys[at] for at in self._kept_positions(keys, table)]
            plan = ([self.renames.get(name, name) for name in kept], picker(kept),
                    JavaHashMap.sized(len(keys)).table)
            if len(self._plans) >= PLANS:
                self._plans.clear()
            self._plans[(keys, table)] = plan
        return plan

    def _kept_positions(self, keys: tuple[Any, ...], table: int | None) -> list[int]:
        """Where the kept fields of a map of ``keys`` are, in Java's order."""
        return [at for at in java_positions(keys, table) if self._kept(keys[at])]

    def map_plan(self, keys: tuple[Any, ...], table: int | None) -> MapPlan:
        sources = tuple(self._kept_positions(keys, table))
        return MapPlan(tuple(self.renames.get(keys[at], keys[at]) for at in sources), sources,
                       (None,) * len(sources), (0,) * len(sources),
                       JavaHashMap.sized(len(keys)).table)

    def with_schema(self, value: Any, schema: Schema, record: Any) -> tuple[Schema, Any]:
        struct = require_struct(value, schema, PURPOSE)
        updated_schema = self.cache.get(schema, self._replaced_schema)
        updated: dict[str, Any] = {}
        for field in updated_schema.fields:
            original_field = schema.field(self.reverse_renames.get(field.name, field.name))
            updated[field.name] = (None if original_field is None else
                                   field_value(struct, original_field,
                                               self.replace_null_with_default))
        return updated_schema, updated

    def _replaced_schema(self, schema: Schema) -> Schema:
        return struct_schema_like(schema, [(self.renames.get(f.name, f.name), f.schema)
                                           for f in schema.fields if self._kept(f.name)])


class ReplaceFieldKey(ReplaceField[R]):
    operates_on = "key"
    aliases = (f"{APACHE_PACKAGE}ReplaceField$Key",)


class ReplaceFieldValue(ReplaceField[R]):
    operates_on = "value"
    aliases = (f"{APACHE_PACKAGE}ReplaceField$Value",)
