"""What operator and workers agree on: normal forms, tokens, reports, assignments."""

from __future__ import annotations

from typing import Any

from kanal_operator.kube import merge_patch
from kanal_worker.cluster.assignments import Assigned, assignments, offsets_jobs
from kanal_worker.cluster.executor import redact
from kanal_worker.cluster.protocol import (
    REPORT_LIMIT,
    REPORT_TRIMMED,
    TRACE_LIMIT,
    OffsetsResult,
    PlanMismatch,
    TaskReport,
    WorkerReport,
    config_hash,
    connector_config,
    normalize,
    secret_refs,
    task_config,
    task_overrides,
    task_token,
)
from kanal_worker.runtime.status import TargetState

SINK = {"name": "s", "connector.class": "FileStreamSink", "tasks.max": "1", "topics": "a,b"}


def test_normal_form_ignores_noise() -> None:
    noisy = {**SINK, "topics": " a, b ", "tasks.max": "01", "errors.tolerance": "none",
             "errors.log.enable": "False"}
    assert normalize(noisy) == normalize(SINK)
    assert config_hash(noisy) == config_hash(SINK)
    assert list(normalize(SINK)) == sorted(normalize(SINK))
    assert normalize(SINK)["errors.retry.timeout"] == "0"  # defaults applied


def test_real_changes_change_the_hash() -> None:
    assert config_hash({**SINK, "topics": "a"}) != config_hash(SINK)
    assert config_hash({**SINK, "consumer.override.x": "1"}) != config_hash(SINK)


def test_unknown_connector_classes_still_normalize() -> None:
    config = {"connector.class": "Nope", "x": " y "}
    assert normalize(config) == config


def test_tokens_change_with_configuration_and_epoch() -> None:
    token = task_token("h", {"a": "1"}, 0)
    assert token == task_token("h", {"a": "1"}, 0)
    assert len({token, task_token("h2", {"a": "1"}, 0), task_token("h", {"a": "2"}, 0),
                task_token("h", {"a": "1"}, 1)}) == 4


def test_task_configs_travel_as_overrides() -> None:
    task = {**SINK, "generator.stride": "2"}
    overrides = task_overrides(SINK, task)
    assert overrides == {"generator.stride": "2"}
    assert task_config(SINK, overrides) == task


def test_secret_references() -> None:
    config = {"a": "${secret:creds:key}", "b": "x${secret:other:k}y", "c": "${env:HOME}",
              "d": "${secret::k}"}
    assert secret_refs(config) == {"creds", "other"}


def test_reports_round_trip_and_tolerate_garbage() -> None:
    report = WorkerReport(
        tasks={"c/0": TaskReport("RUNNING", "t", None, 1.5)},
        plugins=[{"class": "X", "type": "sink", "version": "1"}],
        offsets={"c": OffsetsResult("n", "Succeeded", "ok", [{"partition": {"p": 1}}])},
        topics={"c": ["t1"]}, mismatches={"d": PlanMismatch(2, "a", "b")}, version="9.9")
    assert WorkerReport.from_json(report.to_json()) == report
    assert WorkerReport.from_json("{not json") == WorkerReport()
    assert WorkerReport.from_json(None) == WorkerReport()


def failing_tasks(count: int, trace_length: int = TRACE_LIMIT) -> dict[str, TaskReport]:
    trace = "Traceback\n" + "x" * (trace_length - 30) + "\nValueError: the cause"
    return {f"c/{i}": TaskReport("FAILED", f"t{i}", trace, 1.0) for i in range(count)}


def test_an_oversized_report_cuts_traces_first_keeping_their_end() -> None:
    report = WorkerReport(tasks=failing_tasks(100), topics={"c": ["t1"]})
    assert len(WorkerReport._json(report)) > REPORT_LIMIT
    text = report.to_json()
    assert len(text.encode()) <= REPORT_LIMIT
    parsed = WorkerReport.from_json(text)
    assert set(parsed.tasks) == set(report.tasks)
    task = parsed.tasks["c/7"]
    assert (task.state, task.token) == ("FAILED", "t7")
    assert task.trace is not None and task.trace.startswith(REPORT_TRIMMED)
    assert task.trace.endswith("ValueError: the cause")
    assert parsed.topics == {"c": ["t1"]}  # cutting traces was enough


def test_a_report_still_too_large_leaves_out_topics_then_listed_offsets() -> None:
    topics = {"c": [f"topic-{i:06d}" for i in range(20_000)]}
    offsets = {"c": OffsetsResult("n", "Succeeded", "listed", [
        {"partition": {"kafka_topic": f"topic-{i}", "kafka_partition": 0},
         "offset": {"kafka_offset": i}} for i in range(3_000)])}
    parsed = WorkerReport.from_json(WorkerReport(
        tasks=failing_tasks(3), topics=topics, offsets=offsets).to_json())
    assert parsed.topics == {} and parsed.tasks["c/0"].trace == REPORT_TRIMMED
    result = parsed.offsets["c"]
    assert (result.nonce, result.state, result.offsets) == ("n", "Succeeded", [])
    assert result.message == f"{REPORT_TRIMMED}3000 offset(s) left out; listed"


def test_a_small_report_is_written_as_it_is() -> None:
    report = WorkerReport(tasks=failing_tasks(2), topics={"c": ["t"]})
    assert WorkerReport.from_json(report.to_json()) == report


def test_redaction() -> None:
    assert redact("password=hunter22 in URL", {"hunter22", "ab"}) == \
        "password=[hidden] in URL"


def connector(name: str, worker: str, status_hash: str | None = None,
              **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name},
        "spec": {"clusterRef": {"name": "c1"}, "class": "FileStreamSink", "tasksMax": 2,
                 "config": {"topics": "t"}, **spec},
    }
    digest = status_hash or config_hash(connector_config(body))
    body["status"] = {"configHash": digest, "tasks": [
        {"id": 0, "token": "t0", "worker": worker, "state": "RUNNING"},
        {"id": 1, "token": "t1", "worker": "other", "state": "RUNNING",
         "config": {"x": "1"}}]}
    return body


def test_a_worker_runs_what_status_assigns_to_it() -> None:
    assigned = assignments([connector("a", "me"), connector("b", "other")], "c1", "me")
    desired = assigned.desired
    assert list(desired) == ["a/0"] and assigned.keep == set()
    assert assigned.mismatches == {}
    assert desired["a/0"].token == "t0"
    assert desired["a/0"].config["topics"] == "t"
    assert desired["a/0"].target == TargetState.STARTED
    paused = assignments([connector("a", "me", state="paused")], "c1", "me").desired
    assert paused["a/0"].target == TargetState.PAUSED


def test_a_stale_plan_keeps_what_runs_and_is_reported() -> None:
    body = connector("a", "me", status_hash="old")
    body["metadata"]["generation"] = 3
    assigned = assignments([body], "c1", "me")
    assert assigned.desired == {} and assigned.keep == {"a"}
    assert assigned.mismatches == {
        "a": PlanMismatch(3, "old", config_hash(connector_config(body)))}


def test_a_connector_not_planned_yet_is_no_mismatch() -> None:
    body = connector("a", "me")
    del body["status"]
    assigned = assignments([body], "c1", "me")
    assert assigned.keep == {"a"} and assigned.mismatches == {}


def test_other_clusters_and_deleted_connectors_run_nothing() -> None:
    other = connector("a", "me")
    other["spec"]["clusterRef"]["name"] = "c2"
    deleting = connector("b", "me")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert assignments([other, deleting], "c1", "me") == Assigned()


def test_offsets_requests_for_this_worker() -> None:
    body = connector("a", "me", state="stopped")
    body["spec"]["offsets"] = {"nonce": "n1", "action": "reset"}
    body["status"]["offsets"] = {"nonce": "n1", "action": "reset", "state": "Pending",
                                 "worker": "me"}
    jobs = offsets_jobs([body], "c1", "me")
    assert [(j.connector, j.nonce, j.action) for j in jobs] == [("a", "n1", "reset")]
    assert offsets_jobs([body], "c1", "you") == []
    body["status"]["offsets"]["state"] = "Succeeded"
    assert offsets_jobs([body], "c1", "me") == []


def test_merge_patch_removes_what_is_gone() -> None:
    old = {"a": 1, "b": {"c": 1, "d": 2}, "e": [1]}
    new = {"b": {"c": 1, "d": 3}, "e": [2], "f": "x"}
    assert merge_patch(old, new) == {"a": None, "b": {"d": 3}, "e": [2], "f": "x"}
    assert merge_patch(new, new) == {}
