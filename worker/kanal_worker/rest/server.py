"""Serves the REST API on the worker's ``listeners``, one uvicorn server thread each."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI

from kanal_worker.api.errors import ConfigError
from kanal_worker.config.worker import WorkerSettings
from kanal_worker.rest.app import create_app
from kanal_worker.rest.auth import RestSettings, credentials_from
from kanal_worker.runtime.herder import Herder

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Listener:
    host: str
    port: int


def parse_listeners(listeners: str) -> list[Listener]:
    """``http://host:port`` entries separated by commas; an empty host means every one."""
    parsed = []
    for entry in (part.strip() for part in listeners.split(",")):
        if not entry:
            continue
        url = urlsplit(entry)
        if url.scheme.lower() != "http":
            raise ConfigError("listeners", f"{entry}: only http:// listeners are supported; "
                              "terminate TLS in front of the worker (Ingress, service mesh)")
        try:
            port = url.port
        except ValueError:
            port = None
        if port is None:
            raise ConfigError("listeners", f"{entry}: give a port, e.g. http://0.0.0.0:8083")
        parsed.append(Listener(url.hostname or "0.0.0.0", port))
    return parsed


@dataclass(frozen=True)
class ServerThread:
    """One listener: a uvicorn server running in its own thread on a bound socket."""

    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket
    url: str
    """Where it listens, with the real port when the listener asked for port 0."""

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(STOP_TIMEOUT + 5)
        if self.thread.is_alive():
            log.warning("REST server on %s did not stop in time", self.url)
        self.sock.close()


class RestServer:
    """The REST API, served until ``stop``."""

    def __init__(self, served: list[ServerThread]) -> None:
        self.served = served

    @classmethod
    def start(cls, herder: Herder, worker: Mapping[str, str]) -> RestServer:
        """Serve ``herder`` on the worker's listeners; ConfigError when one cannot be bound."""
        rest: RestSettings = RestSettings.parse(worker)
        settings: WorkerSettings = WorkerSettings.parse(worker)
        app = create_app(herder, credentials_from(rest), rest.read_only)
        server = cls([])
        try:
            for listener in parse_listeners(settings.listeners):
                server.served.append(_serve(app, listener))
        except BaseException:
            server.stop()
            raise
        guards = [word for word, on in (("basic auth", rest.auth_file or rest.auth_secret),
                                        ("read-only", rest.read_only)) if on]
        for url in server.urls:
            log.info("REST API on %s%s", url, f" ({', '.join(guards)})" if guards else "")
        return server

    @property
    def urls(self) -> list[str]:
        return [served.url for served in self.served]

    def stop(self) -> None:
        for served in self.served:
            served.server.should_exit = True
        for served in self.served:
            served.stop()


def _bind(listener: Listener) -> socket.socket:
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    try:
        return socket.create_server((listener.host, listener.port), family=family)
    except OSError as exc:
        raise ConfigError("listeners", f"cannot serve the REST API on {listener.host}:"
                          f"{listener.port}: {exc.strerror}; free the port or change "
                          "listeners") from None


def _serve(app: FastAPI, listener: Listener) -> ServerThread:
    sock = _bind(listener)
    server = uvicorn.Server(uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off", server_header=False,
        timeout_graceful_shutdown=int(STOP_TIMEOUT)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"rest-{listener.port}", daemon=True)
    thread.start()
    host, port = sock.getsockname()[:2]
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    served = ServerThread(server, thread, sock, url)
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        served.stop()
        raise ConfigError("listeners", f"the REST API did not start on {listener.host}:"
                          f"{listener.port}; see the log above")
    return served
