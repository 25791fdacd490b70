"""The sink task: one poll becomes bulk requests, sent in parallel, retried, then done.

``write`` turns each record into a bulk action (its document id and, with keys, the
offset as external version), sends the actions in requests of at most ``batch.size``
records and ``bulk.size.bytes`` bytes, ``max.in.flight.requests`` at a time, and
returns once every request succeeded: the runtime commits offsets only after that.
Requests or items refused with 429, a 5xx status or a connection error are retried
``max.retries`` times, then ``RetriableError`` hands the batch to the runtime, which
pauses the partitions, keeps polling and calls ``write`` again with the same batch:
sending it again is harmless, since every action is idempotent. Documents the server
rejects go through ``behavior.on.malformed.documents`` and ``errors.*``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson

from kanal_worker.api import (
    ConfigError,
    ConnectError,
    DataError,
    RecordWriteError,
    RetriableError,
    Schema,
    SinkBatch,
    SinkRecord,
    SinkTask,
    SinkTaskContext,
)
from kanal_worker.api.backoff import exponential_backoff
from kanal_worker.connectors.elasticsearch.checks import config_problems
from kanal_worker.connectors.elasticsearch.settings import (
    ElasticsearchSinkSettings,
    index_name_problem,
)
from kanal_worker.converters.json import JsonConverter

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

log = logging.getLogger(__name__)
MAX_BACKOFF = 10.0
"""Longest wait between two retries of a request inside ``write`` (seconds)."""
ANSWER_FIELDS = "errors,items.*.status,items.*.error"
"""What of a bulk answer is read: parsing the rest of every item would cost more."""
RETRIABLE_TYPES = frozenset({"cluster_block_exception", "es_rejected_execution_exception",
                             "circuit_breaking_exception"})
"""Item errors that pass: a full disk's read-only block, a full queue, low memory."""


Action = tuple[int, bytes]
"""One record's bulk action: its position in the batch and its NDJSON lines."""
INSERT_BY_COORDINATES = b'{"index":{"_index":"%b","_id":"%b+%d+%d"}}\n%b\n'
"""The action of most records (key.ignore=true, insert): index names and topic names
hold nothing JSON escapes, so the line is formatted without a JSON encoder."""


class ElasticsearchSinkTask(SinkTask[ElasticsearchSinkSettings]):
    def __init__(self, settings: ElasticsearchSinkSettings, context: SinkTaskContext,
                 client: OpenSearch | None = None) -> None:
        super().__init__(settings, context)
        for key, messages in config_problems(settings).items():
            raise ConfigError(key, messages[0])
        # the client's import is costly: only workers running this task pay for it
        from kanal_worker.connectors.elasticsearch import server

        self.server = server
        self.client = client if client is not None else server.connect(settings)
        self.json = JsonConverter({"schemas.enable": "false", "decimal.format": "NUMERIC"},
                                  is_key=False)
        # upserts are not versioned: one request at a time keeps a key's updates in order
        in_flight = 1 if settings.write_method == "upsert" else settings.max_in_flight_requests
        self.pool = ThreadPoolExecutor(in_flight, thread_name_prefix=f"bulk-{context.task_id}")
        self.indices: dict[str, str] = {}
        """Index (or data stream) of each topic seen, once it exists."""
        self.stream = settings.data_stream_type != "NONE"
        log.info("Task %s writes to %s (%s, key.ignore=%s)", context.task_id,
                 ",".join(settings.connection_url), settings.write_method, settings.key_ignore)

    def write(self, batch: SinkBatch) -> None:
        actions, failures = self._actions(batch)
        requests = list(self._requests(actions))
        for rejected in self.pool.map(self._bulk, requests):
            failures.extend(rejected)
        if failures:
            records = batch.records
            raise RecordWriteError([(records[position], error)
                                    for position, error in sorted(failures,
                                                                  key=lambda f: f[0])])

    def stop(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()

    # -- records to actions --------------------------------------------------------------

    def _actions(self, batch: SinkBatch) -> tuple[list[Action], list[tuple[int, Exception]]]:
        """The batch's bulk actions, and the records that cannot become one."""
        settings = self.settings
        encoded = batch.encoded_values
        schemas: list[Schema | None] = batch.value_schemas
        coordinates = batch.coordinates
        # SinkRecords cost most of a record in Python: built only when keys are read
        records = batch.records if not settings.key_ignore or self.stream else None
        values: list[Any] | None = None  # decoded only when a record needs it
        by_coordinates = records is None and settings.write_method == "insert"
        names: dict[str, tuple[bytes, bytes]] = {}
        actions: list[Action] = []
        failures: list[tuple[int, Exception]] = []
        for position, (topic, partition, offset) in enumerate(coordinates):
            raw = encoded[position]
            plain = raw is not None and raw != b"null"
            try:
                if by_coordinates and raw is not None and plain \
                        and b"\n" not in raw and b"\r" not in raw:
                    index, topic_name = names.get(topic) or names.setdefault(
                        topic, (self._index(topic, schemas[position]).encode(), topic.encode()))
                    actions.append((position, INSERT_BY_COORDINATES % (
                        index, topic_name, partition, offset, raw)))
                    continue
                if not plain and values is None:
                    values = batch.values
                lines = self._action(coordinates[position], schemas[position],
                                     None if plain or values is None else values[position],
                                     raw if plain else None,
                                     records[position] if records is not None else None)
            except DataError as exc:
                failures.append((position, exc))
                continue
            if lines is not None:
                actions.append((position, lines))
        return actions, failures

    def _action(self, where: tuple[str, int, int], schema: Schema | None, value: Any,
                raw: bytes | None, record: SinkRecord | None) -> bytes | None:
        """Any record's action (None: skip it), by the general rules: ``raw`` is its
        value's JSON when it arrived as such, else ``value`` is written as JSON."""
        topic, partition, offset = where
        if raw is None and value is not None:
            raw = self.json.from_connect(topic, schema, value)
        index = self._index(topic, schema)
        doc_id = (f"{topic}+{partition}+{offset}" if self.settings.key_ignore
                  else document_id(record.key if record is not None else None))
        if raw is None:
            return self._null(index, doc_id, offset)
        timestamp = record.timestamp if record is not None else None
        return self._upsert_or_insert(index, doc_id, offset, raw, timestamp)

    def _null(self, index: str, doc_id: str, offset: int) -> bytes | None:
        behavior = self.settings.behavior_on_null_values
        if behavior == "ignore":
            return None
        if behavior == "fail":
            raise DataError("the record's value is null (a tombstone) and "
                            "behavior.on.null.values=fail; set it to ignore or delete")
        meta: dict[str, Any] = {"_index": index, "_id": doc_id}
        if self.settings.write_method == "insert":
            meta |= {"version": offset, "version_type": "external"}
        return orjson.dumps({"delete": meta}) + b"\n"

    def _upsert_or_insert(self, index: str, doc_id: str, offset: int, raw: bytes,
                          timestamp: int | None) -> bytes:
        if b"\n" in raw or b"\r" in raw:
            # outside JSON strings (where they are escaped) line breaks are blanks
            raw = raw.replace(b"\n", b" ").replace(b"\r", b" ")
        meta: dict[str, Any] = {"_index": index, "_id": doc_id}
        if self.stream:
            if timestamp is not None and b'"@timestamp"' not in raw:
                raw = with_timestamp(raw, timestamp)
            return orjson.dumps({"create": meta}) + b"\n" + raw + b"\n"
        if self.settings.write_method == "upsert":
            return (orjson.dumps({"update": meta}) + b'\n{"doc":' + raw
                    + b',"doc_as_upsert":true}\n')
        if not self.settings.key_ignore:
            meta |= {"version": offset, "version_type": "external"}
        return orjson.dumps({"index": meta}) + b"\n" + raw + b"\n"

    def _index(self, topic: str, schema: Schema | None) -> str:
        """The topic's index, created on first sight when missing."""
        index = self.indices.get(topic)
        if index is not None:
            return index
        index = self.settings.index_for(topic)
        why = index_name_problem(index)
        if why is not None:
            raise ConnectError(f"topics: topic {topic!r} cannot name the index {index!r}: "
                               f"{why}; rename the topic with a transform (RegexRouter) or "
                               "choose another")
        self.server.ensure_index(self.client, index, schema, self.settings)
        self.indices[topic] = index
        return index

    def _requests(self, actions: list[Action]) -> Iterator[list[Action]]:
        """``actions`` cut into requests of at most batch.size actions and
        bulk.size.bytes bytes."""
        limit = self.settings.bulk_size_bytes
        request: list[Action] = []
        size = 0
        for action in actions:
            length = len(action[1])
            if request and (len(request) >= self.settings.batch_size
                            or (limit >= 0 and size + length > limit)):
                yield request
                request, size = [], 0
            request.append(action)
            size += length
        if request:
            yield request

    # -- sending -------------------------------------------------------------------------

    def _bulk(self, actions: list[Action]) -> list[tuple[int, Exception]]:
        """Send one bulk request, retrying what passes; the rejected documents."""
        rejected: list[tuple[int, Exception]] = []
        pending = actions
        attempt = 0
        error: RetriableError
        while True:
            try:
                response = self.server.send_bulk(
                    self.client, b"".join([lines for _, lines in pending]), ANSWER_FIELDS,
                    self.settings)
                if not response["errors"]:
                    return rejected
                retry, error = self._outcome(pending, response["items"], rejected)
                if not retry:
                    return rejected
                pending = retry
            except RetriableError as exc:
                error = exc
            if attempt >= self.settings.max_retries:
                raise error
            time.sleep(exponential_backoff(attempt, self.settings.retry_backoff_ms / 1000,
                                           MAX_BACKOFF))
            attempt += 1

    def _outcome(self, actions: list[Action], items: list[dict[str, Any]],
                 rejected: list[tuple[int, Exception]]) -> tuple[list[Action], RetriableError]:
        """Sort a bulk response's items: done, to retry (returned), rejected (added to
        ``rejected`` unless behavior.on.malformed.documents drops them)."""
        retry: list[Action] = []
        reason = ""
        for action, item in zip(actions, items, strict=True):
            ((op, result),) = item.items()
            status = int(result.get("status", 500))
            # 409: a replay, or an older record than the document's (external version)
            if status < 300 or status == 409 or (status == 404 and op == "delete"):
                continue
            error = result.get("error")
            kind = error.get("type", "") if isinstance(error, dict) else str(error)
            text = (f"{kind}: {error.get('reason')}" if isinstance(error, dict)
                    else str(error))
            if self.server.retriable_status(status) or kind in RETRIABLE_TYPES:
                retry.append(action)
                reason = text
            elif kind == "invalid_index_name_exception":
                raise ConnectError(f"topics: the server refuses the index of {where(action)} "
                                   f"({text}); rename the topic with a transform (RegexRouter)")
            elif status in (401, 403):
                raise self.server.refused(status, kind, error, self.settings)
            else:
                self._malformed(action, text, rejected.append)
        return retry, RetriableError(f"{len(retry)} of {len(actions)} documents not written "
                                     f"yet ({reason})")

    def _malformed(self, action: Action, text: str,
                   reject: Callable[[tuple[int, Exception]], None]) -> None:
        behavior = self.settings.behavior_on_malformed_documents
        message = f"the server rejected document {where(action)}: {text}"
        if behavior == "ignore":
            log.debug("Task %s: %s; dropped (behavior.on.malformed.documents=ignore)",
                      self.context.task_id, message)
        elif behavior == "warn":
            log.warning("Task %s: %s; dropped (behavior.on.malformed.documents=warn)",
                        self.context.task_id, message)
        else:
            reject((action[0], DataError(
                f"{message}; fix the record, or set behavior.on.malformed.documents to "
                "ignore or warn")))


def where(action: Action) -> str:
    """``index/id`` of an action, for messages."""
    ((_, meta),) = orjson.loads(action[1].partition(b"\n")[0]).items()
    return f"{meta['_index']}/{meta['_id']}"


def document_id(key: Any) -> str:
    """The document id a record key stands for (key.ignore=false)."""
    if key is None:
        raise DataError("the record key is the document id (key.ignore=false) but it is "
                        "null; give the records keys or set key.ignore=true")
    if isinstance(key, bool) or not isinstance(key, str | int | float | bytes):
        raise DataError(f"the record key is the document id (key.ignore=false) but it is a "
                        f"{type(key).__name__}, not a string or number; extract a field "
                        "(ExtractField$Key) or set key.ignore=true")
    return key.decode() if isinstance(key, bytes) else str(key)


def with_timestamp(raw: bytes, timestamp: int) -> bytes:
    """The JSON object ``raw`` with an ``@timestamp`` (epoch milliseconds) added first:
    data streams need one in every document."""
    body = raw.strip()
    if not body.startswith(b"{"):
        return raw  # not an object: the server rejects it as malformed
    rest = body[1:].lstrip()
    joiner = b"" if rest.startswith(b"}") else b","
    return b'{"@timestamp":' + str(timestamp).encode() + joiner + rest
