"""The Azure sink's configuration, under Confluent's keys and with Confluent's defaults.

A Confluent ``AzureBlobStorageSinkConnector`` configuration parses unchanged: the
storage keys every sink shares come from ``StorageSinkSettings``; the Azure keys
(account, credentials, container, blocks, retries) are declared here. Checks that need
several keys live in ``checks``; this module only judges one value at a time.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr, field_validator

from kanal_worker.api import setting
from kanal_worker.connectors.storage.settings import (
    CONNECTOR,
    STORAGE,
    Lower,
    StorageSinkSettings,
    Upper,
)

ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")
CONTAINER_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")

AZURE = "Azure"
AuthMethod = Literal["AUTO", "ACCOUNT_KEY", "SAS_TOKEN", "CONNECTION_STRING", "AZURE_AD"]


class AzureBlobSinkSettings(StorageSinkSettings):
    # -- Azure ---------------------------------------------------------------------------
    azblob_account_name: str | None = setting(
        None, key="azblob.account.name", importance="HIGH", group=AZURE,
        display="Azure Storage Account Name",
        doc="The storage account name (3-24 lowercase letters and digits). Required unless "
            "azblob.connection.string names the account.")
    azblob_account_key: SecretStr | None = setting(
        None, key="azblob.account.key", importance="HIGH", group=AZURE,
        display="Azure Storage Account Key",
        doc="The storage account key (Shared Key authentication).")
    azblob_sas_token: SecretStr | None = setting(
        None, key="azblob.sas.token", importance="HIGH", group=AZURE,
        display="Azure SAS Token",
        doc="Kanal: a shared access signature (account or container SAS with create, write "
            "and add permissions) used instead of the account key.")
    azblob_connection_string: SecretStr | None = setting(
        None, key="azblob.connection.string", importance="HIGH", group=AZURE,
        display="Azure Storage Connection String",
        doc="Kanal: a storage connection string; it carries the account, its credential and "
            "its endpoint (store.url is then ignored).")
    azblob_auth_method: Annotated[AuthMethod, Upper] = setting(
        "AUTO", key="azblob.auth.method", importance="MEDIUM", group=AZURE,
        display="Authentication Method",
        doc="Kanal: how to authenticate. AUTO uses the one credential that is set "
            "(connection string, SAS token or account key) and Azure AD "
            "(DefaultAzureCredential: workload identity, managed identity, AZURE_CLIENT_* "
            "variables, Azure CLI) when none is; the other values force one method.")
    azblob_container_name: str = setting(
        "default", key="azblob.container.name", importance="MEDIUM", group=AZURE,
        display="Azure Blob Container Name",
        doc="The container (3-63 lowercase letters, digits and single hyphens). Kanal "
            "creates it when it does not exist and the credential allows it.")
    store_url: str | None = setting(
        None, key="store.url", importance="HIGH", group=STORAGE, display="Store URL",
        doc="The blob endpoint, e.g. http://127.0.0.1:10000/devstoreaccount1 for Azurite; "
            "default https://<account>.blob.core.windows.net. For an IP or localhost URL "
            "without a path the account name is appended, as Azurite expects.")
    azblob_block_size: int = setting(
        26214400, key="azblob.block.size", importance="HIGH", group=AZURE,
        display="Block Size", ge=5242880, le=104857600,
        doc="Size in bytes of the blocks staged for each blob; a file smaller than one "
            "block is uploaded in a single request.")
    azblob_retry_type: Annotated[Literal["EXPONENTIAL", "FIXED"], Upper] = setting(
        "EXPONENTIAL", key="azblob.retry.type", importance="LOW", group=AZURE,
        display="Retry Type",
        doc="EXPONENTIAL starts with azblob.retry.backoff.ms and doubles up to "
            "azblob.retry.max.backoff.ms; FIXED always waits azblob.retry.backoff.ms.")
    azblob_retry_retries: int = setting(
        3, key="azblob.retry.retries", importance="MEDIUM", group=AZURE, ge=1,
        display="Retries",
        doc="Retries of one request by the Azure client before the runtime takes over "
            "(it backs off and retries the write, showing 'retrying write' in the status).")
    azblob_retry_backoff_ms: int = setting(
        4000, key="azblob.retry.backoff.ms", importance="LOW", group=AZURE, ge=0,
        display="Retry Backoff (ms)",
        doc="Delay before the first retry of a request, in milliseconds.")
    azblob_retry_max_backoff_ms: int = setting(
        120000, key="azblob.retry.max.backoff.ms", importance="LOW", group=AZURE, ge=1,
        display="Max Retry Backoff (ms)",
        doc="Longest delay between retries of a request, in milliseconds.")
    azblob_connection_timeout_ms: int = setting(
        30000, key="azblob.connection.timeout.ms", importance="MEDIUM", group=AZURE, ge=1,
        display="Connection Timeout (ms)",
        doc="Longest time one try of an HTTP request may take (connect and read), in "
            "milliseconds; raise it for large blocks over slow links.")

    az_compression_type: Annotated[Literal["none", "gzip"], Lower] = setting(
        "none", key="az.compression.type", importance="LOW", group=CONNECTOR,
        display="Compression type",
        doc="Compression of JsonFormat and ByteArrayFormat files (gzip adds .gz).")
    az_compression_level: int = setting(
        -1, key="az.compression.level", importance="LOW", group=CONNECTOR, ge=-1, le=9,
        display="Compression Level",
        doc="gzip level 0-9; -1 is zlib's default (6).")

    @property
    def part_size(self) -> int:
        return self.azblob_block_size

    @property
    def compression_type(self) -> str:
        return self.az_compression_type

    @property
    def compression_level(self) -> int:
        return self.az_compression_level

    @field_validator("azblob_account_name")
    @classmethod
    def _account_name(cls, value: str | None) -> str | None:
        if value and not ACCOUNT_NAME.match(value):
            raise ValueError(f"Invalid account name {value!r}: use 3-24 lowercase letters and "
                             "digits")
        return value or None

    @field_validator("azblob_container_name")
    @classmethod
    def _container_name(cls, value: str) -> str:
        if not CONTAINER_NAME.match(value):
            raise ValueError(f"Invalid container name {value!r}: use 3-63 lowercase letters, "
                             "digits and single hyphens, starting and ending with a letter or "
                             "digit")
        return value

    @field_validator("store_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Invalid URL {value!r}: use http(s)://host[:port][/account]")
        return value.rstrip("/")

    def secret(self, name: Literal["key", "sas", "connection"]) -> str | None:
        """The secret's value, None when it is unset or blank."""
        value = {"key": self.azblob_account_key, "sas": self.azblob_sas_token,
                 "connection": self.azblob_connection_string}[name]
        text = value.get_secret_value().strip() if value is not None else ""
        return text or None

