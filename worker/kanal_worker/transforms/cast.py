"""Cast: fields, or the whole key or value, to another primitive type."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

from pydantic import field_validator

from kanal_worker.api.config import CommaList, Settings, setting
from kanal_worker.api.errors import DataError
from kanal_worker.api.java_text import (
    JavaHashMap,
    copy_table,
    double_to_string,
    float_to_string,
    java_positions,
    to_float32,
)
from kanal_worker.api.records import ConnectRecord
from kanal_worker.api.schema import (
    DATE,
    EPOCH,
    TIME,
    TIMESTAMP,
    Schema,
    Type,
    date_days,
    time_millis,
    timestamp_millis,
)
from kanal_worker.transforms import _java
from kanal_worker.transforms._dateformat import SimpleDateFormat
from kanal_worker.transforms._util import (
    APACHE_PACKAGE,
    MapPlan,
    NullSafeTransform,
    SchemaCache,
    copy_basics,
    field_value,
    infer_type,
    java_class_name,
    replace_null_with_default_setting,
    require_map,
    require_struct,
    struct_schema_like,
)

R = TypeVar("R", bound=ConnectRecord)

PURPOSE = "cast types"
INPUT_TYPES = (Type.INT8, Type.INT16, Type.INT32, Type.INT64, Type.FLOAT32, Type.FLOAT64,
               Type.BOOLEAN, Type.STRING, Type.BYTES)
OUTPUT_TYPES = INPUT_TYPES[:-1]
MILLIS_PER_DAY = 86_400_000
_DATE_FORMAT = SimpleDateFormat("yyyy-MM-dd")
_TIME_FORMAT = SimpleDateFormat("HH:mm:ss.SSS'Z'")
_TIMESTAMP_FORMAT = SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'")
_JAVA_INTEGER = re.compile(r"[+-]?\d+")
_JAVA_FLOAT = re.compile(r"[+-]?(NaN|Infinity|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[fFdD]?)")
_RANGES = {Type.INT8: 8, Type.INT16: 16, Type.INT32: 32, Type.INT64: 64}
NATIVE_CASTS = {Type.INT8: 1, Type.INT16: 2, Type.INT32: 3, Type.INT64: 4, Type.FLOAT32: 5,
                Type.FLOAT64: 6, Type.STRING: 7, Type.BOOLEAN: 8}
"""A ``MapPlan``'s cast codes (``_maps.c``): the native map rebuild does ``_EXACT_CASTS``'
casts to each target and casts null to null; a map with any other cast to do is cast in
Python."""


def _type_list(types: tuple[Type, ...]) -> str:
    return "[" + ", ".join(t.name for t in types) + "]"


def parse_spec(spec: list[str]) -> dict[str | None, Type]:
    """``field:type`` pairs, or a single ``type`` for the whole value (key None)."""
    if not spec:
        raise ValueError("Must specify at least one field to cast.")
    casts: dict[str | None, Type] = {}
    for mapping in spec:
        parts = mapping.split(":")
        if len(parts) > 2:
            raise ValueError(f"Invalid rename mapping: {mapping}")
        field = parts[0].strip() if len(parts) == 2 else None
        name = parts[-1].strip()
        try:
            target = Type[name.upper()]
        except KeyError:
            raise ValueError(f"Invalid type found in casting spec: {name}") from None
        if target not in OUTPUT_TYPES:
            raise ValueError(f"Cast transformation does not support casting to {target.name}; "
                             f"supported types are {_type_list(OUTPUT_TYPES)}")
        casts[field] = target
    if None in casts and len(spec) > 1:
        raise ValueError("Cast transformations that specify a type to cast the entire value to "
                         "may only specify a single cast in their spec")
    return casts


class CastSettings(Settings):
    spec: CommaList = setting(
        key="spec", importance="HIGH",
        doc="List of fields and the type to cast them to of the form field1:type,field2:type "
            "to cast fields of Maps or Structs. A single type to cast the entire value. Valid "
            "types are int8, int16, int32, int64, float32, float64, boolean, and string. Note "
            "that binary fields can only be cast to string.")
    replace_null_with_default: bool = replace_null_with_default_setting()

    @field_validator("spec")
    @classmethod
    def _valid_spec(cls, spec: list[str]) -> list[str]:
        parse_spec(spec)
        return spec


class Cast(NullSafeTransform[R]):
    """Cast fields or the entire key or value to a specific type, e.g. to force an integer
    field to a smaller width. Casts from integers, floats, boolean and string to any other
    type, and binary to string (base64 encoded)."""

    settings = CastSettings
    makes_new_values = True

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: CastSettings = CastSettings.parse(config)
        self.casts = parse_spec(parsed.spec)
        self.whole_value_type = self.casts.get(None)
        self.replace_null_with_default = parsed.replace_null_with_default
        self.cache = SchemaCache()
        self.plans_maps = self.whole_value_type is None

    def with_schema(self, value: Any, schema: Schema, record: Any) -> tuple[Schema, Any]:
        updated_schema = self.cache.get(schema, self._build_schema)
        if self.whole_value_type is not None:
            return updated_schema, cast_value(schema, value, self.whole_value_type)
        struct = require_struct(value, schema, PURPOSE)
        updated: dict[str, Any] = {}
        for field in schema.fields:
            original = field_value(struct, field, self.replace_null_with_default)
            target = self.casts.get(field.name)
            updated[field.name] = (cast_value(field.schema, original, target)
                                   if target is not None else original)
        return updated_schema, updated

    def schemaless(self, value: Any, record: Any) -> Any:
        return self._schemaless(value, owned=False)

    def schemaless_owned(self, value: Any, record: Any) -> Any:
        return self._schemaless(value, owned=True)

    def _schemaless(self, value: Any, owned: bool) -> Any:
        if self.whole_value_type is not None:
            return cast_value(None, value, self.whole_value_type)
        original = require_map(value, PURPOSE)
        cast = [(field, cast_value(None, original.get(field), target))
                for field, target in self.casts.items() if field is not None]
        updated = JavaHashMap.copy_or_reuse(original, owned)
        updated.update(cast)
        return updated

    def map_plan(self, keys: tuple[Any, ...], table: int | None) -> MapPlan:
        """The copy in Java's order (``copy_or_reuse``), its fields cast, then the cast
        fields it lacks, as null."""
        sources = list(java_positions(keys, table))
        names = [keys[at] for at in sources]
        casts = [0] * len(names)
        for field, target in self.casts.items():
            if field in names:
                casts[names.index(field)] = NATIVE_CASTS[target]
            else:
                names.append(field)
                sources.append(-1)
                casts.append(0)
        return MapPlan(tuple(names), tuple(sources), (None,) * len(names), tuple(casts),
                       copy_table(len(keys)))

    def _build_schema(self, schema: Schema) -> Schema:
        if self.whole_value_type is not None:
            updated = copy_basics(schema, self.whole_value_type)
        elif schema.type != Type.STRUCT:
            raise DataError("Cannot list fields on non-struct type")
        else:
            fields: list[tuple[str, Schema]] = []
            for field in schema.fields:
                target = self.casts.get(field.name)
                if target is None:
                    fields.append((field.name, field.schema))
                    continue
                default = (cast_value(field.schema, field.schema.default, target)
                           if field.schema.default is not None else None)
                fields.append((field.name, Schema(target, optional=field.schema.optional,
                                                  default=default)))
            updated = struct_schema_like(schema, fields)
        if schema.optional:
            updated = updated.with_(optional=True)
        if schema.default is not None:
            updated = updated.with_(default=cast_value(schema, schema.default, updated.type))
        return updated


def cast_value(schema: Schema | None, value: Any, target: Type) -> Any:
    """Apache's ``castValueToType``: Java's conversions, errors and string forms."""
    if value is None:
        return None
    if schema is None:
        exact = _EXACT_CASTS.get((type(value), target))
        if exact is not None:
            return exact(value)
    inferred = schema.type if schema is not None else infer_type(value)
    if inferred is None:
        raise DataError(f"Cast transformation was passed a value of type class "
                        f"{java_class_name(value)} which is not supported by Connect's data API")
    if inferred not in INPUT_TYPES:
        raise DataError(f"Cast transformation does not support casting from {inferred.name}; "
                        f"supported types are {_type_list(INPUT_TYPES)}")
    logical = schema.name if schema is not None else None
    if target == Type.STRING:
        return _to_string(value, inferred, logical)
    if logical is not None:
        value = _encode_logical(logical, value)
    if isinstance(value, bytes | bytearray | memoryview):
        raise DataError("Unexpected type in Cast transformation: class [B")
    try:
        if target in _RANGES:
            return _to_integer(value, target)
        if target in (Type.FLOAT32, Type.FLOAT64):
            return _to_floating(value, target)
        return _to_boolean(value)
    except (ValueError, OverflowError) as exc:
        raise DataError(f"Value ({_to_string(value, inferred, None)}) was out of range for "
                        "requested data type") from exc


_EXACT_CASTS: dict[tuple[type, Type], Callable[[Any], Any]] = {
    (str, Type.STRING): str, (int, Type.STRING): str, (float, Type.STRING): double_to_string,
    (int, Type.FLOAT64): float, (float, Type.FLOAT64): float,
    (int, Type.FLOAT32): lambda value: to_float32(float(value)), (float, Type.FLOAT32): to_float32,
    **{(int, kind): partial(_java.wrap_int, bits=bits) for kind, bits in _RANGES.items()},
    **{(float, kind): partial(_java.float_to_int, bits=bits) for kind, bits in _RANGES.items()},
}
"""What ``cast_value`` does, found in one lookup, for the schemaless casts that cannot
fail: a value of exactly this Python type to this target."""


def _encode_logical(name: str, value: Any) -> Any:
    """Logical Date, Time and Timestamp to their int/long encodings (Decimal stays a number)."""
    if name == DATE and isinstance(value, dt.date):
        return date_days(value)
    if name == TIME and isinstance(value, dt.time):
        return time_millis(value)
    if name == TIMESTAMP and isinstance(value, dt.datetime):
        return timestamp_millis(value)
    return value


def _to_integer(value: Any, target: Type) -> int:
    bits = _RANGES[target]
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, decimal.Decimal):
        # BigDecimal drops the fraction, then keeps the low-order bits
        return _java.wrap_int(int(value), bits)
    if isinstance(value, int | float):
        return _java.to_int(value, target)
    if isinstance(value, str):
        if not _JAVA_INTEGER.fullmatch(value):
            raise ValueError(value)
        number = int(value)
        if not -(1 << (bits - 1)) <= number < (1 << (bits - 1)):
            raise ValueError(value)
        return number
    raise DataError(f"Unexpected type in Cast transformation: class {java_class_name(value)}")


def _to_floating(value: Any, target: Type) -> float:
    if isinstance(value, bool):
        number = 1.0 if value else 0.0
    elif isinstance(value, int | float | decimal.Decimal):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not _JAVA_FLOAT.fullmatch(text):
            raise ValueError(value)
        number = float(text.rstrip("fFdD").replace("Infinity", "inf"))
    else:
        raise DataError(f"Unexpected type in Cast transformation: class "
                        f"{java_class_name(value)}")
    return to_float32(number) if target == Type.FLOAT32 else number


def _to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return _java.float_to_int(value, 64) != 0
    if isinstance(value, int | decimal.Decimal):
        return _java.wrap_int(int(value), 64) != 0
    if isinstance(value, str):
        return value.lower() == "true"
    raise DataError(f"Unexpected type in Cast transformation: class {java_class_name(value)}")


def _to_string(value: Any, inferred: Type, logical: str | None) -> str:
    if logical in (DATE, TIME, TIMESTAMP) and isinstance(value, dt.date | dt.time):
        return _date_string(_millis_of(logical, value))
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (float_to_string(value) if inferred == Type.FLOAT32
                else double_to_string(value))
    return str(value)


def _millis_of(logical: str, value: dt.date | dt.time) -> int:
    encoded = _encode_logical(logical, value)
    return int(encoded) * MILLIS_PER_DAY if logical == DATE else int(encoded)


def _date_string(millis: int) -> str:
    """``Values.dateFormatFor``: a time of day, a date, or a full timestamp."""
    moment = EPOCH + dt.timedelta(milliseconds=millis)
    if millis < MILLIS_PER_DAY:
        return _TIME_FORMAT.format(moment)
    if millis % MILLIS_PER_DAY == 0:
        return _DATE_FORMAT.format(moment)
    return _TIMESTAMP_FORMAT.format(moment)


class CastKey(Cast[R]):
    operates_on = "key"
    aliases = (f"{APACHE_PACKAGE}Cast$Key",)


class CastValue(Cast[R]):
    operates_on = "value"
    aliases = (f"{APACHE_PACKAGE}Cast$Value",)
