"""Fixtures of the reliability suite: the real stack, unique names, cleanup."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.conftest import stack_env
from tests.reliability.faults import container_client


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: long fault-injection runs (make chaos runs only these)")


def chaos_records(default: int) -> int:
    """Records of a chaos run: ``KANAL_CHAOS_RECORDS`` when set (``make chaos`` sets
    it), else ``default``."""
    return int(os.environ.get("KANAL_CHAOS_RECORDS", default))


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    """Every variable ``dev/stack env`` exports for Kafka (all listeners) and Azurite."""
    return stack_env("kafka", "azurite")


@pytest.fixture
def topic_factory(stack: dict[str, str]) -> Iterator[Callable[[str, int], str]]:
    admin = AdminClient({"bootstrap.servers": stack["KANAL_BOOTSTRAP_SERVERS"]})
    created: list[str] = []

    def create(prefix: str, partitions: int) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
        created.append(name)
        return name
    yield create
    if created:
        for future in admin.delete_topics(created).values():
            with contextlib.suppress(Exception):  # leftovers are harmless
                future.result(30)


@pytest.fixture
def container(stack: dict[str, str]) -> Iterator[str]:
    """A unique container name, deleted afterwards (Azurite keeps blobs in memory)."""
    name = f"rel-{uuid.uuid4().hex[:12]}"
    yield name
    with contextlib.suppress(Exception):  # never created
        container_client(stack["AZURITE_CONNECTION_STRING"], name).delete_container()
