"""The runner of one connector task, built alike by the standalone herder and the cluster
executor."""

from __future__ import annotations

from collections.abc import Mapping

from kanal_worker.runtime.offsets import OffsetStore
from kanal_worker.runtime.registry import PluginInfo
from kanal_worker.runtime.sink import SinkTaskRunner
from kanal_worker.runtime.source import SourceTaskRunner
from kanal_worker.runtime.status import TargetState
from kanal_worker.runtime.task import StatusListener, TaskId, TaskRunner


def task_runner(plugin: PluginInfo, task_id: TaskId, config: Mapping[str, str],
                worker: Mapping[str, str], worker_id: str, target: TargetState,
                on_status: StatusListener, offsets: OffsetStore,
                active_topics: set[str]) -> TaskRunner:
    """A sink's or a source's runner for a task of ``plugin`` with its resolved ``config``;
    it adds the topics it uses to ``active_topics``, which its connector's tasks share."""
    runner: SinkTaskRunner | SourceTaskRunner
    if plugin.kind == "sink":
        runner = SinkTaskRunner(task_id, config, worker, worker_id, target, on_status,
                                plugin.cls)
    else:
        runner = SourceTaskRunner(task_id, config, worker, worker_id, target, on_status,
                                  plugin.cls, offsets)
    runner.active_topics = active_topics
    return runner
