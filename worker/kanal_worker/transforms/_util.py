"""What the transforms share: Apache's requirement checks, schema copies, caches, and the
key/value split (``$Key`` / ``$Value`` variants).

Struct values are plain dicts in field order; a struct's schema says which fields exist.
Error messages follow Apache's ``Requirements`` so people searching for them find answers.
"""

from __future__ import annotations

import datetime as dt
import decimal
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from itertools import groupby, repeat
from typing import Any, ClassVar, Generic, NamedTuple, TypeGuard, TypeVar

from kanal_worker import native
from kanal_worker.api.config import setting
from kanal_worker.api.errors import ConfigError, DataError
from kanal_worker.api.java_text import JavaHashMap, LinkedHashMap, double_to_string
from kanal_worker.api.plugins import Transformation
from kanal_worker.api.records import ConnectRecord, ConvertedBatch, SinkColumns, SinkRecord
from kanal_worker.api.schema import Field, Schema, Type

R = TypeVar("R", bound=ConnectRecord)

APACHE_PACKAGE = "org.apache.kafka.connect.transforms."


def replace_null_with_default_setting() -> Any:
    """Apache's ``replace.null.with.default``, which every transform reading struct fields
    accepts."""
    return setting(True, key="replace.null.with.default",
                   doc="Whether to replace fields that have a default value and that are "
                       "null to the default value. When set to true, the default value is "
                       "used, otherwise null is used.")


def non_empty(values: list[str]) -> list[str]:
    """A validator: the list must hold something (Apache's message)."""
    if not values:
        raise ValueError("Empty list")
    return values


def config_checked(check: Callable[[str, str], object], key: str) -> Callable[[str], str]:
    """A validator running ``check(value, key)``: its ConfigError becomes the ValueError
    that settings report under the key."""
    def validate(value: str) -> str:
        try:
            check(value, key)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return value
    return validate

_JAVA_CLASS_BY_TYPE = {
    Type.INT8: "java.lang.Byte",
    Type.INT16: "java.lang.Short",
    Type.INT32: "java.lang.Integer",
    Type.INT64: "java.lang.Long",
    Type.FLOAT32: "java.lang.Float",
    Type.FLOAT64: "java.lang.Double",
    Type.BOOLEAN: "java.lang.Boolean",
    Type.STRING: "java.lang.String",
    Type.BYTES: "[B",
    Type.ARRAY: "java.util.ArrayList",
    Type.MAP: "java.util.HashMap",
    Type.STRUCT: "org.apache.kafka.connect.data.Struct",
}


def java_class_name(value: Any, schema: Schema | None = None) -> str:
    """The Java class Apache would hold ``value`` in, for error messages people can search."""
    if value is None:
        return "null"
    if schema is not None:
        if schema.type == Type.STRUCT and not isinstance(value, dict):
            return java_class_name(value)
        return _JAVA_CLASS_BY_TYPE[schema.type]
    inferred = infer_type(value)
    if inferred is not None:
        return _JAVA_CLASS_BY_TYPE[inferred]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return "java.util.Date"
    if isinstance(value, decimal.Decimal):
        return "java.math.BigDecimal"
    return f"{type(value).__module__}.{type(value).__qualname__}"


def infer_type(value: Any) -> Type | None:
    """Apache's ``ConnectSchema.schemaType`` for schemaless values (JSON integers are longs)."""
    if isinstance(value, bool):
        return Type.BOOLEAN
    if isinstance(value, int):
        return Type.INT64
    if isinstance(value, float):
        return Type.FLOAT64
    if isinstance(value, str):
        return Type.STRING
    if isinstance(value, bytes | bytearray | memoryview):
        return Type.BYTES
    if isinstance(value, list | tuple):
        return Type.ARRAY
    if isinstance(value, dict):
        return Type.MAP
    return None


def require_map(value: Any, purpose: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError("Only Map objects supported in absence of schema for "
                        f"[{purpose}], found: {java_class_name(value)}")
    return value


def require_struct(value: Any, schema: Schema, purpose: str) -> dict[str, Any]:
    if schema.type != Type.STRUCT or not isinstance(value, dict):
        raise DataError(f"Only Struct objects supported for [{purpose}], found: "
                        f"{java_class_name(value, schema)}")
    return value


def require_schema(schema: Schema | None, purpose: str) -> Schema:
    if schema is None:
        raise DataError(f"Schema required for [{purpose}]")
    return schema


def require_sink_record(record: ConnectRecord, purpose: str) -> SinkRecord:
    if not isinstance(record, SinkRecord):
        kind = ("org.apache.kafka.connect.source.SourceRecord"
                if type(record).__name__ == "SourceRecord" else type(record).__name__)
        raise DataError(f"Only SinkRecord supported for [{purpose}], found: {kind}")
    return record


def field_value(struct: Mapping[str, Any], field: Field, with_default: bool) -> Any:
    """``Struct.get`` (a null falls back to the field's default) or ``getWithoutDefault``."""
    value = struct.get(field.name)
    if value is None and with_default:
        return field.schema.default
    return value


def copy_basics(source: Schema, type_: Type | None = None) -> Schema:
    """Apache's ``SchemaUtil.copySchemaBasics``: name, version, doc and parameters only.

    Optionality and default are not copied (a new builder is required and has none);
    callers add them where Apache does.
    """
    return Schema(type_ or source.type, name=source.name, version=source.version,
                  doc=source.doc, parameters=source.parameters,
                  value_schema=source.value_schema if source.type == Type.ARRAY else None)


def struct_schema_like(source: Schema, fields: list[tuple[str, Schema]]) -> Schema:
    """A struct schema with ``source``'s basics and ``fields`` (duplicates are an error)."""
    seen: set[str] = set()
    for name, _ in fields:
        if name in seen:
            raise DataError(f"Cannot create field because of field name duplication {name}")
        seen.add(name)
    return Schema(Type.STRUCT, name=source.name, version=source.version, doc=source.doc,
                  parameters=source.parameters,
                  fields=tuple(Field(n, i, s) for i, (n, s) in enumerate(fields)))


class SchemaCache:
    """Apache's per-transform ``LRUCache<Schema, Schema>`` of size 16.

    Keyed by identity: converters hand out one Schema object per distinct schema, and
    Schema objects holding dicts (parameters, struct defaults) are not hashable. The
    cached source schema is kept alive so its id cannot be reused by another object.
    """

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._entries: OrderedDict[int, tuple[Schema, Schema]] = OrderedDict()

    def get(self, source: Schema, build: Callable[[Schema], Schema]) -> Schema:
        entry = self._entries.get(id(source))
        if entry is not None and entry[0] is source:
            self._entries.move_to_end(id(source))
            return entry[1]
        updated = build(source)
        self._entries[id(source)] = (source, updated)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return updated


class KeyOrValueTransform(Transformation[R], Generic[R]):
    """A transform with ``$Key`` and ``$Value`` variants that share one implementation."""

    operates_on: ClassVar[str]
    """``key`` or ``value``: which part of the record the variant rewrites."""

    def operating_schema(self, record: R) -> Schema | None:
        return record.key_schema if self.operates_on == "key" else record.value_schema

    def operating_value(self, record: R) -> Any:
        return record.key if self.operates_on == "key" else record.value

    def new_record(self, record: R, schema: Schema | None, value: Any) -> R:
        if self.operates_on == "key":
            return record.replace(key=value, key_schema=schema)
        return record.replace(value=value, value_schema=schema)

    @abstractmethod
    def apply(self, record: R) -> R | None: ...


class MapPlan(NamedTuple):
    """How a transform's ``schemaless`` rebuilds every map of one key set and table, for
    the native map rebuild (``kanal_worker.native._maps``): output item ``j`` is named
    ``names[j]`` and holds the input's item at position ``sources[j]`` (in insertion
    order), or ``constants[j]`` where that is -1, cast to ``casts[j]`` where that is not
    0 (``transforms.cast.NATIVE_CASTS``); the result is a JavaHashMap of ``table``. Items
    are set in order, as ``dict.update`` sets them."""

    names: tuple[Any, ...]
    sources: tuple[int, ...]
    constants: tuple[Any, ...]
    casts: tuple[int, ...]
    table: int


MAP_PLANS = 1024
"""Key sets whose ``MapPlan`` a transform keeps (records of a topic mostly share one)."""


PlanKey = tuple[tuple[type, ...], tuple[Any, ...], int | None]
"""A key set (with its keys' types: 1 and True, equal as keys, are different output
names) and its table."""


def _cached_plan(plans: dict[PlanKey, MapPlan | None], keys: tuple[Any, ...],
                 table: int | None,
                 make: Callable[[tuple[Any, ...], int | None], MapPlan | None]
                 ) -> MapPlan | None:
    """``make(keys, table)``, kept in ``plans`` (at most ``MAP_PLANS``)."""
    key = (tuple(map(type, keys)), keys, table)
    if key not in plans:
        if len(plans) >= MAP_PLANS:
            plans.clear()
        plans[key] = make(keys, table)
    return plans[key]


class NullSafeTransform(KeyOrValueTransform[R]):
    """A transform that leaves a null key or value alone and otherwise rewrites a
    schemaless value or one with a schema, as Apache's ``applySchemaless`` and
    ``applyWithSchema``; record by record or a sink poll's column at once.

    ``schemaless`` and ``with_schema`` get the record for its topic, partition, offset
    and timestamp; on columns only when ``reads_record`` (else None), and then one
    SinkRecord moved from row to row that holds just those.
    """

    reads_record: bool = False
    plans_maps: bool = False
    """``map_plan`` says how ``schemaless`` rebuilds a map (else it is None)."""
    makes_new_values: ClassVar[bool] = False
    """Every map or struct ``schemaless`` and ``with_schema`` return is new: on columns
    the next step of the chain may change it instead of copying it."""

    def apply(self, record: R) -> R:
        value = self.operating_value(record)
        if value is None:
            return record
        schema = self.operating_schema(record)
        if schema is None:
            return self.new_record(record, None, self.schemaless(value, record))
        updated_schema, updated = self.with_schema(value, schema, record)
        return self.new_record(record, updated_schema, updated)

    def apply_columns(self, columns: SinkColumns) -> SinkColumns:
        side = columns.keys if self.operates_on == "key" else columns.values
        one_schema = side.schemas[0] if side.schemas else None
        if one_schema is not None and len(set(map(id, side.schemas))) == 1:
            rewritten = self.structs_with_schema(side.values, one_schema, columns)
            if rewritten is not None:
                return self._with_side(columns, ConvertedBatch(
                    [rewritten[0]] * len(side.schemas), rewritten[1],
                    chain_owned=self.makes_new_values))
        rebuild = native.map_rebuilder() if self.plans_maps and not self.reads_record else None
        # a column under a schema would go back to Python row by row: a poll's values
        # mostly share their form, so the first row decides
        if rebuild is not None and side.schemas and side.schemas[0] is None:
            return self._with_side(columns, self._rebuilt(side, rebuild))
        schemas: list[Schema | None] = []
        values: list[Any] = []
        add_schema, add_value = schemas.append, values.append
        schemaless = self.schemaless_owned if side.chain_owned else self.schemaless
        with_schema = self.with_schema
        row: Any = None
        rows: Any = repeat(None, len(side.schemas))
        if self.reads_record:
            row = SinkRecord(topic="", kafka_offset=0)
            rows = zip(columns.topics, columns.partitions, columns.offsets, columns.timestamps,
                       strict=True)
        for value, schema, at in zip(side.values, side.schemas, rows, strict=True):
            if row is not None:
                row.topic, row.kafka_partition, row.kafka_offset, (kind, timestamp) = at
                row.timestamp = timestamp if kind else None
            if value is None:
                add_schema(schema)
                add_value(None)
            elif schema is None:
                add_schema(None)
                add_value(schemaless(value, row))
            else:
                updated_schema, updated = with_schema(value, schema, row)
                add_schema(updated_schema)
                add_value(updated)
        return self._with_side(columns, ConvertedBatch(schemas, values,
                                                       chain_owned=self.makes_new_values))

    def _with_side(self, columns: SinkColumns, converted: ConvertedBatch) -> SinkColumns:
        """``columns`` with the side this transform operates on replaced."""
        return (columns.with_keys(converted) if self.operates_on == "key"
                else columns.with_values(converted))

    def _rebuilt(self, side: ConvertedBatch, rebuild: native.MapRebuild) -> ConvertedBatch:
        """``apply_columns``' loop, with the schemaless maps rebuilt natively by their
        plans; every other row (and a map the native side does not take) as in the loop."""
        schemas = list(side.schemas)
        schemaless = self.schemaless_owned if side.chain_owned else self.schemaless

        def per_value(index: int) -> Any:
            value, schema = side.values[index], side.schemas[index]
            if schema is None:
                return schemaless(value, None)
            schemas[index], updated = self.with_schema(value, schema, None)
            return updated

        values = rebuild(side.values, side.schemas, side.chain_owned, self._planned,
                         per_value, JavaHashMap, LinkedHashMap, double_to_string)
        return ConvertedBatch(schemas, values, chain_owned=self.makes_new_values)

    @cached_property
    def _map_plans(self) -> dict[PlanKey, MapPlan | None]:
        return {}

    def _planned(self, keys: tuple[Any, ...], table: int | None) -> MapPlan | None:
        return _cached_plan(self._map_plans, keys, table, self.map_plan)

    def map_plan(self, keys: tuple[Any, ...], table: int | None) -> MapPlan | None:
        """How ``schemaless`` rebuilds every map of ``keys`` (in insertion order) whose
        table is ``table`` (None: a LinkedHashMap), given ``plans_maps``; None: each such
        map goes through ``schemaless``."""
        return None

    @abstractmethod
    def schemaless(self, value: Any, record: Any) -> Any:
        """The new schemaless value (``record``: see the class)."""

    def schemaless_owned(self, value: Any, record: Any) -> Any:
        """``schemaless`` of a value nobody else holds (``ConvertedBatch.chain_owned``),
        which it may change and return instead of a copy."""
        return self.schemaless(value, record)

    @abstractmethod
    def with_schema(self, value: Any, schema: Schema, record: Any) -> tuple[Schema, Any]:
        """The new schema and value (``record``: see the class)."""

    def structs_with_schema(self, values: list[Any], schema: Schema,
                            columns: SinkColumns) -> tuple[Schema, list[Any]] | None:
        """``with_schema`` of a column whose values all have the one ``schema`` object, at
        once (``columns``: the poll's, for its topics, partitions, offsets, timestamps):
        the new schema and values, or None to go record by record (the default, and for
        whatever a transform does not do at once)."""
        return None


class MapPlanChain:
    """Consecutive steps of a chain that plan their maps (``plans_maps``, not
    ``reads_record``, no predicate, one side) on a poll's columns in one native pass:
    per key set the steps' plans composed into one, so each map is rebuilt once instead
    of once a step. A row the composed plan does not take (a map of another class, an
    item a cast leaves to Python, a row with a schema) goes through the steps' per-value
    Python one after the other, which gives what the steps give one by one and raises
    what the failing step raises."""

    def __init__(self, steps: Sequence[NullSafeTransform[Any]]) -> None:
        self.steps = tuple(steps)
        self._plans: dict[PlanKey, MapPlan | None] = {}

    @staticmethod
    def joins(transform: Transformation[Any] | None) -> TypeGuard[NullSafeTransform[Any]]:
        """Whether ``transform`` (None: a step with a predicate) can be a step of a chain."""
        return (isinstance(transform, NullSafeTransform) and transform.plans_maps
                and not transform.reads_record)

    def apply_columns(self, columns: SinkColumns) -> SinkColumns:
        first = self.steps[0]
        side = columns.keys if first.operates_on == "key" else columns.values
        rebuild = native.map_rebuilder()
        # what each step does then: a column under a schema goes row by row
        if rebuild is None or not side.schemas or side.schemas[0] is not None:
            for step in self.steps:
                columns = step.apply_columns(columns)
            return columns
        schemas = list(side.schemas)

        def per_value(index: int) -> Any:
            value, schema, owned = side.values[index], side.schemas[index], side.chain_owned
            for step in self.steps:
                if schema is None:
                    value = (step.schemaless_owned if owned else step.schemaless)(value, None)
                else:
                    schema, value = step.with_schema(value, schema, None)
                owned = step.makes_new_values
            schemas[index] = schema
            return value

        values = rebuild(side.values, side.schemas, side.chain_owned, self._planned,
                         per_value, JavaHashMap, LinkedHashMap, double_to_string)
        return first._with_side(columns, ConvertedBatch(
            schemas, values, chain_owned=self.steps[-1].makes_new_values))

    def _planned(self, keys: tuple[Any, ...], table: int | None) -> MapPlan | None:
        return _cached_plan(self._plans, keys, table, self._composed)

    def _composed(self, keys: tuple[Any, ...], table: int | None) -> MapPlan | None:
        """One plan giving what the steps' plans give one after the other, or None (each
        map of the key set through the steps' Python)."""
        plan = self.steps[0]._planned(keys, table)
        for step in self.steps[1:]:
            if plan is None:
                return None
            # the map a plan makes holds each name once, at its first place, with the
            # item of its last place
            last = {name: at for at, name in enumerate(plan.names)}
            names = tuple(dict.fromkeys(plan.names))
            then = step._planned(names, plan.table)
            if then is None:
                return None
            plan = _followed_by(plan, [last[name] for name in names], then)
        return plan


def map_plan_chains(transforms: Sequence[Transformation[Any] | None]
                    ) -> dict[int, MapPlanChain]:
    """The runs of two or more of ``transforms`` (None: a step with a predicate) that make
    a ``MapPlanChain``, by the index of their first."""
    joining = [transform if MapPlanChain.joins(transform) else None
               for transform in transforms]
    chains: dict[int, MapPlanChain] = {}
    for side, run in groupby(enumerate(joining),
                             lambda step: step[1].operates_on if step[1] else None):
        steps = list(run)
        if side is not None and len(steps) >= 2:
            chains[steps[0][0]] = MapPlanChain([t for _, t in steps if t is not None])
    return chains


def _followed_by(plan: MapPlan, made_at: list[int], then: MapPlan) -> MapPlan | None:
    """``then`` (a plan for the map ``plan`` makes, whose item ``i`` is ``plan``'s item
    ``made_at[i]``) reading ``plan``'s input instead, or None where a cast would follow a
    different cast (two casts do not make one) or ``then`` drops a cast item (a cast that
    fails must fail as it does step by step)."""
    read = {made_at[source] for source in then.sources if source >= 0}
    if any(cast and at not in read for at, cast in enumerate(plan.casts)):
        return None
    sources: list[int] = []
    constants: list[Any] = []
    casts: list[int] = []
    for source, constant, cast in zip(then.sources, then.constants, then.casts, strict=True):
        if source >= 0:
            at = made_at[source]
            earlier = plan.casts[at]
            if earlier and cast and earlier != cast:
                return None
            # a cast repeated changes nothing: what it gives it keeps
            source, constant, cast = plan.sources[at], plan.constants[at], earlier or cast
        sources.append(source)
        constants.append(constant)
        casts.append(cast)
    return MapPlan(then.names, tuple(sources), tuple(constants), tuple(casts), then.table)


def checked(name: str, schema: Schema, value: Any) -> Any:
    """``Struct.put``'s check that a required field gets a value."""
    if value is None and not schema.optional and schema.default is None:
        raise DataError(f'Invalid value: null used for required field: "{name}", '
                        f"schema type: {schema.type.name}")
    return value
