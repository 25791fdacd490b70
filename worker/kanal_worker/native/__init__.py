"""The native fetch: a sink task's polls as column buffers read straight out of the
librdkafka instance its confluent-kafka Consumer runs (see ``_fetch.c``).

``fetcher(consumer)`` is the one way in: a ``Fetcher`` when the extension is built and the
Consumer's layout is the one it knows, else None (logged once, with the reason), and the
task reads confluent-kafka's messages instead.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)

ENABLED = os.environ.get("KANAL_NATIVE_FETCH", "1") != "0"
"""``KANAL_NATIVE_FETCH=0`` turns the native fetch off (confluent-kafka's messages)."""

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
