"""What a task runner in this process reports beyond its counters: its errors and its
partitions' positions. The worker's Prometheus collector (runtime/metrics.py) reads them at
scrape time, and a task process sends them to its worker; they live apart from the
collector so that a task process does not import the Prometheus client and its HTTP server,
which only the worker serves."""

from __future__ import annotations

from collections.abc import Iterator

from confluent_kafka import TopicPartition as KafkaTopicPartition

from kanal_worker.api.records import TopicPartition
from kanal_worker.runtime.sink import SinkTaskRunner
from kanal_worker.runtime.task import TaskRunner


def own_error_counts(runner: TaskRunner) -> tuple[int, int]:
    """(records that failed for good, records sent to the dead letter queue).

    ``ErrorHandler.failed`` counts every record that failed conversion, a transform or
    the write; ``Throughput.records_failed`` is the runner's own counter. Either may be
    the one a runtime version maintains, so the larger is reported (never their sum,
    which would count a record twice).
    """
    handler = getattr(runner, "errors", None)
    failed = max(runner.metrics.records_failed, int(getattr(handler, "failed", 0)))
    dlq = getattr(handler, "dlq", None)
    return failed, int(getattr(dlq, "count", 0))


def _snapshot(mapping: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Copy a dict another thread mutates (rebalances add and remove partitions)."""
    for _ in range(3):
        try:
            return dict(mapping)
        except RuntimeError:  # changed size during iteration: try again
            continue
    return {}


def sink_positions(runner: SinkTaskRunner) -> Iterator[tuple[TopicPartition, int, int, int]]:
    """(partition, next offset to process, committed offset, high watermark) per partition.

    The high watermark is librdkafka's cached value, refreshed by every fetch response:
    reading it costs no request to the broker. Partitions whose watermark the client
    does not know yet are left out rather than reported with a made-up lag.
    """
    consumer = getattr(runner, "consumer", None)
    if consumer is None:
        return
    consumed = _snapshot(runner.consumed)
    committed = _snapshot(runner.committed)
    for tp, position in sorted(consumed.items()):
        try:
            _low, high = consumer.get_watermark_offsets(
                KafkaTopicPartition(tp.topic, tp.partition), cached=True)
        except Exception:  # consumer closing or closed: this scrape skips it
            continue
        if high is None or high < 0:
            continue
        yield tp, position, committed.get(tp, position), high
