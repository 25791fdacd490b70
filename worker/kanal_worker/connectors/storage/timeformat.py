"""Joda-Time patterns and time zones, as Confluent's time-based partitioners read them.

Confluent formats ``path.format`` with Joda's ``DateTimeFormat.forPattern`` and finds
zones with ``DateTimeZone.forID``. Users copy those configurations unchanged, so this
module reproduces Joda's rules (not Python's ``strftime``): ``YYYY`` is the year of era
(not a week-year as in Java's SimpleDateFormat), letters repeat to set the zero padding,
``'text'`` is a literal and ``''`` a single quote. Text fields (``MMM``, ``EEE``, ``a``,
``G``) are rendered in English, whatever ``locale`` says; ``locale_supported`` tells
which locales render as Joda would.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TEXT_LETTERS = frozenset("GMEa")
"""Letters that print words rather than numbers (words depend on the locale)."""

Part = Callable[[dt.datetime], str]
OFFSET_ID = re.compile(r"^([+-])(\d{1,2})(?::?(\d{2}))?$")


class PatternError(ValueError):
    """A ``path.format`` Joda cannot (or Kanal does not) format; the message is Joda's."""


def parse_zone(zone_id: str) -> dt.tzinfo:
    """The zone ``DateTimeZone.forID(zone_id)`` returns: ``UTC``, a tz database id such
    as ``Europe/Paris``, or a fixed offset ``[+-]hh:mm``."""
    text = zone_id.strip()
    match = OFFSET_ID.match(text)
    if match:
        sign, hours, minutes = match.groups()
        delta = dt.timedelta(hours=int(hours), minutes=int(minutes or 0))
        if delta >= dt.timedelta(hours=24):
            raise ValueError(f"The datetime zone id '{zone_id}' is not recognised")
        return dt.timezone(-delta if sign == "-" else delta)
    if text == "UTC":
        return dt.UTC
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"The datetime zone id '{zone_id}' is not recognised") from None


def locale_supported(locale: str) -> bool:
    """Whether text fields print in ``locale`` as Joda would (English only)."""
    return locale.replace("-", "_").split("_")[0].lower() == "en"


class JodaPattern:
    """A compiled Joda ``DateTimeFormat`` pattern: ``format(moment)`` prints it."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.parts: list[Part] = []
        self.uses_text = False
        for token in _tokens(pattern):
            if token[0] == "'":
                self.parts.append(_literal(token[1:]))
            else:
                self.parts.append(self._field(token))

    def format(self, moment: dt.datetime) -> str:
        return "".join([part(moment) for part in self.parts])

    def _field(self, token: str) -> Part:
        letter, width = token[0], len(token)
        if letter in TEXT_LETTERS and (letter != "M" or width >= 3):
            self.uses_text = True
        number = _NUMBERS.get(letter)
        if number is not None and not (letter == "M" and width >= 3):
            if letter in "yYx" and width == 2:
                return lambda moment: f"{number(moment) % 100:02d}"
            if letter == "S":
                return lambda moment: f"{moment.microsecond // 1000:03d}"[:width].ljust(width, "0")
            return lambda moment: f"{number(moment):0{width}d}"
        match letter:
            case "M":
                return (lambda m: MONTHS[m.month - 1]) if width >= 4 else \
                    (lambda m: MONTHS[m.month - 1][:3])
            case "E":
                return (lambda m: DAYS[m.weekday()]) if width >= 4 else \
                    (lambda m: DAYS[m.weekday()][:3])
            case "a":
                return lambda m: "AM" if m.hour < 12 else "PM"
            case "G":
                return lambda m: "AD"
            case "z" if width < 4:
                return lambda m: m.tzname() or "UTC"
            case "z":
                raise PatternError(f"Kanal does not print long time zone names ({token}); "
                                   "use z, Z, ZZ or ZZZ")
            case "Z":
                return _offset_printer(width)
        raise PatternError(f"Illegal pattern component: {token}")


def _tokens(pattern: str) -> list[str]:
    """Joda's ``parseToken``: runs of one letter, or literals prefixed with a quote."""
    tokens: list[str] = []
    i, length = 0, len(pattern)
    while i < length:
        c = pattern[i]
        if c.isascii() and c.isalpha():
            j = i
            while j < length and pattern[j] == c:
                j += 1
            tokens.append(pattern[i:j])
            i = j
            continue
        literal: list[str] = []
        quoted = False
        while i < length:
            c = pattern[i]
            if c == "'":
                if i + 1 < length and pattern[i + 1] == "'":
                    literal.append("'")
                    i += 1
                else:
                    quoted = not quoted
            elif not quoted and c.isascii() and c.isalpha():
                break
            else:
                literal.append(c)
            i += 1
        tokens.append("'" + "".join(literal))
    return tokens


def _literal(text: str) -> Part:
    return lambda _moment: text


def _offset_printer(width: int) -> Part:
    def offset(moment: dt.datetime) -> str:
        if width >= 3:
            key = getattr(moment.tzinfo, "key", None)
            if key:
                return str(key)
        delta = moment.utcoffset() or dt.timedelta()
        if width >= 3 and not delta:
            return "UTC"
        minutes = int(delta.total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        hours, mins = divmod(abs(minutes), 60)
        return f"{sign}{hours:02d}{':' if width >= 2 else ''}{mins:02d}"
    return offset


_NUMBERS: dict[str, Callable[[dt.datetime], int]] = {
    "C": lambda m: m.year // 100,
    "Y": lambda m: m.year,
    "y": lambda m: m.year,
    "x": lambda m: m.isocalendar()[0],
    "w": lambda m: m.isocalendar()[1],
    "e": lambda m: m.isoweekday(),
    "D": lambda m: m.timetuple().tm_yday,
    "M": lambda m: m.month,
    "d": lambda m: m.day,
    "H": lambda m: m.hour,
    "k": lambda m: m.hour or 24,
    "K": lambda m: m.hour % 12,
    "h": lambda m: m.hour % 12 or 12,
    "m": lambda m: m.minute,
    "s": lambda m: m.second,
    "S": lambda m: m.microsecond // 1000,
}


def bucket_start(duration_ms: int, timestamp_ms: int, zone: dt.tzinfo) -> int:
    """Confluent's ``TimeBasedPartitioner.getPartition``: the start (UTC millis) of the
    ``duration_ms`` bucket holding ``timestamp_ms``, buckets aligned in local time."""
    local = timestamp_ms + _offset_ms(zone, timestamp_ms)
    floored = int(local / duration_ms) * duration_ms  # Java's long division truncates
    naive = EPOCH_NAIVE + dt.timedelta(milliseconds=floored)
    offset = naive.replace(tzinfo=zone).utcoffset() or dt.timedelta()
    return floored - int(offset.total_seconds() * 1000)


def bucket_end(duration_ms: int, start_ms: int, zone: dt.tzinfo) -> int:
    """The end (exclusive, UTC millis) of the timestamps that ``bucket_start`` maps to
    ``start_ms``: ``start_ms + duration_ms`` when the zone keeps one offset over the
    bucket and the start is a local bucket boundary; else ``start_ms + 1``, for the rare
    buckets around an offset change, where Joda's mapping is not contiguous (callers then
    compute each timestamp)."""
    offset = _offset_ms(zone, start_ms)
    local = start_ms + offset
    # before 1970 Java's truncating division makes a bucket end where it starts here
    aligned = local >= 0 and local % duration_ms == 0
    steady = all(_offset_ms(zone, start_ms + part) == offset
                 for part in (duration_ms // 2, duration_ms - 1))
    return start_ms + duration_ms if aligned and steady else start_ms + 1


def _offset_ms(zone: dt.tzinfo, timestamp_ms: int) -> int:
    moment = dt.datetime.fromtimestamp(timestamp_ms / 1000, dt.UTC).astimezone(zone)
    offset = moment.utcoffset() or dt.timedelta()
    return int(offset.total_seconds() * 1000)


def local_moment(timestamp_ms: int, zone: dt.tzinfo) -> dt.datetime:
    return (EPOCH_UTC + dt.timedelta(milliseconds=timestamp_ms)).astimezone(zone)


EPOCH_NAIVE = dt.datetime(1970, 1, 1)
EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
