"""TLS and SASL/SCRAM to the real broker, configured with Java client settings.

dev/stack's broker has a SASL_PLAINTEXT (SCRAM-SHA-512) listener on 9094 and an SSL
listener on 9095 (dev/services/kafka.sh). The worker files below are what a Kafka
Connect user already has: ``sasl.jaas.config``, Java trust stores (PKCS12, JKS, PEM),
a PKCS12 key store for mutual TLS. Records make the file source → Kafka → file sink
round trip over each; credentials never reach the logs, librdkafka's security debug
output included.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.standalone import (
    KANAL,
    Standalone,
    line_count,
    wait_for,
    write_properties,
)

pytestmark = pytest.mark.integration

LINES = 3000
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


def scram_jaas(username: str, password: str) -> str:
    return f'{SCRAM_MODULE} required username="{username}" password="{password}";'


def worker_file(tmp: Path, security: dict[str, str]) -> Path:
    return write_properties(tmp / "worker.properties", {
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.storage.StringConverter",
        "offset.storage.file.filename": str(tmp / "offsets.json"),
        "offset.flush.interval.ms": "1000", "listeners": "",
        # librdkafka's own debug output about the handshake goes to the log as well
        "consumer.debug": "security,broker", "producer.debug": "security",
        **security})


def round_trip(tmp: Path, topic: str, security: dict[str, str],
               sink_overrides: dict[str, str] | None = None) -> str:
    """File → topic → file over ``security``; returns the worker's (DEBUG) log."""
    source_file = tmp / "in.txt"
    lines = [f"secure line {i} ✓" for i in range(LINES)]
    source_file.write_text("".join(f"{line}\n" for line in lines))
    sink_file = tmp / "out.txt"
    source = write_properties(tmp / "source.properties", {
        "name": f"src-{topic}", "connector.class": "FileStreamSource",
        "file": str(source_file), "topic": topic})
    sink = write_properties(tmp / "sink.properties", {
        "name": f"sink-{topic}", "connector.class": "FileStreamSink", "topics": topic,
        "file": str(sink_file), **(sink_overrides or {})})
    run = Standalone(worker_file(tmp, security), source, sink, log=tmp / "kanal.log")
    run.args.append("--log-level=DEBUG")
    run.start()
    def arrived() -> bool:
        assert " is FAILED" not in run.log.read_text(errors="replace"), \
            f"a task failed; see {run.log}"
        return line_count(sink_file) >= LINES
    try:
        wait_for(arrived, 120, "every line in the sink file")
    finally:
        assert run.stop() == 0
    assert sorted(sink_file.read_text().splitlines()) == sorted(lines)
    return run.log.read_text(errors="replace")


def test_round_trip_over_sasl_scram(tmp_path: Path, stack: dict[str, str],
                                    topic_factory: Callable[[str, int], str]) -> None:
    password = stack["KANAL_KAFKA_SASL_PASSWORD"]
    log = round_trip(tmp_path, topic_factory("scram", 2), {
        "bootstrap.servers": stack["KANAL_KAFKA_SASL_BOOTSTRAP"],
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": stack["KANAL_KAFKA_SASL_MECHANISM"],
        "sasl.jaas.config": scram_jaas(stack["KANAL_KAFKA_SASL_USERNAME"], password)})
    assert "SCRAM" in log, "librdkafka's security debug output should be in the log"
    assert password not in log
    assert "sasl.jaas.config" not in log


def test_connector_overrides_carry_their_own_credentials(
        tmp_path: Path, stack: dict[str, str],
        topic_factory: Callable[[str, int], str]) -> None:
    """``consumer.override.sasl.jaas.config`` (per-connector credentials, Kafka
    Connect's way to give each connector its own principal) is translated too."""
    password = stack["KANAL_KAFKA_SASL_PASSWORD"]
    jaas = scram_jaas(stack["KANAL_KAFKA_SASL_USERNAME"], password)
    log = round_trip(tmp_path, topic_factory("scram-override", 1), {
        "bootstrap.servers": stack["KANAL_KAFKA_SASL_BOOTSTRAP"],
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": jaas},
        sink_overrides={"consumer.override.sasl.mechanism": "SCRAM-SHA-256",
                        "consumer.override.sasl.jaas.config": jaas})
    assert password not in log


TLS_TRUST = {
    "pkcs12-truststore": lambda env: {
        "ssl.truststore.type": "PKCS12",
        "ssl.truststore.location": env["KANAL_KAFKA_SSL_TRUSTSTORE_P12"],
        "ssl.truststore.password": env["KANAL_KAFKA_SSL_PASSWORD"]},
    "jks-truststore": lambda env: {
        "ssl.truststore.location": env["KANAL_KAFKA_SSL_TRUSTSTORE_JKS"],
        "ssl.truststore.password": env["KANAL_KAFKA_SSL_PASSWORD"]},
    "pem-truststore-and-mutual-tls": lambda env: {
        "ssl.truststore.type": "PEM", "ssl.truststore.location": env["KANAL_KAFKA_SSL_CA"],
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": env["KANAL_KAFKA_SSL_KEYSTORE_P12"],
        "ssl.keystore.password": env["KANAL_KAFKA_SSL_PASSWORD"],
        "ssl.key.password": env["KANAL_KAFKA_SSL_PASSWORD"],
        "ssl.endpoint.identification.algorithm": "https"},
}


@pytest.mark.parametrize("trust", sorted(TLS_TRUST))
def test_round_trip_over_tls(tmp_path: Path, stack: dict[str, str],
                             topic_factory: Callable[[str, int], str], trust: str) -> None:
    log = round_trip(tmp_path, topic_factory("tls", 2), {
        "bootstrap.servers": stack["KANAL_KAFKA_SSL_BOOTSTRAP"], "security.protocol": "SSL",
        **TLS_TRUST[trust](stack)})
    assert stack["KANAL_KAFKA_SSL_PASSWORD"] not in log


def refused_start(tmp: Path, security: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``kanal standalone`` that cannot authenticate: it must exit, saying why."""
    source = write_properties(tmp / "source.properties", {
        "name": "refused", "connector.class": "FileStreamSource",
        "file": str(tmp / "in.txt"), "topic": "refused"})
    return subprocess.run([KANAL, "standalone", str(worker_file(tmp, security)), str(source),
                           "--log-level=DEBUG"], capture_output=True, text=True, timeout=120)


def test_wrong_scram_password_is_a_clear_startup_error(tmp_path: Path,
                                                       stack: dict[str, str]) -> None:
    wrong = "wrong-password-canary-4711"
    result = refused_start(tmp_path, {
        "bootstrap.servers": stack["KANAL_KAFKA_SASL_BOOTSTRAP"],
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": scram_jaas(stack["KANAL_KAFKA_SASL_USERNAME"], wrong)})
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1, result.stderr[-2000:]
    assert "sasl.jaas.config" in error[0] and "refused the credentials" in error[0]
    assert wrong not in result.stdout + result.stderr


def test_untrusted_broker_certificate_is_a_clear_startup_error(
        tmp_path: Path, stack: dict[str, str]) -> None:
    result = refused_start(tmp_path, {
        "bootstrap.servers": stack["KANAL_KAFKA_SSL_BOOTSTRAP"], "security.protocol": "SSL"})
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1, result.stderr[-2000:]
    assert "TLS" in error[0] and "certificate verify failed" in error[0]
