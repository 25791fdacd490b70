"""Connector reconciliation: validation, planning, status aggregation, restarts, offsets."""

from __future__ import annotations

from typing import Any

from kanal_operator.connectors import Inputs, Worker, backoff, reconcile, summary
from kanal_operator.models import ConnectorSpec, ConnectorStatus
from kanal_worker.cluster.protocol import (
    OffsetsResult,
    Plan,
    PlanMismatch,
    TaskReport,
    WorkerReport,
    plan,
)
from kanal_worker.config.loader import from_manifest

NOW = 1_000_000.0


def spec(**values: Any) -> ConnectorSpec:
    base: dict[str, Any] = {"clusterRef": {"name": "c"}, "class": "VehicleTelemetrySource",
                            "tasksMax": 2, "config": {"topic": "t"}}
    return ConnectorSpec.model_validate({**base, **values})


def config_of(connector: ConnectorSpec) -> dict[str, str]:
    return from_manifest({"metadata": {"name": "gen"},
                          "spec": connector.model_dump(by_alias=True)}).config


def inputs(connector: ConnectorSpec, workers: dict[str, WorkerReport] | None = None,
           now: float = NOW, **extra: Any) -> Inputs:
    reports = {"w1": WorkerReport(), "w2": WorkerReport()} if workers is None else workers
    values: dict[str, Any] = {
        "name": "gen", "generation": 3, "spec": connector, "cluster_found": True,
        "workers": {n: Worker(n, r) for n, r in reports.items()}, "load": {},
        "granted_secrets": frozenset(), "selector": "sel", "now": now, **extra}
    return Inputs(**values)


def running(status: ConnectorStatus, state: str = "RUNNING", since: float = NOW,
            trace: str | None = None) -> dict[str, WorkerReport]:
    """Reports of workers that run exactly what ``status`` assigns them."""
    reports: dict[str, WorkerReport] = {"w1": WorkerReport(), "w2": WorkerReport()}
    for task in status.tasks or []:
        assert task.worker is not None
        reports[task.worker].tasks[f"gen/{task.id}"] = TaskReport(state, task.token, trace, since)
    return reports


def ready(status: ConnectorStatus) -> tuple[str, str]:
    condition = (status.conditions or [])[0]
    return condition.status, condition.reason


def settle(connector: ConnectorSpec, state: str = "RUNNING") -> tuple[Plan, ConnectorStatus]:
    planned = plan(config_of(connector), connector.tasks_max)
    first = reconcile(inputs(connector), planned, ConnectorStatus()).status
    return planned, reconcile(inputs(connector, running(first, state)), planned, first).status


def test_plan_runs_the_plugin_and_keeps_only_overrides() -> None:
    planned = plan(config_of(spec()), 2)
    assert planned.kind == "source" and not planned.errors
    assert planned.tasks == [{"generator.stride": "2"}, {"generator.stride": "2"}]


def test_invalid_configuration_lands_in_status_without_tasks() -> None:
    connector = spec(**{"class": "FileStreamSink", "config": {"errors.tolerance": "maybe"}})
    planned = plan(config_of(connector), 1)
    outcome = reconcile(inputs(connector), planned, ConnectorStatus())
    status = outcome.status
    assert ready(status) == ("False", "InvalidConfiguration")
    assert status.state == "FAILED" and status.tasks is None
    assert {e.key for e in status.errors or []} >= {"errors.tolerance"}
    assert [e.reason for e in outcome.events] == ["InvalidConfiguration"]
    unknown = plan({"name": "x", "connector.class": "NoSuchConnector"}, 1)
    assert list(unknown.errors) == ["connector.class"]


def test_tasks_are_placed_then_ready_when_workers_report_running() -> None:
    connector = spec()
    planned = plan(config_of(connector), 2)
    first = reconcile(inputs(connector), planned, ConnectorStatus()).status
    assert ready(first) == ("False", "Progressing")
    assert {t.worker for t in first.tasks or []} == {"w1", "w2"}
    assert [t.state for t in first.tasks or []] == ["UNASSIGNED", "UNASSIGNED"]
    outcome = reconcile(inputs(connector, running(first)), planned, first)
    status = outcome.status
    assert ready(status) == ("True", "Running")
    assert (status.task_summary, status.tasks_ready, status.task_count) == ("2/2", 2, 2)
    assert status.observed_generation == 3 and status.selector == "sel"
    assert [e.reason for e in outcome.events] == ["Running"]
    again = reconcile(inputs(connector, running(status)), planned, status)
    assert again.status == status and again.events == []  # nothing new: no write, no event


def test_a_failed_task_makes_ready_false_and_restarts_with_backoff() -> None:
    connector = spec()
    planned, status = settle(connector)
    failed = reconcile(inputs(connector, running(status, "FAILED", trace="boom\nValueError: x"),
                              now=NOW + 1), planned, status)
    assert ready(failed.status) == ("False", "TaskFailed")
    assert "ValueError: x" in (failed.status.conditions or [])[0].message
    assert [e.reason for e in failed.events] == ["TaskFailed", "TaskFailed"]
    assert failed.wake_in == backoff(0) - 1
    due = reconcile(inputs(connector, running(status, "FAILED"), now=NOW + backoff(0)),
                    planned, failed.status)
    restarted = due.status.tasks or []
    assert [t.state for t in restarted] == ["RESTARTING", "RESTARTING"]
    assert [(t.epoch, t.restarts) for t in restarted] == [(1, 1), (1, 1)]
    assert {t.token for t in restarted}.isdisjoint({t.token for t in status.tasks or []})
    assert "TaskRestarting" in [e.reason for e in due.events]


def test_automatic_restarts_stop_at_the_limit() -> None:
    connector = spec(autoRestart={"maxRestarts": 0})
    planned, status = settle(connector)
    outcome = reconcile(inputs(connector, running(status, "FAILED"), now=NOW + 999), planned,
                        status)
    assert [t.state for t in outcome.status.tasks or []] == ["FAILED", "FAILED"]
    assert "no automatic restart left" in (outcome.status.conditions or [])[0].message


def test_restart_nonce_is_handled_once() -> None:
    connector = spec(restart={"nonce": "n1", "includeTasks": True})
    planned, status = settle(spec())
    outcome = reconcile(inputs(connector, running(status)), planned, status)
    assert [t.epoch for t in outcome.status.tasks or []] == [1, 1]
    assert outcome.status.restart is not None and outcome.status.restart.tasks == [0, 1]
    again = reconcile(inputs(connector, running(outcome.status)), planned, outcome.status)
    assert [t.epoch for t in again.status.tasks or []] == [1, 1]
    only = spec(restart={"nonce": "n2", "onlyFailed": True, "includeTasks": True})
    failed_one = running(again.status)
    worker = (again.status.tasks or [])[1].worker or ""
    failed_one[worker].tasks["gen/1"] = TaskReport("FAILED", (again.status.tasks or [])[1].token)
    third = reconcile(inputs(only, failed_one), planned, again.status)
    assert [t.epoch for t in third.status.tasks or []] == [1, 2]


def test_pause_and_stop() -> None:
    planned, status = settle(spec())
    paused = reconcile(inputs(spec(state="paused"), running(status, "PAUSED")), planned, status)
    assert ready(paused.status) == ("True", "Paused")
    assert paused.status.state == "PAUSED"
    stopping = reconcile(inputs(spec(state="stopped"), running(status)), planned, status)
    assert stopping.status.tasks is None and stopping.status.state == "STOPPED"
    assert ready(stopping.status) == ("False", "Stopping")  # workers still run them
    stopped = reconcile(inputs(spec(state="stopped")), planned, stopping.status)
    assert ready(stopped.status) == ("True", "Stopped")


def test_tasks_of_a_lost_worker_move_to_the_live_one() -> None:
    planned, status = settle(spec())
    outcome = reconcile(inputs(spec(), {"w2": WorkerReport()}), planned, status)
    assert {t.worker for t in outcome.status.tasks or []} == {"w2"}
    assert "TaskReassigned" in [e.reason for e in outcome.events]
    alone = reconcile(inputs(spec(), {}), planned, status)
    assert ready(alone.status) == ("False", "NoWorkers")


def test_secrets_must_be_granted_before_tasks_are_placed() -> None:
    connector = spec(config={"topic": "${secret:creds:topic}"})
    planned = plan(config_of(connector), 2)
    assert planned.secrets == {"creds"}
    waiting = reconcile(inputs(connector), planned, ConnectorStatus()).status
    assert ready(waiting) == ("False", "WaitingForPermissions")
    assert {t.worker for t in waiting.tasks or []} == {None}
    granted = reconcile(inputs(connector, granted_secrets=frozenset({"creds"})), planned,
                        waiting).status
    assert {t.worker for t in granted.tasks or []} == {"w1", "w2"}


def test_a_restarted_operator_keeps_tasks_on_their_workers_until_secrets_are_confirmed(
        ) -> None:
    connector = spec(config={"topic": "${secret:creds:topic}"})
    planned = plan(config_of(connector), 2)
    running = reconcile(inputs(connector, granted_secrets=frozenset({"creds"})), planned,
                        ConnectorStatus()).status
    placed = {t.id: t.worker for t in running.tasks or []}
    assert set(placed.values()) == {"w1", "w2"}
    restarted = reconcile(inputs(connector), planned, running).status  # nothing granted yet
    assert {t.id: t.worker for t in restarted.tasks or []} == placed
    assert {t.token for t in restarted.tasks or []} == {t.token for t in running.tasks or []}


def test_missing_cluster_is_reported() -> None:
    outcome = reconcile(inputs(spec(), cluster_found=False), plan(config_of(spec()), 2),
                        ConnectorStatus())
    assert ready(outcome.status) == ("False", "ClusterNotFound")


def test_offsets_requests_need_a_stopped_connector_and_a_worker() -> None:
    stopped = spec(state="stopped", offsets={"nonce": "o1", "action": "reset"})
    planned, status = settle(spec())
    rejected = reconcile(inputs(spec(offsets={"nonce": "o1", "action": "reset"}),
                                running(status)), planned, status)
    assert rejected.status.offsets is not None and rejected.status.offsets.state == "Failed"
    busy = reconcile(inputs(stopped, running(status)), planned, status).status
    assert busy.offsets is not None and busy.offsets.state == "Pending"
    assert busy.offsets.worker is None
    given = reconcile(inputs(stopped), planned, busy).status
    assert given.offsets is not None and given.offsets.worker in ("w1", "w2")
    worker = given.offsets.worker or ""
    result = WorkerReport(offsets={"gen": OffsetsResult("o1", "Succeeded", "reset done")})
    done = reconcile(inputs(stopped, {worker: result}), planned, given)
    assert done.status.offsets is not None
    assert (done.status.offsets.state, done.status.offsets.message) == ("Succeeded",
                                                                        "reset done")
    assert [e.reason for e in done.events] == ["OffsetsReset"]
    later = reconcile(inputs(stopped, {worker: WorkerReport()}), planned, done.status)
    assert later.status.offsets == done.status.offsets and later.events == []


def test_listing_offsets_works_while_running() -> None:
    connector = spec(offsets={"nonce": "l1", "action": "list"})
    planned, status = settle(spec())
    given = reconcile(inputs(connector, running(status)), planned, status).status
    assert given.offsets is not None and given.offsets.state == "Pending"
    reports = running(status)
    reports[given.offsets.worker or ""].offsets["gen"] = OffsetsResult(
        "l1", "Succeeded", "1 partition offset(s)",
        [{"partition": {"task": 0}, "offset": {"next": 5}}])
    done = reconcile(inputs(connector, reports), planned, given).status
    assert done.offsets is not None and done.offsets.offsets is not None
    assert done.offsets.offsets[0].offset == {"next": 5}


def test_summary_is_the_last_line() -> None:
    assert summary("Traceback\n  File x\nValueError: bad\n") == "ValueError: bad"
    assert summary(None) == "no trace"


def test_a_worker_computing_another_hash_is_named_in_status_and_gets_no_tasks() -> None:
    connector = spec()
    planned, status = settle(connector)
    skewed = WorkerReport(mismatches={"gen": PlanMismatch(3, planned.config_hash, "f00d")},
                          version="0.0.9")
    outcome = reconcile(inputs(connector, {"w1": WorkerReport(), "w2": skewed}), planned,
                        status)
    assert ready(outcome.status) == ("False", "ConfigHashMismatch")
    message = (outcome.status.conditions or [])[0].message
    assert "w2 (Kanal 0.0.9) compute configuration hash f00d" in message
    assert f"planned {planned.config_hash}" in message and "same Kanal version" in message
    assert {t.worker for t in outcome.status.tasks or []} == {"w1"}
    assert [e.reason for e in outcome.events] == ["ConfigHashMismatch"]


def test_a_worker_ahead_of_the_operator_is_no_mismatch() -> None:
    connector = spec()
    planned, status = settle(connector)
    newer_spec = PlanMismatch(4, planned.config_hash, "f00d")
    older_plan = PlanMismatch(3, "0ld", planned.config_hash)
    for mismatch in (newer_spec, older_plan):
        workers = running(status)
        workers["w2"].mismatches["gen"] = mismatch
        outcome = reconcile(inputs(connector, workers), planned, status)
        assert ready(outcome.status) == ("True", "Running")
