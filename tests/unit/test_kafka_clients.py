"""Java client security settings become librdkafka's (config/kafka_clients.py)."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Producer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from kanal_worker.api.errors import ConfigError
from kanal_worker.config.kafka_clients import client_secret_keys, parse_jaas, translate
from kanal_worker.config.worker import client_config

SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"
PASSWORD = "s3cr3t-Ünïcode \"quoted\" ;semi"
QUOTED = PASSWORD.replace('"', '\\"')


def jaas(module: str, **options: str) -> str:
    quoted = " ".join(f'{k}="{java_quote(v)}"' for k, v in options.items())
    return f"{module} required {quoted};"


def java_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def librdkafka_accepts(config: dict[str, str]) -> None:
    """librdkafka validates settings when a client is created (no broker needed)."""
    Producer({**config, "bootstrap.servers": "127.0.0.1:1"})


# ----------------------------------------------------------------------- SASL


def test_scram_jaas_config_becomes_username_and_password() -> None:
    out = translate({"bootstrap.servers": "b:9092", "security.protocol": "sasl_ssl",
                     "sasl.mechanism": "SCRAM-SHA-512",
                     "sasl.jaas.config": jaas(SCRAM, username="alice", password=PASSWORD)})
    assert out == {"bootstrap.servers": "b:9092", "security.protocol": "SASL_SSL",
                   "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "alice",
                   "sasl.password": PASSWORD}
    librdkafka_accepts(out)


def test_jaas_syntax_as_java_writes_it() -> None:
    text = ('/* comment */ org.apache.kafka.common.security.plain.PlainLoginModule   REQUIRED\n'
            '  username=bob // trailing comment\n'
            '  password="a\\\\b\\"c;d=e"\n ;')
    [entry] = parse_jaas(text)
    assert entry.module.endswith("PlainLoginModule")
    assert entry.flag == "required"
    assert entry.options == {"username": "bob", "password": 'a\\b"c;d=e'}


@given(st.text(st.characters(exclude_categories=["Cs"]), min_size=1),
       st.text(st.characters(exclude_categories=["Cs"]), min_size=1))
def test_any_quoted_credentials_survive_parsing(username: str, password: str) -> None:
    out = translate({"sasl.mechanism": "SCRAM-SHA-256",
                     "sasl.jaas.config": jaas(SCRAM, username=username, password=password)})
    assert (out["sasl.username"], out["sasl.password"]) == (username, password)
    assert "sasl.jaas.config" not in out


@pytest.mark.parametrize("text, fragment", [
    (f'{SCRAM} required username="u" password="{QUOTED}"', "must end with ;"),
    (f'{SCRAM} username="u" password="{QUOTED}";', "control flag"),
    (f'{SCRAM} required username="u" password="{QUOTED};', "unterminated"),
    # quotes gone wrong: pieces of the secret must not be quoted back as option names
    (f'{SCRAM} required username="u" password="{PASSWORD}";', "needs =value"),
    (f'{SCRAM} required username="u" password=s3cr3t-value extra;', "needs =value"),
    (f'{SCRAM} required username="u" password;', "needs =value"),
    (f'{SCRAM} required username="u";', "password"),
    ('org.example.Mystery required password="hunter2-xyz";', "not supported"),
    (f'{SCRAM} required username="u" password="p"; {SCRAM} required username="v" '
     f'password="q";', "exactly one"),
])
def test_malformed_jaas_is_rejected_without_showing_the_secret(text: str,
                                                               fragment: str) -> None:
    with pytest.raises(ConfigError) as error:
        translate({"sasl.mechanism": "SCRAM-SHA-512", "sasl.jaas.config": text})
    assert error.value.key == "sasl.jaas.config"
    assert fragment in error.value.message
    for secret in ("s3cr3t", "hunter2"):
        assert secret not in str(error.value)


def test_scram_module_needs_a_scram_mechanism() -> None:
    with pytest.raises(ConfigError) as error:
        translate({"sasl.jaas.config": jaas(SCRAM, username="u", password=PASSWORD)})
    assert error.value.key == "sasl.mechanism"
    assert "SCRAM-SHA-512" in error.value.message


def test_plain_module_implies_plain_mechanism() -> None:
    out = translate({"sasl.jaas.config": jaas(
        "org.apache.kafka.common.security.plain.PlainLoginModule", username="u",
        password="p")})
    assert out["sasl.mechanism"] == "PLAIN"
    librdkafka_accepts(out)


def test_explicit_librdkafka_settings_win() -> None:
    out = translate({"sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "native",
                     "sasl.jaas.config": jaas(SCRAM, username="java", password="p")})
    assert out["sasl.username"] == "native"
    assert out["sasl.password"] == "p"


def test_kerberos_and_oauthbearer_modules() -> None:
    kerberos = translate({"sasl.mechanism": "GSSAPI", "sasl.kerberos.service.name": "kafka",
                          "sasl.jaas.config": "com.sun.security.auth.module.Krb5LoginModule "
                          'required useKeyTab=true storeKey=true keyTab="/etc/k.keytab" '
                          'principal="connect@EXAMPLE.COM";'})
    assert kerberos["sasl.kerberos.principal"] == "connect@EXAMPLE.COM"
    assert kerberos["sasl.kerberos.keytab"] == "/etc/k.keytab"
    oauth_module = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
    oidc = translate({
        "sasl.mechanism": "OAUTHBEARER",
        "sasl.login.callback.handler.class": "org.apache.kafka.common.security.oauthbearer."
                                             "OAuthBearerLoginCallbackHandler",
        "sasl.oauthbearer.token.endpoint.url": "https://idp.example/token",
        "sasl.jaas.config": jaas(oauth_module, clientId="kanal", clientSecret=PASSWORD,
                                 scope="kafka")})
    assert oidc == {"sasl.mechanism": "OAUTHBEARER", "sasl.oauthbearer.method": "oidc",
                    "sasl.oauthbearer.token.endpoint.url": "https://idp.example/token",
                    "sasl.oauthbearer.client.id": "kanal",
                    "sasl.oauthbearer.client.secret": PASSWORD,
                    "sasl.oauthbearer.scope": "kafka"}
    librdkafka_accepts(oidc)
    unsecured = translate({"sasl.mechanism": "OAUTHBEARER", "sasl.jaas.config": jaas(
        oauth_module, unsecuredLoginStringClaim_sub="thePrincipalName")})
    assert unsecured["sasl.oauthbearer.config"] == "principal=thePrincipalName"
    librdkafka_accepts(unsecured)


# ----------------------------------------------------------------------- TLS


class Pki:
    """A CA, a client key and certificate, and Java-style stores made by keytool."""

    def __init__(self, root: Path) -> None:
        self.root = root
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                   .sign(key, hashes.SHA256()))
        self.ca_pem = root / "ca.pem"
        self.ca_pem.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))
        self.key = key
        self.key_pem = root / "client.pem"
        self.key_pem.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
            + self.ca.public_bytes(serialization.Encoding.PEM))
        self.keystore_p12 = root / "keystore.p12"
        self.keystore_p12.write_bytes(pkcs12.serialize_key_and_certificates(
            b"client", key, self.ca, None,
            serialization.BestAvailableEncryption(b"storepass")))
        keytool = shutil.which("keytool")
        assert keytool, "keytool (Java 17, which dev/stack needs anyway) must be on PATH"
        self.stores: dict[str, Path] = {}
        for kind in ("PKCS12", "JKS"):
            path = root / f"truststore.{kind.lower()}"
            subprocess.run([keytool, "-importcert", "-noprompt", "-alias", "ca", "-file",
                            str(self.ca_pem), "-keystore", str(path), "-storetype", kind,
                            "-storepass", "storepass"], check=True, capture_output=True)
            self.stores[kind] = path
        keystore_jks = root / "keystore.jks"
        subprocess.run([keytool, "-importkeystore", "-noprompt", "-srckeystore",
                        str(self.keystore_p12), "-srcstoretype", "PKCS12", "-srcstorepass",
                        "storepass", "-destkeystore", str(keystore_jks), "-deststoretype",
                        "JKS", "-deststorepass", "storepass"], check=True, capture_output=True)
        self.stores["keystore-JKS"] = keystore_jks


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def test_pem_truststore_is_the_ca_location(pki: Pki) -> None:
    out = translate({"security.protocol": "SSL", "ssl.truststore.type": "PEM",
                     "ssl.truststore.location": str(pki.ca_pem)})
    assert out == {"security.protocol": "SSL", "ssl.ca.location": str(pki.ca_pem)}
    librdkafka_accepts(out)


@pytest.mark.parametrize("kind", ["PKCS12", "JKS"])
def test_java_truststores_become_a_pem_bundle(pki: Pki, kind: str) -> None:
    # the declared type does not matter: Java itself loads PKCS12 files typed JKS
    out = translate({"security.protocol": "SSL", "ssl.truststore.type": "JKS",
                     "ssl.truststore.location": str(pki.stores[kind]),
                     "ssl.truststore.password": "storepass"})
    assert set(out) == {"security.protocol", "ssl.ca.pem"}
    certificates = x509.load_pem_x509_certificates(out["ssl.ca.pem"].encode())
    assert certificates == [pki.ca]
    librdkafka_accepts(out)


def test_jks_truststore_without_password_is_read_unchecked(pki: Pki) -> None:
    out = translate({"ssl.truststore.location": str(pki.stores["JKS"])})
    assert x509.load_pem_x509_certificates(out["ssl.ca.pem"].encode()) == [pki.ca]


@pytest.mark.parametrize("kind", ["PKCS12", "JKS"])
def test_wrong_truststore_password_is_named(pki: Pki, kind: str) -> None:
    with pytest.raises(ConfigError) as error:
        translate({"ssl.truststore.location": str(pki.stores[kind]),
                   "ssl.truststore.password": "not-the-password"})
    assert error.value.key == "ssl.truststore.location"
    assert "password is wrong" in error.value.message
    assert "not-the-password" not in str(error.value)


def test_missing_truststore_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        translate({"ssl.truststore.location": str(tmp_path / "absent.jks")})
    assert error.value.key == "ssl.truststore.location"
    assert "absent.jks" in error.value.message


def test_inline_pem_certificates_and_keys(pki: Pki) -> None:
    ca = pki.ca_pem.read_text()
    key = pki.key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    out = translate({"ssl.truststore.type": "PEM", "ssl.truststore.certificates": ca,
                     "ssl.keystore.type": "PEM", "ssl.keystore.key": key,
                     "ssl.keystore.certificate.chain": ca})
    assert out == {"ssl.ca.pem": ca.strip() + "\n", "ssl.key.pem": key.strip() + "\n",
                   "ssl.certificate.pem": ca.strip() + "\n"}


def test_keystores(pki: Pki) -> None:
    p12 = translate({"ssl.keystore.type": "PKCS12",
                     "ssl.keystore.location": str(pki.keystore_p12),
                     "ssl.keystore.password": "storepass", "ssl.key.password": "storepass"})
    assert p12 == {"ssl.keystore.location": str(pki.keystore_p12),
                   "ssl.keystore.password": "storepass", "ssl.key.password": "storepass"}
    librdkafka_accepts(p12)
    pem = translate({"ssl.keystore.type": "PEM", "ssl.keystore.location": str(pki.key_pem),
                     "ssl.keystore.password": "unused"})
    assert pem == {"ssl.certificate.location": str(pki.key_pem),
                   "ssl.key.location": str(pki.key_pem)}
    librdkafka_accepts(pem)
    with pytest.raises(ConfigError) as error:
        translate({"ssl.keystore.location": str(pki.stores["keystore-JKS"]),
                   "ssl.keystore.password": "storepass"})
    assert error.value.key == "ssl.keystore.location"
    assert "keytool -importkeystore" in error.value.message


@pytest.mark.parametrize("java, librdkafka", [("", "none"), ("HTTPS", "https"),
                                              ("https", "https")])
def test_endpoint_identification(java: str, librdkafka: str) -> None:
    out = translate({"ssl.endpoint.identification.algorithm": java})
    assert out == {"ssl.endpoint.identification.algorithm": librdkafka}
    librdkafka_accepts(out)


def test_bad_values_are_named() -> None:
    with pytest.raises(ConfigError) as error:
        translate({"ssl.endpoint.identification.algorithm": "ldap"})
    assert error.value.key == "ssl.endpoint.identification.algorithm"
    with pytest.raises(ConfigError) as error:
        translate({"security.protocol": "TLS"})
    assert error.value.key == "security.protocol"
    assert "SASL_SSL" in error.value.message


def test_java_only_settings_are_dropped_and_the_rest_pass_through() -> None:
    out = translate({"ssl.protocol": "TLSv1.3", "ssl.enabled.protocols": "TLSv1.2,TLSv1.3",
                     "ssl.keymanager.algorithm": "SunX509", "ssl.truststore.type": "JKS",
                     "sasl.login.refresh.window.factor": "0.8",
                     "ssl.cipher.suites": "TLS_AES_256_GCM_SHA384",
                     "sasl.kerberos.service.name": "kafka", "linger.ms": "5"})
    assert out == {"sasl.kerberos.service.name": "kafka", "linger.ms": "5"}
    librdkafka_accepts(out)


def test_client_config_translates_worker_and_override_settings() -> None:
    worker = {"bootstrap.servers": "b:9094", "security.protocol": "SASL_PLAINTEXT",
              "sasl.mechanism": "SCRAM-SHA-512",
              "sasl.jaas.config": jaas(SCRAM, username="worker", password="w"),
              "consumer.max.poll.records": "100"}
    consumer = client_config(worker, "consumer")
    assert consumer == {"bootstrap.servers": "b:9094", "security.protocol": "SASL_PLAINTEXT",
                        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "worker",
                        "sasl.password": "w"}
    producer = client_config(worker, "producer", {
        "sasl.jaas.config": jaas(SCRAM, username="connector", password="c")})
    assert (producer["sasl.username"], producer["sasl.password"]) == ("connector", "c")


def test_client_secrets_are_found_under_every_prefix() -> None:
    config = {"sasl.jaas.config": "x", "consumer.override.sasl.jaas.config": "x",
              "producer.override.ssl.key.password": "x", "admin.ssl.truststore.password": "x",
              "consumer.override.sasl.mechanism": "PLAIN", "ssl.truststore.location": "/t",
              "transforms.x.sasl.jaas.config": "not a client setting"}
    assert client_secret_keys(config) == {
        "sasl.jaas.config", "consumer.override.sasl.jaas.config",
        "producer.override.ssl.key.password", "admin.ssl.truststore.password"}
