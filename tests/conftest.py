"""Fixtures that reach the real services of ``dev/stack`` (started on demand)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from dev.stack_env import stack_env
from tests.schema_registry import TestRegistry

__all__ = ["stack_env"]


@pytest.fixture(scope="session")
def kafka() -> str:
    """Bootstrap servers of the real broker."""
    return stack_env("kafka")["KANAL_BOOTSTRAP_SERVERS"]


@pytest.fixture(scope="session")
def azurite() -> str:
    """Connection string of the real Azurite blob service."""
    return stack_env("azurite")["AZURITE_CONNECTION_STRING"]


@pytest.fixture(scope="session")
def postgres() -> str:
    """postgresql://user:password@host:port/db of the real PostgreSQL 15."""
    return stack_env("postgres")["KANAL_POSTGRES_URL"]


@pytest.fixture(scope="session")
def mariadb() -> str:
    """mysql://user:password@host:port/db of the real MariaDB 10.11."""
    return stack_env("mariadb")["KANAL_MARIADB_URL"]


@pytest.fixture(scope="session")
def gcs() -> str:
    """JSON API endpoint of the real fake-gcs-server."""
    return stack_env("gcs")["KANAL_GCS_ENDPOINT"]


@pytest.fixture(scope="session")
def hdfs() -> str:
    """WebHDFS URL of the real single-node HDFS."""
    return stack_env("hdfs")["KANAL_HDFS_URL"]


@pytest.fixture(scope="session")
def connect_peer() -> str:
    """URL of the Apache Kafka Connect reference worker."""
    return stack_env("connect")["CONNECT_PEER_URL"]


@pytest.fixture(scope="session")
def kube() -> dict[str, str]:
    """KUBECONFIG and KUBECTL of the real kube-apiserver."""
    env = stack_env("k8s")
    return {"KUBECONFIG": env["KUBECONFIG"], "KUBECTL": env["KUBECTL"]}


@pytest.fixture(scope="session")
def schema_registry_server() -> Iterator[TestRegistry]:
    """One schema registry for the session, on an ephemeral port."""
    server = TestRegistry().start()
    yield server
    server.stop()


@pytest.fixture
def schema_registry(schema_registry_server: TestRegistry) -> Iterator[TestRegistry]:
    """The session's registry with its switches reset after the test (subjects stay:
    tests use unique topic names)."""
    yield schema_registry_server
    schema_registry_server.failing_with = 0
    schema_registry_server.users, schema_registry_server.token = {}, None
    schema_registry_server.state.compatibility = "BACKWARD"
    if schema_registry_server._server is None:
        schema_registry_server.start()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topics, containers and connector names."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def new_topic(kafka: str) -> Callable[..., str]:
    """Create a topic with ``partitions`` partitions and return its name."""
    admin = AdminClient({"bootstrap.servers": kafka})

    def create(prefix: str = "t", partitions: int = 1) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
        return name
    return create


@pytest.fixture
def kanal_env(kafka: str) -> Iterator[dict[str, str]]:
    env = dict(os.environ, KANAL_BOOTSTRAP_SERVERS=kafka, PYTHONUNBUFFERED="1")
    yield env
