"""The kopf handlers: thin glue from watch events to the controllers.

Connectors and ConnectClusters get a daemon each (its own loop and backoff); their
watch events, worker Leases, Deployments and pods only update what the operator knows
and wake the daemons concerned. Nothing here writes to the API server itself.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from kanal_operator.builders import MANAGED_BY
from kanal_operator.controllers import DRAIN_SECONDS, ClusterController, ConnectorController
from kanal_operator.kube import Api
from kanal_operator.world import World
from kanal_worker.cluster.protocol import (
    CLUSTERS,
    CONNECTORS,
    GROUP,
    LABEL_CLUSTER,
    LABEL_COMPONENT,
    VERSION,
    WORKER_COMPONENT,
)

registry = kopf.OperatorRegistry()

FINALIZER = "kanal.dev/finalizer"


@kopf.on.startup(registry=registry)
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.peering.standalone = True  # one operator instance: the Deployment's replica
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kanal.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kanal.dev", key="last-handled-configuration")
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 270
    settings.batching.batch_window = 0.05  # react to worker Leases within milliseconds


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Credentials as the kubernetes client finds them (service account or kubeconfig)."""
    return kopf.login_via_client(**kwargs)


WORKER_LEASES: dict[str, Any] = {
    LABEL_COMPONENT: WORKER_COMPONENT, LABEL_CLUSTER: kopf.PRESENT}


@kopf.index("coordination.k8s.io", "v1", "leases", registry=registry, labels=WORKER_LEASES)
def worker_leases(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    """Takes in the worker Leases that exist at startup. Being an index, it makes kopf
    hold every daemon until all Leases were read: a restarted operator must not see
    "no workers" and unassign every task for a moment."""
    world: World = memo.world
    world.observe_lease(namespace or "", dict(body), deleted=False)


@kopf.on.event("coordination.k8s.io", "v1", "leases", registry=registry, labels=WORKER_LEASES)
def worker_lease(event: kopf.RawEvent, body: kopf.Body, namespace: str | None, memo: Any,
                 **_: Any) -> None:
    world: World = memo.world
    world.observe_lease(namespace or "", dict(body), deleted=event.get("type") == "DELETED")


@kopf.on.event("apps", "v1", "deployments", registry=registry,
               labels={"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_CLUSTER: kopf.PRESENT})
def worker_deployment(event: kopf.RawEvent, body: kopf.Body, namespace: str | None,
                      memo: Any, **_: Any) -> None:
    world: World = memo.world
    cluster = str(body.get("metadata", {}).get("labels", {}).get(LABEL_CLUSTER))
    state = world.cluster(namespace or "", cluster)
    pods = 0 if event.get("type") == "DELETED" else int(
        (body.get("status") or {}).get("replicas") or 0)
    if pods != state.pods:
        state.pods = pods
        state.changed.set()


@kopf.on.event("", "v1", "pods", registry=registry,
               labels={"app.kubernetes.io/managed-by": MANAGED_BY, **WORKER_LEASES})
def worker_pod(event: kopf.RawEvent, body: kopf.Body, namespace: str | None, memo: Any,
               **_: Any) -> None:
    """A worker pod whose image cannot be pulled, or that crash-loops, never heartbeats:
    its reason goes into the ConnectCluster's Ready condition."""
    world: World = memo.world
    world.observe_pod(namespace or "", dict(body), deleted=event.get("type") == "DELETED")


@kopf.on.event(GROUP, VERSION, CONNECTORS, registry=registry)
def connector_changed(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    """Wake the connector's daemon: it reads the new spec from its live body."""
    world: World = memo.world
    world.wakeup(namespace or "", name).set()


@kopf.on.event(GROUP, VERSION, CLUSTERS, registry=registry)
def cluster_changed(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    world: World = memo.world
    world.cluster(namespace or "", name).changed.set()


@kopf.daemon(GROUP, VERSION, CONNECTORS, registry=registry,
             cancellation_backoff=DRAIN_SECONDS + 5, cancellation_timeout=5)
async def connector(body: kopf.Body, name: str, namespace: str | None,
                    stopped: kopf.DaemonStopped, memo: Any, **_: Any) -> None:
    await ConnectorController(memo.world, memo.api, namespace or "", name).run(body, stopped)


@kopf.daemon(GROUP, VERSION, CLUSTERS, registry=registry, cancellation_backoff=5,
             cancellation_timeout=5)
async def connect_cluster(body: kopf.Body, name: str, namespace: str | None,
                          stopped: kopf.DaemonStopped, memo: Any, **_: Any) -> None:
    await ClusterController(memo.world, memo.api, namespace or "", name,
                            memo.default_image).run(body, stopped)


def memo(default_image: str) -> kopf.Memo:
    """What every handler shares: the operator's knowledge and its API access."""
    return kopf.Memo(world=World(), api=Api(), default_image=default_image)
