"""How a Kanal process logs and serves ``/metrics``, the same way for the worker and the
operator."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

import orjson
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from kanal_worker.api.errors import ConfigError

log = logging.getLogger(__name__)


class JsonFormatter(logging.Formatter):
    """JSON log lines for log pipelines (``--json-logs``)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()

    converter = staticmethod(time.gmtime)  # type: ignore[assignment]


def setup_logging(level: str = "INFO", json_logs: bool = False) -> None:
    handler = logging.StreamHandler()
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)-7s %(message)s  [%(name)s]", "%H:%M:%S"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("azure").setLevel(logging.WARNING)


@dataclass
class MetricsServer:
    """A running ``/metrics`` endpoint; ``stop()`` closes it."""

    server: WSGIServer
    thread: threading.Thread
    registry: CollectorRegistry

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def metrics_registry(collector: Collector, process_metrics: bool = True) -> CollectorRegistry:
    """A registry with ``collector`` and, unless disabled, process/Python metrics."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    if process_metrics:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


def serve_metrics(registry: CollectorRegistry, port: int, addr: str,
                  setting: str) -> MetricsServer:
    """Serve ``registry`` on ``http://addr:port/metrics`` from a daemon thread; a port in
    use raises ``ConfigError`` naming ``setting``, where the port comes from."""
    try:
        server, thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        raise ConfigError(setting, f"cannot serve metrics on {addr}:{port}: {exc.strerror}; "
                          f"free the port or set {setting}") from None
    metrics = MetricsServer(server, thread, registry)
    log.info("Metrics on http://%s:%d/metrics", addr, metrics.port)
    return metrics
