"""Which credentials and endpoint a configuration means, judged without the Azure SDK:
validation and plugin listings need these, and the SDK costs ~25 MB of memory.

Authentication (``azblob.auth.method``):
  AUTO               the single credential that is set: connection string, SAS token or
                     account key; Azure AD when none is set.
  ACCOUNT_KEY        ``azblob.account.name`` + ``azblob.account.key`` (Shared Key).
  SAS_TOKEN          ``azblob.sas.token``.
  CONNECTION_STRING  ``azblob.connection.string`` (account, key or SAS, endpoint).
  AZURE_AD           ``DefaultAzureCredential`` from azure-identity: workload identity,
                     managed identity, ``AZURE_CLIENT_ID``/``AZURE_TENANT_ID``/
                     ``AZURE_CLIENT_SECRET``, Azure CLI login.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from kanal_worker.connectors.azure_blob.settings import AzureBlobSinkSettings


def auth_method(settings: AzureBlobSinkSettings) -> str:
    """The method AUTO stands for, or the one chosen."""
    if settings.azblob_auth_method != "AUTO":
        return settings.azblob_auth_method
    for method, secret in (("CONNECTION_STRING", "connection"), ("SAS_TOKEN", "sas"),
                           ("ACCOUNT_KEY", "key")):
        if settings.secret(secret):  # type: ignore[arg-type]
            return method
    return "AZURE_AD"


def auth_problems(settings: AzureBlobSinkSettings) -> dict[str, list[str]]:
    """Missing or ambiguous credentials, by key."""
    keys = {"connection": "azblob.connection.string", "sas": "azblob.sas.token",
            "key": "azblob.account.key"}
    given = [name for name in keys if settings.secret(name)]  # type: ignore[arg-type]
    method = settings.azblob_auth_method
    if method == "AUTO" and len(given) > 1:
        listed = " and ".join(keys[n] for n in given)
        return {keys[given[0]]: [f"{listed} are both set; keep one, or choose which to use "
                                 "with azblob.auth.method"]}
    needed = {"ACCOUNT_KEY": "key", "SAS_TOKEN": "sas", "CONNECTION_STRING": "connection"}
    if method in needed and not settings.secret(needed[method]):  # type: ignore[arg-type]
        key = keys[needed[method]]
        return {key: [f"Missing required configuration with no default value: {key} is "
                      f"needed when azblob.auth.method={method}; set it."]}
    if auth_method(settings) != "CONNECTION_STRING" and not settings.azblob_account_name \
            and not settings.store_url:
        return {"azblob.account.name": ["Missing required configuration with no default "
                                        "value; set it (or azblob.connection.string)."]}
    return {}


def account_url(settings: AzureBlobSinkSettings) -> str:
    """``store.url``, with the account appended for Azurite-style (IP or localhost) URLs
    that name none; else the account's public endpoint."""
    account = settings.azblob_account_name
    if not settings.store_url:
        return f"https://{account}.blob.core.windows.net"
    parts = urlsplit(settings.store_url)
    if parts.path.strip("/") or not account or not _is_local(parts.hostname or ""):
        return settings.store_url
    return f"{settings.store_url}/{account}"


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
