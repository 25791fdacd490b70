"""The S3 sink's configuration, under Confluent kafka-connect-s3's keys and defaults.

A Confluent ``S3SinkConnector`` configuration parses unchanged: the storage keys every
sink shares come from ``StorageSinkSettings``; the S3 keys (bucket, region, endpoint,
credentials, encryption, proxy, parts) are declared here. Checks that need several
keys are in ``s3_problems``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr, field_validator

from kanal_worker.api import setting
from kanal_worker.connectors.storage.settings import (
    MEBIBYTE,
    STORAGE,
    Lower,
    StorageSinkSettings,
)

S3 = "S3"
BUCKET_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9][a-z0-9.-]*[a-z0-9]$")
STORAGE_CLASS = "io.confluent.connect.s3.storage.S3Storage"
DEFAULT_CHAIN = "com.amazonaws.auth.DefaultAWSCredentialsProviderChain"
SSE_ALGORITHMS = ("", "AES256", "aws:kms")
MIN_PART = 5 * MEBIBYTE
"""S3 refuses multipart parts below 5 MiB, except the last."""


class S3SinkSettings(StorageSinkSettings):
    s3_bucket_name: str = setting(
        key="s3.bucket.name", importance="HIGH", group=S3, display="S3 Bucket",
        doc="The bucket the files are written to. It must exist; Kanal does not create it.")
    s3_region: str = setting(
        "us-west-2", key="s3.region", importance="MEDIUM", group=S3, display="AWS region",
        doc="The region of the bucket (also used to sign requests to store.url).")
    store_url: str | None = setting(
        None, key="store.url", importance="HIGH", group=STORAGE, display="Store URL",
        doc="An S3-compatible endpoint such as http://127.0.0.1:17070 (MinIO, versitygw, a "
            "VPC endpoint); default: AWS's endpoint of s3.region.")
    s3_path_style_access_enabled: bool = setting(
        True, key="s3.path.style.access.enabled", importance="LOW", group=S3,
        display="Enable Path Style Access to S3",
        doc="Address the bucket in the path (http://host/bucket/key) rather than in the "
            "host name (http://bucket.host/key).")
    s3_part_size: int = setting(
        26214400, key="s3.part.size", importance="HIGH", group=S3, display="S3 Part Size",
        ge=MIN_PART, le=2**31 - 1,
        doc="Size in bytes of the parts of a multipart upload (at least 5 MiB, as S3 "
            "requires); a file smaller than one part is uploaded in a single request. "
            "Memory per open file is about one part.")
    s3_compression_type: Annotated[Literal["none", "gzip"], Lower] = setting(
        "none", key="s3.compression.type", importance="LOW", group=S3,
        display="Compression type",
        doc="Compression of JsonFormat and ByteArrayFormat files (gzip adds .gz).")
    s3_compression_level: int = setting(
        -1, key="s3.compression.level", importance="LOW", group=S3, ge=-1, le=9,
        display="Compression Level", doc="gzip level 0-9; -1 is zlib's default (6).")
    s3_ssea_name: str = setting(
        "", key="s3.ssea.name", importance="LOW", group=S3,
        display="S3 Server Side Encryption Algorithm",
        doc="Server-side encryption: AES256 (SSE-S3) or aws:kms (SSE-KMS, with "
            "s3.sse.kms.key.id); empty for the bucket's default.")
    s3_sse_kms_key_id: str = setting(
        "", key="s3.sse.kms.key.id", importance="LOW", group=S3,
        display="S3 Server Side Encryption Key",
        doc="The KMS key of aws:kms encryption (empty: the account's default key).")
    s3_sse_customer_key: SecretStr | None = setting(
        None, key="s3.sse.customer.key", importance="LOW", group=S3,
        display="S3 Server Side Encryption Customer-Provided Key (SSE-C)",
        doc="A base64 256-bit key for SSE-C (the objects are then encrypted with it and "
            "readable only with it); excludes s3.ssea.name.")
    s3_acl_canned: str = setting(
        "", key="s3.acl.canned", importance="LOW", group=S3, display="S3 Canned ACL",
        doc="A canned ACL for the objects, e.g. bucket-owner-full-control; empty for none.")
    aws_access_key_id: str = setting(
        "", key="aws.access.key.id", importance="HIGH", group=S3, display="AWS Access Key ID",
        doc="The access key; with aws.secret.access.key it replaces the default credential "
            "chain.")
    aws_secret_access_key: SecretStr | None = setting(
        None, key="aws.secret.access.key", importance="HIGH", group=S3,
        display="AWS Secret Access Key", doc="The secret of aws.access.key.id.")
    s3_credentials_provider_class: str = setting(
        DEFAULT_CHAIN, key="s3.credentials.provider.class", importance="LOW", group=S3,
        display="AWS Credentials Provider Class",
        doc="Accepted for compatibility: without aws.access.key.id Kanal always uses "
            "boto3's default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the shared "
            "credentials and config files with AWS_PROFILE, web identity with "
            "AWS_ROLE_ARN/AWS_WEB_IDENTITY_TOKEN_FILE as EKS pods get it, container and "
            "instance metadata).")
    s3_proxy_url: str = setting(
        "", key="s3.proxy.url", importance="LOW", group=S3, display="S3 Proxy URL",
        doc="An HTTP proxy for S3 requests, e.g. http://proxy:3128; empty for none.")
    s3_proxy_user: str = setting(
        "", key="s3.proxy.user", importance="LOW", group=S3, display="S3 Proxy User",
        doc="User name for the proxy.")
    s3_proxy_password: SecretStr | None = setting(
        None, key="s3.proxy.password", importance="LOW", group=S3,
        display="S3 Proxy Password", doc="Password for the proxy.")
    s3_part_retries: int = setting(
        3, key="s3.part.retries", importance="MEDIUM", group=S3, ge=0,
        display="S3 Part Upload Retries",
        doc="Retries of one request by the S3 client before the runtime takes over (it "
            "backs off and retries the write, showing 'retrying write' in the status).")
    s3_retry_backoff_ms: int = setting(
        200, key="s3.retry.backoff.ms", importance="LOW", group=S3, ge=0,
        display="Retry Backoff (ms)",
        doc="Accepted for compatibility; the S3 client's standard retry mode picks the delays.")
    s3_connection_timeout_ms: int = setting(
        30000, key="s3.connection.timeout.ms", importance="LOW", group=S3, ge=1,
        display="Connection Timeout (ms)",
        doc="Longest time to connect, and to wait for each response, in milliseconds.")
    enable_conditional_writes: bool = setting(
        False, key="enable.conditional.writes", importance="LOW", group=S3,
        display="Enable Conditional Writes",
        doc="Create objects with If-None-Match: * (single puts and multipart "
            "completions), so an object is never replaced; an object that already exists is "
            "the same file written before a crash and counts as written.")
    storage_class: str = setting(
        STORAGE_CLASS, key="storage.class", importance="HIGH", group=STORAGE,
        display="Storage Class",
        doc="Confluent's storage class; only io.confluent.connect.s3.storage.S3Storage.")

    @property
    def part_size(self) -> int:
        return self.s3_part_size

    @property
    def compression_type(self) -> str:
        return self.s3_compression_type

    @property
    def compression_level(self) -> int:
        return self.s3_compression_level

    @field_validator("s3_bucket_name")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not BUCKET_NAME.match(value):
            raise ValueError(f"Invalid bucket name {value!r}: use 3-63 lowercase letters, "
                             "digits, dots and hyphens, starting and ending with a letter "
                             "or digit")
        return value

    @field_validator("s3_ssea_name")
    @classmethod
    def _algorithm(cls, value: str) -> str:
        known = {name.lower(): name for name in SSE_ALGORITHMS}
        if value.lower() not in known:
            raise ValueError(f"Unknown server-side encryption algorithm {value!r}; use "
                             "AES256, aws:kms or nothing")
        return known[value.lower()]

    @field_validator("store_url", "s3_proxy_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Invalid URL {value!r}: use http(s)://host[:port]")
        return value.rstrip("/")

    @field_validator("storage_class")
    @classmethod
    def _storage_class(cls, value: str) -> str:
        if value.rsplit(".", 1)[-1] != "S3Storage":
            raise ValueError(f"Unknown storage class {value}; use {STORAGE_CLASS}")
        return value

    def secret(self, name: Literal["secret", "sse", "proxy"]) -> str | None:
        """The secret's value, None when it is unset or blank."""
        value = {"secret": self.aws_secret_access_key, "sse": self.s3_sse_customer_key,
                 "proxy": self.s3_proxy_password}[name]
        text = value.get_secret_value().strip() if value is not None else ""
        return text or None


def s3_problems(settings: S3SinkSettings) -> dict[str, list[str]]:
    """Problems that need several S3 keys to see, by key."""
    problems: dict[str, list[str]] = {}
    if bool(settings.aws_access_key_id) != bool(settings.secret("secret")):
        missing = "aws.secret.access.key" if settings.aws_access_key_id else "aws.access.key.id"
        problems[missing] = ["aws.access.key.id and aws.secret.access.key go together: set "
                             "both, or neither to use the default credential chain"]
    if settings.secret("sse") and settings.s3_ssea_name:
        problems["s3.sse.customer.key"] = ["s3.sse.customer.key (SSE-C) excludes "
                                           "s3.ssea.name; set only one"]
    if settings.s3_sse_kms_key_id and settings.s3_ssea_name != "aws:kms":
        problems["s3.sse.kms.key.id"] = ["s3.sse.kms.key.id needs s3.ssea.name=aws:kms"]
    return problems
