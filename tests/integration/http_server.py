"""A real HTTP server in the test process (uvicorn on 127.0.0.1): what the HTTP connectors'
tests send records to, fetch OAuth2 tokens from and poll pages of items from. It can be
stopped and started again on the same port, a real outage for the clients."""

from __future__ import annotations

import base64
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kanal_worker.runtime.validation import validate

CLIENT_ID, CLIENT_SECRET = "kanal-client", "kanal-client-secret"


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    at: float


@dataclass
class ServerState:
    """What the server received and how it answers."""

    bodies: dict[str, list[Received]] = field(default_factory=dict)
    token_lifetime: float = 3600.0
    tokens: dict[str, float] = field(default_factory=dict)
    """Issued token -> when it expires."""
    token_requests: int = 0
    required_authorization: str | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    item_requests: int = 0
    list_name: str = "items"
    """The name of the array of items in a page (changed: the API changed shape)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self, name: str) -> list[Received]:
        with self.lock:
            return list(self.bodies.get(name, []))

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()


class RecordingServer:
    """uvicorn serving ``/sink/<name>`` (records), ``/token`` (OAuth2 client credentials),
    ``/secure/<name>`` (sink needing a bearer token), ``/items`` (pages of items)."""

    def __init__(self) -> None:
        self.state = ServerState()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = Starlette(routes=[
            Route("/sink/{name}", self._sink, methods=["POST", "OPTIONS"]),
            Route("/secure/{name}", self._secure, methods=["POST", "OPTIONS"]),
            Route("/token", self._token, methods=["POST"]),
            Route("/items", self._items, methods=["GET"]),
        ])
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> RecordingServer:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the test HTTP server did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        assert self.server is not None and self.thread is not None
        self.server.should_exit = True
        self.thread.join(30)

    async def _sink(self, request: Request) -> Response:
        state = self.state
        if state.required_authorization is not None and \
                request.headers.get("authorization") != state.required_authorization:
            return Response("bad credentials", status_code=401)
        if request.method == "OPTIONS":
            return Response(status_code=204)
        return await self._record(request)

    async def _record(self, request: Request) -> Response:
        body = await request.body()
        with self.state.lock:
            self.state.bodies.setdefault(request.path_params["name"], []).append(
                Received(body, dict(request.headers), time.monotonic()))
        return Response(status_code=200)

    async def _secure(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        with self.state.lock:
            expires = self.state.tokens.get(token)
        if scheme != "Bearer" or expires is None or expires < time.monotonic():
            return Response("token expired or unknown", status_code=401)
        if request.method == "OPTIONS":
            return Response(status_code=204)
        return await self._record(request)

    async def _token(self, request: Request) -> Response:
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        form = parse_qs((await request.body()).decode())
        if request.headers.get("authorization") != expected or \
                form.get("grant_type") != ["client_credentials"]:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        token = secrets.token_hex(8)
        with self.state.lock:
            self.state.token_requests += 1
            self.state.tokens[token] = time.monotonic() + self.state.token_lifetime
        return JSONResponse({"access_token": token, "token_type": "Bearer",
                             "expires_in": self.state.token_lifetime})

    async def _items(self, request: Request) -> Response:
        state = self.state
        if state.required_authorization is not None and \
                request.headers.get("authorization") != state.required_authorization:
            return Response("bad credentials", status_code=401)
        since = int(request.query_params.get("since", "0"))
        limit = int(request.query_params.get("limit", "10"))
        with state.lock:
            state.item_requests += 1
            page = [item for item in state.items if item["id"] > since][:limit]
        return JSONResponse({"data": {state.list_name: page}, "count": len(page)})


def errors_of(config: dict[str, str]) -> dict[str, list[str]]:
    """What the validate endpoint reports for ``config``: the messages by key."""
    result: dict[str, Any] = validate({"name": "http-connector", **config})
    return {entry["value"]["name"]: entry["value"]["errors"]
            for entry in result["configs"] if entry["value"]["errors"]}
