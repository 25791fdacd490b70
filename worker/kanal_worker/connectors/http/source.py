"""HttpSourceConnector: a REST endpoint polled into Kafka, with castorm's keys.

Each request is built from the offset of the last record read (``${offset.<name>}`` in
the URL, parameters and body); the records are the items of the array at
``http.response.list.pointer``; each record's offset is read from it with
``http.response.record.offset.pointer``. A response with new records is followed by the
next request at once (the next page), an empty one after ``http.timer.interval.millis``.
The runtime stores a record's offset once Kafka has the record, and a restarted task
asks from the stored offset: nothing is imported twice, nothing skipped. A response
that starts with the record carrying the current offset (an API whose "since" is
inclusive) has that record dropped.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

import httpx

from kanal_worker.api import (
    SourceConnector,
    SourceRecord,
    SourceTask,
    SourceTaskContext,
)
from kanal_worker.connectors.http.client import (
    HttpFailure,
    HttpUnavailable,
    judge,
    problem,
    send,
)
from kanal_worker.connectors.http.settings import HttpSourceSettings, header_pairs
from kanal_worker.converters.json import loads

TEMPLATE = re.compile(r"\$\{(?:offset\.)?([A-Za-z0-9_.-]+)\}")
MISSING = object()


def resolve(document: Any, pointer: str) -> Any:
    """The value at JSON pointer ``pointer`` (RFC 6901; ``/`` alone is the whole
    document, as castorm reads it), or MISSING."""
    if pointer in ("", "/"):
        return document
    current = document
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            current = current[int(token)]
        else:
            return MISSING
    return current


def reader(pointer: str) -> Callable[[Any], Any]:
    """``resolve`` of ``pointer`` as a function of the document, with shortcuts for the
    pointers read from every record: the whole item, and one property of it."""
    if pointer in ("", "/"):
        return lambda document: document
    name = pointer[1:]
    if "/" not in name and "~" not in name:
        return lambda document: document.get(name, MISSING) if type(document) is dict \
            else resolve(document, pointer)
    return lambda document: resolve(document, pointer)


def fill(template: str, offset: Mapping[str, Any], key: str) -> str:
    """``template`` with ``${offset.name}`` (or ``${name}``) replaced by the offset's
    values; HttpFailure naming ``key`` for a name the offset lacks."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in offset:
            raise HttpFailure(key, f"{match.group(0)} names no offset property (the offset "
                                   f"has {', '.join(offset) or 'none'}); add it to "
                                   "http.offset.initial and http.response.record.offset.pointer")
        return str(offset[name])
    return TEMPLATE.sub(value, template)


def timestamp_of(value: Any) -> int | None:
    """Epoch milliseconds from a number or an ISO 8601 text; None for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        if value.isdigit():
            return int(value)
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return int(moment.timestamp() * 1000)
    return None


class Endpoint:
    """The requests and responses of one configuration: what the task polls with and
    what validate tries once."""

    def __init__(self, settings: HttpSourceSettings) -> None:
        self.settings = settings
        auth = None
        if settings.http_auth_type == "basic":
            auth = httpx.BasicAuth(settings.http_auth_user,
                                   settings.http_auth_password.get_secret_value())
        timeout = httpx.Timeout(settings.http_client_read_timeout_millis / 1000,
                                connect=settings.http_client_connection_timeout_millis / 1000)
        self.client = httpx.Client(
            timeout=timeout, auth=auth,
            headers=header_pairs(settings.http_request_headers, "http.request.headers"))
        self.pointers = settings.offset_pointers()
        self.offset_readers = {name: reader(pointer) for name, pointer in self.pointers.items()}
        self.record_reader = reader(settings.http_response_record_pointer)
        self.credentials = "http.auth.password" if auth else "http.request.headers"

    def request(self, offset: Mapping[str, Any]) -> httpx.Request:
        settings = self.settings
        params: list[tuple[str, str | int | float | bool | None]] = []
        for pair in fill(settings.http_request_params, offset, "http.request.params").split("&"):
            if pair.strip():
                name, _, value = pair.strip().partition("=")
                params.append((unquote(name.strip()), unquote(value.strip())))
        body = fill(settings.http_request_body, offset, "http.request.body")
        return self.client.build_request(
            settings.http_request_method,
            fill(settings.http_request_url, offset, "http.request.url"),
            params=params, content=body.encode() if body else None)

    def items(self, offset: Mapping[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
        """The records of one response: value and offset of each."""
        response = send(self.client, self.request(offset), "http.request.url")
        judge(response, "http.request.url", self.credentials)
        try:
            document = loads(response.content)
        except ValueError:
            raise HttpFailure("http.request.url", f"the response of {response.request.url} "
                                                  "is not JSON; check the URL") from None
        listed = resolve(document, self.settings.http_response_list_pointer)
        pointer = self.settings.http_response_list_pointer
        if listed is MISSING or not isinstance(listed, list):
            found = ", ".join(map(str, document)) if isinstance(document, dict) else \
                type(document).__name__
            what = "matches nothing" if listed is MISSING else "is not an array"
            raise HttpFailure("http.response.list.pointer",
                              f"{pointer!r} {what} in the response of "
                              f"{response.request.url} (its top level: {found}); point it at "
                              "the array of records, e.g. /items")
        return [self._item(item) for item in listed]

    def _item(self, item: Any) -> tuple[Any, dict[str, Any]]:
        value = self.record_reader(item)
        if value is MISSING:
            raise HttpFailure("http.response.record.pointer",
                              f"{self.settings.http_response_record_pointer!r} matches nothing "
                              f"in the record {str(item)[:200]}; fix the pointer")
        offset = {}
        for name, read in self.offset_readers.items():
            found = read(item)
            if found is MISSING:
                raise HttpFailure("http.response.record.offset.pointer",
                                  f"{name}={self.pointers[name]} matches nothing in the record "
                                  f"{str(item)[:200]}; point it at a property every record has")
            offset[name] = found
        return value, offset

    def close(self) -> None:
        self.client.close()


class HttpSourceTask(SourceTask[HttpSourceSettings]):
    def __init__(self, settings: HttpSourceSettings, context: SourceTaskContext) -> None:
        super().__init__(settings, context)
        self.partition = {"url": settings.http_request_url}
        self.offset: dict[str, Any] = dict(settings.initial_offset())
        self.next_request = 0.0
        self.stopped = threading.Event()

    def start(self) -> None:
        self.endpoint = Endpoint(self.settings)
        stored = self.context.offset(self.partition)
        if stored:
            self.offset.update(stored)

    def poll(self) -> list[SourceRecord]:
        wait = self.next_request - time.monotonic()
        if wait > 0:
            self.stopped.wait(min(wait, 0.5))
            return []
        records = self._records(self.endpoint.items(self.offset))
        settings = self.settings
        interval = settings.http_timer_catchup_interval_millis if records else \
            settings.http_timer_interval_millis
        self.next_request = time.monotonic() + interval / 1000
        if records:
            self.offset = dict(records[-1].source_offset)
        return records

    def _records(self, items: list[tuple[Any, dict[str, Any]]]) -> list[SourceRecord]:
        current = self.offset
        if items and items[0][1] and all(str(current.get(name)) == str(value)
                                         for name, value in items[0][1].items()):
            items = items[1:]  # the record read last, again: the API's "since" is inclusive
        records = []
        now = int(time.time() * 1000)
        for value, offset in items:
            merged = {**current, **offset}
            key = offset.get("key")
            timestamp = offset.get("timestamp")
            records.append(SourceRecord(
                topic=self.settings.kafka_topic, value=value,
                key=None if key is None else str(key),
                timestamp=now if timestamp is None else timestamp_of(timestamp) or now,
                source_partition=self.partition, source_offset=merged))
            current = merged
        return records

    def stop(self) -> None:
        self.stopped.set()
        endpoint = getattr(self, "endpoint", None)
        if endpoint is not None:
            endpoint.close()


class HttpSourceConnector(SourceConnector[HttpSourceSettings]):
    settings = HttpSourceSettings
    task_class = HttpSourceTask
    aliases = ("com.github.castorm.kafka.connect.http.HttpSourceConnector",)

    def validate(self, settings: HttpSourceSettings) -> dict[str, list[str]]:
        """One request from the initial offset: the endpoint answers, accepts the
        credentials, and its response has the records and offsets where the pointers say."""
        endpoint = Endpoint(settings)
        try:
            endpoint.items(settings.initial_offset())
        except (HttpFailure, HttpUnavailable) as exc:
            return problem(exc)
        finally:
            endpoint.close()
        return {}
