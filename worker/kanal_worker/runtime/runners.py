"""The runner of one connector task, built alike by the standalone herder and the cluster
executor."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from kanal_worker.config.worker import WorkerSettings
from kanal_worker.runtime.offsets import OffsetStore
from kanal_worker.runtime.process import (
    ProcessTaskRunner,
    StartBarrier,
    in_child,
    usable_cpus,
)
from kanal_worker.runtime.registry import PluginInfo
from kanal_worker.runtime.sink import SinkTaskRunner
from kanal_worker.runtime.source import SourceTaskRunner
from kanal_worker.runtime.status import TargetState
from kanal_worker.runtime.task import StatusListener, TaskId, TaskRunner


@cache
def _cpus() -> int:
    return usable_cpus()


def task_runner(plugin: PluginInfo, task_id: TaskId, config: Mapping[str, str],
                worker: Mapping[str, str], worker_id: str, target: TargetState,
                on_status: StatusListener, offsets: OffsetStore,
                active_topics: set[str], tasks: int = 1,
                barrier: StartBarrier | None = None) -> TaskRunner:
    """A sink's or a source's runner for a task of ``plugin`` with its resolved ``config``;
    it adds the topics it uses to ``active_topics``, which its connector's tasks share.
    ``tasks`` is how many tasks of the connector this worker runs: with two or more, sink
    tasks may run in child processes (``kanal.task.processes``), which subscribe together
    with the others enlisted in ``barrier``."""
    runner: SinkTaskRunner | SourceTaskRunner | ProcessTaskRunner
    mode = WorkerSettings.parse(worker).task_processes
    if in_child(mode, plugin.kind, tasks, _cpus()):
        runner = ProcessTaskRunner(plugin.name, task_id, config, worker, worker_id, target,
                                   on_status, barrier)
    elif plugin.kind == "sink":
        runner = SinkTaskRunner(task_id, config, worker, worker_id, target, on_status,
                                plugin.cls)
    else:
        runner = SourceTaskRunner(task_id, config, worker, worker_id, target, on_status,
                                  plugin.cls, offsets)
    runner.active_topics = active_topics
    return runner
