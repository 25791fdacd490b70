"""Where source offsets live: a local file in standalone mode (Kafka in cluster mode)."""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import orjson

from kanal_worker.api.errors import ConfigError


def partition_key(partition: dict[str, Any]) -> str:
    """A stable string for a source partition map (key order does not matter)."""
    return orjson.dumps(partition, option=orjson.OPT_SORT_KEYS).decode()


class OffsetStore(ABC):
    """Source offsets per connector and source partition."""

    @abstractmethod
    def get(self, connector: str, partition: dict[str, Any]) -> dict[str, Any] | None: ...

    @abstractmethod
    def put(self, connector: str, offsets: dict[str, dict[str, Any] | None]) -> None:
        """Store offsets (keyed by ``partition_key``; None deletes) durably."""

    @abstractmethod
    def all(self, connector: str) -> list[tuple[dict[str, Any], dict[str, Any]]]: ...


class FileOffsetStore(OffsetStore):
    """JSON file replaced atomically on every write, so a crash leaves the old or the new
    offsets, never a torn file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, dict[str, Any]]] = {}
        if path.exists():
            try:
                self._data = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError) as exc:
                raise ConfigError("offset.storage.file.filename",
                                  f"cannot read offsets from {path}: {exc}") from None
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._write()
            except OSError as exc:
                raise ConfigError("offset.storage.file.filename",
                                  f"cannot write offsets to {path}: {exc.strerror}; choose a "
                                  "writable path") from None

    def get(self, connector: str, partition: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            return self._data.get(connector, {}).get(partition_key(partition))

    def put(self, connector: str, offsets: dict[str, dict[str, Any] | None]) -> None:
        with self._lock:
            stored = self._data.setdefault(connector, {})
            for key, offset in offsets.items():
                if offset is None:
                    stored.pop(key, None)
                else:
                    stored[key] = offset
            self._write()

    def all(self, connector: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        with self._lock:
            return [(orjson.loads(k), v) for k, v in self._data.get(connector, {}).items()]

    def _write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as handle:
            handle.write(orjson.dumps(self._data, option=orjson.OPT_INDENT_2))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)


class MemoryOffsetStore(OffsetStore):
    """For connectors run without a persistent store (tests, validation)."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, dict[str, Any]]] = {}

    def get(self, connector: str, partition: dict[str, Any]) -> dict[str, Any] | None:
        return self._data.get(connector, {}).get(partition_key(partition))

    def put(self, connector: str, offsets: dict[str, dict[str, Any] | None]) -> None:
        stored = self._data.setdefault(connector, {})
        for key, offset in offsets.items():
            if offset is None:
                stored.pop(key, None)
            else:
                stored[key] = offset

    def all(self, connector: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [(orjson.loads(k), v) for k, v in self._data.get(connector, {}).items()]
