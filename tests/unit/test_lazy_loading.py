"""A worker imports only what it runs: the registry finds a plugin by any of its names,
importing only that plugin when the name designates its entry point (listings still show
every plugin); the Azure SDK waits for an Azure task, FastAPI for a REST listener."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from kanal_worker.api import ConfigError, SinkConnector, SinkTask
from kanal_worker.api.config import Settings
from kanal_worker.cli import _start_rest
from kanal_worker.config.worker import WorkerSettings
from kanal_worker.runtime import registry
from kanal_worker.runtime.offsets import MemoryOffsetStore
from kanal_worker.runtime.registry import GROUPS, find, plugins
from kanal_worker.runtime.standalone import StandaloneHerder

HEAVY = ("azure", "boto3", "botocore", "pyarrow", "fastavro", "opensearchpy", "aiohttp",
         "kanal_worker.connectors.azure_blob", "kanal_worker.connectors.elasticsearch",
         "kanal_worker.connectors.s3",
         "kanal_worker.converters.avro", "kanal_worker.converters.registry",
         "kanal_worker.converters.json_schema",
         "kanal_worker.transforms.")


class RenamedSinkConnector(SinkConnector[Settings]):
    """A plugin whose old class name is not its entry point's."""

    task_class = SinkTask
    aliases = ("com.example.LegacySinkConnector",)


class NotAPlugin:
    pass


def imported_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60)
    return set(json.loads(out.stdout.splitlines()[-1]))


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY)}


def clear_caches() -> None:
    registry._entry_points.cache_clear()
    registry._load.cache_clear()
    registry._index.cache_clear()


@pytest.fixture
def fake_connectors(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def fake_entry_points(group: str) -> list[EntryPoint]:
        assert group == GROUPS["connector"]
        here = __name__
        return [EntryPoint("Broken", "kanal_tests_no_such_module:Nope", group),
                EntryPoint("NotAPlugin", f"{here}:NotAPlugin", group),
                EntryPoint("RenamedSinkConnector", f"{here}:RenamedSinkConnector", group)]

    clear_caches()
    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    yield
    clear_caches()


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_name_of_every_plugin_finds_it(group: str) -> None:
    for info in plugins(group).values():
        names: set[str] = {info.name, *info.cls.aliases}
        names |= {name.rsplit(".", 1)[-1] for name in names}
        for name in names:
            assert find(group, f" {name} ", "key").cls is info.cls


def test_an_alias_named_unlike_its_entry_point_is_found(fake_connectors: Any) -> None:
    for name in ("com.example.LegacySinkConnector", "LegacySinkConnector", "LegacySink",
                 "RenamedSink"):
        assert find("connector", name, "connector.class").cls is RenamedSinkConnector


def test_broken_entry_points_are_skipped(fake_connectors: Any) -> None:
    assert list(plugins("connector")) == ["RenamedSinkConnector"]
    with pytest.raises(ConfigError) as info:
        find("connector", "Broken", "connector.class")
    assert info.value.key == "connector.class"
    assert info.value.message.endswith("available: RenamedSinkConnector")


def test_finding_plugins_imports_only_those() -> None:
    modules = imported_after(
        "from kanal_worker.runtime.registry import find\n"
        "find('connector', 'org.apache.kafka.connect.file.FileStreamSinkConnector', 'k')\n"
        "find('converter', 'org.apache.kafka.connect.json.JsonConverter', 'k')\n"
        "find('converter', 'org.apache.kafka.connect.storage.SimpleHeaderConverter', 'k')")
    assert "kanal_worker.connectors.file" in modules
    assert heavy(modules) == set()


def imported_to_list_describe_and_validate(connector: str, key: str,
                                           config: dict[str, str], errors: list[str]
                                           ) -> set[str]:
    """The modules a fresh interpreter holds after listing every connector, describing
    ``connector``'s keys (``key`` among them) and validating ``config`` with it, which
    must find ``errors`` (by key)."""
    return imported_after(
        "from kanal_worker.api.config import describe\n"
        "from kanal_worker.runtime.registry import find, plugins\n"
        "from kanal_worker.runtime.validation import errors_of, validate\n"
        f"info = find('connector', {connector!r}, 'k')\n"
        "assert info.name in plugins('connector')\n"
        f"assert any(k.name == {key!r} for k in describe(info.cls.settings))\n"
        "found = errors_of(validate({'name': 'a', 'connector.class': info.class_name,\n"
        f"    **{config!r}}}))\n"
        f"assert list(found) == {errors!r}, found")


def test_the_azure_sink_is_listed_described_and_validated_without_its_sdk() -> None:
    modules = imported_to_list_describe_and_validate(
        "AzureBlobStorageSink", "azblob.account.name",
        {"topics": "t", "flush.size": "10", "format.class": "ParquetFormat",
         "azblob.auth.method": "ACCOUNT_KEY", "azblob.account.name": "acct"},
        ["azblob.account.key"])
    assert "kanal_worker.connectors.azure_blob" in modules
    assert {m for m in modules if m.split(".")[0] in ("azure", "pyarrow")} == set()


def test_the_elasticsearch_sink_is_listed_described_and_checked_without_its_client() -> None:
    modules = imported_to_list_describe_and_validate(
        "ElasticsearchSink", "connection.url",
        {"topics": "Speeding", "connection.url": "http://127.0.0.1:1"}, ["topics"])
    assert "kanal_worker.connectors.elasticsearch" in modules
    assert {m for m in modules if m.split(".")[0] in ("opensearchpy", "aiohttp")} == set()


@pytest.mark.parametrize(("config", "key", "package", "clients"), [
    ({"connector.class": "S3SinkConnector", "format.class": "JsonFormat",
      "s3.bucket.name": "telemetry", "aws.access.key.id": "AKIA"},
     "aws.secret.access.key", "s3", ("boto3", "botocore")),
    ({"connector.class": "io.confluent.connect.gcs.GcsSinkConnector",
      "format.class": "JsonFormat"}, "gcs.bucket.name", "gcs", ("google",)),
    ({"connector.class": "io.confluent.connect.hdfs.HdfsSinkConnector", "hdfs.url": "ftp://nn"},
     "hdfs.url", "hdfs", ("fsspec", "requests")),
], ids=["s3", "gcs", "hdfs"])
def test_an_object_store_sink_is_checked_without_its_client(
        config: dict[str, str], key: str, package: str, clients: tuple[str, ...]) -> None:
    """The client loads when the store is contacted: by a task, or by validate once the
    configuration itself is right (it probes the bucket or the directories)."""
    modules = imported_after(
        "from kanal_worker.runtime.validation import errors_of, validate\n"
        f"errors = errors_of(validate({{'name': 'a', 'topics': 't', **{config!r}}}))\n"
        f"assert list(errors) == [{key!r}], errors")
    assert f"kanal_worker.connectors.{package}" in modules
    assert {m for m in modules if m.split(".")[0] in clients} == set()


def test_a_standalone_worker_without_listeners_does_not_load_fastapi() -> None:
    assert {"fastapi", "uvicorn"}.isdisjoint(imported_after("import kanal_worker.cli"))
    herder = StandaloneHerder({}, "test:8083", MemoryOffsetStore())
    settings: WorkerSettings = WorkerSettings.parse({"listeners": ""})
    assert _start_rest(herder, {"listeners": ""}, settings) is None
    herder.stop_all()


def test_a_task_process_does_not_import_the_metrics_server() -> None:
    """Only the worker serves ``/metrics``; a task process sends its readings over its pipe
    and needs neither the Prometheus client nor an HTTP server."""
    modules = imported_after(
        "from kanal_worker.runtime import process\n"
        "from kanal_worker.runtime.registry import find\n"
        "from kanal_worker.runtime.status import TargetState\n"
        "from kanal_worker.runtime.task import TaskId\n"
        "plugin = find('connector', 'FileStreamSink', 'connector.class')\n"
        "runner = process.SinkTaskRunner(TaskId('c', 0), {}, {}, 'w', TargetState.STARTED,\n"
        "                                print, plugin.cls)\n"
        "assert process.metrics_message(runner)[0] == 'metrics'")
    assert "kanal_worker.connectors.file" in modules
    assert not {m for m in modules if m.split(".")[0] in ("prometheus_client", "wsgiref")}
    assert "kanal_worker.runtime.metrics" not in modules
