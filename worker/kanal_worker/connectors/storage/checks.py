"""Configuration errors that need several keys to see, by key.

A sink's connector ``validate`` answers with them (the REST validate endpoint, ``kanal
validate``, the operator's status) and the task refuses to start with the first one,
so a mistake shows up at creation time with the same message either way.
"""

from __future__ import annotations

from kanal_worker.connectors.storage.formats import format_problems
from kanal_worker.connectors.storage.partitioners import partitioner_problems, time_settings
from kanal_worker.connectors.storage.settings import StorageSinkSettings
from kanal_worker.connectors.storage.timeformat import (
    JodaPattern,
    PatternError,
    locale_supported,
)


def config_problems(settings: StorageSinkSettings,
                    *store_problems: dict[str, list[str]]) -> dict[str, list[str]]:
    """The storage core's problems with ``settings`` merged with the store's own."""
    problems: dict[str, list[str]] = {}
    for found in (*store_problems, partitioner_problems(settings), format_problems(settings),
                  _time_problems(settings), _null_problems(settings)):
        for key, messages in found.items():
            problems.setdefault(key, []).extend(messages)
    return problems


def _time_problems(settings: StorageSinkSettings) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    if settings.rotate_schedule_interval_ms > 0 and not settings.timezone:
        problems["timezone"] = ["Timezone cannot be empty when rotate.schedule.interval.ms is "
                                "set: scheduled rotation happens at times of that zone."]
    timed = time_settings(settings)
    if timed is not None and settings.locale and not locale_supported(settings.locale):
        path = timed[1]
        try:
            prints_names = bool(path) and JodaPattern(path).uses_text
        except PatternError:
            prints_names = False  # partitioner_problems names the bad pattern
        if prints_names:
            problems["locale"] = [f"path.format {path!r} prints month or day names, which "
                                  f"Kanal writes in English only, not in locale "
                                  f"{settings.locale}; use numeric fields or an English locale"]
    return problems


def _null_problems(settings: StorageSinkSettings) -> dict[str, list[str]]:
    if settings.behavior_on_null_values == "write" and not settings.store_kafka_keys:
        return {"behavior.on.null.values": [
            "behavior.on.null.values=write writes the keys of null-valued records, which "
            "needs store.kafka.keys=true; set it, or use ignore or fail"]}
    return {}
