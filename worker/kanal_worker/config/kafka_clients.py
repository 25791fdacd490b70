"""Java Kafka client security settings, translated for librdkafka.

A worker or connector configuration written for Apache Kafka Connect keeps working
unchanged: ``security.protocol``, ``sasl.mechanism``, ``sasl.jaas.config``,
``ssl.truststore.*``, ``ssl.keystore.*``, ``ssl.endpoint.identification.algorithm``
become what librdkafka understands:

=========================================  ==========================================
Java client                                librdkafka
=========================================  ==========================================
``sasl.jaas.config`` (Scram/Plain)          ``sasl.username``, ``sasl.password``
``sasl.jaas.config`` (Krb5LoginModule)      ``sasl.kerberos.principal``/``keytab``
``sasl.jaas.config`` (OAuthBearer)          ``sasl.oauthbearer.*`` (OIDC client
                                            credentials, or an unsecured JWT)
``ssl.truststore.location`` PEM             ``ssl.ca.location``
``ssl.truststore.location`` PKCS12/JKS      ``ssl.ca.pem`` (trusted certificates read
                                            from the store)
``ssl.truststore.certificates``             ``ssl.ca.pem``
``ssl.keystore.location`` PKCS12            ``ssl.keystore.location``/``password``
``ssl.keystore.location`` PEM               ``ssl.certificate.location`` +
                                            ``ssl.key.location``
``ssl.keystore.key`` / ``.certificate.chain``  ``ssl.key.pem`` / ``ssl.certificate.pem``
``ssl.endpoint.identification.algorithm=``  ``ssl.endpoint.identification.algorithm=none``
=========================================  ==========================================

A store's format is read from the file itself (as Java does since 9: a ``JKS`` type
loads PKCS12 files too); the declared ``*.type`` only matters for PEM strings.
Settings librdkafka has no use for (Java security providers, key manager algorithms,
login refresh tuning) are dropped; settings librdkafka spells the same way pass
through, and a librdkafka setting given explicitly wins over the translated one.

Secrets (``sasl.jaas.config``, passwords, keys) never appear in the error messages:
they name the key and what is wrong with it, not the value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from kanal_worker.api.errors import ConfigError

log = logging.getLogger(__name__)

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")

SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
OAUTH_MODULE = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
KERBEROS_MODULE = "com.sun.security.auth.module.Krb5LoginModule"
LOGIN_MODULES = (SCRAM_MODULE, PLAIN_MODULE, OAUTH_MODULE, KERBEROS_MODULE)
FLAGS = ("required", "requisite", "sufficient", "optional")
KNOWN_OPTIONS = frozenset({
    "username", "password", "clientId", "clientSecret", "scope", "keyTab", "principal",
    "useKeyTab", "storeKey", "useTicketCache", "serviceName", "debug", "doNotPrompt",
    "unsecuredLoginStringClaim_sub", "unsecuredLoginLifetimeSeconds", "tokenauth",
})
"""Option names errors may quote: in a malformed entry any other word may be a piece of
a secret whose quotes went wrong."""


def _module(name: str) -> str:
    """A login module's name for messages: only the known ones are quoted (in a
    malformed text the word may be a piece of a secret)."""
    return name if name in LOGIN_MODULES else "(unknown class)"


def _option(name: str) -> str:
    return f"option {name}" if name in KNOWN_OPTIONS else "an option"

JAVA_ONLY = frozenset({
    "ssl.protocol", "ssl.enabled.protocols", "ssl.provider", "ssl.keymanager.algorithm",
    "ssl.trustmanager.algorithm", "ssl.secure.random.implementation",
    "ssl.engine.factory.class", "ssl.keystore.type", "ssl.truststore.type",
    "ssl.truststore.password", "sasl.login.class", "sasl.login.callback.handler.class",
    "sasl.client.callback.handler.class", "sasl.login.refresh.window.factor",
    "sasl.login.refresh.window.jitter", "sasl.login.refresh.min.period.seconds",
    "sasl.login.refresh.buffer.seconds", "sasl.login.connect.timeout.ms",
    "sasl.login.read.timeout.ms", "sasl.login.retry.backoff.ms",
    "sasl.login.retry.backoff.max.ms", "sasl.kerberos.ticket.renew.window.factor",
    "sasl.kerberos.ticket.renew.jitter", "sasl.oauthbearer.scope.claim.name",
    "sasl.oauthbearer.sub.claim.name", "sasl.oauthbearer.clock.skew.seconds",
    "sasl.oauthbearer.expected.audience", "sasl.oauthbearer.expected.issuer",
    "sasl.oauthbearer.jwks.endpoint.url", "sasl.oauthbearer.jwks.endpoint.refresh.ms",
    "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms",
    "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms",
    "sasl.oauthbearer.header.urlencode",
})
"""Java client settings without a librdkafka counterpart (or consumed by the
translation itself)."""

CONSUMED = frozenset({
    "sasl.jaas.config", "ssl.truststore.location", "ssl.truststore.certificates",
    "ssl.keystore.key", "ssl.keystore.certificate.chain",
})


CLIENT_SECRETS = frozenset({
    "sasl.jaas.config", "sasl.password", "sasl.oauthbearer.client.secret",
    "ssl.key.password", "ssl.keystore.password", "ssl.truststore.password",
    "ssl.keystore.key", "ssl.key.pem",
})
"""Kafka client settings (Java's and librdkafka's names) whose values are secrets."""
CLIENT_PREFIXES = ("", "consumer.", "producer.", "admin.", "consumer.override.",
                   "producer.override.", "admin.override.")


def client_secret_keys(config: Mapping[str, str]) -> set[str]:
    """Keys of a worker or connector configuration holding Kafka client secrets, bare or
    under a role prefix (``consumer.override.sasl.jaas.config``, ...): to be masked
    wherever configurations are shown."""
    return {key for key in config
            if any(key.startswith(prefix) and key[len(prefix):] in CLIENT_SECRETS
                   for prefix in CLIENT_PREFIXES)}


# ------------------------------------------------------------------------- JAAS


@dataclass
class JaasEntry:
    """One login module of a ``sasl.jaas.config``: its class, flag and options."""

    module: str
    flag: str
    options: dict[str, str] = field(default_factory=dict)


_TOKEN = re.compile(r"""
    (?P<space>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<quoted>"(?:[^"\\]|\\.)*")
  | (?P<punct>[=;])
  | (?P<word>[^\s=;"]+)
""", re.VERBOSE | re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


def _unquote(token: str) -> str:
    """A Java StreamTokenizer quoted string's value (backslash escapes)."""
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), token[1:-1],
                  flags=re.DOTALL)


def parse_jaas(text: str, key: str = "sasl.jaas.config") -> list[JaasEntry]:
    """Parse JAAS configuration text the way Kafka's ``JaasConfig`` does.

    ``Module flag key=value key2="quoted value";`` (one or more entries). Errors name
    the option, never its value.
    """
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # an unterminated quote
            raise ConfigError(key, "unterminated quoted value; JAAS values are written "
                              'key="value" and every entry ends with ;')
        position = match.end()
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append((kind, match.group()))
    entries: list[JaasEntry] = []
    index = 0

    def take() -> tuple[str, str] | None:
        nonlocal index
        if index >= len(tokens):
            return None
        index += 1
        return tokens[index - 1]

    while index < len(tokens):
        module = take()
        if module is None or module[0] != "word" or "." not in module[1]:
            raise ConfigError(key, "expected a login module class name at the start of an "
                              "entry, e.g. org.apache.kafka.common.security.scram."
                              "ScramLoginModule required username=\"...\" password=\"...\";")
        flag = take()
        if flag is None or flag[0] != "word" or flag[1].lower() not in FLAGS:
            raise ConfigError(key, f"login module {_module(module[1])} needs a control flag "
                              f"({', '.join(FLAGS)}) after its class name")
        entry = JaasEntry(module[1], flag[1].lower())
        while True:
            token = take()
            if token is None:
                raise ConfigError(key, f"the entry of {_module(entry.module)} must end "
                                  "with ;")
            if token == ("punct", ";"):
                break
            if token[0] != "word":
                raise ConfigError(key, f"expected an option name in the entry of "
                                  f"{_module(entry.module)}")
            name = token[1]
            if take() != ("punct", "="):
                raise ConfigError(key, f"{_option(name)} of {_module(entry.module)} needs =value "
                                  '(quote values: key="value")')
            value = take()
            if value is None or value[0] not in ("word", "quoted"):
                raise ConfigError(key, f"{_option(name)} of {_module(entry.module)} has no value")
            entry.options[name] = _unquote(value[1]) if value[0] == "quoted" else value[1]
        entries.append(entry)
    if not entries:
        raise ConfigError(key, "is empty; give one login module entry")
    return entries


def _jaas_settings(text: str, mechanism: str | None) -> dict[str, str]:
    """librdkafka settings for the single login module of ``sasl.jaas.config``."""
    key = "sasl.jaas.config"
    entries = parse_jaas(text)
    if len(entries) != 1:
        raise ConfigError(key, f"must contain exactly one login module, found "
                          f"{len(entries)}")
    entry = entries[0]
    options = entry.options
    out: dict[str, str] = {}
    short = entry.module.rsplit(".", 1)[-1]
    if entry.module not in LOGIN_MODULES and short not in {m.rsplit(".", 1)[-1]
                                                           for m in LOGIN_MODULES}:
        raise ConfigError(key, "the login module is not supported (check its class name); "
                          "use " + ", ".join(LOGIN_MODULES))
    if short in ("ScramLoginModule", "PlainLoginModule"):
        for option in ("username", "password"):
            if option not in options:
                raise ConfigError(key, f"{short} needs the option {option}=\"...\"")
        if short == "ScramLoginModule":
            if mechanism is None or not mechanism.upper().startswith("SCRAM-"):
                raise ConfigError("sasl.mechanism", "ScramLoginModule needs sasl.mechanism="
                                  "SCRAM-SHA-256 or SCRAM-SHA-512")
        elif mechanism is None:
            out["sasl.mechanism"] = "PLAIN"
        elif mechanism.upper() != "PLAIN":
            raise ConfigError("sasl.mechanism", f"PlainLoginModule needs sasl.mechanism="
                              f"PLAIN, not {mechanism}")
        out["sasl.username"] = options["username"]
        out["sasl.password"] = options["password"]
    elif short == "Krb5LoginModule":
        if "principal" in options:
            out["sasl.kerberos.principal"] = options["principal"]
        if "keyTab" in options:
            out["sasl.kerberos.keytab"] = options["keyTab"]
    else:  # OAuthBearerLoginModule
        if mechanism is None or mechanism.upper() != "OAUTHBEARER":
            raise ConfigError("sasl.mechanism", "OAuthBearerLoginModule needs "
                              "sasl.mechanism=OAUTHBEARER")
        unsecured = {k: v for k, v in options.items() if k.startswith("unsecuredLogin")}
        if unsecured:
            out["enable.sasl.oauthbearer.unsecure.jwt"] = "true"
            claims = [f"principal={options.get('unsecuredLoginStringClaim_sub', 'kanal')}"]
            if "unsecuredLoginLifetimeSeconds" in options:
                claims.append(f"lifeSeconds={options['unsecuredLoginLifetimeSeconds']}")
            out["sasl.oauthbearer.config"] = " ".join(claims)
        else:
            out["sasl.oauthbearer.method"] = "oidc"
            for option, target in (("clientId", "sasl.oauthbearer.client.id"),
                                   ("clientSecret", "sasl.oauthbearer.client.secret"),
                                   ("scope", "sasl.oauthbearer.scope")):
                if option in options:
                    out[target] = options[option]
    return out


# ------------------------------------------------------------------ key stores


JKS_MAGIC = 0xFEEDFEED
JCEKS_MAGIC = 0xCECECECE


def _store_format(data: bytes) -> str:
    """PEM, JKS, JCEKS or PKCS12, from a store's first bytes."""
    if data.lstrip()[:10] == b"-----BEGIN":
        return "PEM"
    if len(data) >= 4:
        magic = struct.unpack(">I", data[:4])[0]
        if magic == JKS_MAGIC:
            return "JKS"
        if magic == JCEKS_MAGIC:
            return "JCEKS"
    return "PKCS12"


def _pem(der: bytes) -> str:
    body = base64.b64encode(der).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def jks_certificates(data: bytes, password: str | None, key: str) -> list[bytes]:
    """The certificates (DER) of a JKS/JCEKS key store: trusted entries and the chains
    of key entries. With a password, the store's integrity is checked as Java does."""
    offset = 0

    def read(size: int) -> bytes:
        nonlocal offset
        if offset + size > len(data):
            raise ConfigError(key, "is a truncated or corrupt JKS key store")
        chunk = data[offset:offset + size]
        offset += size
        return chunk

    def read_int() -> int:
        value: int = struct.unpack(">I", read(4))[0]
        return value

    def read_utf() -> str:
        (length,) = struct.unpack(">H", read(2))
        return read(length).decode("utf-8", "replace")

    magic, version, count = read_int(), read_int(), read_int()
    if version not in (1, 2):
        raise ConfigError(key, f"has an unknown JKS version {version}")
    certificates: list[bytes] = []

    def read_certificate() -> None:
        if version == 2:
            kind = read_utf()
            if kind != "X.509":
                raise ConfigError(key, f"holds a {kind} certificate; only X.509 is supported")
        certificates.append(read(read_int()))

    for _ in range(count):
        tag = read_int()
        read_utf()  # alias
        read(8)  # creation date
        if tag == 1:  # private key entry: encrypted key, then its certificate chain
            read(read_int())
            for _ in range(read_int()):
                read_certificate()
        elif tag == 2:  # trusted certificate entry
            read_certificate()
        else:
            raise ConfigError(key, "holds a secret-key entry (JCEKS) that cannot be read "
                              "here; keep only certificates in the trust store")
    digest = read(20)
    if password is not None and magic == JKS_MAGIC:
        expected = hashlib.sha1(password.encode("utf-16-be") + b"Mighty Aphrodite"
                                + data[:offset - 20]).digest()
        if not hmac.compare_digest(expected, digest):
            raise ConfigError(key, "failed its integrity check: the password is wrong or "
                              "the file is corrupt")
    return certificates


def pkcs12_certificates(data: bytes, password: str | None, key: str,
                        password_key: str) -> list[bytes]:
    """The certificates (DER) of a PKCS12 store (Java trust stores keep them as
    trusted certificate bags, which OpenSSL reads as additional certificates)."""
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

    attempts: list[bytes | None] = ([password.encode()] if password is not None
                                    else [None, b""])
    last: Exception | None = None
    for attempt in attempts:
        try:
            loaded = pkcs12.load_pkcs12(data, attempt)
        except ValueError as exc:
            last = exc
            continue
        certs = ([loaded.cert] if loaded.cert is not None else []) + loaded.additional_certs
        return [c.certificate.public_bytes(Encoding.DER) for c in certs]
    hint = ("the password is wrong" if password is not None
            else f"it needs a password: set {password_key}")
    raise ConfigError(key, f"cannot be read as a PKCS12 store ({hint}, or the file is "
                      f"not a key store)") from last


@lru_cache(maxsize=32)
def _truststore_pem(path: str, mtime_ns: int, size: int, password: str | None) -> str:
    """The PEM bundle of a trust store's certificates (cached while the file is
    unchanged)."""
    key = "ssl.truststore.location"
    data = Path(path).read_bytes()
    kind = _store_format(data)
    if kind == "PEM":
        return data.decode("ascii", "replace")
    if kind in ("JKS", "JCEKS"):
        certificates = jks_certificates(data, password, key)
    else:
        certificates = pkcs12_certificates(data, password, key, "ssl.truststore.password")
    if not certificates:
        raise ConfigError(key, f"{path} holds no certificates to trust")
    return "".join(_pem(der) for der in certificates)


def truststore_pem(path: str, password: str | None) -> str:
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise ConfigError("ssl.truststore.location",
                          f"cannot read {path}: {exc.strerror}") from None
    return _truststore_pem(path, stat.st_mtime_ns, stat.st_size, password)


def _read_head(path: str, key: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(64)
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror}") from None


# ------------------------------------------------------------------ translation


def translate(config: Mapping[str, str]) -> dict[str, str]:
    """librdkafka settings for a client configuration written with Java's keys.

    Keys that are not Java security settings pass through; librdkafka settings given
    explicitly (``sasl.username``, ``ssl.ca.location``, ...) win over translated ones.
    """
    explicit = dict(config)
    out: dict[str, str] = {}

    protocol = explicit.get("security.protocol")
    if protocol is not None:
        if protocol.strip().upper() not in PROTOCOLS:
            raise ConfigError("security.protocol", f"must be one of {', '.join(PROTOCOLS)}, "
                              f"not {protocol!r}")
        explicit["security.protocol"] = protocol.strip().upper()

    mechanism = explicit.get("sasl.mechanism") or explicit.get("sasl.mechanisms")
    jaas = explicit.get("sasl.jaas.config", "").strip()
    if jaas:
        out.update(_jaas_settings(jaas, mechanism))

    algorithm = explicit.get("ssl.endpoint.identification.algorithm")
    if algorithm is not None:
        normalized = algorithm.strip().lower()
        if normalized in ("", "none"):
            explicit["ssl.endpoint.identification.algorithm"] = "none"
        elif normalized == "https":
            explicit["ssl.endpoint.identification.algorithm"] = "https"
        else:
            raise ConfigError("ssl.endpoint.identification.algorithm",
                              f"must be https or empty (no host name check), not "
                              f"{algorithm!r}")

    out.update(_truststore(explicit))
    keystore = _keystore(explicit)
    if keystore:  # PEM key material replaces the (PKCS12-only) librdkafka key store
        explicit.pop("ssl.keystore.location", None)
        explicit.pop("ssl.keystore.password", None)
    out.update(keystore)

    suites = explicit.get("ssl.cipher.suites", "")
    if any(s.strip().startswith(("TLS_", "SSL_")) for s in suites.split(",")):
        log.warning("ssl.cipher.suites uses Java (IANA) names, which librdkafka (OpenSSL) "
                    "does not know; ignored. Give OpenSSL names to restrict the ciphers.")
        explicit.pop("ssl.cipher.suites")

    result = {k: v for k, v in explicit.items() if k not in JAVA_ONLY and k not in CONSUMED}
    for name, value in out.items():
        result.setdefault(name, value)
    return result


def _truststore(config: Mapping[str, str]) -> dict[str, str]:
    if "ssl.ca.location" in config or "ssl.ca.pem" in config:
        return {}
    inline = config.get("ssl.truststore.certificates", "").strip()
    if inline:
        return {"ssl.ca.pem": inline + "\n"}
    location = config.get("ssl.truststore.location", "").strip()
    if not location:
        return {}
    if _store_format(_read_head(location, "ssl.truststore.location")) == "PEM":
        return {"ssl.ca.location": location}
    password = config.get("ssl.truststore.password") or None
    return {"ssl.ca.pem": truststore_pem(location, password)}


def _keystore(config: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    key_pem = config.get("ssl.keystore.key", "").strip()
    chain_pem = config.get("ssl.keystore.certificate.chain", "").strip()
    if key_pem:
        out["ssl.key.pem"] = key_pem + "\n"
    if chain_pem:
        out["ssl.certificate.pem"] = chain_pem + "\n"
    location = config.get("ssl.keystore.location", "").strip()
    if not location or out:
        return out
    kind = _store_format(_read_head(location, "ssl.keystore.location"))
    if kind == "PEM":
        return {"ssl.certificate.location": location, "ssl.key.location": location}
    if kind in ("JKS", "JCEKS"):
        raise ConfigError("ssl.keystore.location",
                          f"{location} is a {kind} key store; librdkafka reads PKCS12 or PEM. "
                          f"Convert it once: keytool -importkeystore -srckeystore {location} "
                          "-destkeystore keystore.p12 -deststoretype PKCS12")
    return {}  # PKCS12: ssl.keystore.location and ssl.keystore.password pass through


__all__ = ["CLIENT_SECRETS", "JaasEntry", "client_secret_keys", "parse_jaas", "translate",
           "truststore_pem"]
