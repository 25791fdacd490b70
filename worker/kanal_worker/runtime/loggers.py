"""Logger levels of this process, seen and changed the way Kafka Connect's are."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoggerLevel:
    """A logger's level under Apache's names, and when the REST API last changed it (ms)."""

    level: str
    last_modified: int | None


APACHE_LEVELS = {"OFF": logging.CRITICAL + 10, "FATAL": logging.CRITICAL,
                 "ERROR": logging.ERROR, "WARN": logging.WARNING, "INFO": logging.INFO,
                 "DEBUG": logging.DEBUG, "TRACE": 5, "ALL": 1}
"""Apache's (log4j) level names and the Python levels they map to."""
PYTHON_LEVEL_NAMES = {"WARNING": "WARN", "CRITICAL": "FATAL"}


def python_level(name: str) -> int | None:
    """The Python level of an Apache level name (Python's own names are accepted too);
    None for an unknown name."""
    upper = name.strip().upper()
    return APACHE_LEVELS.get(PYTHON_LEVEL_NAMES.get(upper, upper))


def apache_level(level: int) -> str:
    """The Apache name of a Python level: the highest Apache level it reaches."""
    reached = [name for name, value in APACHE_LEVELS.items() if value <= level]
    return max(reached, key=APACHE_LEVELS.__getitem__) if reached else "ALL"


class ProcessLoggers:
    """This process's Python loggers, seen and changed the way Kafka Connect's are."""

    ROOT = "root"

    def __init__(self) -> None:
        self._modified: dict[str, int] = {}
        self._lock = threading.Lock()

    def levels(self) -> dict[str, LoggerLevel]:
        with self._lock:
            found = {name: self._describe(logger) for name, logger in self._existing().items()
                     if logger.level != logging.NOTSET}
            found[self.ROOT] = self._describe(logging.getLogger())
            return dict(sorted(found.items()))

    def level(self, name: str) -> LoggerLevel | None:
        with self._lock:
            logger = (logging.getLogger() if name.lower() == self.ROOT
                      else self._existing().get(name))
            return None if logger is None else self._describe(logger)

    def set_level(self, namespace: str, level: int) -> list[str]:
        with self._lock:
            existing = self._existing()
            if namespace.lower() == self.ROOT:
                targets = [*existing.values(), logging.getLogger()]
            else:
                targets = [logger for name, logger in existing.items()
                           if name == namespace or name.startswith(namespace + ".")]
                if namespace not in existing:
                    targets.append(logging.getLogger(namespace))
            changed = []
            for logger in targets:
                if logger.getEffectiveLevel() != level:
                    logger.setLevel(level)
                    self._modified[logger.name] = int(time.time() * 1000)
                    changed.append(logger.name)
            if changed:
                log.info("Level of logger %s and its children set to %s", namespace,
                         apache_level(level))
            return sorted(changed)

    def _existing(self) -> dict[str, logging.Logger]:
        return {name: logger for name, logger in logging.root.manager.loggerDict.items()
                if isinstance(logger, logging.Logger)}

    def _describe(self, logger: logging.Logger) -> LoggerLevel:
        return LoggerLevel(apache_level(logger.getEffectiveLevel()),
                           self._modified.get(logger.name))


PROCESS_LOGGERS = ProcessLoggers()
"""Logger levels are process-wide, and so is the record of when they changed."""
