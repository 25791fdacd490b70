"""Predicates for ``predicates.*``: Apache's TopicNameMatches, HasHeaderKey and
RecordIsTombstone, and Kanal's FieldValueMatches for filtering on a value's field."""

from __future__ import annotations

import decimal
import operator
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from pydantic import ValidationInfo, field_validator

from kanal_worker.api.config import Settings, setting
from kanal_worker.api.plugins import Predicate
from kanal_worker.api.records import ConnectRecord
from kanal_worker.api.schema import Type
from kanal_worker.transforms._fieldpath import SingleFieldPath, parse_v2
from kanal_worker.transforms._java import compile_java_regex
from kanal_worker.transforms._util import config_checked

R = TypeVar("R", bound=ConnectRecord)

APACHE_PREDICATES = "org.apache.kafka.connect.transforms.predicates."
_pattern_compiles = config_checked(compile_java_regex, "pattern")
_value_compiles = config_checked(compile_java_regex, "value")


class TopicNameMatchesSettings(Settings):
    pattern: str = setting(
        key="pattern",
        doc="A Java regular expression for matching against the name of a record's topic.")

    @field_validator("pattern")
    @classmethod
    def _regex(cls, pattern: str) -> str:
        if not pattern:
            raise ValueError("String must be non-empty")
        return _pattern_compiles(pattern)


class TopicNameMatches(Predicate[R]):
    """A predicate which is true for records with a topic name that matches the configured
    regular expression (the whole name must match)."""

    settings = TopicNameMatchesSettings
    aliases = (f"{APACHE_PREDICATES}TopicNameMatches",)

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: TopicNameMatchesSettings = TopicNameMatchesSettings.parse(config)
        self.pattern = compile_java_regex(parsed.pattern, "pattern")

    def test(self, record: R) -> bool:
        return record.topic is not None and self.pattern.fullmatch(record.topic) is not None


class HasHeaderKeySettings(Settings):
    name: str = setting(key="name", doc="The header name.")

    @field_validator("name")
    @classmethod
    def _non_empty(cls, name: str) -> str:
        if not name:
            raise ValueError("String must be non-empty")
        return name


class HasHeaderKey(Predicate[R]):
    """A predicate which is true for records with at least one header with the configured
    name."""

    settings = HasHeaderKeySettings
    aliases = (f"{APACHE_PREDICATES}HasHeaderKey",)

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: HasHeaderKeySettings = HasHeaderKeySettings.parse(config)
        self.name = parsed.name

    def test(self, record: R) -> bool:
        return any(header.key == self.name for header in record.headers)


class RecordIsTombstone(Predicate[R]):
    """A predicate which is true for records which are tombstones (i.e. have null value)."""

    aliases = (f"{APACHE_PREDICATES}RecordIsTombstone",)

    def test(self, record: R) -> bool:
        return record.value is None


Operator = Literal["eq", "ne", "gt", "ge", "lt", "le", "regex"]
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "ge": operator.ge,
    "lt": operator.lt, "le": operator.le,
}


class FieldValueMatchesSettings(Settings):
    field: str = setting(
        key="field", importance="HIGH",
        doc="The value's field to test; dots reach into nested structs or maps (wrap a name "
            "holding dots in backticks).")
    operator: Operator = setting(
        "eq", key="operator", importance="HIGH",
        doc="How the field is compared with 'value': eq, ne, gt, ge, lt, le (numerically when "
            "both are numbers, else as text), or regex (the whole text must match).")
    value: str = setting(key="value", importance="HIGH",
                         doc="The value to compare the field with, or the regular expression.")

    @field_validator("field")
    @classmethod
    def _path(cls, field: str) -> str:
        if not field:
            raise ValueError("String must be non-empty")
        parse_v2(field)
        return field

    @field_validator("operator", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("value")
    @classmethod
    def _regex(cls, value: str, info: ValidationInfo) -> str:
        return _value_compiles(value) if info.data.get("operator") == "regex" else value


class FieldValueMatches(Predicate[R]):
    """Kanal's predicate on a field of the record value, schemaless or struct: e.g.
    ``field=speed``, ``operator=gt``, ``value=120``. A record without the field, or with a
    null there, never matches; with ``Filter`` and ``negate=true`` this keeps only the
    records that match."""

    settings = FieldValueMatchesSettings
    aliases = ("dev.kanal.transforms.predicates.FieldValueMatches",)

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: FieldValueMatchesSettings = FieldValueMatchesSettings.parse(config)
        self.path = SingleFieldPath(parsed.field, "V2")
        self.operator = parsed.operator
        self.text = parsed.value
        self.number = _number(parsed.value)
        self.regex = (compile_java_regex(parsed.value, "value")
                      if parsed.operator == "regex" else None)

    def test(self, record: R) -> bool:
        actual = self._field_value(record)
        if actual is None:
            return False
        if self.regex is not None:
            return self.regex.fullmatch(_text(actual)) is not None
        compare = _COMPARISONS[self.operator]
        if self.number is not None and not isinstance(actual, bool) and \
                isinstance(actual, int | float | decimal.Decimal):
            actual_number = _number(str(actual))
            return actual_number is not None and compare(actual_number, self.number)
        return compare(_text(actual), self.text)

    def _field_value(self, record: R) -> Any:
        value, schema = record.value, record.value_schema
        if not isinstance(value, dict):
            return None
        if schema is not None and schema.type == Type.STRUCT:
            if self.path.field_from(schema) is None:
                return None
            return self.path.value_from_struct(value, schema, True)
        return _nested(value, self.path.steps)


def _nested(value: Mapping[str, Any], steps: list[str]) -> Any:
    current: Any = value
    for step in steps:
        if not isinstance(current, dict):
            return None
        current = current.get(step)
    return current


def _number(text: str) -> decimal.Decimal | None:
    try:
        number = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        return None
    return number if number.is_finite() else None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
