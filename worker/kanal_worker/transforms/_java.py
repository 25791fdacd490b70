"""Java semantics the transforms must reproduce to give Apache's results byte for byte:
number narrowing, ``java.util.regex`` patterns and replacements, ``Values.parseString``
for header literals (number printing is ``kanal_worker.api.java_text``'s).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from kanal_worker.api.errors import ConfigError
from kanal_worker.api.java_text import to_float32
from kanal_worker.api.schema import DATE, TIME, TIMESTAMP, Schema, Type

_INT_BITS = {Type.INT8: 8, Type.INT16: 16, Type.INT32: 32, Type.INT64: 64}


def wrap_int(value: int, bits: int) -> int:
    """Two's-complement narrowing, like Java's ``(byte)``, ``(short)``, ``(int)`` casts."""
    mask = (1 << bits) - 1
    value &= mask
    return value - (1 << bits) if value >> (bits - 1) else value


def float_to_int(value: float, bits: int) -> int:
    """Java's ``Number.byteValue()`` ... ``longValue()`` of a double.

    A double first becomes an int (or a long for 64 bits): NaN is 0 and values outside the
    range saturate; narrower types then wrap from the int.
    """
    if math.isnan(value):
        return 0
    wide = 64 if bits == 64 else 32
    low, high = -(1 << (wide - 1)), (1 << (wide - 1)) - 1
    whole = low if value <= low else high if value >= high else int(value)
    return wrap_int(whole, bits) if bits < wide else whole


def to_int(value: int | float, type_: Type) -> int:
    bits = _INT_BITS[type_]
    if isinstance(value, float):
        return float_to_int(value, bits)
    return wrap_int(value, bits)


_NAMED_GROUP = re.compile(r"(?<!\\)\(\?<([A-Za-z][A-Za-z0-9]*)>")


def compile_java_regex(pattern: str, key: str) -> re.Pattern[str]:
    """A ``java.util.regex`` pattern as Python ``re`` (named groups ``(?<n>...)``)."""
    translated = _NAMED_GROUP.sub(r"(?P<\1>", pattern)
    # Java's \Z allows a final line terminator (Python's $), Java's \z is Python's \Z
    translated = translated.replace(r"\Z", r"(?=\n?\Z)").replace(r"\z", r"\Z")
    try:
        return re.compile(translated)
    except re.error as exc:
        raise ConfigError(key, f"Invalid regex: {exc}") from None


def java_replacement(replacement: str) -> str:
    """``Matcher.replaceFirst`` replacement (``$1``, ``${name}``, ``\\$``) as a Python template."""
    out: list[str] = []
    index = 0
    while index < len(replacement):
        char = replacement[index]
        if char == "\\" and index + 1 < len(replacement):
            out.append(replacement[index + 1].replace("\\", "\\\\"))
            index += 2
        elif char == "$" and replacement[index + 1:index + 2] == "{":
            end = replacement.index("}", index)
            out.append(f"\\g<{replacement[index + 2:end]}>")
            index = end + 1
        elif char == "$" and replacement[index + 1:index + 2].isdigit():
            end = index + 1
            while end < len(replacement) and replacement[end].isdigit():
                end += 1
            out.append(f"\\g<{replacement[index + 1:end]}>")
            index = end
        else:
            out.append("\\\\" if char == "\\" else char)
            index += 1
    return "".join(out)


def check_replacement(replacement: str, key: str) -> None:
    """Reject what Java's Matcher rejects when it applies the replacement."""
    if replacement.endswith("\\") and not replacement.endswith("\\\\"):
        raise ConfigError(key, "character to be escaped is missing")
    for match in re.finditer(r"(?<!\\)\$(?![0-9{])", replacement):
        raise ConfigError(key, f"Illegal group reference at index {match.start()}")


_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


def parse_literal(text: str) -> tuple[Schema | None, Any]:
    """``Values.parseString`` for a configured literal: booleans, the narrowest integer
    type, floats, ISO dates and times, else the string itself."""
    stripped = text.strip()
    if stripped == "null":
        return None, None
    if stripped in ("true", "false"):
        return Schema(Type.BOOLEAN), stripped == "true"
    if _INTEGER.fullmatch(stripped):
        number = int(stripped)
        for type_, bits in _INT_BITS.items():
            if -(1 << (bits - 1)) <= number < (1 << (bits - 1)):
                return Schema(type_), number
    elif _DECIMAL.fullmatch(stripped):
        number_f = float(stripped)
        # Apache keeps the float32 (printed back as the literal) whenever it is finite
        if not math.isinf(to_float32(number_f)):
            return Schema(Type.FLOAT32), number_f
        if not math.isinf(number_f):
            return Schema(Type.FLOAT64), number_f
    temporal = _parse_temporal(stripped)
    if temporal is not None:
        return temporal
    return Schema(Type.STRING), text


def _parse_temporal(text: str) -> tuple[Schema, Any] | None:
    formats = (
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", "%Y-%m-%dT%H:%M:%S.%fZ", TIMESTAMP),
        (r"\d{4}-\d{2}-\d{2}", "%Y-%m-%d", DATE),
        (r"\d{2}:\d{2}:\d{2}\.\d{3}Z", "%H:%M:%S.%fZ", TIME),
    )
    for pattern, layout, logical in formats:
        if re.fullmatch(pattern, text):
            try:
                parsed = dt.datetime.strptime(text, layout).replace(tzinfo=dt.UTC)
            except ValueError:
                return None
            type_ = Type.INT64 if logical == TIMESTAMP else Type.INT32
            if logical == DATE:
                return Schema(type_, name=logical, version=1), parsed.date()
            if logical == TIME:
                return Schema(type_, name=logical, version=1), parsed.time()
            return Schema(type_, name=logical, version=1), parsed
    return None
