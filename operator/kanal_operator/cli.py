"""``kanal operator`` and ``kanal crds``, added to the ``kanal`` command by entry point."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from kanal_worker import __version__


def crds(
    out_dir: Annotated[Path | None, typer.Option(
        help="Write one file per CRD into this directory instead of printing.")] = None,
) -> None:
    """Print the CustomResourceDefinitions (ConnectCluster, Connector) as YAML."""
    from kanal_operator.crds import crds as definitions
    from kanal_operator.crds import render

    rendered = {name: render(crd) for name, crd in definitions().items()}
    if out_dir is None:
        typer.echo("---\n".join(rendered.values()), nl=False)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (out_dir / name).write_text(text)
        typer.echo(f"wrote {out_dir / name}")


def operator(
    namespace: Annotated[list[str] | None, typer.Option(
        "--namespace", "-n", help="Watch only this namespace (repeatable); default: all.")
    ] = None,
    worker_image: Annotated[str, typer.Option(
        envvar="KANAL_WORKER_IMAGE",
        help="Image of the worker pods when a ConnectCluster names none.")
    ] = f"kanal:{__version__}",
    liveness: Annotated[str | None, typer.Option(
        help="Serve kopf's health endpoint, e.g. http://0.0.0.0:8080/healthz.")] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING.")] = "INFO",
    json_logs: Annotated[bool, typer.Option(help="One JSON object per log line.")] = False,
) -> None:
    """Run the operator: reconcile ConnectClusters and Connectors, schedule tasks."""
    import kopf

    from kanal_operator.handlers import memo, registry
    from kanal_operator.metrics import start_operator_metrics
    from kanal_worker.api.errors import ConfigError
    from kanal_worker.config.kubernetes import load_credentials
    from kanal_worker.config.observability import setup_logging

    setup_logging(log_level, json_logs)
    # kopf logs every handled watch event at INFO (worker Leases renew every 2 s)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    load_credentials()
    shared = memo(worker_image)
    try:
        metrics = start_operator_metrics(shared.world)
    except ConfigError as exc:
        logging.getLogger("kanal").error("%s", exc)
        raise typer.Exit(1) from None
    try:
        kopf.run(registry=registry, memo=shared, standalone=True, clusterwide=not namespace,
                 namespaces=namespace or (), liveness_endpoint=liveness)
    finally:
        if metrics is not None:
            metrics.stop()
