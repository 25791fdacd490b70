"""Carries out KIP-875 offsets requests the operator gave to this worker.

Sink offsets are the consumer group's (``connect-<name>``); source offsets live in the
cluster's offsets topic. The result (and for ``list`` the offsets) goes into the
worker's report; the operator copies it into the Connector's status.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kanal_worker.api.errors import ConfigError, ConnectError
from kanal_worker.cluster.assignments import OffsetsJob
from kanal_worker.cluster.protocol import OffsetsResult
from kanal_worker.config.worker import client_config
from kanal_worker.runtime.group_offsets import ConsumerGroupOffsets, parse_sink_offsets
from kanal_worker.runtime.herder import (
    OFFSETS_ALTERED,
    OFFSETS_RESET,
    ConnectorOffset,
    check_source_offsets,
)
from kanal_worker.runtime.offsets import OffsetStore, partition_key
from kanal_worker.runtime.transforms import sub_config
from kanal_worker.runtime.validation import connector_plugin

log = logging.getLogger(__name__)


class OffsetsRunner:
    def __init__(self, worker: Mapping[str, str], store: OffsetStore,
                 resolve: Callable[[Mapping[str, str]], Mapping[str, str]],
                 on_change: Callable[[], None]) -> None:
        self.worker = dict(worker)
        self.store = store
        self.resolve = resolve
        self.on_change = on_change
        self._results: dict[str, OffsetsResult] = {}
        self._lock = threading.Lock()

    def results(self) -> dict[str, OffsetsResult]:
        with self._lock:
            return dict(self._results)

    def submit(self, job: OffsetsJob) -> None:
        """Start ``job`` unless it already ran or runs (once per nonce)."""
        with self._lock:
            known = self._results.get(job.connector)
            if known is not None and known.nonce == job.nonce:
                return
            self._results[job.connector] = OffsetsResult(job.nonce, "Running",
                                                         f"{job.action} in progress")
        threading.Thread(target=self._run, args=(job,), name=f"offsets-{job.connector}",
                         daemon=True).start()
        self.on_change()

    def _run(self, job: OffsetsJob) -> None:
        try:
            message, offsets = self._execute(job)
            result = OffsetsResult(job.nonce, "Succeeded", message, offsets)
            log.info("Offsets %s of connector %s: %s", job.action, job.connector, message)
        except (ConnectError, ConfigError) as exc:
            result = OffsetsResult(job.nonce, "Failed", str(exc))
            log.warning("Offsets %s of connector %s failed: %s", job.action, job.connector, exc)
        except Exception as exc:
            log.exception("Offsets %s of connector %s failed", job.action, job.connector)
            result = OffsetsResult(job.nonce, "Failed", f"{type(exc).__name__}: {exc}")
        with self._lock:
            self._results[job.connector] = result
        self.on_change()

    def _execute(self, job: OffsetsJob) -> tuple[str, list[dict[str, Any]]]:
        plugin = connector_plugin(job.config)
        entries = [ConnectorOffset(dict(e.get("partition") or {}), e.get("offset"))
                   for e in job.offsets]
        if plugin.kind == "sink":
            config = self.resolve(job.config)
            group = ConsumerGroupOffsets(
                client_config(self.worker, "admin", sub_config(config, "admin.override.")),
                job.connector)
            if job.action == "alter":
                group.alter(parse_sink_offsets(entries))
                return OFFSETS_ALTERED, []
            if job.action == "reset":
                group.reset()
                return OFFSETS_RESET, []
            return _listed(group.read())
        self.store.refresh()
        if job.action == "alter":
            check_source_offsets(entries)
            self.store.put(job.connector, {partition_key(e.partition): e.offset
                                           for e in entries})
            return OFFSETS_ALTERED, []
        if job.action == "reset":
            self.store.put(job.connector, {partition_key(partition): None
                                           for partition, _ in self.store.all(job.connector)})
            return OFFSETS_RESET, []
        return _listed([ConnectorOffset(p, o) for p, o in self.store.all(job.connector)])


def _listed(offsets: list[ConnectorOffset]) -> tuple[str, list[dict[str, Any]]]:
    entries = [{"partition": o.partition, "offset": o.offset} for o in offsets]
    return f"{len(entries)} partition offset(s)", entries
