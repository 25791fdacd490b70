"""A cluster-mode worker: heartbeat, assignments, tasks, offsets and the REST API.

Identity comes from the pod (``POD_NAME``, ``POD_NAMESPACE``, ``POD_UID`` through the
downward API, ``KANAL_CLUSTER``). The worker never decides where tasks run: it runs
what Connector status assigns to its pod name and reports back through its Lease.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaException

from kanal_worker import __version__
from kanal_worker.api.backoff import exponential_backoff
from kanal_worker.api.errors import ConfigError
from kanal_worker.cluster.assignments import ConnectorWatcher, Object, assignments, offsets_jobs
from kanal_worker.cluster.executor import Executor
from kanal_worker.cluster.herder import KubernetesHerder
from kanal_worker.cluster.kube import Kube
from kanal_worker.cluster.lease import Heartbeat
from kanal_worker.cluster.offsets import OffsetsRunner
from kanal_worker.cluster.protocol import (
    SECRET_PROVIDER,
    TOPICS_RESET_ANNOTATION,
    PlanMismatch,
    WorkerReport,
)
from kanal_worker.config.kubernetes_secrets import secret_provider
from kanal_worker.config.observability import MetricsServer
from kanal_worker.config.providers import Lookup, providers_from_worker_config, resolve
from kanal_worker.config.worker import STATIC_MEMBERSHIP, WorkerSettings, client_config
from kanal_worker.rest.server import RestServer
from kanal_worker.runtime.herder import HEALTHY, Health, plugin_type
from kanal_worker.runtime.metrics import metrics_port, start_metrics_server
from kanal_worker.runtime.offsets import KafkaOffsetStore
from kanal_worker.runtime.registry import plugins
from kanal_worker.runtime.task import UNREACHABLE, WAITING_FOR_KAFKA

log = logging.getLogger(__name__)

STARTING = Health("starting", "Worker is joining its cluster (Lease, Connectors).")


@dataclass(frozen=True)
class Identity:
    name: str
    namespace: str
    cluster: str
    uid: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Identity:
        missing = [k for k in ("POD_NAME", "POD_NAMESPACE", "KANAL_CLUSTER") if not env.get(k)]
        if missing:
            raise ConfigError(missing[0], f"{', '.join(missing)} must be set: the Deployment "
                              "the operator creates sets them from the pod (downward API)")
        return cls(env["POD_NAME"], env["POD_NAMESPACE"], env["KANAL_CLUSTER"],
                   env.get("POD_UID") or None)


def offered_plugins() -> list[dict[str, str]]:
    return sorted(({"class": info.class_name, "type": plugin_type(info),
                    "version": info.cls.version}
                   for info in plugins("connector").values()), key=lambda p: p["class"])


class ClusterWorker:
    def __init__(self, identity: Identity, worker_config: Mapping[str, str]) -> None:
        self.identity = identity
        self.kube = Kube(identity.namespace)
        # ${secret:<name>:<key>} works in every cluster-mode worker, declared or not
        providers: dict[str, Lookup] = {
            SECRET_PROVIDER: secret_provider({"namespace": identity.namespace}),
            **providers_from_worker_config(worker_config)}
        # the operator places each task on one worker at a time: sink consumers can be
        # static members, whose replacement takes the partitions over at once
        self.worker = {STATIC_MEMBERSHIP: "true", **resolve(worker_config, providers)}
        self.settings: WorkerSettings = WorkerSettings.parse(self.worker)
        if not self.settings.offset_topic:
            raise ConfigError("offset.storage.topic", "cluster mode keeps source offsets in "
                              "Kafka: set offset.storage.topic")
        self.store = self._offset_store()
        self.plugins = offered_plugins()
        self.heartbeat = Heartbeat(self.kube, identity.name, identity.cluster, identity.uid,
                                   self.report)
        self.executor = Executor(self.worker, identity.name, self.store, providers,
                                 self.heartbeat.poke)
        self.offsets = OffsetsRunner(self.worker, self.store, self._resolve,
                                     self.heartbeat.poke)
        self.watcher = ConnectorWatcher(self.kube, self._on_connectors)
        self.herder = KubernetesHerder(self.kube, identity.cluster, identity.name, self.worker,
                                       self.store, self.health, providers)
        self._topic_resets: dict[str, str] = {}
        self._mismatches: dict[str, PlanMismatch] = {}
        self._providers = providers
        self._ready = threading.Event()
        self.rest: RestServer | None = None
        self.metrics: MetricsServer | None = None

    def _offset_store(self) -> KafkaOffsetStore:
        """Open the offsets topic, waiting as long as Kafka cannot be reached: a pod that
        starts before its brokers (or while they restart) comes up by itself later."""
        servers = self.worker.get("bootstrap.servers", "localhost:9092")
        attempt = 0
        while True:
            try:
                return KafkaOffsetStore(self.settings.offset_topic,
                                        client_config(self.worker, "admin"),
                                        self.settings.offset_partitions,
                                        self.settings.offset_replication_factor)
            except KafkaException as exc:
                error = exc.args[0]
                if not (error.retriable() or error.code() in UNREACHABLE):
                    raise ConfigError("offset.storage.topic", f"cannot read offsets topic "
                                      f"{self.settings.offset_topic}: {exc}") from None
                log.warning("%s at %s (%s); retrying", WAITING_FOR_KAFKA.capitalize(),
                            servers, error.str())
                time.sleep(exponential_backoff(attempt, 0.5, 10.0))
                attempt += 1

    def _resolve(self, config: Mapping[str, str]) -> Mapping[str, str]:
        return resolve(config, self._providers)

    def report(self) -> WorkerReport:
        return WorkerReport(
            tasks=self.executor.report(), plugins=self.plugins,
            offsets=self.offsets.results(),
            topics={name: sorted(topics.copy())  # task threads add to these sets
                    for name, topics in list(self.executor.topics.items())},
            mismatches=self._mismatches, version=__version__)

    def health(self) -> Health:
        return HEALTHY if self._ready.is_set() else STARTING

    def start(self) -> None:
        self.executor.start()
        self.heartbeat.start()
        self.watcher.start()
        if self.settings.listeners.strip():
            self.rest = RestServer.start(self.herder, self.worker)
        port = metrics_port(self.worker)
        if port:
            self.metrics = start_metrics_server(self.executor, port)
        self.watcher.synced.wait(30)
        self._ready.set()
        log.info("Worker %s of ConnectCluster %s/%s is running", self.identity.name,
                 self.identity.namespace, self.identity.cluster)

    def stop(self, timeout: float) -> None:
        """Stop tasks (flush, commit), then release the Lease so they move at once."""
        self._ready.clear()
        self.watcher.stop()
        self.executor.stop_all(timeout)
        self.heartbeat.release()
        if self.rest is not None:
            self.rest.stop()
        if self.metrics is not None:
            self.metrics.stop()

    def _on_connectors(self, connectors: list[Object]) -> None:
        assigned = assignments(connectors, self.identity.cluster, self.identity.name)
        self.executor.assign(assigned.desired, assigned.keep)
        if assigned.mismatches != self._mismatches:
            for name, mismatch in assigned.mismatches.items():
                if self._mismatches.get(name) != mismatch:
                    # usually the operator has not planned the new generation yet; the
                    # operator tells apart a lasting disagreement (different versions)
                    log.info("Connector %s: planned for configuration hash %s, this worker "
                             "computes %s from generation %d; its tasks stay as they are "
                             "until both agree", name, mismatch.planned, mismatch.computed,
                             mismatch.generation)
            self._mismatches = assigned.mismatches
            self.heartbeat.poke()
        for job in offsets_jobs(connectors, self.identity.cluster, self.identity.name):
            self.offsets.submit(job)
        for body in connectors:
            name = body["metadata"]["name"]
            reset = (body["metadata"].get("annotations") or {}).get(TOPICS_RESET_ANNOTATION)
            if reset and self._topic_resets.setdefault(name, reset) != reset:
                self._topic_resets[name] = reset
                self.executor.topics.get(name, set()).clear()
                self.heartbeat.poke()
