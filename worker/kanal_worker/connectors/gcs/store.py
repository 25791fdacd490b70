"""Google Cloud Storage access through google-cloud-storage: the storage core's backend.

A file smaller than one part is one request (``put``). A larger file is a resumable
upload: ``stage`` opens the session with its first part and sends each part as a chunk
at its offset; ``commit`` sends the total, which is what makes the object appear, in one
step, so readers never see half a file. Every chunk but the last must be a multiple of
256 KiB: parts are (``gcs.part.size`` is checked), and only the last part can have an
unaligned tail, which is held back (< 256 KiB) and sent with the total.

A retried chunk asks the session how much it has (a chunk may have landed with its
answer lost) and sends only the rest. A session the server lost (it restarted, or
answers 404/410 for it) is opened again and given the bytes sent so far once more:
each session keeps them in a spool (memory up to ``SPOOLED_IN_MEMORY``, a temporary
file beyond) until its object is committed. Requests are not retried here: a failure becomes
``RetriableError`` (the runtime backs off and calls ``write`` again, the task status
shows it) or, when waiting cannot help, ``ConnectError`` naming the key to fix.
``create`` is conditional through ``if_generation_match=0``.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

import requests
from google.api_core import exceptions as api
from google.auth import exceptions as auth_errors
from google.cloud import storage

from kanal_worker.api import ConfigError, ConnectError, RetriableError
from kanal_worker.connectors.gcs.settings import CHUNK, GcsSinkSettings

log = logging.getLogger(__name__)
T = TypeVar("T")
TIMEOUT = (10.0, 60.0)
"""Connect and read timeouts of every request: a silent store turns into a retry."""
PROBE_TIMEOUT = (3.0, 10.0)
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
RESUME_INCOMPLETE = 308
GCS_MESSAGE = re.compile(r'\{"error":\s*\{"code":\s*\d+,\s*"message":\s*"((?:[^"\\]|\\.)*)"')
SESSION_GONE = frozenset({404, 410})
SPOOLED_IN_MEMORY = 4 * CHUNK
RESEND_PIECE = 32 * CHUNK
"""Bytes per request when a restarted session is given what the lost one had."""


def _spool() -> IO[bytes]:
    return tempfile.SpooledTemporaryFile(max_size=SPOOLED_IN_MEMORY)


@dataclass
class Session:
    """One resumable upload. ``offset`` is where ``tail`` (bytes taken but not yet sent,
    < 256 KiB) starts; ``received`` what the server said it holds (it may be ahead of
    ``offset`` when a chunk landed but its answer was lost)."""
    url: str
    offset: int = 0
    received: int = 0
    tail: bytes = b""
    parts: int = 0
    sent: IO[bytes] = field(default_factory=_spool)
    """The bytes up to ``offset``, for a new session if the server loses this one."""
    lost: bool = False


class GcsStore:
    """``ManagedStore`` on google-cloud-storage; thread-safe across files (the core
    uploads one file's parts in order from one thread at a time)."""

    def __init__(self, settings: GcsSinkSettings) -> None:
        self.bucket_name = settings.gcs_bucket_name
        self.client = storage.Client(project="kanal", credentials=_credentials(settings),
                                     client_options=_options(settings))
        self.bucket = self.client.bucket(self.bucket_name)
        self.sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    # -- single requests -------------------------------------------------------------------
    def put(self, name: str, data: bytes) -> None:
        self._call(lambda: self.bucket.blob(name).upload_from_string(
            data, timeout=TIMEOUT, retry=None, checksum=None))

    def create(self, name: str, data: bytes) -> bool:
        try:
            self._call(lambda: self.bucket.blob(name).upload_from_string(
                data, if_generation_match=0, timeout=TIMEOUT, retry=None, checksum=None))
        except _Exists:
            return False
        return True

    def names(self, prefix: str) -> Iterator[str]:
        listed = self._call(lambda: list(self.client.list_blobs(
            self.bucket_name, prefix=prefix, timeout=TIMEOUT, retry=None)))
        return iter([blob.name for blob in listed])

    def delete(self, name: str) -> None:
        try:
            self._call(lambda: self.bucket.blob(name).delete(timeout=TIMEOUT, retry=None))
        except ConnectError:
            if self._call(lambda: self.bucket.blob(name).exists(timeout=TIMEOUT, retry=None)):
                raise

    # -- resumable uploads -----------------------------------------------------------------
    def stage(self, name: str, part_id: str, data: bytes) -> None:
        index = int(part_id)
        session = self.sessions.get(name)
        if session is None or (index == 0 and session.parts > 0):
            if session is not None:
                session.sent.close()
            session = self.sessions[name] = Session(self._open_session(name))
        if index < session.parts:
            return  # a repeat of a part already taken
        body = session.tail + data
        aligned = len(body) - len(body) % CHUNK
        if aligned:
            self._send(name, session, body[:aligned], final=False)
            session.sent.write(body[:aligned])
        session.offset += aligned
        session.tail = body[aligned:]
        session.parts = index + 1

    def commit(self, name: str, part_ids: list[str]) -> None:
        session = self.sessions.get(name)
        if session is None:
            raise ConnectError(f"GCS: no upload of {name} is open to commit")
        self._send(name, session, session.tail, final=True)
        del self.sessions[name]
        session.sent.close()

    def _open_session(self, name: str) -> str:
        url: str = self._call(lambda: self.bucket.blob(name).create_resumable_upload_session(
            timeout=TIMEOUT, checksum=None))
        return url

    def _restart(self, name: str, session: Session) -> None:
        """A new session for ``name`` holding what the lost one held: the spooled bytes."""
        log.warning("GCS lost the upload session of %s; starting it again with the %d "
                    "bytes sent so far", name, session.offset)
        session.url, session.received, session.lost = self._open_session(name), 0, False
        while session.received < session.offset:
            session.sent.seek(session.received)
            piece = session.sent.read(min(RESEND_PIECE, session.offset - session.received))
            end = session.received + len(piece)
            response = self._request(name, session, piece,
                                     f"bytes {session.received}-{end - 1}/*")
            if response.status_code != RESUME_INCOMPLETE:
                _raise_for(response, self.bucket_name, name)
            session.received = _received(response)
        session.sent.seek(0, 2)

    def _send(self, name: str, session: Session, body: bytes, final: bool,
              may_restart: bool = True) -> None:
        """Send ``body`` (which starts at ``session.offset``), minus what the server
        already holds; ``final`` also tells the total, which completes the object."""
        if session.lost:
            self._restart(name, session)
        end = session.offset + len(body)
        rest = body[session.received - session.offset:]
        if rest:
            span = f"bytes {session.received}-{end - 1}/{end if final else '*'}"
        else:
            span = f"bytes */{end}"
        response = self._request(name, session, rest, span)
        if response.status_code in SESSION_GONE and may_restart:
            session.lost = True
            self._send(name, session, body, final, may_restart=False)
            return
        if response.status_code == RESUME_INCOMPLETE:
            session.received = _received(response)
            if final or session.received != end:
                raise RetriableError(f"GCS: upload of {name} holds {session.received} of "
                                     f"{end} bytes; sending the rest")
            return
        if response.status_code not in (200, 201):
            _raise_for(response, self.bucket_name, name)
        session.received = end

    def _request(self, name: str, session: Session, body: bytes, span: str) -> Any:
        try:
            return self.client._http.put(session.url, data=body, timeout=TIMEOUT,
                                         headers={"Content-Range": span})
        except (requests.RequestException, auth_errors.TransportError) as exc:
            # the chunk may or may not have landed: ask before sending again
            self._resync(session)
            raise RetriableError(f"GCS unreachable while uploading {name}: {exc}") from None
        except auth_errors.GoogleAuthError as exc:  # a 401 whose credentials cannot renew
            raise _rejected(exc) from None

    def _resync(self, session: Session) -> None:
        try:
            response = self.client._http.put(session.url, data=b"", timeout=TIMEOUT,
                                             headers={"Content-Range": "bytes */*"})
        except (requests.RequestException, auth_errors.TransportError):
            return  # still unreachable; the next try asks again
        if response.status_code == RESUME_INCOMPLETE:
            session.received = _received(response)
        elif response.status_code in SESSION_GONE:
            session.lost = True

    def close(self) -> None:
        for session in self.sessions.values():
            session.sent.close()
        self.client.close()

    def _call(self, request: Callable[[], T]) -> T:
        try:
            return request()
        except api.PreconditionFailed:
            raise _Exists from None
        except api.NotFound:
            raise ConnectError(f"GCS bucket {self.bucket_name} does not exist; create it or "
                               "fix gcs.bucket.name") from None
        except (api.Unauthorized, api.Forbidden) as exc:
            raise ConnectError(f"GCS refused access to bucket {self.bucket_name} "
                               f"(gcs.bucket.name): {_first(exc)}; check "
                               "gcs.credentials.path or gcs.credentials.json and that the "
                               "account may create objects in the bucket") from None
        except auth_errors.RefreshError as exc:
            raise _rejected(exc) from None
        except api.GoogleAPICallError as exc:
            if exc.code is None or exc.code in TRANSIENT_STATUS:
                raise RetriableError(f"GCS: {_first(exc)}") from None
            raise ConnectError(f"GCS: {_first(exc)}") from None
        except (requests.RequestException, auth_errors.TransportError, OSError) as exc:
            raise RetriableError(f"GCS unreachable: {_first(exc)}; check store.url if this "
                                 "lasts") from None
        except auth_errors.GoogleAuthError as exc:  # a 401 whose credentials cannot renew
            raise _rejected(exc) from None


def access_problems(settings: GcsSinkSettings) -> dict[str, list[str]]:
    """What ``validate`` can tell before any data flows: an endpoint that does not answer,
    unusable credentials, a missing bucket, a refusal to read it or to create objects in
    it (an empty probe object under topics.dir, removed again). A task whose store goes
    away later retries instead (its status names store.url)."""
    try:
        store = GcsStore(settings)
    except ConfigError as exc:
        return {exc.key or "gcs.credentials.path": [exc.message]}
    try:
        if not store.bucket.exists(timeout=PROBE_TIMEOUT, retry=None):
            return {"gcs.bucket.name": [f"Bucket {settings.gcs_bucket_name} does not exist; "
                                        "create it or fix gcs.bucket.name"]}
        delim = settings.directory_delim
        probe = (f"{settings.topics_dir}{delim}" if settings.topics_dir else "") + \
            f".kanal-write-probe-{uuid.uuid4().hex}"
        try:
            store.bucket.blob(probe).upload_from_string(b"", timeout=PROBE_TIMEOUT, retry=None)
        except (api.Unauthorized, api.Forbidden) as exc:
            return {"gcs.bucket.name": [
                f"GCS refused to create objects in bucket {settings.gcs_bucket_name}: "
                f"{_first(exc)}; give the account of gcs.credentials.path or "
                "gcs.credentials.json the right to create objects there (role Storage "
                "Object Creator), or fix gcs.bucket.name"]}
        try:
            store.bucket.blob(probe).delete(timeout=PROBE_TIMEOUT, retry=None)
        except api.GoogleAPICallError as exc:  # writing is what the task needs
            log.info("Could not delete the write probe %s: %s", probe, _first(exc))
    except (api.Unauthorized, api.Forbidden) as exc:
        return {"gcs.credentials.path": [f"GCS refused access to bucket "
                                         f"{settings.gcs_bucket_name}: {_first(exc)}; check "
                                         "the credentials and their rights on the bucket"]}
    except auth_errors.RefreshError as exc:
        return {"gcs.credentials.path": [f"GCS rejected the credentials: {_first(exc)}"]}
    except (requests.ConnectionError, requests.Timeout, auth_errors.TransportError) as exc:
        endpoint = settings.store_url or "https://storage.googleapis.com"
        return {"store.url": [f"GCS unreachable at {endpoint}: {_first(exc)}; check "
                              "store.url (empty for Google's endpoint)"]}
    except Exception as exc:  # a failing store: the task retries then
        log.info("Cannot probe bucket %s now: %s", settings.gcs_bucket_name, _first(exc))
    finally:
        store.close()
    return {}


class _Exists(Exception):
    """The object already exists (a conditional write's precondition failed)."""


def _received(response: Any) -> int:
    """Bytes a resumable session holds, from its ``Range: bytes=0-N`` answer."""
    span = response.headers.get("Range")
    return int(span.rsplit("-", 1)[1]) + 1 if span else 0


def _raise_for(response: Any, bucket: str, name: str) -> None:
    status = response.status_code
    text = response.text.strip().splitlines()[0] if response.text.strip() else ""
    if status in TRANSIENT_STATUS:
        raise RetriableError(f"GCS answered {status} uploading {name}: {text}")
    if status in (401, 403):
        raise ConnectError(f"GCS refused the upload of {name} to bucket {bucket} ({status}: "
                           f"{text}); check gcs.credentials.path or gcs.credentials.json")
    raise ConnectError(f"GCS answered {status} uploading {name}: {text}")


def _rejected(error: BaseException) -> ConnectError:
    return ConnectError(f"GCS credentials were rejected: {_first(error)}; check "
                        "gcs.credentials.path or gcs.credentials.json")


def _first(error: BaseException) -> str:
    """The error's first line; GCS's own message when the error carries its JSON body
    (the client library puts the whole request line and body in front of it)."""
    text = str(getattr(error, "message", None) or error)
    reason = GCS_MESSAGE.search(text)
    if reason:
        return reason[1]
    return text.splitlines()[0] if text else type(error).__name__


def _options(settings: GcsSinkSettings) -> dict[str, Any] | None:
    return {"api_endpoint": settings.store_url.rstrip("/")} if settings.store_url else None


def _credentials(settings: GcsSinkSettings) -> Any:
    from google.oauth2 import service_account
    try:
        if settings.gcs_credentials_json is not None:
            info = json.loads(settings.gcs_credentials_json.get_secret_value())
            return service_account.Credentials.from_service_account_info(
                info, scopes=[storage.client.Client.SCOPE[0]])
        if settings.gcs_credentials_path:
            return service_account.Credentials.from_service_account_file(
                settings.gcs_credentials_path, scopes=[storage.client.Client.SCOPE[0]])
    except (ValueError, KeyError, TypeError) as exc:
        key = ("gcs.credentials.json" if settings.gcs_credentials_json is not None
               else "gcs.credentials.path")
        raise ConfigError(key, f"Not a service account key ({type(exc).__name__}: "
                               f"{_first(exc)}); use a key file created for a service "
                               "account, as JSON") from None
    except OSError as exc:
        raise ConfigError("gcs.credentials.path", f"Cannot read {exc.filename}: "
                                                  f"{exc.strerror}") from None
    if settings.store_url and settings.store_url.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials
        return AnonymousCredentials()
    import google.auth
    try:
        credentials, _ = google.auth.default(scopes=[storage.client.Client.SCOPE[0]])
    except auth_errors.DefaultCredentialsError as exc:
        raise ConfigError("gcs.credentials.path", f"No credentials: {_first(exc)}; set "
                          "gcs.credentials.path or gcs.credentials.json") from None
    return credentials
