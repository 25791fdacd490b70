"""The few Kubernetes API calls a worker makes, on plain JSON objects.

Connectors and Leases go through the generic custom-objects endpoints (they return
dicts, so the worker reads them exactly as ``kubectl get -o json`` shows them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from kanal_worker.cluster.protocol import CONNECTORS, GROUP, LEASES, MERGE_PATCH, VERSION

JSON_PATCH = "application/json-patch+json"

Object = dict[str, Any]


def status_of(error: Exception) -> int | None:
    """The HTTP status of a failed API call (None for network errors)."""
    return error.status if isinstance(error, ApiException) else None


class Kube:
    """API access scoped to one namespace."""

    def __init__(self, namespace: str, timeout: float = 10) -> None:
        self.namespace = namespace
        self.timeout = timeout
        self.custom = client.CustomObjectsApi()
        self.core = client.CoreV1Api()

    # -- Connectors --------------------------------------------------------------------

    def list_connectors(self) -> tuple[list[Object], str]:
        """Every Connector of the namespace and the resource version to watch from."""
        listed = cast(Object, self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, CONNECTORS, _request_timeout=self.timeout))
        return list(listed.get("items", [])), str(listed["metadata"]["resourceVersion"])

    def watch_connectors(self, resource_version: str, seconds: int,
                         stream: watch.Watch) -> Iterator[tuple[str, Object]]:
        """Changes after ``resource_version`` for up to ``seconds``; 410 means re-list."""
        for event in stream.stream(  # type: ignore[no-untyped-call]
                self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                CONNECTORS, resource_version=resource_version, timeout_seconds=seconds,
                allow_watch_bookmarks=True):
            yield str(event["type"]), event["object"]

    def get_connector(self, name: str) -> Object | None:
        try:
            found = cast(Object, self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, CONNECTORS, name, _request_timeout=self.timeout))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def create_connector(self, body: Object) -> Object:
        return cast(Object, self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, CONNECTORS, body, _request_timeout=self.timeout))

    def patch_connector(self, name: str, patch: Object | list[Object]) -> Object:
        """A merge patch (dict) or a JSON patch (list of operations)."""
        return cast(Object, self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, CONNECTORS, name, patch,
            _content_type=JSON_PATCH if isinstance(patch, list) else MERGE_PATCH,
            _request_timeout=self.timeout))

    def delete_connector(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, CONNECTORS, name, _request_timeout=self.timeout)

    # -- Leases ------------------------------------------------------------------------

    def create_lease(self, body: Object) -> None:
        self.custom.create_namespaced_custom_object(*LEASES[:2], self.namespace, LEASES[2],
                                                    body, _request_timeout=self.timeout)

    def patch_lease(self, name: str, patch: Object) -> None:
        self.custom.patch_namespaced_custom_object(
            *LEASES[:2], self.namespace, LEASES[2], name, patch, _content_type=MERGE_PATCH,
            _request_timeout=self.timeout)

    def delete_lease(self, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(
                *LEASES[:2], self.namespace, LEASES[2], name, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def list_leases(self, label_selector: str) -> list[Object]:
        listed = cast(Object, self.custom.list_namespaced_custom_object(
            *LEASES[:2], self.namespace, LEASES[2], label_selector=label_selector,
            _request_timeout=self.timeout))
        return list(listed.get("items", []))
