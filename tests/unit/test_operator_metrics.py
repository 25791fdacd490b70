"""The operator's Prometheus collector, over a real World fed like the handlers feed it."""

from __future__ import annotations

import socket
import time
import urllib.request
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from kanal_operator.metrics import WorldCollector, port_from_env, start_operator_metrics
from kanal_operator.world import World
from kanal_worker import __version__
from kanal_worker.api.errors import ConfigError
from kanal_worker.cluster.protocol import LABEL_CLUSTER


def lease(name: str, cluster: str, renewed: float) -> dict[str, object]:
    stamp = datetime.fromtimestamp(renewed, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"metadata": {"name": name, "labels": {LABEL_CLUSTER: cluster}},
            "spec": {"renewTime": stamp, "leaseDurationSeconds": 6}}


def world() -> World:
    w = World()
    now = time.time()
    w.observe_lease("telemetry", lease("telemetry-connect-a", "telemetry", now), False)
    w.observe_lease("telemetry", lease("telemetry-connect-b", "telemetry", now), False)
    w.observe_lease("telemetry", lease("telemetry-connect-c", "telemetry", now - 3600), False)
    state = w.cluster("telemetry", "telemetry")
    state.pods = 3
    state.connectors |= {"azure-blob-sink", "telemetry-generator"}
    state.placements["azure-blob-sink"] = {0: "telemetry-connect-a", 1: "telemetry-connect-b"}
    state.placements["telemetry-generator"] = {0: "telemetry-connect-a", 1: None}
    return w


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return float(found[0])


def test_workers_connectors_and_placements_per_cluster() -> None:
    samples = [s for f in WorldCollector(world()).collect() for s in f.samples]
    where = {"namespace": "telemetry", "cluster": "telemetry"}
    assert value(samples, "kanal_operator_live_workers", **where) == 2
    assert value(samples, "kanal_operator_worker_leases", **where) == 3
    assert value(samples, "kanal_operator_worker_pods", **where) == 3
    assert value(samples, "kanal_operator_connectors", **where) == 2
    assert value(samples, "kanal_operator_assigned_tasks", worker="telemetry-connect-a") == 2
    assert value(samples, "kanal_operator_assigned_tasks", worker="telemetry-connect-b") == 1
    assert value(samples, "kanal_operator_unassigned_tasks", **where) == 1
    assert value(samples, "kanal_operator_info", version=__version__) == 1


def test_port_from_environment() -> None:
    assert port_from_env({}) == 9404
    assert port_from_env({"KANAL_METRICS_PORT": "0"}) == 0
    with pytest.raises(ConfigError):
        port_from_env({"KANAL_METRICS_PORT": "metrics"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_served_over_http_and_disabled_by_port_zero() -> None:
    assert start_operator_metrics(world(), port=0) is None
    served = start_operator_metrics(world(), port=free_port(), addr="127.0.0.1")
    assert served is not None
    try:
        url = f"http://127.0.0.1:{served.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
    finally:
        served.stop()
    names = {f.name for f in text_string_to_metric_families(body)}
    assert {"kanal_operator_live_workers", "kanal_operator_assigned_tasks",
            "process_cpu_seconds"} <= names
