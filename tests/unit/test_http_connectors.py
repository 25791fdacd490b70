"""The HTTP connectors' pure logic: settings, JSON pointers, templates, Retry-After and
the sink's retry schedule (the servers are in tests/integration/test_http_*.py)."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from kanal_worker.api import ConfigError
from kanal_worker.connectors.http.client import (
    HttpFailure,
    HttpUnavailable,
    judge,
    retry_after,
)
from kanal_worker.connectors.http.settings import HttpSinkSettings, HttpSourceSettings
from kanal_worker.connectors.http.sink import MAX_BACKOFF, HttpSinkTask, config_problems
from kanal_worker.connectors.http.source import (
    MISSING,
    HttpSourceTask,
    fill,
    reader,
    resolve,
    timestamp_of,
)

SINK = {"http.url": "http://127.0.0.1:1/x", "http.authorization.type": "none"}
SOURCE = {"http.request.url": "http://127.0.0.1:1/items", "kafka.topic": "t"}


def test_sink_defaults_are_aivens_with_escapes_understood() -> None:
    settings: HttpSinkSettings = HttpSinkSettings.parse(
        {**SINK, "batch.prefix": "[\\n", "http.authorization.type": "Static"})
    assert settings.http_authorization_type == "static"
    assert (settings.batch_prefix, settings.batch_separator, settings.batch_suffix) == \
        ("[\n", "\n", "\n")
    assert (settings.batching_enabled, settings.batch_max_size, settings.max_retries,
            settings.retry_backoff_ms, settings.http_timeout) == (False, 500, 1, 3000, 30)


@pytest.mark.parametrize(("config", "key", "words"), [
    ({"http.url": "ftp://host/x"}, "http.url", "use http(s)://"),
    ({"http.authorization.type": "basic"}, "http.authorization.type", "none"),
    ({"http.headers.additional": "X-One:1,broken"}, "http.headers.additional", "Name:value"),
    ({"batch.max.size": "0"}, "batch.max.size", "greater than or equal to 1"),
])
def test_sink_settings_name_the_bad_key(config: dict[str, str], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        HttpSinkSettings.parse({**SINK, **config})
    assert caught.value.key == key
    assert words in caught.value.message


def test_authorization_types_need_their_keys() -> None:
    static = HttpSinkSettings.parse({**SINK, "http.authorization.type": "static"})
    assert list(config_problems(static)) == ["http.headers.authorization"]
    oauth2 = HttpSinkSettings.parse({**SINK, "http.authorization.type": "oauth2",
                                     "oauth2.access.token.url": "http://127.0.0.1:1/token",
                                     "oauth2.client.id": "me"})
    assert list(config_problems(oauth2)) == ["oauth2.client.secret"]


@pytest.mark.parametrize(("config", "key"), [
    ({"http.response.list.pointer": "items"}, "http.response.list.pointer"),
    ({"http.response.record.offset.pointer": "id=id"}, "http.response.record.offset.pointer"),
    ({"http.offset.initial": "id"}, "http.offset.initial"),
    ({"http.request.headers": "Accept"}, "http.request.headers"),
])
def test_source_settings_name_the_bad_key(config: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        HttpSourceSettings.parse({**SOURCE, **config})
    assert caught.value.key == key


def test_json_pointers_follow_rfc_6901() -> None:
    document = {"data": {"items": [{"id": 1}, {"id": 2}]}, "a/b": {"m~n": 3}}
    assert resolve(document, "/") is document
    assert resolve(document, "/data/items/1/id") == 2
    assert resolve(document, "/a~1b/m~0n") == 3
    assert resolve(document, "/data/rows") is MISSING
    assert resolve(document, "/data/items/2") is MISSING
    for pointer in ("/", "/data", "/data/items/0/id", "/a~1b", "/nothing"):
        assert reader(pointer)(document) is resolve(document, pointer)
    assert reader("/0")([7]) == 7


def test_templates_take_the_offsets_properties() -> None:
    offset = {"id": 42, "timestamp": "2026-01-01T00:00:00Z"}
    assert fill("since=${offset.id}&at=${timestamp}", offset, "k") == \
        "since=42&at=2026-01-01T00:00:00Z"
    with pytest.raises(HttpFailure) as caught:
        fill("after=${offset.cursor}", offset, "http.request.params")
    assert caught.value.key == "http.request.params"
    assert "the offset has id, timestamp" in str(caught.value)


def test_timestamps_from_epoch_milliseconds_or_iso_8601() -> None:
    assert timestamp_of(1_700_000_000_123) == 1_700_000_000_123
    assert timestamp_of("1700000000123") == 1_700_000_000_123
    assert timestamp_of("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert timestamp_of("yesterday") is None
    assert timestamp_of(True) is None


def response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers,
                          request=httpx.Request("POST", "http://127.0.0.1:1/x"))


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after(response(503, {"Retry-After": "7"})) == 7
    assert retry_after(response(503, {"Retry-After": "99999"})) == 600
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after(response(429, {"Retry-After": later})) or 0) <= 31
    assert retry_after(response(503)) is None


@pytest.mark.parametrize(("status", "outcome"), [
    (200, None), (204, None), (429, "retry"), (503, "retry"), (408, "retry"),
    (401, "credentials"), (403, "credentials"), (400, "url"), (404, "url")])
def test_statuses_are_judged(status: int, outcome: str | None) -> None:
    try:
        judge(response(status), "http.url", "http.headers.authorization")
    except HttpFailure as exc:
        assert outcome == ("credentials" if exc.key == "http.headers.authorization" else "url")
        assert exc.status == status
    except HttpUnavailable as exc:
        assert outcome == "retry"
        assert exc.key == "http.url"
    else:
        assert outcome is None


def test_the_sink_retries_at_retry_backoff_ms_then_doubles_up_to_the_cap() -> None:
    settings = HttpSinkSettings.parse({**SINK, "max.retries": "2", "retry.backoff.ms": "500"})
    task = HttpSinkTask(settings, context=None)  # type: ignore[arg-type]
    delays = []
    for failures in range(1, 12):
        task.failures = failures
        delays.append(task._backoff())
    task.stop()
    assert delays[:2] == [0.5, 0.5]
    assert delays[2:5] == [1.0, 2.0, 4.0]
    assert all(0 <= delay <= MAX_BACKOFF for delay in delays)


def test_a_response_starting_with_the_last_record_read_drops_it() -> None:
    settings = HttpSourceSettings.parse({**SOURCE, "http.offset.initial": "id=0",
                                         "http.response.record.offset.pointer": "id=/id,key=/id"})
    task = HttpSourceTask(settings, context=None)  # type: ignore[arg-type]
    first = task._records([({"id": n}, {"id": n, "key": n}) for n in (1, 2)])
    assert [r.key for r in first] == ["1", "2"]
    task.offset = dict(first[-1].source_offset)
    again = task._records([({"id": n}, {"id": n, "key": n}) for n in (2, 3)])
    assert [(r.key, r.source_offset) for r in again] == [("3", {"id": 3, "key": 3})]
    assert task._records([({"id": 4}, {"id": 4, "key": 4})])[0].value == {"id": 4}
