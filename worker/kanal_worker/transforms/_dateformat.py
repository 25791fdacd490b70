"""``java.text.SimpleDateFormat`` patterns in UTC, as TimestampConverter and TimestampRouter
use them: the same pattern letters, the same output, and the same lenient parsing
(missing fields default to 1970-01-01T00:00:00.000, text after the match is ignored).
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass

from kanal_worker.api.errors import DataError

_LETTERS = "GyYMLdHkKhmsSEuaDFwWzZX"
_NUMERIC = set("yYMLdHkKhmsSDFwWu")
_MONTHS = list(calendar.month_name)[1:]
_DAYS = list(calendar.day_name)  # Monday first, like datetime.weekday()


@dataclass(frozen=True, slots=True)
class _Token:
    letter: str  # "" for literal text
    count: int
    text: str = ""


def _tokenize(pattern: str) -> list[_Token]:
    tokens: list[_Token] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "'":
            end = index + 1
            literal = []
            while end < len(pattern):
                if pattern[end] == "'":
                    if pattern[end + 1:end + 2] == "'":
                        literal.append("'")
                        end += 2
                        continue
                    break
                literal.append(pattern[end])
                end += 1
            else:
                raise ValueError(f"Unterminated quote in pattern {pattern!r}")
            tokens.append(_Token("", 0, "".join(literal) if end > index + 1 else "'"))
            index = end + 1
        elif char.isascii() and char.isalpha():
            if char not in _LETTERS:
                raise ValueError(f"Illegal pattern character '{char}'")
            end = index
            while end < len(pattern) and pattern[end] == char:
                end += 1
            tokens.append(_Token(char, end - index))
            index = end
        else:
            tokens.append(_Token("", 0, char))
            index += 1
    return tokens


class SimpleDateFormat:
    """One compiled pattern; ``format`` and ``parse`` work in UTC with millisecond precision."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.tokens = _tokenize(pattern)
        self._parser = re.compile(self._parse_regex(), re.IGNORECASE)

    def format(self, moment: dt.datetime) -> str:
        moment = moment.astimezone(dt.UTC)
        return "".join(self._format_token(token, moment) for token in self.tokens)

    @staticmethod
    def _format_token(token: _Token, moment: dt.datetime) -> str:
        letter, count = token.letter, token.count
        if not letter:
            return token.text
        numbers = {
            "d": moment.day, "H": moment.hour, "k": moment.hour or 24,
            "K": moment.hour % 12, "h": moment.hour % 12 or 12, "m": moment.minute,
            "s": moment.second, "S": moment.microsecond // 1000,
            "D": moment.timetuple().tm_yday, "F": (moment.day - 1) // 7 + 1,
            "u": moment.isoweekday(), "w": moment.isocalendar()[1],
            "W": (moment.day + moment.replace(day=1).weekday()) // 7 + 1,
        }
        if letter in ("y", "Y"):
            year = moment.year if letter == "y" else moment.isocalendar()[0]
            return f"{year % 100:02d}" if count == 2 else f"{year:0{count}d}"
        if letter in ("M", "L"):
            if count >= 4:
                return _MONTHS[moment.month - 1]
            if count == 3:
                return _MONTHS[moment.month - 1][:3]
            return f"{moment.month:0{count}d}"
        if letter == "E":
            name = _DAYS[moment.weekday()]
            return name if count >= 4 else name[:3]
        if letter == "a":
            return "AM" if moment.hour < 12 else "PM"
        if letter == "G":
            return "AD"
        if letter == "z":
            return "Coordinated Universal Time" if count >= 4 else "UTC"
        if letter == "Z":
            return "+0000"
        if letter == "X":
            return "Z"
        return f"{numbers[letter]:0{count}d}"

    def _parse_regex(self) -> str:
        parts = []
        for index, token in enumerate(self.tokens):
            following = self.tokens[index + 1] if index + 1 < len(self.tokens) else None
            abutting = following is not None and following.letter in _NUMERIC
            parts.append(f"(?P<f{index}>{_token_regex(token, abutting)})"
                         if token.letter else re.escape(token.text))
        return "".join(parts)

    def parse(self, text: str) -> dt.datetime:
        """Lenient like Java's: a field out of range rolls over into the next one."""
        match = self._parser.match(text)
        if match is None:
            raise DataError(f"Unparseable date: \"{text}\"")
        year, month, day, hour, minute, second, millis = 1970, 1, 1, 0, 0, 0, 0
        pm: bool | None = None
        day_of_year: int | None = None
        offset = dt.timedelta()
        for index, token in enumerate(self.tokens):
            if not token.letter:
                continue
            raw = match.group(f"f{index}")
            letter = token.letter
            if letter in ("y", "Y"):
                year = int(raw)
                if token.count <= 2 and len(raw) == 2:
                    year = _two_digit_year(year)
            elif letter in ("M", "L"):
                month = int(raw) if raw.isdigit() else _month_number(raw)
            elif letter == "d":
                day = int(raw)
            elif letter in ("H", "k"):
                hour = int(raw) % 24 if letter == "k" else int(raw)
            elif letter in ("K", "h"):
                hour = int(raw) % 12
            elif letter == "m":
                minute = int(raw)
            elif letter == "s":
                second = int(raw)
            elif letter == "S":
                millis = int(raw)
            elif letter == "D":
                day_of_year = int(raw)
            elif letter == "a":
                pm = raw.upper() == "PM"
            elif letter in ("Z", "X", "z"):
                offset = _offset(raw)
        if pm is not None and hour < 12 and pm:
            hour += 12
        months_from_epoch = year * 12 + (month - 1)
        base = dt.datetime(months_from_epoch // 12, months_from_epoch % 12 + 1, 1, tzinfo=dt.UTC)
        days = (day_of_year - 1) if day_of_year is not None else (day - 1)
        if day_of_year is not None:
            base = base.replace(month=1)
        return base + dt.timedelta(days=days, hours=hour, minutes=minute, seconds=second,
                                   milliseconds=millis) - offset


def _token_regex(token: _Token, abutting: bool) -> str:
    letter, count = token.letter, token.count
    if letter in ("M", "L") and count >= 3:
        return "|".join(sorted({*_MONTHS, *(m[:3] for m in _MONTHS)}, key=len, reverse=True))
    if letter == "E":
        return "|".join(sorted({*_DAYS, *(d[:3] for d in _DAYS)}, key=len, reverse=True))
    if letter == "a":
        return "AM|PM"
    if letter == "G":
        return "AD|BC"
    if letter in ("Z", "X", "z"):
        return r"Z|[+-]\d{2}:?\d{2}|[+-]\d{2}|UTC|GMT|Coordinated Universal Time"
    if abutting:
        return rf"\d{{{count}}}"
    return r"-?\d+" if letter in ("y", "Y") else r"\d+"


def _two_digit_year(year: int) -> int:
    """SimpleDateFormat puts two-digit years within 80 years before and 20 after now."""
    now = dt.datetime.now(dt.UTC)
    start = now.year - 80
    candidate = start - start % 100 + year
    if candidate < start:
        candidate += 100
    return candidate


def _month_number(name: str) -> int:
    lowered = name.lower()
    for number, month in enumerate(_MONTHS, start=1):
        if month.lower().startswith(lowered[:3]):
            return number
    raise DataError(f"Unparseable month: \"{name}\"")


def _offset(text: str) -> dt.timedelta:
    if text.upper() in ("Z", "UTC", "GMT", "COORDINATED UNIVERSAL TIME"):
        return dt.timedelta()
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    return sign * dt.timedelta(hours=hours, minutes=minutes)

