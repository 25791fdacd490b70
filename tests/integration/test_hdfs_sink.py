"""HdfsSinkConnector against the real broker and a real HDFS (Hadoop's MiniDFSCluster).

Connectors run through Kanal's runtime: an in-process ``StandaloneHerder`` or a
``kanal standalone`` subprocess that the crash test kills with SIGKILL. Files are read
back over WebHDFS (fsspec) with each format's standard reader.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from fsspec.implementations.webhdfs import WebHDFS

from kanal_worker.config.properties import load_properties
from kanal_worker.runtime.status import State
from kanal_worker.runtime.validation import errors_of, validate
from tests.integration.blackout import BlackoutProxy
from tests.integration.object_store import (
    first_task,
    herder_running,
    outage_run,
    produce_seed,
    sigkill_run,
)
from tests.integration.standalone import wait_for
from tests.integration.storage_data import (
    ENVELOPE_SCHEMA,
    HOURLY,
    JSON_VALUES,
    assert_hourly_files,
    read_back,
    speeding,
)
from tests.kafka_helpers import committed, produce

pytestmark = pytest.mark.integration
OUTAGE_SECONDS = float(os.environ.get("KANAL_TEST_OUTAGE_SECONDS", "10"))
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def webhdfs(url: str, user: str = "kanal") -> WebHDFS:
    parts = urlsplit(url)
    return WebHDFS(parts.hostname, port=parts.port, user=user, skip_instance_cache=True)


def paths(fs: WebHDFS, root: str) -> list[str]:
    try:
        return list(fs.find(f"/{root}"))
    except FileNotFoundError:
        return []


def files(fs: WebHDFS, root: str) -> dict[str, bytes]:
    """The files under /``root``, by name relative to /, read over WebHDFS."""
    return {path.lstrip("/"): fs.cat_file(path) for path in paths(fs, root)}


def sink(hdfs: str, root: str, **extra: str) -> dict[str, str]:
    """What a user writes: Confluent's class and keys."""
    return {"connector.class": "io.confluent.connect.hdfs.HdfsSinkConnector", "hdfs.url": hdfs,
            "topics.dir": f"{root}/topics", "logs.dir": f"{root}/logs",
            "kanal.hdfs.user": "kanal", **extra}


def test_seed_vehicle_speeding_to_hourly_folders(kafka: str, hdfs: str,
                                                 new_topic: Callable[..., str],
                                                 unique: str) -> None:
    """The seed's pipeline into HDFS: JSON, one folder per hour, record by record."""
    topic = new_topic("vehicle.speeding", 2)
    produced = produce_seed(kafka, topic)
    name = f"hdfs-sink-{unique}"
    fs = webhdfs(hdfs)
    with herder_running(kafka, name, {**sink(hdfs, f"seed-{unique}"), "topics": topic,
                                      "format.class": "JsonFormat", "flush.size": "100",
                                      **JSON_VALUES, **HOURLY}):
        wait_for(lambda: sum(d.count(b"\n") for d in files(fs, f"seed-{unique}/topics")
                             .values()) >= 1200, 90, "1200 records in files")
        wait_for(lambda: committed(kafka, f"connect-{name}", topic, 2) == {0: 600, 1: 600}, 30,
                 "offsets committed")
    written = {name.removeprefix(f"seed-{unique}/"): data
               for name, data in files(fs, f"seed-{unique}/topics").items()}
    assert_hourly_files(written, topic, produced)
    # no temporary file left behind, and the stopped task removed its directories
    assert fs.ls(f"/seed-{unique}/logs/+tmp") == []


@pytest.mark.parametrize(("config", "suffix"), [
    ({}, ".avro"),
    ({"format.class": "io.confluent.connect.hdfs.json.JsonFormat"}, ".json"),
    ({"format.class": "io.confluent.connect.hdfs.parquet.ParquetFormat"}, ".snappy.parquet"),
], ids=["avro-default", "json", "parquet"])
def test_each_format_reads_back_with_its_standard_reader(
        kafka: str, hdfs: str, new_topic: Callable[..., str], unique: str,
        config: dict[str, str], suffix: str) -> None:
    topic = new_topic("formats", 1)
    expected: list[Any] = [speeding(i) for i in range(500)]
    produce(kafka, topic, [orjson.dumps({"schema": ENVELOPE_SCHEMA, "payload": v})
                           for v in expected])
    file_format = config.get("format.class", "AvroFormat").rsplit(".", 1)[-1]
    fs = webhdfs(hdfs)
    root = f"formats-{unique}"
    with herder_running(kafka, f"formats-{unique}", {
            **sink(hdfs, root), "topics": topic, "flush.size": "100",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter", **config}):
        wait_for(lambda: len(files(fs, f"{root}/topics")) >= 5, 60, "5 files")
    written = files(fs, f"{root}/topics")
    assert sorted(written) == [f"{root}/topics/{topic}/partition=0/{topic}+0+{start:010d}{suffix}"
                               for start in range(0, 500, 100)]
    assert [v for name in sorted(written)
            for v in read_back(file_format, name, written[name])] == expected


def test_sigkill_leaves_no_half_file_and_every_record_once(
        tmp_path: Path, kafka: str, hdfs: str, new_topic: Callable[..., str],
        unique: str) -> None:
    """Killed mid-write, the task leaves whole files only (every line parses) and a
    replay neither loses nor duplicates a record."""
    fs = webhdfs(hdfs)
    root = f"crash-{unique}"
    sigkill_run(tmp_path, kafka, new_topic("crash", 2),
                {"name": f"crash-{unique}", **sink(hdfs, root)},
                lambda: len(paths(fs, f"{root}/topics")), lambda: files(fs, f"{root}/topics"),
                2_000, unique)


def test_namenode_outage_retries_without_loss_or_duplicates(
        kafka: str, hdfs: str, new_topic: Callable[..., str], unique: str) -> None:
    """The namenode cut off (files are written to the datanode it redirects to, so the
    namenode's outage stops every create, append and rename)."""
    namenode = urlsplit(hdfs)
    proxy = BlackoutProxy((namenode.hostname or "", namenode.port or 80)).start()
    root = f"outage-{unique}"
    fs = webhdfs(hdfs)
    details = " ".join(outage_run(kafka, new_topic("outage", 1), f"outage-{unique}",
                                  sink(proxy.url, root), proxy,
                                  lambda: files(fs, f"{root}/topics"), OUTAGE_SECONDS))
    assert "retrying write" in details and "HDFS unreachable" in details, details


def test_directory_without_write_permission_is_named_by_validate_and_task_status(
        kafka: str, hdfs: str, new_topic: Callable[..., str], unique: str) -> None:
    owner = webhdfs(hdfs, user="owner")
    owner.mkdir(f"/locked-{unique}")
    owner.chmod(f"/locked-{unique}", "755")
    topic = new_topic("locked", 1)
    name = f"locked-{unique}"
    config = {**sink(hdfs, f"locked-{unique}"), "topics": topic, "kanal.hdfs.user": "intruder",
              "flush.size": "1", "format.class": "JsonFormat", **JSON_VALUES}
    problems = errors_of(validate({**config, "name": name}))
    assert sorted(problems) == ["logs.dir", "topics.dir"], problems
    assert problems["topics.dir"][0].startswith(f"User intruder may not write to /locked-{unique}:")
    assert problems["topics.dir"][0].endswith("grant write access or set kanal.hdfs.user")
    assert errors_of(validate({**config, "name": name, "kanal.hdfs.user": "owner"})) == {}
    owner.chmod(f"/locked-{unique}", "777")
    with herder_running(kafka, name, config) as herder:
        owner.chmod(f"/locked-{unique}", "755")  # taken away after the connector started
        produce(kafka, topic, [b'{"a": 1}'])
        wait_for(lambda: first_task(herder, name)["state"] == State.FAILED.value, 60,
                 "the task to fail")
        trace = first_task(herder, name)["trace"]
        assert "HDFS refused user intruder" in trace, trace
        assert "grant that user write access to topics.dir and logs.dir" in trace, trace
        assert all(offset < 0 for offset in committed(kafka, f"connect-{name}", topic,
                                                      1).values())  # nothing committed


def test_unreachable_namenode_is_retried_and_shown_in_status(
        kafka: str, new_topic: Callable[..., str], unique: str) -> None:
    topic = new_topic("unreachable", 1)
    produce(kafka, topic, [b'{"a": 1}'])
    name = f"unreachable-{unique}"
    with herder_running(kafka, name, {**sink("http://127.0.0.1:1", "nowhere"), "topics": topic,
                                      "flush.size": "1", "format.class": "JsonFormat",
                                      **JSON_VALUES}) as herder:
        wait_for(lambda: "HDFS unreachable" in (herder.runners()[0].status.detail or ""), 60,
                 "the retry in the task status")
        detail = herder.runners()[0].status.detail or ""
        assert "check hdfs.url" in detail, detail
        assert first_task(herder, name)["state"] == State.RUNNING.value


def test_invalid_configuration_errors_name_each_key(hdfs: str) -> None:
    base = {"name": "bad", "connector.class": "io.confluent.connect.hdfs.HdfsSinkConnector",
            "topics": "t", "hdfs.url": "hdfs://namenode:8020", "flush.size": "3"}

    def errors(**changes: str | None) -> dict[str, list[str]]:
        config = {**base, **{k.replace("_", "."): v for k, v in changes.items()}}
        return errors_of(validate({k: v for k, v in config.items() if v is not None}))

    # Confluent's quickstart configuration, unchanged (its namenode is not running here,
    # which is not a configuration error: the task retries then)
    assert errors() == {}
    example = load_properties(EXAMPLES / "hdfs-sink.properties")
    assert errors_of(validate({**example, "hdfs.url": hdfs})) == {}
    assert "Missing required configuration" in errors(hdfs_url=None)["hdfs.url"][0]
    assert "Invalid HDFS URL 'namenode:8020'" in errors(hdfs_url="namenode:8020")["hdfs.url"][0]
    assert "Unknown format class io.confluent.connect.hdfs.string.StringFormat" in \
        errors(format_class="io.confluent.connect.hdfs.string.StringFormat")["format.class"][0]
    assert "Unknown partitioner class" in errors(
        partitioner_class="io.confluent.connect.hdfs.partitioner.MonthlyPartitioner")[
        "partitioner.class"][0]
    assert "greater than or equal to 1" in errors(flush_size="0")["flush.size"][0]
