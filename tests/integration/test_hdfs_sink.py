"""HdfsSinkConnector against the real broker and a real HDFS (Hadoop's MiniDFSCluster).

Connectors run through Kanal's runtime: an in-process ``StandaloneHerder`` or a
``kanal standalone`` subprocess that the crash test kills with SIGKILL. Files are read
back over WebHDFS (fsspec) with each format's standard reader.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from fsspec.implementations.webhdfs import WebHDFS

from kanal_worker.config.properties import load_properties
from kanal_worker.runtime.status import State
from kanal_worker.runtime.validation import errors_of, validate
from tests.integration import storage_scenarios
from tests.integration.blackout import BlackoutProxy
from tests.integration.standalone import (
    Standalone,
    wait_for,
    worker_properties,
    write_properties,
)
from tests.integration.storage_data import (
    HOURLY,
    JSON_VALUES,
    assert_hourly_files,
    json_lines,
    produce_seed_readings,
)
from tests.integration.storage_scenarios import (
    first_write_fails,
    herder_running,
    line_total,
    task_state,
)
from tests.kafka_helpers import committed, produce

pytestmark = pytest.mark.integration
OUTAGE_SECONDS = float(os.environ.get("KANAL_TEST_OUTAGE_SECONDS", "10"))
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def webhdfs(url: str, user: str = "kanal") -> WebHDFS:
    parts = urlsplit(url)
    return WebHDFS(parts.hostname, port=parts.port, user=user, skip_instance_cache=True)


class Directory:
    """The files a sink writes under /``root`` (its topics.dir is ``root``/topics), named
    from ``topics/`` on as in an object store (a ``StoreView``), read over WebHDFS."""

    def __init__(self, hdfs: str, root: str) -> None:
        self.fs = webhdfs(hdfs)
        self.root = root

    def paths(self) -> list[str]:
        try:
            return list(self.fs.find(f"/{self.root}/topics"))
        except FileNotFoundError:
            return []

    def names(self) -> list[str]:
        return [path.removeprefix(f"/{self.root}/") for path in self.paths()]

    def objects(self) -> dict[str, bytes]:
        return {path.removeprefix(f"/{self.root}/"): self.fs.cat_file(path)
                for path in self.paths()}


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
    produced = produce_seed_readings(kafka, topic)
    name = f"hdfs-sink-{unique}"
    directory = Directory(hdfs, f"seed-{unique}")
    with herder_running(kafka, name, {**sink(hdfs, directory.root), "topics": topic,
                                      "format.class": "JsonFormat", "flush.size": "100",
                                      **JSON_VALUES, **HOURLY}):
        wait_for(lambda: line_total(directory) >= 1200, 90, "1200 records in files")
        wait_for(lambda: committed(kafka, f"connect-{name}", topic, 2) == {0: 600, 1: 600}, 30,
                 "offsets committed")
    assert_hourly_files(directory.objects(), topic, produced, ends_names=True)
    # no temporary file left behind, and the stopped task removed its directories
    assert directory.fs.ls(f"/seed-{unique}/logs/+tmp") == []


@pytest.mark.parametrize(("config", "suffix"), [
    ({"format.class": "io.confluent.connect.hdfs.avro.AvroFormat"}, ".avro"),
    ({"format.class": "io.confluent.connect.hdfs.json.JsonFormat"}, ".json"),
    ({"format.class": "io.confluent.connect.hdfs.parquet.ParquetFormat"}, ".snappy.parquet"),
], ids=["avro", "json", "parquet"])
def test_each_format_reads_back_with_its_standard_reader(
        kafka: str, hdfs: str, new_topic: Callable[..., str], unique: str,
        config: dict[str, str], suffix: str) -> None:
    directory = Directory(hdfs, f"formats-{unique}")
    storage_scenarios.each_record_reads_back(kafka, new_topic("formats", 1),
                                             f"formats-{unique}", directory,
                                             sink(hdfs, directory.root), config, suffix,
                                             ends_names=True)


def test_sigkill_leaves_no_half_file_and_every_record_once(
        tmp_path: Path, kafka: str, hdfs: str, new_topic: Callable[..., str],
        unique: str) -> None:
    """Killed mid-write, the task leaves whole files only (every line parses) and a
    replay neither loses nor duplicates a record."""
    directory = Directory(hdfs, f"crash-{unique}")
    storage_scenarios.sigkills_keep_every_record_exactly_once(
        tmp_path, kafka, new_topic("crash", 2), 2_000, directory,
        {"name": f"crash-{unique}", **sink(hdfs, directory.root)}, unique)


def test_a_task_resumes_after_the_files_named_in_hdfs(
        kafka: str, hdfs: str, new_topic: Callable[..., str], unique: str) -> None:
    """As kafka-connect-hdfs, a task reads where to resume from the end offsets in the
    file names: a connector that finds files for records its group never committed (here
    a new name over the same directory) writes none of them again, even when it would cut
    them elsewhere (flush.size 100 then 50)."""
    directory = Directory(hdfs, f"resume-{unique}")
    topic = new_topic("resume", 1)
    records = [orjson.dumps({"seq": seq}) for seq in range(400)]
    produce(kafka, topic, records[:300], partition=0)
    config = {**sink(hdfs, directory.root), "topics": topic, "format.class": "JsonFormat",
              **JSON_VALUES}
    first, second = f"resume-{unique}", f"resume-again-{unique}"
    with herder_running(kafka, first, {**config, "flush.size": "100"}):
        wait_for(lambda: committed(kafka, f"connect-{first}", topic, 1) == {0: 300}, 90,
                 "the first connector's offsets committed")
    produce(kafka, topic, records[300:], partition=0)
    with herder_running(kafka, second, {**config, "flush.size": "50"}):
        wait_for(lambda: committed(kafka, f"connect-{second}", topic, 1) == {0: 400}, 90,
                 "the second connector's offsets committed")
    base = f"topics/{topic}/partition=0/{topic}+0+"
    assert sorted(directory.names()) == [
        f"{base}{start:010d}+{end:010d}.json"
        for start, end in ((0, 99), (100, 199), (200, 299), (300, 349), (350, 399))]
    assert [r["seq"] for r in json_lines(dict(sorted(directory.objects().items())))] == \
        list(range(400))


def test_temporary_files_of_a_killed_task_are_removed_when_its_partition_opens(
        tmp_path: Path, kafka: str, hdfs: str, new_topic: Callable[..., str],
        unique: str) -> None:
    """A task killed while it appends to a file leaves that file under logs.dir/+tmp;
    the next task to open the partition removes it, as kafka-connect-hdfs does."""
    directory = Directory(hdfs, f"stale-{unique}")
    topic = new_topic("stale", 1)
    produce(kafka, topic, [orjson.dumps({"seq": seq, "pad": "x" * 1000}) for seq in range(3000)],
            partition=0)
    worker, log = worker_properties(tmp_path, kafka), tmp_path / "kanal.log"
    properties = write_properties(tmp_path / "sink.properties", {
        "name": f"stale-{unique}", **sink(hdfs, directory.root), "topics": topic,
        "format.class": "JsonFormat", "flush.size": "100000",
        "kanal.hdfs.part.size": str(1 << 20), **JSON_VALUES})
    temp = f"/{directory.root}/logs/+tmp"

    def temporary_files() -> list[str]:
        try:
            return [path for path in directory.fs.find(temp)
                    if path.rsplit("/", 1)[-1].startswith(f"{topic}+0+")]
        except FileNotFoundError:
            return []

    run = Standalone(worker, properties, log=log).start()
    try:
        wait_for(lambda: temporary_files() != [], 120, f"a file being written (log: {log})")
    finally:
        run.stop(signal.SIGKILL)
    left = temporary_files()
    assert left and directory.names() == []  # half a file, under its temporary name only
    run = Standalone(worker, properties, log=log).start()
    try:
        wait_for(lambda: not any(directory.fs.exists(path) for path in left), 120,
                 f"the killed task's temporary files removed (log: {log})")
        assert run.logged(b"temporary files left by an earlier task")
    finally:
        assert run.stop() == 0
    assert temporary_files() == []


def test_namenode_outage_retries_without_loss_or_duplicates(
        kafka: str, hdfs: str, new_topic: Callable[..., str], unique: str) -> None:
    """The namenode cut off (files are written to the datanode it redirects to, so the
    namenode's outage stops every create, append and rename)."""
    namenode = urlsplit(hdfs)
    proxy = BlackoutProxy((namenode.hostname or "", namenode.port or 80)).start()
    directory = Directory(hdfs, f"outage-{unique}")
    storage_scenarios.outage_loses_and_duplicates_nothing(
        kafka, new_topic("outage", 1), f"outage-{unique}", directory, proxy,
        lambda url: sink(url, directory.root), OUTAGE_SECONDS)


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
        trace = first_write_fails(herder, kafka, topic, name)
        assert "HDFS refused user intruder" in trace, trace
        assert "grant that user write access to topics.dir and logs.dir" in trace, trace
        assert all(offset < 0 for offset in committed(kafka, f"connect-{name}", topic,
                                                      1).values())  # nothing committed


def test_namenode_unreachable_after_start_is_retried_and_shown_in_status(
        kafka: str, hdfs: str, new_topic: Callable[..., str], unique: str) -> None:
    """validate refuses a namenode that does not answer (see the next test); one that
    goes away while the task runs is retried, and the status names hdfs.url."""
    namenode = urlsplit(hdfs)
    proxy = BlackoutProxy((namenode.hostname or "", namenode.port or 80)).start()
    topic = new_topic("unreachable", 1)
    name = f"unreachable-{unique}"
    with herder_running(kafka, name, {**sink(proxy.url, f"unreachable-{unique}"),
                                      "topics": topic, "flush.size": "1",
                                      "format.class": "JsonFormat", **JSON_VALUES}) as herder:
        proxy.stop()
        produce(kafka, topic, [b'{"a": 1}'])
        wait_for(lambda: "HDFS unreachable" in (herder.runners()[0].status.detail or ""), 60,
                 "the retry in the task status")
        detail = herder.runners()[0].status.detail or ""
        assert "check hdfs.url" in detail, detail
        assert task_state(herder, name)["state"] == State.RUNNING.value
    assert committed(kafka, f"connect-{name}", topic, 1)[0] < 0, "nothing committed"


def test_invalid_configuration_errors_name_each_key(hdfs: str) -> None:
    base = {"name": "bad", "connector.class": "io.confluent.connect.hdfs.HdfsSinkConnector",
            "topics": "t", "hdfs.url": "hdfs://namenode:8020", "flush.size": "3"}

    def errors(**changes: str | None) -> dict[str, list[str]]:
        config = {**base, **{k.replace("_", "."): v for k, v in changes.items()}}
        return errors_of(validate({k: v for k, v in config.items() if v is not None}))

    # Confluent's quickstart configuration: valid, but its namenode is not running here
    unreachable = errors()["hdfs.url"][0]
    assert unreachable.startswith("HDFS unreachable at http://namenode:9870/webhdfs/v1: "), \
        unreachable
    assert unreachable.endswith("check hdfs.url (and kanal.webhdfs.port for hdfs:// URLs)")
    assert errors(hdfs_url=hdfs) == {}
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
