"""The REST API's herder in Kubernetes: every change goes through the Connector resource.

``POST /connectors`` creates a Connector, ``PUT .../pause`` sets ``spec.state``,
``POST .../restart`` sets ``spec.restart`` with a fresh nonce, offsets changes set
``spec.offsets`` and wait for the result in status. The resource stays the single
source of truth; answers come from its status, which the operator maintains.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from kanal_worker.api.errors import ConfigError, ConnectError
from kanal_worker.cluster.kube import Kube, Object, status_of
from kanal_worker.cluster.protocol import (
    API_VERSION,
    LABEL_CLUSTER,
    LABEL_COMPONENT,
    REPORT_ANNOTATION,
    TOPICS_RESET_ANNOTATION,
    WORKER_COMPONENT,
    WorkerReport,
    config_hash,
    connector_config,
    task_config,
)
from kanal_worker.config.providers import Lookup
from kanal_worker.config.worker import client_config
from kanal_worker.runtime.group_offsets import ConsumerGroupOffsets, parse_sink_offsets
from kanal_worker.runtime.herder import (
    BadRequestError,
    ConflictError,
    ConnectorOffset,
    Health,
    Herder,
    NotFoundError,
    check_config,
    check_source_offsets,
)
from kanal_worker.runtime.offsets import OffsetStore
from kanal_worker.runtime.status import State, TargetState
from kanal_worker.runtime.transforms import sub_config
from kanal_worker.runtime.validation import connector_plugin

log = logging.getLogger(__name__)

OPERATOR_ID = "kanal-operator"
"""The connector instance (task planning) runs in the operator; status says so."""
OFFSETS_WAIT_SECONDS = 90.0
MANAGED_KEYS = ("name", "connector.class", "tasks.max")
"""Keys a Connector keeps outside spec.config (metadata.name, spec.class, spec.tasksMax)."""
SPEC_STATES = {TargetState.STARTED: "running", TargetState.PAUSED: "paused",
               TargetState.STOPPED: "stopped"}


def manifest_spec(config: Mapping[str, str]) -> dict[str, Any]:
    """The ``spec`` fields a Kafka Connect configuration maps to."""
    try:
        tasks_max = int(config.get("tasks.max", "1"))
    except ValueError:
        raise BadRequestError(f"tasks.max must be a number, not {config['tasks.max']}") from None
    return {"class": config["connector.class"], "tasksMax": tasks_max,
            "config": {k: v for k, v in sorted(config.items()) if k not in MANAGED_KEYS}}


class KubernetesHerder(Herder):
    def __init__(self, kube: Kube, cluster: str, worker_id: str, worker: Mapping[str, str],
                 offsets: OffsetStore, health: Callable[[], Health],
                 providers: Mapping[str, Lookup]) -> None:
        self.kube = kube
        self.cluster = cluster
        self.worker_id = worker_id
        self.worker = dict(worker)
        self.providers = dict(providers)
        self.offsets = offsets
        self._health = health
        self._cluster_id: str | None = None
        self._cluster_id_lock = threading.Lock()

    # -- reading -----------------------------------------------------------------------

    def _get(self, name: str) -> Object:
        body = self.kube.get_connector(name)
        spec = (body or {}).get("spec") or {}
        if body is None or (spec.get("clusterRef") or {}).get("name") != self.cluster:
            raise NotFoundError(f"Connector {name} not found")
        return body

    def connectors(self) -> list[str]:
        items, _ = self.kube.list_connectors()
        return sorted(str(o["metadata"]["name"]) for o in items
                      if ((o.get("spec") or {}).get("clusterRef") or {}).get("name")
                      == self.cluster)

    def connector_config(self, name: str) -> dict[str, str]:
        return connector_config(self._get(name))

    def connector_type(self, name: str) -> str:
        body = self._get(name)
        kind = (body.get("status") or {}).get("type")
        if kind:
            return str(kind)
        try:
            return str(connector_plugin(connector_config(body)).kind)
        except ConfigError:
            return "unknown"

    def task_configs(self, name: str) -> list[dict[str, str]]:
        body = self._get(name)
        status = body.get("status") or {}
        config = connector_config(body)
        if status.get("configHash") != config_hash(config):
            return []  # the operator has not planned this configuration yet
        return [task_config(config, task.get("config") or {})
                for task in sorted(status.get("tasks") or [], key=lambda t: int(t["id"]))]

    def connector_status(self, name: str) -> dict[str, Any]:
        body = self._get(name)
        status = body.get("status") or {}
        try:
            version = connector_plugin(connector_config(body)).cls.version
        except ConfigError:
            version = "unknown"
        connector: dict[str, Any] = {"state": status.get("state") or State.UNASSIGNED,
                                     "worker_id": OPERATOR_ID, "version": version}
        if status.get("trace"):
            connector["trace"] = status["trace"]
        tasks = []
        for task in sorted(status.get("tasks") or [], key=lambda t: int(t["id"])):
            entry = {"id": int(task["id"]), "state": task.get("state", State.UNASSIGNED),
                     "worker_id": task.get("worker") or "", "version": version}
            if task.get("trace"):
                entry["trace"] = task["trace"]
            tasks.append(entry)
        return {"name": name, "connector": connector, "tasks": tasks,
                "type": status.get("type") or self.connector_type(name)}

    def kafka_cluster_id(self) -> str | None:
        with self._cluster_id_lock:
            if self._cluster_id is None:
                try:
                    admin = AdminClient(client_config(self.worker, "admin"))
                    self._cluster_id = admin.list_topics(timeout=10).cluster_id
                except KafkaException as exc:
                    log.warning("Cannot read the Kafka cluster id: %s", exc)
            return self._cluster_id

    def health(self) -> Health:
        return self._health()

    def active_topics(self, name: str) -> list[str]:
        self._get(name)
        selector = f"{LABEL_CLUSTER}={self.cluster},{LABEL_COMPONENT}={WORKER_COMPONENT}"
        topics: set[str] = set()
        for lease in self.kube.list_leases(selector):
            annotations = (lease.get("metadata") or {}).get("annotations") or {}
            report = WorkerReport.from_json(annotations.get(REPORT_ANNOTATION))
            topics.update(report.topics.get(name, []))
        return sorted(topics)

    def connector_offsets(self, name: str) -> list[ConnectorOffset]:
        config = self.connector_config(name)
        if self.connector_type(name) == "sink":
            return self._group(name, config).read()
        self.offsets.refresh()
        return [ConnectorOffset(p, o) for p, o in self.offsets.all(name)]

    # -- changing ----------------------------------------------------------------------

    def put_connector(self, name: str, config: dict[str, str], *, create_only: bool = False,
                      initial_state: str = "RUNNING") -> bool:
        config = {**config, "name": name}
        check_config(self.resolved(config))
        spec = manifest_spec(config)
        existing = self.kube.get_connector(name)
        if existing is not None:
            owner = ((existing.get("spec") or {}).get("clusterRef") or {}).get("name")
            if create_only or owner != self.cluster:
                raise ConflictError(f"Connector {name} already exists"
                                    + ("" if owner == self.cluster else
                                       f" (in ConnectCluster {owner})"))
            self._patch(name, [{"op": "add", "path": f"/spec/{key}", "value": value}
                               for key, value in spec.items()])
            return False
        try:
            target = TargetState.from_initial(initial_state)
        except KeyError:
            raise BadRequestError(f"Invalid initial_state {initial_state}; use RUNNING, PAUSED "
                                  "or STOPPED") from None
        body = {"apiVersion": API_VERSION, "kind": "Connector",
                "metadata": {"name": name, "annotations": {"kanal.dev/created-by": "rest-api"}},
                "spec": {"clusterRef": {"name": self.cluster}, "state": SPEC_STATES[target],
                         **spec}}
        with _refusals(name, f"connector {name}", creating=True):
            self.kube.create_connector(body)
        log.info("Connector %s created through the REST API", name)
        return True

    def delete_connector(self, name: str) -> None:
        self._get(name)
        with _refusals(name, f"the deletion of connector {name}"):
            self.kube.delete_connector(name)

    def set_target_state(self, name: str, target: TargetState) -> None:
        self._get(name)
        self._patch(name, {"spec": {"state": SPEC_STATES[target]}})

    def restart(self, name: str, include_tasks: bool, only_failed: bool) -> bool:
        status = self._get(name).get("status") or {}
        failed = status.get("state") == State.FAILED
        tasks = [t for t in status.get("tasks") or []
                 if not only_failed or t.get("state") == State.FAILED]
        if only_failed and not failed and not (include_tasks and tasks):
            return False
        self._patch(name, {"spec": {"restart": {
            "nonce": uuid.uuid4().hex, "includeTasks": include_tasks,
            "onlyFailed": only_failed, "tasks": None}}})
        return include_tasks and bool(tasks)

    def restart_task(self, name: str, task: int) -> None:
        status = self._get(name).get("status") or {}
        if not any(int(t["id"]) == task for t in status.get("tasks") or []):
            raise NotFoundError(f"Task {name}-{task} not found")
        self._patch(name, {"spec": {"restart": {"nonce": uuid.uuid4().hex, "tasks": [task],
                                                "includeTasks": True, "onlyFailed": False}}})

    def reset_active_topics(self, name: str) -> None:
        self._get(name)
        self._patch(name, {"metadata": {"annotations": {
            TOPICS_RESET_ANNOTATION: uuid.uuid4().hex}}})

    def alter_offsets(self, name: str, offsets: list[ConnectorOffset]) -> str:
        if self.connector_type(name) == "sink":
            parse_sink_offsets(offsets)
        else:
            check_source_offsets(offsets)
        return self._offsets_request(name, "alter", [
            {"partition": o.partition, **({"offset": o.offset} if o.offset is not None else {})}
            for o in offsets])

    def reset_offsets(self, name: str) -> str:
        return self._offsets_request(name, "reset", None)

    def set_cluster_logger_level(self, namespace: str, level: str) -> None:
        # Workers share no channel for logger levels yet: this worker changes its own.
        changed = self.set_worker_logger_level(namespace, level)
        log.warning("Logger level of %s set on worker %s only (%d logger(s)); in Kubernetes "
                    "set it on each worker", namespace, self.worker_id, len(changed))

    # -- internals ---------------------------------------------------------------------

    def _patch(self, name: str, patch: Object | list[Object]) -> None:
        with _refusals(name, f"the change of connector {name}"):
            self.kube.patch_connector(name, patch)

    def _group(self, name: str, config: Mapping[str, str]) -> ConsumerGroupOffsets:
        return ConsumerGroupOffsets(
            client_config(self.worker, "admin", sub_config(config, "admin.override.")), name)

    def _offsets_request(self, name: str, action: str,
                         offsets: list[dict[str, Any]] | None) -> str:
        """Ask through ``spec.offsets`` and wait until the status tells the outcome."""
        body = self._get(name)
        if (body.get("spec") or {}).get("state") != "stopped" or \
                (body.get("status") or {}).get("state") != State.STOPPED:
            raise BadRequestError(
                "Connectors must be in the STOPPED state before their offsets can be "
                f"modified. This can be done for the specified connector by issuing a 'PUT' "
                f"request to the '/connectors/{name}/stop' endpoint")
        nonce = uuid.uuid4().hex
        self._patch(name, {"spec": {"offsets": {"nonce": nonce, "action": action,
                                                "offsets": offsets}}})
        deadline = time.monotonic() + OFFSETS_WAIT_SECONDS
        while time.monotonic() < deadline:
            result = ((self._get(name).get("status") or {}).get("offsets") or {})
            if result.get("nonce") == nonce and result.get("state") == "Succeeded":
                return str(result.get("message") or "")
            if result.get("nonce") == nonce and result.get("state") == "Failed":
                raise ConnectError(str(result.get("message") or "offsets request failed"))
            time.sleep(0.25)
        raise ConflictError(f"The {action} of connector {name}'s offsets did not finish within "
                            f"{OFFSETS_WAIT_SECONDS:.0f}s; see status.offsets of the "
                            "Connector")


@contextmanager
def _refusals(name: str, what: str, creating: bool = False) -> Iterator[None]:
    """Kubernetes' refusals of a change to a Connector as the REST API's errors."""
    try:
        yield
    except Exception as exc:
        match status_of(exc):
            case 404:
                raise NotFoundError(f"Connector {name} not found") from None
            case 409 if creating:
                raise ConflictError(f"Connector {name} already exists") from None
            case 422:
                raise BadRequestError(f"Kubernetes rejected {what}: "
                                      f"{getattr(exc, 'body', exc)}") from None
        raise
