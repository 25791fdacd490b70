"""Credentials for the Kubernetes API, the same way for every part of the worker."""

from __future__ import annotations

import os


def load_credentials() -> None:
    """In a pod, its service account; elsewhere ``$KUBECONFIG`` (read now, not when the
    client was imported) or ~/.kube/config."""
    # imported here: the Kubernetes client is slow to import and most workers never need it
    from kubernetes import config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))  # type: ignore[no-untyped-call]
