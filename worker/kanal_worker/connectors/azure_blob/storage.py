"""Azure Blob Storage access: authentication, retries, and what a failure means.

Blobs are block blobs. A file's blocks are staged while it is open and become visible
only with the one ``commit_block_list`` (or, for a file smaller than a block, the one
``put``): readers never see half a file. Staging or committing again with the same
names and ids is harmless, which is what makes replays after a crash safe.

Every Azure request goes through the Azure client's retry policy, built from the
``azblob.retry.*`` settings. When those retries are exhausted a transient failure
becomes ``RetriableError`` (the runtime backs off and retries the write); a failure
that retrying cannot fix (bad credentials, missing permissions) becomes
``ConnectError`` with a hint, which fails the task. Which credential and endpoint a
configuration means is decided in ``auth``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient, ExponentialRetry

from kanal_worker.api import ConfigError, ConnectError, RetriableError
from kanal_worker.api.backoff import exponential_backoff
from kanal_worker.connectors.azure_blob.auth import account_url, auth_method
from kanal_worker.connectors.azure_blob.settings import AzureBlobSinkSettings

log = logging.getLogger(__name__)
HTTP_LOG = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
T = TypeVar("T")
TRANSIENT_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
"""409 included: a container being deleted and re-created answers 409 for a while."""


class BackoffRetry(ExponentialRetry):
    """Confluent's ``azblob.retry.type``: EXPONENTIAL doubles from the backoff up to the
    maximum, FIXED always waits the backoff (the SDK's own policies add a base and
    jitter that Confluent's settings do not describe)."""

    def __init__(self, fixed: bool, backoff_ms: int, max_backoff_ms: int, retries: int) -> None:
        # the base class's backoff parameters are unused: get_backoff_time replaces them
        super().__init__(retry_total=retries)
        self.fixed = fixed
        self.backoff = backoff_ms / 1000
        self.max_backoff = max_backoff_ms / 1000

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        if self.fixed:
            return self.backoff
        return exponential_backoff(max(settings["count"] - 1, 0), self.backoff,
                                   self.max_backoff, jitter=False)


class AzureBlobStore:
    """The storage core's ``ManagedStore`` on the Azure SDK; thread-safe (uploads run in
    a small pool). Parts are blocks, a commit is ``commit_block_list``."""

    def __init__(self, settings: AzureBlobSinkSettings) -> None:
        options: dict[str, Any] = {
            "retry_policy": BackoffRetry(settings.azblob_retry_type == "FIXED",
                                         settings.azblob_retry_backoff_ms,
                                         settings.azblob_retry_max_backoff_ms,
                                         settings.azblob_retry_retries),
            "connection_timeout": settings.azblob_connection_timeout_ms / 1000,
            "read_timeout": settings.azblob_connection_timeout_ms / 1000,
        }
        if HTTP_LOG.level == logging.NOTSET:
            # the SDK logs every request and response at INFO: one pair per block and
            # per file would bury the worker's own log; WARNING keeps its failures
            HTTP_LOG.setLevel(logging.WARNING)
        self.method = auth_method(settings)
        self.service = self._client(settings, options)
        self.container: ContainerClient = self.service.get_container_client(
            settings.azblob_container_name)
        self.container_name = settings.azblob_container_name
        self._container_ready = False
        self._lock = threading.Lock()

    def _client(self, settings: AzureBlobSinkSettings, options: dict[str, Any]) -> Any:
        if self.method == "CONNECTION_STRING":
            try:
                return BlobServiceClient.from_connection_string(
                    settings.secret("connection") or "", **options)
            except ValueError as exc:
                raise ConfigError("azblob.connection.string", f"Invalid connection string: "
                                  f"{exc}") from None
        url = account_url(settings)
        credential: Any
        if self.method == "ACCOUNT_KEY":
            credential = {"account_name": settings.azblob_account_name,
                          "account_key": settings.secret("key")}
        elif self.method == "SAS_TOKEN":
            credential = (settings.secret("sas") or "").lstrip("?")
        else:
            from azure.identity import DefaultAzureCredential
            credential = DefaultAzureCredential()
        return BlobServiceClient(url, credential=credential, **options)

    def put(self, name: str, data: bytes) -> None:
        self._call(lambda: self.container.upload_blob(name, data, overwrite=True,
                                                      length=len(data)))

    def stage(self, name: str, block_id: str, data: bytes) -> None:
        self._call(lambda: self.container.get_blob_client(name).stage_block(
            block_id, data, length=len(data)))

    def commit(self, name: str, block_ids: list[str]) -> None:
        blocks = [BlobBlock(block_id) for block_id in block_ids]
        self._call(lambda: self.container.get_blob_client(name).commit_block_list(blocks))

    def create(self, name: str, data: bytes) -> bool:
        def upload() -> bool:
            try:
                self.container.upload_blob(name, data, overwrite=False, length=len(data))
            except ResourceExistsError:
                return False
            return True
        return self._call(upload)

    def names(self, prefix: str) -> Iterator[str]:
        return iter(self._call(lambda: list(self.container.list_blob_names(
            name_starts_with=prefix))))

    def delete(self, name: str) -> None:
        def remove() -> None:
            try:
                self.container.delete_blob(name)
            except ResourceNotFoundError as exc:
                if getattr(exc, "error_code", None) == "ContainerNotFound":
                    raise
        self._call(remove)

    def close(self) -> None:
        self.service.close()

    def _call(self, request: Callable[[], T]) -> T:
        """Run ``request`` (already retried by the SDK) and translate its failure."""
        try:
            if not self._container_ready:
                self._ensure_container()
            return request()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) != "ContainerNotFound":
                raise ConnectError(f"Azure Blob Storage: {_reason(exc)}") from None
            self._container_ready = False
            raise RetriableError(f"container {self.container_name} does not exist (yet)") \
                from None
        except ClientAuthenticationError as exc:
            raise ConnectError(f"Azure Blob Storage rejected the {self.method} credentials: "
                               f"{_reason(exc)}; check azblob.auth.method and the "
                               "credential settings") from None
        except HttpResponseError as exc:
            if exc.status_code in (401, 403):
                raise ConnectError(f"Azure Blob Storage refused access with the "
                                   f"{self.method} credentials: {_reason(exc)}; check the "
                                   "credential settings and that they allow writing to "
                                   f"container {self.container_name}") from None
            if exc.status_code is None or exc.status_code in TRANSIENT_STATUS:
                raise RetriableError(f"Azure Blob Storage: {_reason(exc)}") from None
            raise ConnectError(f"Azure Blob Storage: {_reason(exc)}") from None
        except AzureError as exc:
            raise RetriableError(f"Azure Blob Storage unreachable: {_reason(exc)}") from None
        except OSError as exc:  # a connection cut in a way the SDK does not wrap
            raise RetriableError(f"Azure Blob Storage unreachable: {exc}") from None

    def _ensure_container(self) -> None:
        """Create the container once; a credential without that right (a container
        SAS) may still write to an existing container, so refusal is not fatal here."""
        with self._lock:
            if self._container_ready:
                return
            try:
                self.container.create_container()
                log.info("Created container %s", self.container_name)
            except ResourceExistsError:
                pass
            except HttpResponseError as exc:
                if exc.status_code not in (401, 403):
                    raise
                log.info("Cannot create container %s (%s); assuming it exists",
                         self.container_name, _reason(exc))
            self._container_ready = True


def _reason(error: AzureError) -> str:
    code = getattr(error, "error_code", None)
    code = getattr(code, "value", code)  # the SDK's StorageErrorCode enum
    first_line = str(error.message if hasattr(error, "message") else error).splitlines()[0]
    return f"{code}: {first_line}" if code else first_line
