"""One long-running reconciler per ConnectCluster and per Connector (kopf daemons).

Each reconciles on its own schedule with its own backoff, woken by the changes that
concern it (its object, its cluster's worker Leases) or by a timer (a Lease about to
expire, an automatic restart coming due). A failing connector backs off alone; every
other connector keeps being reconciled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import kopf
from pydantic import ValidationError

from kanal_operator.builders import Cluster, children, selector
from kanal_operator.connectors import Inputs, Outcome, Worker, reconcile
from kanal_operator.kube import Api, merge_patch
from kanal_operator.models import (
    Condition,
    ConnectClusterSpec,
    ConnectClusterStatus,
    ConnectorSpec,
    ConnectorStatus,
    WorkerPlugin,
)
from kanal_operator.world import World
from kanal_worker.api.backoff import exponential_backoff
from kanal_worker.api.errors import ConfigError
from kanal_worker.cluster.protocol import (
    CLUSTERS,
    CONNECTORS,
    Plan,
    connector_config,
    plan,
    secret_refs,
)

log = logging.getLogger(__name__)

RESYNC_SECONDS = 30.0
"""Reconcile at least this often even when nothing announced a change."""
REAPPLY_SECONDS = 60.0
"""Children of a ConnectCluster are re-applied this often (puts back manual edits)."""
DRAIN_SECONDS = 30.0
"""A deleted Connector waits this long for its tasks to stop before it goes."""
STALE_LEASE_SECONDS = 600.0
MAX_ERROR_BACKOFF = 60.0


async def _reconcile_until_stopped(step: Callable[[], Awaitable[float]],
                                   wakeup: asyncio.Event, stopped: kopf.DaemonStopped,
                                   what: str) -> None:
    """Call ``step`` (it returns how long to wait) until the daemon stops; a failure backs
    off exponentially for this object alone, so one broken object never stalls another."""
    errors = 0
    while not stopped:
        try:
            wait = await step()
            errors = 0
        except Exception as exc:
            errors += 1
            wait = exponential_backoff(errors - 1, 2.0, MAX_ERROR_BACKOFF)
            log.warning("%s: reconcile failed (%s); retrying in %.0fs", what, exc, wait,
                        exc_info=errors == 1)
        await _sleep(wakeup, stopped, wait)


async def _sleep(wakeup: asyncio.Event, stopped: kopf.DaemonStopped, timeout: float) -> None:
    """Until ``wakeup`` is set, the daemon is stopped, or ``timeout`` passed."""

    async def until_stopped() -> None:
        await stopped.wait()

    waiters = [asyncio.ensure_future(wakeup.wait()), asyncio.ensure_future(until_stopped())]
    try:
        await asyncio.wait(waiters, timeout=max(0.0, timeout),
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    wakeup.clear()


def _snapshot(body: kopf.Body) -> dict[str, Any]:
    """A consistent copy: kopf swaps the body of a daemon when a new event arrives."""
    return dict(body)


def _post(body: kopf.Body, kind: str, reason: str, message: str) -> None:
    kopf.event(body, type=kind, reason=reason, message=message)


def _deleted(stopped: kopf.DaemonStopped) -> bool:
    reason = stopped.reason
    return reason is not None and bool(reason & kopf.DaemonStoppingReason.RESOURCE_DELETED)


class ConnectorController:
    def __init__(self, world: World, api: Api, namespace: str, name: str) -> None:
        self.world = world
        self.api = api
        self.namespace = namespace
        self.name = name
        self.status = ConnectorStatus()
        """The last status written: this controller is its only writer."""
        self.cluster = ""
        self._plan: tuple[tuple[str, ...], Plan] | None = None

    async def run(self, body: kopf.Body, stopped: kopf.DaemonStopped) -> None:
        self.status = ConnectorStatus.model_validate(dict(body).get("status") or {})
        wakeup = self.world.wakeup(self.namespace, self.name)
        await _reconcile_until_stopped(partial(self.step, body), wakeup, stopped,
                                       f"Connector {self.namespace}/{self.name}")
        if _deleted(stopped):
            await self._drain()

    async def step(self, body: kopf.Body) -> float:
        """Reconcile once; returns the seconds until the next reconcile is due."""
        snapshot = _snapshot(body)
        metadata = snapshot.get("metadata") or {}
        if metadata.get("deletionTimestamp"):
            return RESYNC_SECONDS
        try:
            spec = ConnectorSpec.model_validate(snapshot.get("spec") or {})
            config = connector_config(snapshot)
        except (ValidationError, ConfigError) as exc:  # the CRD schema should prevent this
            log.error("Connector %s/%s has an unreadable spec: %s", self.namespace, self.name,
                      exc)
            return RESYNC_SECONDS
        self._join(spec.cluster_ref.name)
        state = self.world.cluster(self.namespace, self.cluster)
        if state.exists is None:
            state.exists = await asyncio.to_thread(self.api.cluster_exists, self.namespace,
                                                   self.cluster)
        planned = await self._planned(config, spec)
        if state.secrets.get(self.name) != planned.secrets:
            state.secrets[self.name] = planned.secrets
            state.changed.set()  # the workers' Role must grant these Secrets
        now = time.monotonic()
        live = state.live(now)
        outcome = reconcile(Inputs(
            name=self.name, generation=int(metadata.get("generation") or 0), spec=spec,
            cluster_found=bool(state.exists),
            workers={w: Worker(w, view.report) for w, view in live.items()},
            load=state.load(self.name, live), granted_secrets=state.granted,
            selector=selector(self.cluster)), planned, self.status)
        state.placements[self.name] = {t.id: t.worker for t in outcome.status.tasks or []}
        await self._write(body, outcome)
        due = [RESYNC_SECONDS]
        if outcome.wake_in is not None:
            due.append(outcome.wake_in + 0.05)
        expiry = state.next_expiry(now)
        if expiry is not None:
            due.append(expiry + 0.05)
        return min(due)

    def _join(self, cluster: str) -> None:
        if cluster != self.cluster:
            if self.cluster:
                self.world.forget(self.namespace, self.name, self.cluster)
            self.cluster = cluster
        self.world.cluster(self.namespace, cluster).connectors.add(self.name)

    async def _planned(self, config: Mapping[str, str], spec: ConnectorSpec) -> Plan:
        """The plan for ``config``; computed again only when the configuration changed
        or a new restart nonce asks to restart the connector itself."""
        request = spec.restart
        replan = request is not None and not request.include_tasks and request.tasks is None \
            and (self.status.restart is None or self.status.restart.nonce != request.nonce)
        key = (*sorted(f"{k}={v}" for k, v in config.items()), str(spec.tasks_max))
        if self._plan is None or self._plan[0] != key or replan:
            self._plan = (key, await asyncio.to_thread(plan, config, spec.tasks_max))
        return self._plan[1]

    async def _write(self, body: kopf.Body, outcome: Outcome) -> None:
        if outcome.status != self.status:
            patch = merge_patch(self.status.dump(), outcome.status.dump())
            await asyncio.to_thread(self.api.patch_status, CONNECTORS, self.namespace,
                                    self.name, patch)
            self.status = outcome.status
        for event in outcome.events:
            _post(body, event.type, event.reason, event.message)

    async def _drain(self) -> None:
        """The Connector is being deleted: wait until no worker runs its tasks."""
        state = self.world.cluster(self.namespace, self.cluster)
        prefix = f"{self.name}/"
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            now = time.monotonic()
            if not any(key.startswith(prefix) for w in state.live(now).values()
                       for key in w.report.tasks):
                break
            await asyncio.sleep(0.25)
        else:
            log.warning("Connector %s/%s deleted while tasks still ran after %.0fs",
                        self.namespace, self.name, DRAIN_SECONDS)
        self.world.forget(self.namespace, self.name, self.cluster)
        log.info("Connector %s/%s deleted; its tasks stopped", self.namespace, self.name)


class ClusterController:
    def __init__(self, world: World, api: Api, namespace: str, name: str,
                 default_image: str) -> None:
        self.world = world
        self.api = api
        self.namespace = namespace
        self.name = name
        self.default_image = default_image
        self.status = ConnectClusterStatus()
        self._applied: tuple[Any, ...] | None = None
        self._applied_at = 0.0
        self._live: set[str] = set()

    async def run(self, body: kopf.Body, stopped: kopf.DaemonStopped) -> None:
        self.status = ConnectClusterStatus.model_validate(dict(body).get("status") or {})
        self._live = set(self.status.workers or [])  # no WorkerJoined after a restart
        state = self.world.cluster(self.namespace, self.name)
        state.exists = True
        self.world.poke(self.namespace, self.name)
        await _reconcile_until_stopped(partial(self.step, body), state.changed, stopped,
                                       f"ConnectCluster {self.namespace}/{self.name}")
        if _deleted(stopped):
            state.exists = False
            self.world.poke(self.namespace, self.name)

    async def step(self, body: kopf.Body) -> float:
        snapshot = _snapshot(body)
        metadata = snapshot.get("metadata") or {}
        if metadata.get("deletionTimestamp"):
            return RESYNC_SECONDS
        spec = ConnectClusterSpec.model_validate(snapshot.get("spec") or {})
        state = self.world.cluster(self.namespace, self.name)
        cluster = Cluster(self.name, self.namespace, str(metadata["uid"]), spec,
                          self.default_image)
        if self._applied is None:
            await self._learn_secrets()
        secrets = frozenset().union(*state.secrets.values())
        applied = (metadata.get("generation"), secrets, self.default_image)
        now = time.monotonic()
        if applied != self._applied or now - self._applied_at >= REAPPLY_SECONDS:
            for manifest in children(cluster, secrets):
                await asyncio.to_thread(self.api.apply, manifest)
            if applied != self._applied:
                log.info("ConnectCluster %s/%s: workloads applied (generation %s)",
                         self.namespace, self.name, applied[0])
            self._applied, self._applied_at = applied, now
            if state.granted != secrets:
                state.granted = secrets
                self.world.poke(self.namespace, self.name)
        await self._collect_stale_leases(now)
        live = state.live(now)
        self._announce(body, set(live))
        status = self._status(spec, int(metadata.get("generation") or 0), state.pods, live,
                              state.stuck)
        if status != self.status:
            patch = merge_patch(self.status.dump(), status.dump())
            await asyncio.to_thread(self.api.patch_status, CLUSTERS, self.namespace,
                                    self.name, patch)
            before = _ready(self.status)
            self.status = status
            after = _ready(status)
            if after is not None and (before is None or
                                      (before.status, before.reason) !=
                                      (after.status, after.reason)):
                _post(body, "Normal" if after.status == "True" else "Warning", after.reason,
                      after.message)
        expiry = state.next_expiry(now)
        return min(RESYNC_SECONDS, REAPPLY_SECONDS,
                   expiry + 0.05 if expiry is not None else RESYNC_SECONDS)

    async def _learn_secrets(self) -> None:
        """Before the first apply, read which Secrets the cluster's Connectors reference:
        their daemons may not have reported yet, and a Role without those Secrets would
        cut running tasks off them (after an operator restart)."""
        state = self.world.cluster(self.namespace, self.name)
        for body in await asyncio.to_thread(self.api.connectors, self.namespace):
            name = str(body["metadata"]["name"])
            spec = body.get("spec") or {}
            if (spec.get("clusterRef") or {}).get("name") != self.name or \
                    name in state.secrets:
                continue
            try:
                state.secrets[name] = frozenset(secret_refs(connector_config(body)))
            except ConfigError:
                continue

    def _announce(self, body: kopf.Body, live: set[str]) -> None:
        for gone in sorted(self._live - live):
            _post(body, "Warning", "WorkerLost", f"Worker {gone} is gone (its Lease was "
                  "released or expired); its tasks move to the other workers")
        for joined in sorted(live - self._live):
            _post(body, "Normal", "WorkerJoined", f"Worker {joined} joined")
        self._live = live

    async def _collect_stale_leases(self, now: float) -> None:
        """Delete Leases of workers gone for long (pods own their Leases, but a worker
        started outside a pod leaves its Lease behind)."""
        state = self.world.cluster(self.namespace, self.name)
        for name, view in list(state.workers.items()):
            if now - view.expires > STALE_LEASE_SECONDS:
                await asyncio.to_thread(self.api.delete_lease, self.namespace, name)
                state.workers.pop(name, None)

    def _status(self, spec: ConnectClusterSpec, generation: int, pods: int,
                live: Mapping[str, Any], stuck: Mapping[str, str]) -> ConnectClusterStatus:
        plugins = {(p.get("class", ""), p.get("type", ""), p.get("version", ""))
                   for view in live.values() for p in view.report.plugins}
        ready = len(live)
        if spec.replicas == 0:
            condition = ("True", "ScaledToZero", "replicas is 0: no worker runs; connectors "
                         "of this cluster wait UNASSIGNED")
        elif ready >= spec.replicas:
            condition = ("True", "WorkersReady", f"{ready}/{spec.replicas} workers heartbeating")
        elif stuck:
            pod, why = min(stuck.items())
            condition = ("False", why.split(":", 1)[0],
                         f"{ready}/{spec.replicas} workers heartbeating; worker pod {pod} "
                         f"cannot run: {why}")
        else:
            condition = ("False", "WaitingForWorkers",
                         f"{ready}/{spec.replicas} workers heartbeating ({pods} pod(s)); tasks "
                         "run on the live ones")
        before = _ready(self.status)
        return ConnectClusterStatus(
            observed_generation=generation,
            conditions=[Condition(
                type="Ready", status=condition[0],  # type: ignore[arg-type]
                reason=condition[1], message=condition[2], observed_generation=generation,
                last_transition_time=before.last_transition_time
                if before is not None and before.status == condition[0] else _now())],
            replicas=pods, ready_replicas=ready, selector=selector(self.name),
            workers=sorted(live) or None,
            plugins=[WorkerPlugin.model_validate({"class": c, "type": t, "version": v})
                     for c, t, v in sorted(plugins)] or None)


def _ready(status: ConnectClusterStatus) -> Condition | None:
    return next((c for c in status.conditions or [] if c.type == "Ready"), None)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

