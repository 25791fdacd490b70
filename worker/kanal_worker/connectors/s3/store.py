"""S3 access through boto3: multipart uploads, conditional writes, what a failure means.

A file smaller than one part is one ``PutObject``; a larger one is a multipart upload
whose parts (``s3.part.size`` bytes each, the last one shorter) are uploaded while the
file is open and which becomes visible with the one ``CompleteMultipartUpload``:
readers never see half a file. Uploading a part again replaces it, so a retry after a
failure is harmless. After a crash, the replay starts a new upload of the same object
with the same bytes; the abandoned upload's parts stay on the server until a bucket
lifecycle rule (``AbortIncompleteMultipartUpload``) removes them.

With ``enable.conditional.writes`` both requests carry ``If-None-Match: *``: an object
that exists already is the file written before a crash (same name, same bytes), so
S3's 412 counts as success.

Requests are retried by boto3 (``s3.part.retries``, standard mode). When those retries
are exhausted a transient failure becomes ``RetriableError`` (the runtime backs off
and retries the write); one that retrying cannot fix (wrong credentials, no such
bucket, access denied) becomes ``ConnectError`` naming the key to fix.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)

from kanal_worker.api import ConnectError, RetriableError
from kanal_worker.connectors.s3.settings import S3SinkSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


class S3Refusal(ConnectError):
    """A failure that waiting cannot fix; ``key`` names the setting to change."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class S3Unreachable(RetriableError):
    """The endpoint does not answer (an outage, or a wrong ``store.url``)."""

    key = "store.url"


CREDENTIAL_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch",
                              "InvalidClientTokenId", "ExpiredToken", "InvalidToken"})
TRANSIENT_CODES = frozenset({"SlowDown", "RequestTimeout", "InternalError",
                             "ServiceUnavailable", "OperationAborted", "RequestTimeTooSkewed"})


def s3_client(settings: S3SinkSettings, retries: int | None = None,
              timeout_ms: int | None = None) -> Any:
    """A boto3 client for ``settings``: explicit keys or the default credential chain."""
    timeout = (timeout_ms or settings.s3_connection_timeout_ms) / 1000
    options: dict[str, Any] = {
        "s3": {"addressing_style": "path" if settings.s3_path_style_access_enabled
               else "virtual"},
        "retries": {"mode": "standard",
                    "total_max_attempts": 1 + (settings.s3_part_retries if retries is None
                                               else retries)},
        "connect_timeout": timeout, "read_timeout": timeout,
        "max_pool_connections": max(10, settings.upload_threads * 2),
        # S3-compatible servers differ in the newer integrity checksums; MD5-free
        # SigV4 payload hashing is what every one of them verifies
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
    }
    if settings.s3_proxy_url:
        options["proxies"] = {"http": settings.s3_proxy_url, "https": settings.s3_proxy_url}
        if settings.s3_proxy_user:
            options["proxies"] = {scheme: _with_user(settings) for scheme in ("http", "https")}
    credentials: dict[str, Any] = {}
    if settings.aws_access_key_id:
        credentials = {"aws_access_key_id": settings.aws_access_key_id,
                       "aws_secret_access_key": settings.secret("secret")}
    session = boto3.session.Session(**credentials)
    return session.client("s3", region_name=settings.s3_region,
                          endpoint_url=settings.store_url or None, config=Config(**options))


def _with_user(settings: S3SinkSettings) -> str:
    scheme, _, rest = settings.s3_proxy_url.partition("://")
    password = settings.secret("proxy") or ""
    return f"{scheme}://{settings.s3_proxy_user}:{password}@{rest}"


class S3Store:
    """The storage core's ``ManagedStore`` on boto3; thread-safe (uploads run in a pool)."""

    def __init__(self, settings: S3SinkSettings, client: Any = None) -> None:
        self.client = client if client is not None else s3_client(settings)
        self.bucket = settings.s3_bucket_name
        self.endpoint = settings.store_url or f"AWS region {settings.s3_region}"
        self.conditional = settings.enable_conditional_writes
        self.extra = _object_arguments(settings)
        self.explicit_keys = bool(settings.aws_access_key_id)
        self._uploads: dict[str, str] = {}
        self._parts: dict[str, dict[int, str]] = {}
        self._lock = threading.Lock()

    # -- ObjectStore ---------------------------------------------------------------------

    def put(self, name: str, data: bytes) -> None:
        condition = {"IfNoneMatch": "*"} if self.conditional else {}
        self._call(lambda: self._tolerate_existing(lambda: self.client.put_object(
            Bucket=self.bucket, Key=name, Body=data, **condition, **self.extra)))

    def stage(self, name: str, part_id: str, data: bytes) -> None:
        number = int(part_id) + 1
        upload = self._upload_id(name)
        response = self._call(lambda: self.client.upload_part(
            Bucket=self.bucket, Key=name, UploadId=upload, PartNumber=number, Body=data,
            **self._part_arguments()))
        with self._lock:
            self._parts.setdefault(name, {})[number] = response["ETag"]

    def commit(self, name: str, part_ids: list[str]) -> None:
        with self._lock:
            upload = self._uploads.get(name)
            etags = self._parts.get(name, {})
        if upload is None:
            raise RetriableError(f"S3: no multipart upload of {name} in progress")
        parts = [{"PartNumber": int(i) + 1, "ETag": etags[int(i) + 1]} for i in part_ids]
        condition = {"IfNoneMatch": "*"} if self.conditional else {}

        def complete() -> None:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=name, UploadId=upload, MultipartUpload={"Parts": parts},
                **condition, **self._part_arguments())
        try:
            completed = self._call(lambda: self._tolerate_existing(complete))
        except ConnectError:
            if not self._exists(name):
                raise
            completed = True  # a retried completion whose first answer was lost
        if not completed:
            # the object was there already; its upload is no longer needed
            self._call(lambda: self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=name, UploadId=upload))
        with self._lock:
            self._uploads.pop(name, None)
            self._parts.pop(name, None)

    def close(self) -> None:
        self.client.close()

    # -- ManagedStore --------------------------------------------------------------------

    def create(self, name: str, data: bytes) -> bool:
        return self._call(lambda: self._tolerate_existing(lambda: self.client.put_object(
            Bucket=self.bucket, Key=name, Body=data, IfNoneMatch="*", **self.extra)))

    def names(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(lambda: list(paginator.paginate(Bucket=self.bucket,
                                                           Prefix=prefix)))
        for page in pages:
            for entry in page.get("Contents", []):
                yield entry["Key"]

    def delete(self, name: str) -> None:
        self._call(lambda: self.client.delete_object(Bucket=self.bucket, Key=name))

    # -- helpers -------------------------------------------------------------------------

    def _upload_id(self, name: str) -> str:
        with self._lock:
            upload = self._uploads.get(name)
        if upload is None:
            upload = self._call(lambda: self.client.create_multipart_upload(
                Bucket=self.bucket, Key=name, **self.extra))["UploadId"]
            with self._lock:
                self._uploads[name] = upload
        return upload

    def _exists(self, name: str) -> bool:
        try:
            self._call(lambda: self.client.head_object(Bucket=self.bucket, Key=name,
                                                       **self._part_arguments()))
        except ConnectError:
            return False
        return True

    def _part_arguments(self) -> dict[str, Any]:
        """SSE-C keys go with every part and the completion; the rest only on create."""
        return {key: value for key, value in self.extra.items()
                if key.startswith("SSECustomer")}

    @staticmethod
    def _tolerate_existing(request: Callable[[], object]) -> bool:
        """Run a conditional create; False when the object existed (412)."""
        try:
            request()
        except ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "412"):
                return False
            raise
        return True

    def _call(self, request: Callable[[], T]) -> T:
        """Run ``request`` (already retried by boto3) and translate its failure."""
        try:
            return request()
        except ClientError as exc:
            raise self._translate(exc) from None
        except NoCredentialsError:
            raise S3Refusal("aws.access.key.id",
                            "S3: no credentials found; set aws.access.key.id and "
                            "aws.secret.access.key, or provide them to the default chain "
                            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, web "
                            "identity)") from None
        except EndpointConnectionError as exc:
            raise S3Unreachable(f"S3 endpoint {self.endpoint} unreachable: {exc}; check "
                                "store.url and s3.region") from None
        except (BotoCoreError, OSError) as exc:
            raise S3Unreachable(f"S3 endpoint {self.endpoint} unreachable: {exc}") from None

    def _translate(self, exc: ClientError) -> Exception:
        code = _code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        if code == "NoSuchBucket":
            return S3Refusal("s3.bucket.name", f"S3 bucket {self.bucket} does not exist at "
                             f"{self.endpoint}; create it or fix s3.bucket.name")
        if code in CREDENTIAL_CODES:
            where = "aws.access.key.id and aws.secret.access.key" if self.explicit_keys \
                else "the credentials of the default chain"
            return S3Refusal("aws.access.key.id" if self.explicit_keys else
                             "s3.credentials.provider.class",
                             f"S3 rejected the credentials ({code}: {message}); check {where}")
        if code == "AccessDenied" or status == 403:
            return S3Refusal("s3.bucket.name", f"S3 denied access to bucket {self.bucket} "
                             f"({code}: {message}); give the credentials s3:PutObject and "
                             "multipart upload rights on it, or fix s3.bucket.name")
        if code == "NoSuchUpload":
            return ConnectError(f"S3: the multipart upload of an open file is gone ({message}); "
                                "the task restarts and writes the file again")
        if code in TRANSIENT_CODES or status >= 500 or status in (408, 429):
            return RetriableError(f"S3: {code}: {message}")
        return ConnectError(f"S3: {code}: {message}")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _object_arguments(settings: S3SinkSettings) -> dict[str, Any]:
    """Encryption and ACL arguments of requests that create objects."""
    arguments: dict[str, Any] = {}
    if settings.s3_ssea_name:
        arguments["ServerSideEncryption"] = settings.s3_ssea_name
        if settings.s3_sse_kms_key_id:
            arguments["SSEKMSKeyId"] = settings.s3_sse_kms_key_id
    customer_key = settings.secret("sse")
    if customer_key:
        arguments["SSECustomerAlgorithm"] = "AES256"
        arguments["SSECustomerKey"] = customer_key
    if settings.s3_acl_canned:
        arguments["ACL"] = settings.s3_acl_canned
    return arguments
