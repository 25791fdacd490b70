"""A sink task that is stopping ends STOPPED-clean even when its consumer's close fails."""

from __future__ import annotations

import logging

import pytest

from kanal_worker.api.records import TopicPartition
from kanal_worker.connectors.file import FileStreamSinkConnector
from kanal_worker.runtime.sink import SinkTaskRunner
from kanal_worker.runtime.status import TargetState
from kanal_worker.runtime.task import TaskId, TaskRunner


def ignore(_: TaskRunner) -> None:
    return None


class ClosingFails:
    """A consumer whose close raises what confluent-kafka raised on Python 3.11 when a
    commit in the revoke callback met a rebalancing group."""

    def close(self) -> None:
        raise SystemError("_PyErr_SetObject: exception <class 'str'> is not a BaseException "
                          "subclass")


class Fetch:
    closed = False

    def close(self) -> None:
        self.closed = True


class Task:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def close(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(f"close {len(partitions)}")

    def stop(self) -> None:
        self.calls.append("stop")


def test_a_consumer_that_fails_to_close_still_releases_the_task(
        caplog: pytest.LogCaptureFixture) -> None:
    runner = SinkTaskRunner(TaskId("blob-sink", 0), {"topics": "t", "file": "/dev/null"},
                            {"bootstrap.servers": "127.0.0.1:1"}, "worker-0:8083",
                            TargetState.STARTED, ignore, FileStreamSinkConnector)
    fetch, task = Fetch(), Task()
    runner.consumer, runner.fetch, runner.task = ClosingFails(), fetch, task  # type: ignore[assignment]
    runner.assignment = {TopicPartition("t", 0)}
    with caplog.at_level(logging.WARNING):
        runner._shutdown()
    assert fetch.closed
    assert task.calls == ["close 1", "stop"]
    assert "did not close cleanly (SystemError" in caplog.text
