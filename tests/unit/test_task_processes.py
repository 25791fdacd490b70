"""Where a task runs: the worker's process or a child (``kanal.task.processes``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kanal_worker.runtime.process import in_child, usable_cpus


def test_a_single_task_stays_in_the_worker() -> None:
    assert not in_child("auto", "sink", tasks=1, cpus=8)


def test_two_sink_tasks_get_children_when_two_cores_are_free() -> None:
    assert in_child("auto", "sink", tasks=2, cpus=2)
    assert not in_child("auto", "sink", tasks=2, cpus=1)


def test_sources_stay_with_the_worker_and_its_offsets_store() -> None:
    assert not in_child("always", "source", tasks=4, cpus=4)
    assert not in_child("auto", "source", tasks=4, cpus=4)


def test_always_and_never_override_the_rule() -> None:
    assert in_child("always", "sink", tasks=1, cpus=1)
    assert not in_child("never", "sink", tasks=4, cpus=4)


@pytest.mark.parametrize(("quota", "expected"), [
    ("max 100000", None), ("100000 100000", 1), ("150000 100000", 1), ("50000 100000", 1),
    ("200000 100000", 2)])
def test_a_cgroup_quota_caps_the_cores(tmp_path: Path, quota: str,
                                       expected: int | None) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(quota + "\n")
    cores = len(os.sched_getaffinity(0))
    assert usable_cpus(str(cpu_max)) == (cores if expected is None else min(cores, expected))


def test_without_a_cgroup_file_the_affinity_counts(tmp_path: Path) -> None:
    assert usable_cpus(str(tmp_path / "missing")) == len(os.sched_getaffinity(0))
