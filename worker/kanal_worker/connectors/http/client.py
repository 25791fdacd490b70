"""What both HTTP connectors do with a server: judge its answers, honour Retry-After,
and authorize requests (a static header, Basic, or an OAuth2 client-credentials token).

Every failure names the configuration key to look at, so the task status and the
validate endpoint say what to fix. Failures that pass on their own (no connection, a
timeout, 408, 425, 429, 5xx) are ``HttpUnavailable``, a RetriableError: the runtime
waits (``retry_after`` when the server said how long) and tries again; anything else is
``HttpFailure``.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Generator

import httpx

from kanal_worker.api import ConnectError, RetriableError
from kanal_worker.connectors.http.settings import HttpSinkSettings, header_pairs

# httpx logs every request at INFO; a sink sends thousands a second
logging.getLogger("httpx").setLevel(logging.WARNING)

TRANSIENT_STATUS = frozenset({408, 425, 429})
CREDENTIAL_STATUS = frozenset({401, 403, 407})
MAX_RETRY_AFTER = 600.0
"""A Retry-After beyond ten minutes is taken as ten: the task stays responsive."""
TOKEN_EARLY = 30.0
"""Refresh a token this long before it expires (a tenth of its lifetime when shorter)."""


class HttpFailure(ConnectError):
    """A request that will not succeed as configured; ``key`` names what to fix."""

    def __init__(self, key: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.status = status


class HttpUnavailable(RetriableError):
    """A request that may succeed later; ``key`` names the endpoint's setting."""

    def __init__(self, key: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{key}: {message}", retry_after=retry_after)
        self.key = key


def problem(error: HttpFailure | HttpUnavailable) -> dict[str, list[str]]:
    """An error as validate reports it: by key, without the retry note."""
    message = str(error).removeprefix(f"{error.key}: ")
    return {error.key: [message.removesuffix(" (retrying)").removesuffix("; retrying")]}


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks to wait (Retry-After as seconds or an HTTP date)."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(moment.timestamp() - time.time(), 0.0), MAX_RETRY_AFTER)


def snippet(response: httpx.Response) -> str:
    """The start of a response body, for messages."""
    text = response.text.strip().replace("\n", " ")
    return f": {text[:200]}" if text else ""


def send(client: httpx.Client, request: httpx.Request, key: str) -> httpx.Response:
    """``request`` sent; HttpUnavailable when the server cannot be reached or is slow."""
    try:
        return client.send(request)
    except httpx.TimeoutException as exc:
        raise HttpUnavailable(key, f"{request.url} did not answer in time ({exc!r}); "
                                   "retrying (raise the timeout if the server is slow)") from None
    except httpx.TransportError as exc:
        raise HttpUnavailable(key, f"cannot reach {request.url}: {exc}; check the URL and "
                                   "that the server runs (retrying)") from None


def judge(response: httpx.Response, key: str, credentials: str) -> None:
    """Return for 2xx; raise HttpUnavailable for transient statuses, HttpFailure
    naming ``credentials`` for 401/403/407 and ``key`` for any other."""
    status = response.status_code
    if 200 <= status < 300:
        return
    where = f"{response.request.method} {response.request.url}"
    if status in TRANSIENT_STATUS or status >= 500:
        raise HttpUnavailable(key, f"HTTP {status} from {where}{snippet(response)}; retrying",
                              retry_after(response))
    if status in CREDENTIAL_STATUS:
        raise HttpFailure(credentials, f"HTTP {status} from {where}: the server refused "
                                       f"the credentials; fix {credentials}", status)
    raise HttpFailure(key, f"HTTP {status} from {where}{snippet(response)}", status)


class OAuth2ClientCredentials(httpx.Auth):
    """A bearer token from the client credentials grant, fetched when first needed,
    again shortly before it expires, and again when the server answers 401 (a token
    revoked early). The secret travels only to the token URL."""

    def __init__(self, settings: HttpSinkSettings) -> None:
        self.settings = settings
        self.token: str | None = None
        self.expires_at = 0.0
        self.fetched = 0
        self.lock = threading.Lock()
        self.client = httpx.Client(timeout=settings.http_timeout)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.current()}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {self.current(stale=True)}"
            yield request

    def current(self, stale: bool = False) -> str:
        with self.lock:
            if self.token is None or stale or time.monotonic() >= self.expires_at:
                self.token, lifetime = self.fetch()
                early = min(TOKEN_EARLY, lifetime / 10)
                self.expires_at = time.monotonic() + lifetime - early
                self.fetched += 1
            return self.token

    def fetch(self) -> tuple[str, float]:
        """A new token and its lifetime in seconds (a day when the server says none)."""
        settings = self.settings
        url = settings.oauth2_access_token_url or ""
        client_id = settings.oauth2_client_id or ""
        secret = settings.oauth2_client_secret.get_secret_value() \
            if settings.oauth2_client_secret else ""
        form = {"grant_type": "client_credentials"}
        if settings.oauth2_client_scope:
            form["scope"] = settings.oauth2_client_scope
        auth: httpx.BasicAuth | None = None
        if settings.oauth2_client_authorization_mode == "URL":
            form.update(client_id=client_id, client_secret=secret)
        else:
            auth = httpx.BasicAuth(client_id, secret)
        request = self.client.build_request("POST", url, data=form)
        if auth is not None:
            request = next(auth.auth_flow(request))
        response = send(self.client, request, "oauth2.access.token.url")
        if response.status_code in (400, 401):  # RFC 6749's answers to a wrong client
            raise HttpFailure("oauth2.client.secret",
                              f"{url} refused client {client_id!r} (HTTP "
                              f"{response.status_code}{snippet(response)}); check "
                              "oauth2.client.id and oauth2.client.secret",
                              response.status_code)
        judge(response, "oauth2.access.token.url", "oauth2.client.secret")
        try:
            body = response.json()
        except ValueError:
            raise HttpFailure("oauth2.access.token.url", f"the token response of {url} is "
                                                         "not JSON; check the URL") from None
        name = settings.oauth2_response_token_property
        token = body.get(name) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            found = ", ".join(body) if isinstance(body, dict) else type(body).__name__
            raise HttpFailure("oauth2.response.token.property",
                              f"the token response of {url} has no {name!r} (it has "
                              f"{found}); set the property that holds the token")
        lifetime = body.get("expires_in")
        return token, float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 \
            else 86400.0

    def close(self) -> None:
        self.client.close()


def sink_client(settings: HttpSinkSettings) -> tuple[httpx.Client, OAuth2ClientCredentials | None]:
    """The sink's client: its headers, timeout and authorization."""
    headers = dict(header_pairs(",".join(settings.http_headers_additional),
                                "http.headers.additional"))
    if settings.http_headers_content_type:
        headers["Content-Type"] = settings.http_headers_content_type
    oauth2 = None
    if settings.http_authorization_type == "static" and settings.http_headers_authorization:
        headers["Authorization"] = settings.http_headers_authorization.get_secret_value()
    elif settings.http_authorization_type == "oauth2":
        oauth2 = OAuth2ClientCredentials(settings)
    client = httpx.Client(timeout=settings.http_timeout, headers=headers, auth=oauth2)
    return client, oauth2


def credentials_key(settings: HttpSinkSettings) -> str:
    """The key to fix when the server refuses the sink's credentials."""
    return {"static": "http.headers.authorization", "oauth2": "oauth2.client.secret"}.get(
        settings.http_authorization_type, "http.authorization.type")
