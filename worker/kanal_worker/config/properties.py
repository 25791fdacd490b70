"""Java ``.properties`` files, parsed the way ``java.util.Properties.load`` does."""

from __future__ import annotations

import re
from pathlib import Path

from kanal_worker.api.errors import ConfigError

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def parse_properties(text: str, source: str = "<string>") -> dict[str, str]:
    """Parse properties text; a malformed line raises ``ConfigError`` with its number."""
    result: dict[str, str] = {}
    for number, line in _logical_lines(text):
        key, value = _split(line, source, number)
        if not key:
            raise ConfigError(None, f"{source}:{number}: line has a value but no key: {line!r}; "
                              "write it as key=value")
        result[key] = value
    return result


def load_properties(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(None, f"cannot read {path}: {exc.strerror}; check the path") from None
    return parse_properties(text, str(path))


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continuation lines (ending in an odd number of backslashes); drop comments."""
    lines: list[tuple[int, str]] = []
    pending: str | None = None
    start = 0
    # Java ends lines at \n, \r and \r\n only (str.splitlines would also cut at \x0b,
    # \x1c-\x1e, \x85, \u2028, \u2029, which may sit inside values)
    for number, raw in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        stripped = raw.lstrip(" \t\f")
        if pending is None:
            if not stripped or stripped[0] in "#!":
                continue
            start, pending = number, stripped
        else:
            pending += stripped
        trailing = len(pending) - len(pending.rstrip("\\"))
        if trailing % 2 == 1:
            pending = pending[:-1]
            continue
        lines.append((start, pending))
        pending = None
    if pending is not None:
        lines.append((start, pending))
    return lines


def _split(line: str, source: str, number: int) -> tuple[str, str]:
    key_chars: list[str] = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            key_chars.append(_unescape_at(line, i, source, number))
            i += 6 if line[i + 1] == "u" else 2
            continue
        if ch in "=: \t\f":
            break
        key_chars.append(ch)
        i += 1
    while i < len(line) and line[i] in " \t\f":
        i += 1
    if i < len(line) and line[i] in "=:":
        i += 1
        while i < len(line) and line[i] in " \t\f":
            i += 1
    return "".join(key_chars), _unescape(line[i:], source, number)


def _unescape(text: str, source: str, number: int) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(_unescape_at(text, i, source, number))
            i += 6 if text[i + 1] == "u" else 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _unescape_at(text: str, i: int, source: str, number: int) -> str:
    ch = text[i + 1]
    if ch == "u":
        digits = text[i + 2:i + 6]
        try:
            if len(digits) != 4:
                raise ValueError(digits)
            return chr(int(digits, 16))
        except ValueError:
            raise ConfigError(None, f"{source}:{number}: malformed \\uxxxx escape "
                              f"{text[i:i + 6]!r}; write four hex digits") from None
    return _ESCAPES.get(ch, ch)


def format_properties(values: dict[str, str]) -> str:
    """Write properties text that ``parse_properties`` (and Java) read back unchanged."""
    def escape(text: str, is_key: bool) -> str:
        out = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        out = out.replace("\t", "\\t").replace("\f", "\\f")
        if is_key:
            out = out.replace("=", "\\=").replace(":", "\\:").replace(" ", "\\ ")
            out = out.replace("#", "\\#").replace("!", "\\!")  # else a comment line
        elif out.startswith(" "):
            out = "\\" + out
        return out
    return "".join(f"{escape(k, True)}={escape(v, False)}\n" for k, v in values.items())
