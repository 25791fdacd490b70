"""A storage sink task given a configuration its validate would refuse (one that skipped
validation) refuses to start with the same error, naming the key: the runtime parses the
settings and builds the task, and its status shows that error. No store is contacted."""

from __future__ import annotations

from typing import Any

import pytest

from kanal_worker.api import ConfigError, TopicPartition
from kanal_worker.connectors.gcs.settings import GcsSinkSettings
from kanal_worker.connectors.gcs.task import GcsSinkTask
from kanal_worker.connectors.hdfs.settings import HdfsSinkSettings
from kanal_worker.connectors.hdfs.task import HdfsSinkTask
from kanal_worker.connectors.s3.settings import S3SinkSettings
from kanal_worker.connectors.s3.task import S3SinkTask

SINKS: list[tuple[Any, Any, dict[str, str]]] = [
    (S3SinkTask, S3SinkSettings, {"s3.bucket.name": "kanal-bucket", "store.url": "http://127.0.0.1:1"}),
    (GcsSinkTask, GcsSinkSettings, {"gcs.bucket.name": "kanal-bucket", "store.url": "http://127.0.0.1:1"}),
    (HdfsSinkTask, HdfsSinkSettings, {"hdfs.url": "http://127.0.0.1:1"}),
]


class Context:
    task_id = "sink-0"

    def assignment(self) -> set[TopicPartition]:
        return set()

    def request_commit(self) -> None:
        pass


@pytest.mark.parametrize(("task", "settings", "store"), SINKS, ids=["s3", "gcs", "hdfs"])
@pytest.mark.parametrize(("key", "value", "message"), [
    ("format.class", "io.confluent.connect.s3.format.csv.CsvFormat", "Unknown format class"),
    ("partitioner.class", "io.confluent.connect.storage.partitioner.WeeklyPartitioner",
     "Unknown partitioner class"),
    ("behavior.on.null.values", "write", "needs store.kafka.keys=true"),
], ids=["format", "partitioner", "tombstones-without-keys"])
def test_the_task_refuses_to_start_naming_the_key(task: Any, settings: Any,
                                                  store: dict[str, str], key: str, value: str,
                                                  message: str) -> None:
    with pytest.raises(ConfigError) as refused:  # the runtime parses, then builds the task
        task(settings.parse({"topics": "t", "format.class": "JsonFormat", **store,
                             key: value}), Context())
    assert refused.value.key == key
    assert message in refused.value.message
