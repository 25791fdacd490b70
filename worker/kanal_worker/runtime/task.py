"""What sink and source task runners share: a thread, a status, a target state."""

from __future__ import annotations

import ctypes
import gc
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaError

from kanal_worker.api.backoff import exponential_backoff
from kanal_worker.api.errors import ConnectError, RetriableError
from kanal_worker.config.connector import SinkSettings, SourceSettings
from kanal_worker.config.worker import client_config
from kanal_worker.runtime.codec import build_codec
from kanal_worker.runtime.errors import DeadLetterQueue, ErrorHandler
from kanal_worker.runtime.status import State, Status, TargetState, format_trace
from kanal_worker.runtime.transforms import build_chain, sub_config

log = logging.getLogger(__name__)

WAITING_FOR_KAFKA = "waiting for Kafka"
UNREACHABLE = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}

GC_THRESHOLDS = (10_000, 50, 100)
"""The cyclic collector's thresholds while tasks run. Python's (700, 10, 10) start a
collection every 700 allocations; a task allocates a few objects per record, all freed
by reference counting, so those collections found nothing and took ~40% of a sink's CPU
(bench/README.md)."""


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MALLOC_THRESHOLDS = {M_TRIM_THRESHOLD: 16 << 20, M_MMAP_THRESHOLD: 1 << 20}
"""glibc's allocator returns free memory at the top of a heap to the kernel beyond its trim
threshold: 128 KiB, unless freeing a large mapped block happened to raise it, which
depends on what the process imported. Below a batch's few MB, every batch's memory went
back to the kernel and was faulted in again for the next: a quarter of a transforming
sink's CPU, in the kernel. 16 MiB keeps it from batch to batch (the peak is the same).
Fixing the trim threshold also stops glibc adapting the mmap threshold, so that one is
set too: blocks above 1 MiB are mapped on their own and returned when freed."""


def tune_gc() -> None:
    """Raise the collector's thresholds to GC_THRESHOLDS (never lowers them, and leaves
    a collector switched off with threshold 0 off)."""
    current = gc.get_threshold()
    wanted = tuple(max(c, t) for c, t in zip(current, GC_THRESHOLDS, strict=True))
    if current[0] and wanted != current:
        gc.set_threshold(*wanted)


def tune_malloc() -> None:
    """Set MALLOC_THRESHOLDS (nothing to do where the C library has no ``mallopt``)."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        for option, value in MALLOC_THRESHOLDS.items():
            mallopt(option, value)


@dataclass
class TaskId:
    connector: str
    task: int

    def __str__(self) -> str:
        return f"{self.connector}-{self.task}"


@dataclass
class Throughput:
    """Counters a person reads in the progress log and Prometheus scrapes."""

    records_in: int = 0
    records_out: int = 0
    records_failed: int = 0
    batches: int = 0
    batch_seconds: float = 0.0
    last_report: tuple[float, int] = field(default_factory=lambda: (time.monotonic(), 0))

    def rate(self) -> tuple[int, float]:
        """Records out since the last call and their rate per second."""
        now = time.monotonic()
        then, count = self.last_report
        self.last_report = (now, self.records_out)
        moved = self.records_out - count
        return moved, moved / max(now - then, 1e-6)


StatusListener = Callable[["TaskRunner"], None]


class TaskRunner(ABC):
    """Runs one task in its own thread and drives it towards its target state."""

    def __init__(self, task_id: TaskId, config: Mapping[str, str], worker: Mapping[str, str],
                 worker_id: str, target: TargetState, on_status: StatusListener) -> None:
        self.id = task_id
        self.config = dict(config)
        self.worker = dict(worker)
        self.status = Status(worker_id=worker_id)
        self.target = target
        self.on_status = on_status
        self.metrics = Throughput()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"task-{task_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the task to finish: flush, commit, release. Returns at once."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def abandon(self) -> None:
        """Give up on a task that did not stop in time. A thread cannot be ended from
        outside: like Kafka Connect's, it is left to finish, fenced by its consumer group
        membership and transactional id when it wakes (``ProcessTaskRunner`` can do
        better)."""
        log.warning("Task %s: its thread is left to finish on its own", self.id)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def set_target(self, target: TargetState) -> None:
        self.target = target

    def _set(self, state: State, trace: str | None = None, detail: str | None = None) -> None:
        if (state, trace, detail) != (self.status.state, self.status.trace, self.status.detail):
            self.status.set(state, trace, detail)
            self.on_status(self)

    def _main(self) -> None:
        tune_gc()
        tune_malloc()
        try:
            self.execute()
            if self.status.state != State.FAILED:
                self._set(State.UNASSIGNED if self.target != TargetState.STOPPED
                          else State.STOPPED)
        except Exception as exc:
            log.error("Task %s failed: %s", self.id, exc, exc_info=not isinstance(exc,
                                                                                   ConnectError))
            self._set(State.FAILED, format_trace(exc))

    def producer_config(self) -> dict[str, str]:
        """The worker's producer settings with the connector's ``producer.override.*``."""
        return client_config(self.worker, "producer", sub_config(self.config,
                                                                  "producer.override."))

    def build_pipeline(self, settings: SinkSettings | SourceSettings) -> None:
        """What every data task runs records through, set up alike: the converters, the
        transforms, and error handling with its dead letter queue."""
        self.codec = build_codec(self.config, self.worker)
        self.chain = build_chain(self.config)
        dlq = None
        if settings.dlq_topic:
            dlq = DeadLetterQueue(settings.dlq_topic, settings.dlq_replication_factor,
                                  self.producer_config(), settings.dlq_context_headers,
                                  self.id.connector, self.id.task)
        self.errors = ErrorHandler(
            tolerance=settings.errors_tolerance, retry_timeout_ms=settings.errors_retry_timeout,
            retry_delay_max_ms=settings.errors_retry_delay_max_ms,
            log_enable=settings.errors_log_enable,
            log_messages=settings.errors_log_include_messages, task=str(self.id), dlq=dlq)
        self.errors.stopping = lambda: self.stopping
        self.errors.sleep = self.sleep

    def backoff(self, attempt: int, error: RetriableError, what: str) -> None:
        """Wait before retrying (as long as the error asks, if it does); the status says
        what is being retried."""
        delay = error.retry_after if error.retry_after is not None else \
            exponential_backoff(attempt, 0.25, 10.0)
        log.warning("Task %s: %s failed (%s); retrying in %.1fs", self.id, what, error, delay)
        self._set(self.status.state, detail=f"retrying {what}: {error}")
        self.sleep(delay)

    def kafka_error(self, error: KafkaError) -> None:
        """librdkafka's error callback: say in the status when Kafka cannot be reached
        (the clients keep retrying on their own; nothing fails)."""
        if error.code() in UNREACHABLE:
            servers = self.worker.get("bootstrap.servers", "localhost:9092")
            self._set(self.status.state,
                      detail=f"{WAITING_FOR_KAFKA} at {servers}: {error.str()}")

    def kafka_reached(self) -> None:
        """Records moved again: clear the waiting-for-Kafka note."""
        if self.status.detail and self.status.detail.startswith(WAITING_FOR_KAFKA):
            self._set(self.status.state)

    def sleep(self, seconds: float) -> None:
        """Wait, waking early when the task stops."""
        self._stop.wait(seconds)

    @abstractmethod
    def execute(self) -> None:
        """Run until ``stopping``; raise to fail the task."""
