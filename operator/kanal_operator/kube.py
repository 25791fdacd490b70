"""The operator's writes to the API server (kopf does the watching).

Blocking client calls; the controllers run them in threads so the event loop and
every other connector's reconciliation keep going.
"""

from __future__ import annotations

import threading
from typing import Any, cast

from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

from kanal_worker.cluster.protocol import (
    CLUSTERS,
    CONNECTORS,
    GROUP,
    LEASES,
    MERGE_PATCH,
    VERSION,
)

FIELD_MANAGER = "kanal-operator"


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_patch(old[key], value)
    return patch


class Api:
    def __init__(self) -> None:
        self.custom = client.CustomObjectsApi()
        self._dynamic: dynamic.DynamicClient | None = None
        self._lock = threading.Lock()

    def _resources(self) -> dynamic.DynamicClient:
        with self._lock:  # discovery runs once, on first use
            if self._dynamic is None:
                self._dynamic = dynamic.DynamicClient(  # type: ignore[no-untyped-call]
                    client.ApiClient())
            return self._dynamic

    def apply(self, manifest: dict[str, Any]) -> None:
        """Server-side apply: creates, updates, and puts back hand-made changes."""
        resources = self._resources()
        resource = resources.resources.get(api_version=manifest["apiVersion"],
                                           kind=manifest["kind"])
        metadata = manifest["metadata"]
        resources.server_side_apply(  # type: ignore[no-untyped-call]
            resource, body=manifest, name=metadata["name"], namespace=metadata.get("namespace"),
            field_manager=FIELD_MANAGER, force_conflicts=True)

    def patch_status(self, plural: str, namespace: str, name: str,
                     patch: dict[str, Any]) -> None:
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, {"status": patch},
                _content_type=MERGE_PATCH, _request_timeout=10)
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: nothing left to report on
                raise

    def cluster_exists(self, namespace: str, name: str) -> bool:
        try:
            self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, CLUSTERS, name,
                                                     _request_timeout=10)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def connectors(self, namespace: str) -> list[dict[str, Any]]:
        listed = cast(dict[str, Any], self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, CONNECTORS, _request_timeout=10))
        return list(listed.get("items", []))

    def delete_lease(self, namespace: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(*LEASES[:2], namespace, LEASES[2], name,
                                                        _request_timeout=10)
        except ApiException as exc:
            if exc.status != 404:
                raise
