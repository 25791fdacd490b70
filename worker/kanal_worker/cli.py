"""The ``kanal`` command.

Worker commands live here; other packages add theirs through the ``kanal.commands``
entry point group (the operator adds ``kanal operator`` and ``kanal crds``), so the
worker never imports them.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient

from kanal_worker import __version__
from kanal_worker.api.errors import ConfigError
from kanal_worker.config.loader import load_connector
from kanal_worker.config.observability import MetricsServer, setup_logging
from kanal_worker.config.properties import load_properties
from kanal_worker.config.providers import providers_from_worker_config, resolve
from kanal_worker.config.worker import WorkerSettings, client_config
from kanal_worker.runtime.herder import InvalidConfigError
from kanal_worker.runtime.metrics import metrics_port, start_metrics_server
from kanal_worker.runtime.offsets import (
    FileOffsetStore,
    KafkaOffsetStore,
    MemoryOffsetStore,
    OffsetStore,
)
from kanal_worker.runtime.progress import ProgressReporter
from kanal_worker.runtime.registry import missing_extra, plugins
from kanal_worker.runtime.standalone import StandaloneHerder
from kanal_worker.runtime.validation import errors_of, validate

if TYPE_CHECKING:
    from kanal_worker.rest.server import RestServer

app = typer.Typer(help="Kanal: Kafka Connect, Kubernetes-native.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
log = logging.getLogger("kanal")


def fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def check_broker(worker: dict[str, str], timeout: float = 10) -> None:
    """Fail fast with the address when the broker cannot be reached."""
    servers = worker.get("bootstrap.servers", "localhost:9092")
    seen: list[KafkaError] = []  # librdkafka's reason (refused, TLS, SASL) for the message
    admin = AdminClient({**client_config(worker, "admin"), "socket.timeout.ms": "5000",
                         "error_cb": seen.append})
    try:
        admin.list_topics(timeout=timeout)
    except Exception as exc:
        admin.poll(0)
        reason = seen[-1].str() if seen else str(exc)
        if seen and seen[-1].code() == KafkaError._AUTHENTICATION:
            raise ConfigError("sasl.jaas.config", f"Kafka at {servers} refused the "
                              f"credentials ({reason}); fix sasl.mechanism and "
                              "sasl.jaas.config in the worker configuration") from None
        if seen and seen[-1].code() == KafkaError._SSL:
            raise ConfigError("ssl.truststore.location", f"TLS to Kafka at {servers} failed "
                              f"({reason}); check security.protocol and the "
                              "ssl.truststore.*/ssl.keystore.* settings") from None
        raise ConfigError("bootstrap.servers",
                          f"cannot reach Kafka at {servers} ({reason}); start the broker or "
                          "fix bootstrap.servers in the worker configuration") from None


def worker_id(settings: WorkerSettings) -> str:
    listener = settings.listeners.split(",")[0].strip()
    host_port = listener.split("://", 1)[-1] if listener else ""
    host, _, port = host_port.rpartition(":")
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    return f"{host}:{port or 8083}"


def offset_store(worker: dict[str, str], settings: WorkerSettings) -> OffsetStore:
    """A Kafka topic when ``offset.storage.topic`` is set (shared, transactional), else
    the standalone file, else memory (offsets then last as long as the process)."""
    if settings.offset_topic:
        return KafkaOffsetStore(settings.offset_topic, client_config(worker, "admin"),
                                settings.offset_partitions, settings.offset_replication_factor)
    if settings.offset_file:
        return FileOffsetStore(Path(settings.offset_file))
    return MemoryOffsetStore()


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, installed before anything starts: a signal
    during start-up then stops cleanly too."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("Received %s; stopping tasks (flush and commit)", signal.Signals(signum).name)
        stop.set()
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stop


def until_stopped(stop: threading.Event) -> None:
    """Wait for ``stop``, waking every second. A signal the kernel hands to another
    thread (the main thread's wait was not interrupted) only marks its handler due, and
    handlers run in the main thread when it next wakes: an untimed wait could leave a
    SIGTERM unanswered for good while the tasks go on."""
    while not stop.wait(1):
        pass


@app.command()
def standalone(
    worker_file: Annotated[Path, typer.Argument(help="Worker .properties file.")],
    connector_files: Annotated[list[Path] | None, typer.Argument(
        help="Connectors: .properties, REST JSON or Connector manifest YAML. None: "
             "connectors come over the REST API, as with Apache's connect-standalone.",
        show_default=False)] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING.")] = "INFO",
    json_logs: Annotated[bool, typer.Option(help="One JSON object per log line.")] = False,
) -> None:
    """Run connectors in this process, like Kafka Connect's connect-standalone."""
    setup_logging(log_level, json_logs)
    stop = stop_on_signals()
    try:
        worker = load_properties(worker_file)
        settings: WorkerSettings = WorkerSettings.parse(worker)
        definitions = [load_connector(path) for path in connector_files or []]
        check_broker(worker)
        offsets = offset_store(worker, settings)
        herder = StandaloneHerder(worker, worker_id(settings), offsets)
        for definition in definitions:
            herder.put_connector(definition.name, definition.config, create_only=True,
                                 initial_state=definition.initial_state)
    except InvalidConfigError as exc:
        raise fail(str(exc)) from None
    except ConfigError as exc:
        raise fail(str(exc)) from None
    try:
        rest = _start_rest(herder, worker, settings)
    except ConfigError as exc:
        herder.stop_all()
        raise fail(str(exc)) from None
    metrics = _start_metrics(herder, worker)
    reporter = ProgressReporter(herder, settings.progress_interval_ms / 1000)
    reporter.start()
    log.info("Kanal %s standalone worker %s running %d connector(s); Ctrl-C stops cleanly",
             __version__, herder.worker_id, len(definitions))
    until_stopped(stop)
    herder.stop_all(settings.task_shutdown_timeout_ms / 1000 + 25)
    if rest is not None:
        rest.stop()
    reporter.stop()
    if metrics is not None:
        metrics.stop()
    log.info("Stopped; offsets flushed")


def _start_rest(herder: StandaloneHerder, worker: dict[str, str],
                settings: WorkerSettings) -> RestServer | None:
    """The REST API on the worker's listeners; none with ``listeners=`` empty, and then
    FastAPI and uvicorn (~12 MB of memory) are not even imported."""
    if not settings.listeners.strip():
        return None
    from kanal_worker.rest.server import RestServer

    return RestServer.start(herder, worker)


def _start_metrics(herder: StandaloneHerder, worker: dict[str, str]) -> MetricsServer | None:
    """Metrics are a convenience in standalone mode: a busy port costs a warning, not the
    pipeline (several standalone workers often share a machine)."""
    port = metrics_port(worker)
    if not port:
        return None
    try:
        return start_metrics_server(herder, port)
    except ConfigError as exc:
        log.warning("No metrics: %s", exc)
        return None


@app.command("worker")
def worker_command(
    config: Annotated[Path, typer.Option(
        help="Worker .properties file (the ConfigMap the operator writes).")],
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING.")] = "INFO",
    json_logs: Annotated[bool, typer.Option(help="One JSON object per log line.")] = False,
) -> None:
    """Run as a ConnectCluster worker: run the tasks assigned to this pod, serve REST."""
    # imported here: the Kubernetes client is slow to import and only this command needs it
    from kanal_worker.cluster.worker import ClusterWorker, Identity
    from kanal_worker.config.kubernetes import load_credentials

    setup_logging(log_level, json_logs)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("Received %s; stopping tasks (flush, commit), then releasing the Lease",
                 signal.Signals(signum).name)
        stop.set()
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        load_credentials()
        cluster_worker = ClusterWorker(Identity.from_env(), load_properties(config))
        cluster_worker.start()
    except ConfigError as exc:
        raise fail(str(exc)) from None
    until_stopped(stop)
    cluster_worker.stop(cluster_worker.settings.task_shutdown_timeout_ms / 1000 + 25)
    log.info("Stopped")


@app.command("validate")
def validate_command(
    connector_file: Annotated[Path, typer.Argument(
        help="Connector: .properties, REST JSON or Connector manifest YAML.")],
    worker_file: Annotated[Path | None, typer.Option(
        "--worker", help="Worker properties whose config.providers resolve the connector's "
                         "${provider:...} placeholders first, as a worker would; without "
                         "it placeholders are checked as written.")] = None,
) -> None:
    """Check a connector configuration; print every error by key."""
    try:
        definition = load_connector(connector_file)
        config = definition.config
        if worker_file is not None:
            providers = providers_from_worker_config(load_properties(worker_file))
            config = resolve(config, providers)
        infos = validate(config)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    errors = errors_of(infos)
    if not errors:
        typer.echo(f"{connector_file}: {definition.name} ({infos['name']}) is valid")
        return
    for key, messages in errors.items():
        for message in messages:
            typer.secho(f"{key}: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


@app.command("plugins")
def plugins_command() -> None:
    """List the connectors, converters, transforms and predicates this worker offers."""
    for group in ("connector", "converter", "transform", "predicate"):
        for name, info in sorted(plugins(group).items()):
            aliases = ", ".join(info.cls.aliases)
            typer.echo(f"{info.kind:<10} {name:<40} {aliases}")


@app.command("telemetry")
def telemetry_command(
    mqtt: Annotated[str, typer.Option(
        help="Publish over MQTT to this broker (tcp://host:port), as vehicles would.")],
    count: Annotated[int, typer.Option(help="Readings to publish.")] = 10000,
    rate: Annotated[float, typer.Option(help="Readings per second; 0: as fast as "
                                              "possible.")] = 0,
    seed: Annotated[int, typer.Option(help="Same seed, same readings.")] = 42,
    vehicles: Annotated[int, typer.Option(help="Number of distinct vehicles.")] = 100,
    step_ms: Annotated[int, typer.Option(help="Milliseconds between readings' timestamps "
                                                 "(ending now); 0: the wall clock.")] = 0,
    qos: Annotated[int, typer.Option(min=0, max=2, help="MQTT quality of service.")] = 1,
    topic: Annotated[str, typer.Option(help="MQTT topic of each reading; {vehicle_id} "
                                            "is put in.")] = "vehicles/{vehicle_id}/telemetry",
) -> None:
    """Publish the vehicle-telemetry generator's readings (JSON) over MQTT."""
    from kanal_worker.api.errors import ConnectError
    from kanal_worker.connectors.telemetry import publish_over_mqtt

    try:
        published = publish_over_mqtt(
            mqtt, count, rate=rate, seed=seed, vehicles=vehicles, step_ms=step_ms, qos=qos,
            topic=topic, progress=lambda n: typer.echo(f"{n} readings published"))
    except (ConnectError, ValueError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"{published} readings published to {mqtt}")


@app.command("version")
def version_command() -> None:
    """Print the Kanal version."""
    typer.echo(__version__)


def _install_extra_commands() -> None:
    for ep in entry_points(group="kanal.commands"):
        try:
            command = ep.load()
        except Exception as exc:  # a broken extension must not break the worker commands
            log.warning("command %s cannot be loaded: %s", ep.name, exc)
            continue
        app.command(ep.name)(command)


def main() -> None:
    _install_extra_commands()
    try:
        app()
    except ModuleNotFoundError as exc:
        hint = missing_extra(exc)
        if hint is None:
            raise
        raise SystemExit(fail(hint).exit_code) from None


__all__ = ["app", "main"]
