"""Apache's ``SingleFieldPath`` (KIP-821): ``field.syntax.version`` V1 names a top-level
field; V2 reads ``a.b.c`` as nested fields, with backticks around names holding dots."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from kanal_worker.api.schema import Field, Schema, Type
from kanal_worker.transforms._util import field_value, require_map, require_struct

SYNTAX_VERSION_KEY = "field.syntax.version"
SYNTAX_VERSION_DOC = (
    "Defines the version of the syntax to access fields. If set to `V1`, then the field "
    "paths are limited to access the elements at the root level of the struct or map. If set "
    "to `V2`, the syntax will support accessing nested elements. To access nested elements, "
    "dotted notation is used. If dots are already included in the field name, then backtick "
    "pairs can be used to wrap field names containing dots. E.g. to access the subfield `baz` "
    "from a field named \"foo.bar\" in a struct/map the following format can be used to "
    "access its elements: \"`foo.bar`.baz\".")
SyntaxVersion = Literal["V1", "V2"]


def normalize_version(value: object) -> object:
    """Apache accepts the version case-insensitively."""
    return value.upper() if isinstance(value, str) else value


class SingleFieldPath:
    def __init__(self, path: str, version: SyntaxVersion) -> None:
        self.path = path
        self.steps = [path] if version == "V1" else parse_v2(path)

    def field_from(self, schema: Schema) -> Field | None:
        current = schema
        for step in self.steps[:-1]:
            found = current.field(step) if current.type == Type.STRUCT else None
            if found is None:
                return None
            current = found.schema
        return current.field(self.steps[-1]) if current.type == Type.STRUCT else None

    def value_from_struct(self, struct: Mapping[str, Any] | None, schema: Schema,
                          with_default: bool) -> Any:
        current, current_schema = struct, schema
        for step in self.steps[:-1]:
            if current is None:
                return None
            found = current_schema.field(step)
            if found is None:
                return None
            current = field_value(current, found, True)
            if current is not None:
                current = require_struct(current, found.schema, "nested field access")
            current_schema = found.schema
        if current is None:
            return None
        last = current_schema.field(self.steps[-1])
        return field_value(current, last, with_default) if last is not None else None

    def value_from_map(self, value: Mapping[str, Any] | None) -> Any:
        current = value
        for step in self.steps[:-1]:
            if current is None:
                return None
            nested = current.get(step)
            current = None if nested is None else require_map(nested, "nested field access")
        return None if current is None else current.get(self.steps[-1])


def parse_v2(path: str) -> list[str]:
    """Split on dots; a step in backticks may hold dots (and ``\\``` for a backtick)."""
    steps: list[str] = []
    index = 0
    while 0 <= index < len(path):
        if path[index] != "`":
            dot = path.find(".", index)
            if dot >= 0:
                steps.append(path[index:dot])
                index = dot + 1
            else:
                steps.append(path[index:])
                index = len(path)
            continue
        opened = index
        index += 1
        start = index
        name: list[str] = []
        while True:
            index = path.find("`", index)
            if index == -1:
                _incomplete(path, opened)
            escaped = path[index - 1] == "\\"
            if index >= len(path) - 1:
                if escaped:
                    _incomplete(path, opened)
                name.append(path[start:index])
                steps.append("".join(name))
                index += 1
                break
            if path[index + 1] != ".":
                index += 1
                continue
            if escaped:
                name.append(path[start:index - 1] + "`")
                index += 1
                start = index
                continue
            name.append(path[start:index])
            steps.append("".join(name))
            index += 2
            break
    if path.endswith("."):
        steps.append("")
    return steps


def _incomplete(path: str, at: int) -> None:
    raise ValueError(f"Incomplete backtick pair in path: [{path}], consider adding a backslash "
                     f"before backtick at position {at} to escape it")
