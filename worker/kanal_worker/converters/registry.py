"""The schema registry layer the Avro, Protobuf and JSON Schema converters share.

One client (confluent-kafka's ``SchemaRegistryClient``) configured from Confluent's keys,
one retry rule (``api.backoff``) and one translation of registry failures into Kanal's
errors: an unreachable registry is a ``RetriableError`` (the task backs off and retries,
its status says so), refused credentials a ``ConfigError`` naming the key to fix, an
unknown schema id or an incompatible schema a ``DataError`` (``errors.*`` decides). The
converter settings Confluent's converters share (subject name strategies, registration,
caching) and the wire header (a zero magic byte and a 4-byte big-endian schema id) live
here too, so the three converters read alike.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from confluent_kafka.schema_registry import (
    RegisteredSchema,
    SchemaReference,
    SchemaRegistryClient,
    SchemaRegistryError,
)
from confluent_kafka.schema_registry import Schema as RegistrySchema

# the HTTP library the client was built with (httpx or its successor): its network errors
from confluent_kafka.schema_registry.common._httpx_compat import httpx
from pydantic import SecretStr, field_validator

from kanal_worker.api import ConfigError, DataError, RetriableError, Settings, setting
from kanal_worker.api.backoff import exponential_backoff
from kanal_worker.api.plugins import Converter
from kanal_worker.config.kafka_clients import truststore_pem

__all__ = ["HEADER", "MAGIC_BYTE", "Lru", "RegisteredSchema", "RegistryConverter",
           "RegistryConverterSettings", "RegistrySchema", "SchemaReference", "SchemaRegistry",
           "SchemaRegistrySettings"]

MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")
STRATEGY_PACKAGE = "io.confluent.kafka.serializers.subject."
STRATEGIES = ("TopicNameStrategy", "RecordNameStrategy", "TopicRecordNameStrategy")
RETRIABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
AUTH_STATUS = frozenset({401, 403})
SCHEMA_NOT_FOUND = 40403
SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
INCOMPATIBLE = 409
INVALID_SCHEMA = 42201
REQUEST_TIMEOUT_S = 30.0

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class SchemaRegistrySettings(Settings):
    """How to reach the registry: Confluent's client keys (``schema.registry.*``,
    ``basic.auth.*``, ``bearer.auth.*``, retries)."""

    schema_registry_url: str = setting(
        key="schema.registry.url", importance="HIGH",
        doc="Comma-separated URLs of the schema registry; a request that fails on one "
            "(network error, HTTP 5xx) is sent to the next.")
    basic_auth_credentials_source: Literal["URL", "USER_INFO"] = setting(
        "URL", key="basic.auth.credentials.source",
        doc="Where the registry's basic-auth credentials come from: the user info of "
            "schema.registry.url (URL) or basic.auth.user.info (USER_INFO).")
    basic_auth_user_info: SecretStr = setting(
        SecretStr(""), key="basic.auth.user.info",
        doc="<user>:<password> for the registry when basic.auth.credentials.source is "
            "USER_INFO.")
    bearer_auth_credentials_source: Literal["STATIC_TOKEN", "OAUTHBEARER"] = setting(
        "STATIC_TOKEN", key="bearer.auth.credentials.source",
        doc="Bearer authentication: a fixed bearer.auth.token (STATIC_TOKEN, used when the "
            "token is set) or tokens fetched with the OAuth client credentials grant from "
            "bearer.auth.issuer.endpoint.url (OAUTHBEARER).")
    bearer_auth_token: SecretStr = setting(
        SecretStr(""), key="bearer.auth.token",
        doc="The bearer token sent to the registry (STATIC_TOKEN).")
    bearer_auth_logical_cluster: str = setting(
        "", key="bearer.auth.logical.cluster",
        doc="The registry's logical cluster id sent with bearer tokens (target-sr-cluster).")
    bearer_auth_identity_pool_id: str = setting(
        "", key="bearer.auth.identity.pool.id",
        doc="The identity pool id sent with bearer tokens, if the registry wants one.")
    bearer_auth_issuer_endpoint_url: str = setting(
        "", key="bearer.auth.issuer.endpoint.url",
        doc="The OAuth token endpoint (OAUTHBEARER).")
    bearer_auth_client_id: str = setting(
        "", key="bearer.auth.client.id", doc="The OAuth client id (OAUTHBEARER).")
    bearer_auth_client_secret: SecretStr = setting(
        SecretStr(""), key="bearer.auth.client.secret",
        doc="The OAuth client secret (OAUTHBEARER).")
    bearer_auth_scope: str = setting(
        "", key="bearer.auth.scope", doc="The OAuth scope requested (OAUTHBEARER).")
    ssl_truststore_location: str = setting(
        "", key="schema.registry.ssl.truststore.location",
        doc="The certificates trusted for an https registry: a PEM file, or a PKCS12 or "
            "JKS trust store. Empty: the system's trusted authorities.")
    ssl_truststore_password: SecretStr = setting(
        SecretStr(""), key="schema.registry.ssl.truststore.password",
        doc="The password of schema.registry.ssl.truststore.location (PKCS12/JKS).")
    ssl_keystore_location: str = setting(
        "", key="schema.registry.ssl.keystore.location",
        doc="The client certificate and key for a registry that asks for mutual TLS: a PEM "
            "file or a PKCS12 key store (a JKS key store must be converted to PKCS12 first, "
            "keytool -importkeystore -deststoretype PKCS12).")
    ssl_keystore_password: SecretStr = setting(
        SecretStr(""), key="schema.registry.ssl.keystore.password",
        doc="The password of the PKCS12 key store in schema.registry.ssl.keystore.location.")
    ssl_key_password: SecretStr = setting(
        SecretStr(""), key="schema.registry.ssl.key.password",
        doc="The password of the private key in schema.registry.ssl.keystore.location.")
    max_retries: int = setting(
        3, key="max.retries", ge=0,
        doc="How often a registry request failing with a network error or HTTP 5xx is "
            "retried (with exponential backoff) before the task backs off as a whole.")
    retries_wait_ms: int = setting(
        1000, key="retries.wait.ms", ge=0,
        doc="The first delay between retries of a registry request; it doubles per retry.")
    retries_max_wait_ms: int = setting(
        20000, key="retries.max.wait.ms", ge=0,
        doc="The longest delay between retries of a registry request.")
    latest_cache_ttl_sec: int = setting(
        -1, key="latest.cache.ttl.sec",
        doc="How long the latest version of a subject (use.latest.version) is cached, in "
            "seconds; -1: until the worker restarts.")

    @field_validator("schema_registry_url")
    @classmethod
    def _urls(cls, value: str) -> str:
        urls = [u.strip() for u in value.split(",") if u.strip()]
        bad = [u for u in urls if urllib.parse.urlsplit(u).scheme not in ("http", "https")]
        if not urls or bad:
            raise ValueError(f"needs http:// or https:// URLs separated by commas, not "
                             f"{', '.join(bad) or repr(value)}")
        return ",".join(urls)


def _strategy_key(side: str) -> Any:
    return setting(
        f"{STRATEGY_PACKAGE}TopicNameStrategy", key=f"{side}.subject.name.strategy",
        doc=f"The subject of {side}s: TopicNameStrategy (<topic>-{side}), "
            f"RecordNameStrategy (<record name>) or TopicRecordNameStrategy "
            f"(<topic>-<record name>), with or without the package {STRATEGY_PACKAGE}",
        validate_default=True)


class RegistryConverterSettings(SchemaRegistrySettings):
    """The keys Confluent's Avro, Protobuf and JSON Schema converters share."""

    auto_register_schemas: bool = setting(
        True, key="auto.register.schemas",
        doc="Register the schema of each written record under its subject when it is new.")
    use_latest_version: bool = setting(
        False, key="use.latest.version",
        doc="Write with the subject's latest registered schema (with "
            "auto.register.schemas=false).")
    latest_compatibility_strict: bool = setting(
        True, key="latest.compatibility.strict",
        doc="With use.latest.version: check with the registry that the latest version is "
            "compatible with the record's schema before writing with it.")
    key_subject_name_strategy: str = _strategy_key("key")
    value_subject_name_strategy: str = _strategy_key("value")
    normalize_schemas: bool = setting(
        False, key="normalize.schemas",
        doc="Ask the registry to normalize schemas when registering and looking them up.")
    schemas_cache_config: int = setting(
        1000, key="schemas.cache.config", ge=1,
        doc="How many schemas are cached: registry answers and the Connect schemas "
            "converted from them.")
    enhanced_avro_schema_support: bool = setting(
        False, key="enhanced.avro.schema.support",
        doc="Keep Avro enum symbols and package names of records in the Connect schema "
            "(and write them back).")
    connect_meta_data: bool = setting(
        True, key="connect.meta.data",
        doc="Keep Connect schema names, versions, docs and parameters in the written schema.")

    @field_validator("key_subject_name_strategy", "value_subject_name_strategy")
    @classmethod
    def _strategy(cls, value: str) -> str:
        name = value.removeprefix(STRATEGY_PACKAGE)
        if name not in STRATEGIES:
            raise ValueError(f"unknown subject name strategy {value}; use one of "
                             f"{', '.join(STRATEGY_PACKAGE + s for s in STRATEGIES)}")
        return name


class SchemaRegistry:
    """A registry client with Kanal's retries and errors; every call goes through ``_call``.

    The confluent client tries each URL of the list once per call (fail-over); Kanal
    retries the whole list with ``exponential_backoff`` (the client's own retries are
    off, so there is one rule), then raises ``RetriableError``.
    """

    def __init__(self, settings: SchemaRegistrySettings, cache_capacity: int = 1000,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.urls = [_without_user_info(u) for u in settings.schema_registry_url.split(",")]
        self.settings = settings
        self.sleep = sleep
        self.auth_key = ("bearer.auth.token" if _uses_bearer(settings)
                         else "basic.auth.user.info")
        config = _client_config(settings, cache_capacity)
        try:
            self.client = SchemaRegistryClient(config)
        except (ValueError, TypeError) as exc:
            raise ConfigError("schema.registry.url", f"the registry client refused the "
                              f"settings: {exc}") from None

    def register(self, subject: str, schema: RegistrySchema, normalize: bool = False) -> int:
        return int(self._call(f"registering a schema under subject {subject}",
                              lambda: self.client.register_schema(subject, schema, normalize)))

    def lookup(self, subject: str, schema: RegistrySchema,
               normalize: bool = False) -> RegisteredSchema:
        return self._call(f"looking up the schema under subject {subject}",
                          lambda: self.client.lookup_schema(subject, schema, normalize))

    def latest(self, subject: str) -> RegisteredSchema:
        return self._call(f"reading the latest schema of subject {subject}",
                          lambda: self.client.get_latest_version(subject))

    def version(self, subject: str, version: int) -> RegisteredSchema:
        return self._call(f"reading version {version} of subject {subject}",
                          lambda: self.client.get_version(subject, version))

    def schema(self, schema_id: int) -> RegistrySchema:
        return self._call(f"reading the schema with id {schema_id}",
                          lambda: self.client.get_schema(schema_id))

    def compatible(self, subject: str, schema: RegistrySchema) -> bool:
        return bool(self._call(f"checking the compatibility of a schema with subject {subject}",
                               lambda: self.client.test_compatibility(subject, schema)))

    def references(self, schema: RegistrySchema) -> dict[str, str]:
        """The texts of every schema ``schema`` references, directly or not, by name."""
        found: dict[str, str] = {}
        pending = list(schema.references or [])
        while pending:
            reference = pending.pop()
            if reference.name in found:
                continue
            registered = self.version(reference.subject, reference.version)
            found[reference.name] = registered.schema.schema_str
            pending.extend(registered.schema.references or [])
        return found

    def _call(self, what: str, request: Callable[[], T]) -> T:
        retry = 0
        while True:
            try:
                return request()
            except SchemaRegistryError as exc:
                if exc.http_status_code not in RETRIABLE_STATUS:
                    raise self._refused(what, exc) from None
                failure = f"HTTP {exc.http_status_code} {exc.error_message}"
            except httpx.TransportError as exc:
                failure = f"{type(exc).__name__}: {exc}"
            if retry >= self.settings.max_retries:
                raise RetriableError(
                    f"Schema registry {', '.join(self.urls)} unreachable while {what} "
                    f"({failure}) after {retry + 1} attempt(s); the task retries. Check that "
                    "the registry is up and schema.registry.url is right.")
            self.sleep(exponential_backoff(retry, self.settings.retries_wait_ms / 1000,
                                           self.settings.retries_max_wait_ms / 1000))
            retry += 1

    def _refused(self, what: str, exc: SchemaRegistryError) -> Exception:
        status, code, message = exc.http_status_code, exc.error_code, exc.error_message
        where = f"Schema registry {', '.join(self.urls)}"
        if status in AUTH_STATUS:
            fix = ("set bearer.auth.token to a valid token"
                   if self.auth_key == "bearer.auth.token" else
                   "give valid credentials as basic.auth.user.info=<user>:<password> with "
                   "basic.auth.credentials.source=USER_INFO, or as the user info of "
                   "schema.registry.url")
            return ConfigError(self.auth_key, f"{where} refused the credentials while {what} "
                                              f"(HTTP {status}); {fix}")
        if code == SCHEMA_NOT_FOUND:
            return DataError(f"{where} has no schema with that id ({what}): the record was "
                             "written with a registry this converter does not use; point "
                             "schema.registry.url at the producer's registry")
        if code in (SUBJECT_NOT_FOUND, VERSION_NOT_FOUND):
            return DataError(f"{where}: {message} ({what}); register the schema first or set "
                             "auto.register.schemas=true")
        if status == INCOMPATIBLE:
            return DataError(f"{where} rejected an incompatible schema ({what}): {message}. "
                             "Make the change compatible (e.g. new fields optional or with a "
                             "default) or change the subject's compatibility in the registry")
        return DataError(f"{where} refused {what}: HTTP {status} (error {code}) {message}")


def _uses_bearer(settings: SchemaRegistrySettings) -> bool:
    return (settings.bearer_auth_credentials_source == "OAUTHBEARER"
            or bool(settings.bearer_auth_token.get_secret_value()))


def _without_user_info(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)).rstrip("/")


def _client_config(settings: SchemaRegistrySettings, cache_capacity: int) -> dict[str, Any]:
    urls = settings.schema_registry_url
    config: dict[str, Any] = {"url": urls, "max.retries": 0, "timeout": REQUEST_TIMEOUT_S,
                              "cache.capacity": cache_capacity}
    if settings.latest_cache_ttl_sec >= 0:
        config["cache.latest.ttl.sec"] = settings.latest_cache_ttl_sec
    if settings.basic_auth_credentials_source == "USER_INFO":
        user_info = settings.basic_auth_user_info.get_secret_value()
        if ":" not in user_info:
            raise ConfigError("basic.auth.user.info", "must be <user>:<password> when "
                              "basic.auth.credentials.source is USER_INFO")
        config["url"] = ",".join(_without_user_info(u) for u in urls.split(","))
        config["basic.auth.user.info"] = user_info
    if _uses_bearer(settings):
        config.update({"bearer.auth.credentials.source": settings.bearer_auth_credentials_source,
                       "bearer.auth.logical.cluster": settings.bearer_auth_logical_cluster})
        if settings.bearer_auth_identity_pool_id:
            config["bearer.auth.identity.pool.id"] = settings.bearer_auth_identity_pool_id
        if settings.bearer_auth_credentials_source == "STATIC_TOKEN":
            config["bearer.auth.token"] = settings.bearer_auth_token.get_secret_value()
        else:
            config.update({
                "bearer.auth.issuer.endpoint.url": settings.bearer_auth_issuer_endpoint_url,
                "bearer.auth.client.id": settings.bearer_auth_client_id,
                "bearer.auth.client.secret": settings.bearer_auth_client_secret
                .get_secret_value(),
                "bearer.auth.scope": settings.bearer_auth_scope})
    if settings.ssl_truststore_location:
        config["ssl.ca.location"] = _pem_file(truststore_pem(
            settings.ssl_truststore_location,
            settings.ssl_truststore_password.get_secret_value() or None))
    if settings.ssl_keystore_location:
        key_password = (settings.ssl_key_password.get_secret_value()
                        or settings.ssl_keystore_password.get_secret_value())
        location = _client_pem(settings.ssl_keystore_location,
                               settings.ssl_keystore_password.get_secret_value(), key_password)
        config["ssl.certificate.location"] = config["ssl.key.location"] = location
        if key_password:
            config["ssl.key.password"] = key_password
    return config


def _client_pem(location: str, store_password: str, key_password: str) -> str:
    """The PEM file of the client certificate and key at ``location``: the file itself when
    it is PEM; a PKCS12 key store (Java's default type) becomes a PEM file whose key stays
    encrypted with ``key_password``, as it was in the store."""
    key = "schema.registry.ssl.keystore.location"
    try:
        data = Path(location).read_bytes()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {location}: {exc.strerror}") from None
    if data.lstrip()[:10] == b"-----BEGIN":
        return location
    if data[:4] in (b"\xfe\xed\xfe\xed", b"\xce\xce\xce\xce"):
        raise ConfigError(key, f"{location} is a JKS key store; convert it to PKCS12 with "
                               "keytool -importkeystore -deststoretype PKCS12, or give PEM")
    from cryptography.hazmat.primitives.serialization import (
        BestAvailableEncryption,
        Encoding,
        NoEncryption,
        PrivateFormat,
        pkcs12,
    )
    try:
        private_key, certificate, chain = pkcs12.load_key_and_certificates(
            data, store_password.encode() or None)
    except ValueError:
        raise ConfigError(key, f"{location} cannot be read as a PKCS12 key store: check "
                               "schema.registry.ssl.keystore.password") from None
    if private_key is None or certificate is None:
        raise ConfigError(key, f"{location} holds no private key with its certificate")
    protection = (BestAvailableEncryption(key_password.encode()) if key_password
                  else NoEncryption())
    pem = private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, protection) + b"".join(
        cert.public_bytes(Encoding.PEM) for cert in (certificate, *chain))
    return _pem_file(pem.decode())


def _pem_file(pem: str) -> str:
    """A file holding ``pem``, readable by this user only: the client reads certificates
    and keys from paths only."""
    path = Path(tempfile.gettempdir()) / \
        f"kanal-registry-{hashlib.sha256(pem.encode()).hexdigest()[:16]}.pem"
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(pem)
    return str(path)


# -- converters ------------------------------------------------------------------------


class Lru(OrderedDict[K, T]):
    """At most ``size`` entries; the least recently stored goes first."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: K, value: T) -> T:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)
        return value


class RegistryConverter(Converter):
    """What a registry-backed converter does around its format: settings, subjects, the
    writer's schema id (registered, looked up or the latest) and the wire header.

    A subclass converts Connect schemas and values to its format and back; it writes
    ``header(schema_id)`` then its payload, and reads with ``read_header``.
    """

    settings: ClassVar[type[Settings]] = RegistryConverterSettings
    schema_type: ClassVar[str]
    """The registry's name of the format: AVRO, PROTOBUF or JSON."""

    def __init__(self, config: Mapping[str, str], is_key: bool,
                 registry: SchemaRegistry | None = None) -> None:
        super().__init__(config, is_key)
        self.options: RegistryConverterSettings = self.settings.parse(config)
        self.side = "key" if is_key else "value"
        self.strategy = (self.options.key_subject_name_strategy if is_key
                         else self.options.value_subject_name_strategy)
        self.registry = registry or SchemaRegistry(
            self.options, cache_capacity=self.options.schemas_cache_config)
        self._readers: Lru[int, Any] = Lru(self.options.schemas_cache_config)

    def reader(self, schema_id: int, build: Callable[[RegistrySchema], T]) -> T:
        """What ``build`` makes of the registry's schema ``schema_id`` (the parsed schema
        and its Connect schema, say), built once per id while it stays cached; a schema
        of another format than ``schema_type`` is a DataError naming the fix."""
        cached = self._readers.get(schema_id)
        if cached is None:
            registered = self.registry.schema(schema_id)
            kind = registered.schema_type or "AVRO"
            if kind != self.schema_type:
                raise DataError(f"The record's schema (id {schema_id}) is {kind}, not "
                                f"{self.schema_type}; set {self.side}.converter to the "
                                f"converter of {kind}")
            cached = self._readers.put(schema_id, build(registered))
        result: T = cached
        return result

    def subject(self, topic: str, record_name: str | None) -> str:
        """The subject of a record of ``topic`` whose top-level record (message) type is
        ``record_name`` (None for primitives), as the configured strategy names it."""
        if self.strategy == "TopicNameStrategy":
            return f"{topic}-{self.side}"
        if not record_name:
            raise DataError(f"{self.side}.subject.name.strategy={self.strategy} needs a "
                            f"record schema, and the {self.side} of topic {topic} is not one; "
                            "use TopicNameStrategy for primitive keys and values")
        return record_name if self.strategy == "RecordNameStrategy" \
            else f"{topic}-{record_name}"

    def writer_schema(self, topic: str, schema: RegistrySchema,
                      record_name: str | None) -> tuple[int, RegistrySchema]:
        """The id to write ``schema``'s records under and the schema to write them with:
        ``schema`` registered (auto.register.schemas), the subject's latest version
        (use.latest.version), or ``schema`` looked up in the registry."""
        subject = self.subject(topic, record_name)
        normalize = self.options.normalize_schemas
        if self.options.auto_register_schemas:
            return self.registry.register(subject, schema, normalize), schema
        if self.options.use_latest_version:
            latest = self.registry.latest(subject)
            if self.options.latest_compatibility_strict and \
                    not self.registry.compatible(subject, schema):
                raise DataError(f"The latest schema of subject {subject} (id "
                                f"{latest.schema_id}, version {latest.version}) cannot read "
                                f"the record's schema; register a compatible version or set "
                                f"latest.compatibility.strict=false")
            return latest.schema_id, latest.schema
        return self.registry.lookup(subject, schema, normalize).schema_id, schema

    @staticmethod
    def header(schema_id: int) -> bytes:
        return HEADER.pack(MAGIC_BYTE, schema_id)

    def read_header(self, topic: str, data: bytes) -> int:
        """The schema id of ``data``; its payload starts at ``HEADER.size``."""
        if len(data) < HEADER.size or data[0] != MAGIC_BYTE:
            detail = (f"{len(data)} bytes is too short for the header" if len(data) <
                      HEADER.size else f"it starts with byte {data[0]}, not 0")
            raise DataError(
                f"Failed to deserialize the {self.side} of a record of topic {topic}: Unknown "
                f"magic byte! The data is not in the schema registry wire format ({detail}); "
                f"set {self.side}.converter to the converter its producer used "
                f"(e.g. JsonConverter or StringConverter), or send the record to a dead "
                f"letter queue with errors.tolerance=all")
        schema_id: int = HEADER.unpack_from(data)[1]
        return schema_id
