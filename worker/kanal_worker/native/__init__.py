"""Native extensions of the hot paths, each optional.

The native fetch: a sink task's polls as column buffers read straight out of the
librdkafka instance its confluent-kafka Consumer runs (see ``_fetch.c``).
``fetcher(consumer)`` is the one way in: a ``Fetcher`` when the extension is built and the
Consumer's layout is the one it knows, else None (logged once, with the reason), and the
task reads confluent-kafka's messages instead.

The native printer: a poll's values printed as Java prints them, as UTF-8 lines (see
``_text.c``). ``text_printer()`` gives its ``java_lines``, or None (logged once) and
``kanal_worker.api.java_text`` prints in Python.

The native map rebuild: InsertField, ReplaceField and Cast on a poll's schemaless maps,
each map rebuilt by a plan the transform makes once per key set (see ``_maps.c``).
``map_rebuilder()`` gives its ``rebuild``, or None (logged once) and the transforms
rebuild each map in Python.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from functools import cache
from typing import Any, cast

log = logging.getLogger(__name__)

ENABLED = os.environ.get("KANAL_NATIVE_FETCH", "1") != "0"
"""``KANAL_NATIVE_FETCH=0`` turns the native fetch off (confluent-kafka's messages)."""

TEXT_ENABLED = os.environ.get("KANAL_NATIVE_TEXT", "1") != "0"
"""``KANAL_NATIVE_TEXT=0`` turns the native printer off (values printed in Python)."""

MAPS_ENABLED = os.environ.get("KANAL_NATIVE_MAPS", "1") != "0"
"""``KANAL_NATIVE_MAPS=0`` turns the native map rebuild off (each map rebuilt in Python)."""

_refused: set[str] = set()


def librdkafka_path() -> str | None:
    """The librdkafka this process loaded (with confluent-kafka), from its memory map."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rsplit(None, 1)[-1]
                if "librdkafka" in os.path.basename(path) and ".so" in path:
                    return path
    except OSError:
        return None
    return None


def fetcher(consumer: Any) -> Any | None:
    """A ``Fetcher`` of ``consumer``'s data, or None (why is logged once per reason)."""
    if not ENABLED:
        _refuse("turned off by KANAL_NATIVE_FETCH=0")
        return None
    from confluent_kafka import Consumer

    if not isinstance(consumer, Consumer):  # the extension reads the client's C layout
        _refuse(f"{type(consumer).__name__} is not a confluent_kafka Consumer")
        return None
    try:
        from kanal_worker.native import _fetch  # type: ignore[attr-defined]
    except ImportError as exc:
        _refuse(f"the extension is not built ({exc})")
        return None
    path = librdkafka_path()
    if path is None:
        _refuse("no librdkafka in this process's memory map")
        return None
    try:
        return _fetch.Fetcher(consumer, path)
    except (TypeError, RuntimeError) as exc:
        _refuse(str(exc))
        return None


def _refuse(reason: str) -> None:
    if reason not in _refused:
        _refused.add(reason)
        log.warning("Native fetch unavailable, reading confluent-kafka's messages: %s", reason)


JavaLines = Callable[[list[Any], list[Any], Callable[[Any, Any], str],
                      Callable[..., tuple[int, ...]], Callable[[Any], tuple[str, ...] | None],
                      type, type], bytes | None]
"""``_text.java_lines(values, schemas, print, order_of, struct_names, JavaHashMap,
LinkedHashMap)``: the lines, or None when the poll must be printed in Python."""


@cache
def text_printer() -> JavaLines | None:
    """The native printer's ``java_lines``, or None (why is logged once)."""
    return cast(JavaLines | None, _optional(
        TEXT_ENABLED, "_text", "java_lines",
        "Native printer {why}, printing in Python", "turned off by KANAL_NATIVE_TEXT=0"))


MapRebuild = Callable[[list[Any], list[Any], bool,
                       Callable[[tuple[Any, ...], int | None], Any], Callable[[int], Any],
                       type, type, Callable[[float], str]], list[Any]]
"""``_maps.rebuild(values, schemas, owned, plan_for, fallback, JavaHashMap, LinkedHashMap,
double_to_string)``: the new values of a column (see ``_maps.c``)."""


@cache
def map_rebuilder() -> MapRebuild | None:
    """The native map rebuild's ``rebuild``, or None (why is logged once)."""
    return cast(MapRebuild | None, _optional(
        MAPS_ENABLED, "_maps", "rebuild", "Native map rebuild {why}, transforming maps in "
        "Python", "turned off by KANAL_NATIVE_MAPS=0"))


def _optional(enabled: bool, module: str, name: str, fallback: str, off: str) -> Any | None:
    """``name`` of the extension ``module``, or None with ``fallback`` logged (its
    ``{why}``: ``off`` when not ``enabled``, else that the module is not built)."""
    if not enabled:
        log.warning(fallback.format(why=off))
        return None
    try:
        extension = importlib.import_module(f"{__name__}.{module}")
    except ImportError as exc:
        log.warning(fallback.format(why=f"unavailable: the extension is not built ({exc})"))
        return None
    return getattr(extension, name)
