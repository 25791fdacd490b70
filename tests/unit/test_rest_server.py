"""The REST server: listeners parsed like Kafka Connect's, served in threads, stopped."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from kanal_worker.api.errors import ConfigError
from kanal_worker.rest.server import Listener, RestServer, parse_listeners
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.standalone import StandaloneHerder


@pytest.fixture
def herder() -> Iterator[StandaloneHerder]:
    herder = StandaloneHerder({}, "test:8083", MemoryOffsetStore())
    yield herder
    herder.stop_all()


def test_listeners_are_parsed() -> None:
    assert parse_listeners("http://0.0.0.0:8083, http://:8084,") == [
        Listener("0.0.0.0", 8083), Listener("0.0.0.0", 8084)]
    assert parse_listeners("http://[::1]:9000") == [Listener("::1", 9000)]
    assert parse_listeners("") == []


@pytest.mark.parametrize(("listeners", "message"), [
    ("https://0.0.0.0:8443", "only http:// listeners"),
    ("http://0.0.0.0", "give a port"),
    ("http://0.0.0.0:http", "give a port"),
])
def test_bad_listeners_are_refused(listeners: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_listeners(listeners)


def test_serves_until_stopped(herder: StandaloneHerder) -> None:
    server = RestServer.start(herder, {"listeners": "http://127.0.0.1:0,http://127.0.0.1:0"})
    try:
        assert len(server.urls) == 2
        for url in server.urls:
            assert httpx.get(f"{url}/health", timeout=5).json()["status"] == "healthy"
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.urls[0]}/health", timeout=5)


def test_a_port_in_use_is_a_clear_error(herder: StandaloneHerder) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot serve the REST API on 127.0.0.1:{port}"):
            RestServer.start(herder, {"listeners": f"http://127.0.0.1:{port}"})


def test_empty_listeners_serve_nothing(herder: StandaloneHerder) -> None:
    server = RestServer.start(herder, {"listeners": ""})
    assert server.urls == []
    server.stop()
