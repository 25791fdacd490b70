"""The GCS sink's configuration, under Confluent's keys and with Confluent's defaults.

A Confluent ``GcsSinkConnector`` configuration parses unchanged: the storage keys every
sink shares come from ``StorageSinkSettings``; the GCS keys (bucket, part size,
credentials) are declared here, ``store.url`` points the sink at another endpoint (an
emulator, a private endpoint).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import SecretStr, field_validator

from kanal_worker.api import setting
from kanal_worker.connectors.storage.settings import STORAGE, Lower, StorageSinkSettings

GCS = "GCS"
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
CHUNK = 256 * 1024
"""Every chunk of a resumable upload but the last is a multiple of 256 KiB."""


class GcsSinkSettings(StorageSinkSettings):
    # -- GCS -----------------------------------------------------------------------------
    gcs_bucket_name: str = setting(
        key="gcs.bucket.name", importance="HIGH", group=GCS, display="GCS Bucket",
        doc="The bucket the files are written to; it must exist.")
    gcs_part_size: int = setting(
        26214400, key="gcs.part.size", importance="HIGH", group=GCS, display="Part Size",
        ge=5242880, le=2147483647,
        doc="Bytes per chunk of a file's resumable upload, a multiple of 262144 (256 KiB); "
            "a file smaller than one part is uploaded in a single request.")
    gcs_credentials_path: str | None = setting(
        None, key="gcs.credentials.path", importance="HIGH", group=GCS,
        display="GCS Credentials Path",
        doc="Path of a service account key file. With neither this nor "
            "gcs.credentials.json, Google's application default credentials are used "
            "(GOOGLE_APPLICATION_CREDENTIALS, workload identity, the metadata server), or "
            "none when store.url points at an emulator.")
    gcs_credentials_json: SecretStr | None = setting(
        None, key="gcs.credentials.json", importance="HIGH", group=GCS,
        display="GCS Credentials JSON",
        doc="The content of a service account key file (hidden like a password).")
    gcs_compression_type: Annotated[Literal["none", "gzip"], Lower] = setting(
        "none", key="gcs.compression.type", importance="LOW", group=GCS,
        display="Compression type",
        doc="Kanal (after S3's s3.compression.type): compression of JsonFormat and "
            "ByteArrayFormat files (.gz is appended).")
    gcs_compression_level: int = setting(
        -1, key="gcs.compression.level", importance="LOW", group=GCS, ge=-1, le=9,
        display="Compression Level", doc="Kanal: gzip level 0-9; -1 is zlib's default.")
    store_url: str | None = setting(
        None, key="store.url", importance="HIGH", group=STORAGE, display="Store URL",
        doc="The JSON API endpoint, e.g. http://127.0.0.1:14443 for fake-gcs-server; "
            "default https://storage.googleapis.com. An http:// endpoint without "
            "credentials is used anonymously.")

    @property
    def part_size(self) -> int:
        return self.gcs_part_size

    @property
    def compression_type(self) -> str:
        return self.gcs_compression_type

    @property
    def compression_level(self) -> int:
        return self.gcs_compression_level

    @field_validator("gcs_bucket_name")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not BUCKET_NAME.match(value):
            raise ValueError(f"Invalid bucket name {value!r}: 3-222 lowercase letters, digits, "
                             "dots, hyphens and underscores, starting and ending with a "
                             "letter or digit")
        return value

    @field_validator("gcs_part_size")
    @classmethod
    def _whole_chunks(cls, value: int) -> int:
        if value % CHUNK:
            raise ValueError(f"{value} is not a multiple of 262144 (256 KiB), which GCS "
                             f"requires of resumable upload chunks; use "
                             f"{(value // CHUNK + 1) * CHUNK}")
        return value


def credential_problems(settings: GcsSinkSettings) -> dict[str, list[str]]:
    if settings.gcs_credentials_path and settings.gcs_credentials_json is not None:
        return {"gcs.credentials.json": ["Set gcs.credentials.path or gcs.credentials.json, "
                                         "not both"]}
    return {}
