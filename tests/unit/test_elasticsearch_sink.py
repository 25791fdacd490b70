"""The Elasticsearch sink's pure logic: actions, request cutting, and what each answer
of the bulk API leads to (a scripted client stands for the server's answers; the real
server's are in tests/integration/test_elasticsearch_sink.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from opensearchpy import exceptions as os_errors

from kanal_worker.api import ConfigError, ConnectError, RetriableError, SinkBatch, SinkRecord
from kanal_worker.connectors.elasticsearch.connector import ElasticsearchSinkConnector
from kanal_worker.connectors.elasticsearch.settings import ElasticsearchSinkSettings
from kanal_worker.connectors.elasticsearch.task import (
    ElasticsearchSinkTask,
    document_id,
    with_timestamp,
)

Answer = dict[str, Any] | Exception


class Indices:
    def exists(self, index: str) -> bool:
        return True


class ScriptedClient:
    """Answers bulk requests from a script, recording each request's documents."""

    def __init__(self, *answers: Answer | Callable[[list[Any]], Answer]) -> None:
        self.answers = list(answers)
        self.requests: list[list[Any]] = []
        self.indices = Indices()

    def bulk(self, body: bytes, filter_path: str = "") -> dict[str, Any]:
        lines = [orjson.loads(line) for line in body.splitlines()]
        self.requests.append(lines)
        answer = self.answers.pop(0)
        if callable(answer):
            answer = answer(lines)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        pass


class Context:
    task_id = "es-0"


def task(client: ScriptedClient, **config: str) -> ElasticsearchSinkTask:
    settings = ElasticsearchSinkSettings.parse({
        "connection.url": "http://127.0.0.1:9200", "retry.backoff.ms": "1",
        "topics": "speeding", **{k.replace("_", "."): v for k, v in config.items()}})
    return ElasticsearchSinkTask(settings, Context(), client=client)  # type: ignore[arg-type]


def batch(count: int, key: str | None = None) -> SinkBatch:
    return SinkBatch(SinkRecord(topic="speeding", kafka_partition=0, kafka_offset=i, key=key,
                                value={"n": i}, encoded_value=orjson.dumps({"n": i}))
                     for i in range(count))


def ok(lines: list[Any]) -> dict[str, Any]:
    return {"errors": False}


def item(status: int, kind: str = "") -> dict[str, Any]:
    return {"index": {"status": status, "error": {"type": kind, "reason": "r"}}}


def test_ids_are_topic_partition_offset_and_keys_carry_the_offset_as_version() -> None:
    client = ScriptedClient(ok, ok)
    task(client, key_ignore="true").write(batch(2))
    assert client.requests[0] == [{"index": {"_index": "speeding", "_id": "speeding+0+0"}},
                                  {"n": 0},
                                  {"index": {"_index": "speeding", "_id": "speeding+0+1"}},
                                  {"n": 1}]
    task(client).write(batch(1, key="v1"))
    assert client.requests[1][0] == {"index": {"_index": "speeding", "_id": "v1",
                                               "version": 0, "version_type": "external"}}


def test_requests_are_cut_by_batch_size_and_bytes() -> None:
    client = ScriptedClient(*[ok] * 10)
    task(client, key_ignore="true", batch_size="3").write(batch(7))
    assert [len(r) // 2 for r in client.requests] == [3, 3, 1]
    client = ScriptedClient(*[ok] * 10)
    task(client, key_ignore="true", bulk_size_bytes="130").write(batch(4))
    assert [len(r) // 2 for r in client.requests] == [2, 2]


def test_items_refused_with_429_are_sent_again_alone() -> None:
    client = ScriptedClient({"errors": True, "items": [item(201), item(429, "es_rejected_"
                                                                        "execution_exception")]},
                            ok)
    task(client, key_ignore="true").write(batch(2))
    assert client.requests[1] == [{"index": {"_index": "speeding", "_id": "speeding+0+1"}},
                                  {"n": 1}]


def test_a_version_conflict_is_a_replay_and_counts_as_written() -> None:
    client = ScriptedClient({"errors": True, "items": [item(409, "version_conflict_engine_"
                                                                 "exception")]})
    task(client).write(batch(1, key="v1"))
    assert len(client.requests) == 1


@pytest.mark.parametrize("failure", [
    os_errors.TransportError(503, "unavailable", {}),
    os_errors.TransportError(429, "too_many_requests", {}),
    os_errors.ConnectionError("N/A", "refused", OSError("refused")),
    os_errors.ConnectionTimeout("TIMEOUT", "read timed out", OSError("timeout")),
])
def test_outages_are_retried_max_retries_times_then_handed_to_the_runtime(
        failure: Exception) -> None:
    client = ScriptedClient(*[failure] * 3)
    with pytest.raises(RetriableError):
        task(client, key_ignore="true", max_retries="2").write(batch(1))
    assert len(client.requests) == 3


def test_refused_credentials_stop_the_task_naming_the_keys() -> None:
    client = ScriptedClient(os_errors.AuthenticationException(401, "security_exception", {}))
    with pytest.raises(ConnectError) as raised:
        task(client, key_ignore="true").write(batch(1))
    assert not isinstance(raised.value, RetriableError)
    assert "set connection.username and connection.password" in str(raised.value)


def test_document_ids_of_keys() -> None:
    assert document_id("v1") == "v1"
    assert document_id(42) == "42"
    assert document_id(b"k") == "k"
    with pytest.raises(ConnectError, match=r"set key\.ignore=true"):
        document_id(None)
    with pytest.raises(ConnectError, match="ExtractField"):
        document_id({"id": 1})


def test_data_stream_documents_get_the_record_timestamp() -> None:
    assert with_timestamp(b'{"n": 1}', 5) == b'{"@timestamp":5,"n": 1}'
    assert with_timestamp(b"{}", 5) == b'{"@timestamp":5}'
    assert with_timestamp(b"7", 5) == b"7"


def test_the_task_refuses_a_configuration_validate_refuses() -> None:
    with pytest.raises(ConfigError, match=r"data\.stream\.dataset"):
        task(ScriptedClient(), data_stream_type="LOGS", key_ignore="true")
    with pytest.raises(ConfigError, match=r"set key\.ignore=true"):
        task(ScriptedClient(), data_stream_type="LOGS", data_stream_dataset="telemetry")


def test_tasks_poll_enough_records_to_fill_the_requests_in_flight() -> None:
    connector = ElasticsearchSinkConnector()
    base = {"connection.url": "http://127.0.0.1:9200", "topics": "speeding"}
    polls = [c["consumer.override.max.poll.records"] for c in connector.task_configs(base, 2)]
    assert polls == ["10000", "10000"]  # batch.size 2000 x 5 in flight
    upsert = connector.task_configs({**base, "write.method": "upsert"}, 1)
    assert upsert[0]["consumer.override.max.poll.records"] == "2000"
    chosen = {**base, "consumer.override.max.poll.records": "300"}
    assert connector.task_configs(chosen, 1) == [chosen]


def test_confluent_spellings_of_the_choices_parse() -> None:
    settings = ElasticsearchSinkSettings.parse({
        "connection.url": "eshost:9200,https://eshost2:9200/", "write.method": "UPSERT",
        "behavior.on.null.values": "DELETE", "behavior.on.malformed.documents": "WARN",
        "data.stream.type": "logs", "data.stream.dataset": "telemetry"})
    assert settings.connection_url == ["http://eshost:9200", "https://eshost2:9200"]
    assert (settings.write_method, settings.behavior_on_null_values,
            settings.behavior_on_malformed_documents) == ("upsert", "delete", "warn")
    assert settings.index_for("vehicle.speeding") == "logs-telemetry-vehicle.speeding"
