"""Where the real services are (``dev/stack``) and where the bench keeps its files."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dev.stack_env import ROOT, stack_env

RESULTS = ROOT / "bench" / "results"
KANAL = str(Path(sys.executable).parent / "kanal")
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Stack:
    bootstrap: str
    azurite: str | None
    s3: Mapping[str, str] | None
    """``KANAL_S3_*`` of the S3 server."""
    gcs: str | None
    """``KANAL_GCS_ENDPOINT`` of the GCS emulator."""
    peer_url: str | None
    kafka_classpath: str | None
    kube: Mapping[str, str] | None
    """``KUBECTL`` and ``KUBECONFIG`` of the real kube-apiserver."""
    opensearch: str | None = None
    """``http://host:port`` of the OpenSearch node."""
    mqtt: str | None = None
    """``tcp://host:port`` of mosquitto."""
    postgres: str | None = None
    """postgresql://user:password@host:port/db of the real PostgreSQL."""


def stack(*services: str) -> Stack:
    """Start ``services`` (idempotent) and read their addresses."""
    env = stack_env(*services, quiet=True)
    return Stack(bootstrap=env.get("KANAL_BOOTSTRAP_SERVERS", f"{HOST}:9092"),
                 azurite=env.get("AZURITE_CONNECTION_STRING") if "azurite" in services else None,
                 s3={key: value for key, value in env.items() if key.startswith("KANAL_S3_")}
                 if "s3" in services else None,
                 gcs=env.get("KANAL_GCS_ENDPOINT") if "gcs" in services else None,
                 peer_url=env.get("CONNECT_PEER_URL") if "connect" in services else None,
                 kafka_classpath=env.get("KANAL_KAFKA_CLASSPATH"),
                 kube={key: env[key] for key in ("KUBECTL", "KUBECONFIG")}
                 if "k8s" in services else None,
                 opensearch=env.get("KANAL_OPENSEARCH_URL") if "opensearch" in services
                 else None,
                 mqtt=env.get("KANAL_MQTT_URL") if "mqtt" in services else None,
                 postgres=env.get("KANAL_POSTGRES_URL") if "postgres" in services else None)


def broker_pid() -> int | None:
    """The pid of the Kafka broker ``dev/stack`` started, while it runs: it shares the
    machine's cores with the systems measured."""
    run = Path(os.environ.get("KANAL_RUN", Path(os.environ.get(
        "KANAL_CACHE", Path.home() / ".cache" / "kanal")) / "run"))
    try:
        pid = int((run / "kafka" / "kafka.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def scratch() -> Path:
    """A directory for the bench's temporary files (outputs of the sinks, configs)."""
    base = Path(os.environ.get("KANAL_BENCH_TMP", "/tmp/kanal-bench"))
    base.mkdir(parents=True, exist_ok=True)
    return base
