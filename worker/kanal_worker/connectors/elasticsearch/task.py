"""The sink task: records become bulk actions, sent in requests as Confluent's bulk
processor sends them, and offsets are committed only for what the server acknowledged.

``write`` turns each record into a bulk action (its document id and, with keys, the
offset as external version) and adds it to the task's buffer. Full requests (``batch.size``
records or ``bulk.size.bytes`` bytes) go out at once, ``max.in.flight.requests`` at a
time; a partial one waits until ``linger.ms`` has passed since its oldest record, across
polls: ``write`` waits a linger of at most ``INLINE_LINGER`` out, a longer one is checked
in ``pre_commit``, which the task asks the runtime for after every poll while records
linger. ``pre_commit`` reports, per partition, the offset of the first record not yet
acknowledged (as Confluent's ``preCommit`` with its offset tracker), so committed offsets
never run ahead of the index.

Requests or items refused with 429, a 5xx status or a connection error are retried
``max.retries`` times, then ``RetriableError`` reaches the runtime, which pauses the
partitions, keeps polling and calls ``write`` again with the same batch: the records
already buffered are not taken twice, and what was not acknowledged is sent again
(harmless: every action is idempotent). Documents the server rejects go through
``behavior.on.malformed.documents`` and ``errors.*``, reported by the ``write`` that
sent them or, when a linger sent them from ``pre_commit``, by the next ``write``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

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
    TopicPartition,
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


INLINE_LINGER = 0.05
"""A partial request due within this many seconds is waited for in ``write``: the next
check, after the next poll, may come half a second later."""


class Action(NamedTuple):
    """One record's bulk action: its NDJSON lines, where the record was consumed, and
    the batch it came in (to report it when the server rejects it)."""

    lines: bytes
    topic: str
    partition: int
    offset: int
    batch: SinkBatch
    position: int

    @property
    def record(self) -> SinkRecord:
        return self.batch.records[self.position]


Rejected = tuple[Action, Exception]
"""A record that cannot be written, and why."""
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
        self.pending: list[Action] = []
        """Records taken and not acknowledged yet: lingering, or to be sent again."""
        self.rejected: list[Rejected] = []
        """Records the server rejected, reported by the next ``write``."""
        self.lingering_since: float | None = None
        """When the oldest record of ``pending`` was taken."""
        self.taken: dict[tuple[str, int], int] = {}
        """Per partition, the offset after the last record taken."""
        log.info("Task %s writes to %s (%s, key.ignore=%s)", context.task_id,
                 ",".join(settings.connection_url), settings.write_method, settings.key_ignore)

    def write(self, batch: SinkBatch) -> None:
        actions, rejected = self._actions(batch)
        self.pending.extend(actions)
        self.rejected.extend(rejected)
        if self.pending and self.lingering_since is None:
            self.lingering_since = time.monotonic()
        self._send(everything=self._linger_over(wait=True))
        if self.pending:
            self.context.request_commit()  # so pre_commit sends them when linger.ms is over
        if self.rejected:
            rejected, self.rejected = self.rejected, []
            raise RecordWriteError([(action.record, error) for action, error in sorted(
                rejected, key=lambda failure: failure[0][1:4])])

    def pre_commit(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """The offsets up to the first record of each partition the server has not
        acknowledged yet (buffered, being retried, or rejected and not reported)."""
        if self.pending and self._linger_over(wait=False):
            try:
                self._send(everything=True)
            except RetriableError as exc:
                # the next write retries; until then only what is acknowledged counts
                log.warning("Task %s: documents not written yet (%s)", self.context.task_id,
                            exc)
        if self.pending:
            self.context.request_commit()
        floor: dict[TopicPartition, int] = {}
        for action in self._unacknowledged():
            tp = TopicPartition(action.topic, action.partition)
            floor[tp] = min(floor.get(tp, action.offset), action.offset)
        return {tp: min(offset, floor.get(tp, offset)) for tp, offset in offsets.items()}

    def close(self, partitions: list[TopicPartition]) -> None:
        """Drop the partitions' buffered records: they come again from the committed
        offset, to whichever task owns the partition next."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self.pending = [a for a in self.pending if (a.topic, a.partition) not in gone]
        self.rejected = [(a, e) for a, e in self.rejected if (a.topic, a.partition) not in gone]
        for key in gone:
            self.taken.pop(key, None)
        if not self.pending:
            self.lingering_since = None

    def stop(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()

    def _unacknowledged(self) -> Iterator[Action]:
        yield from self.pending
        for action, _ in self.rejected:
            yield action

    def _linger_over(self, *, wait: bool) -> bool:
        """Whether the partial request may go: linger.ms has passed since its oldest
        record (with ``wait``, a short rest is waited for)."""
        if self.lingering_since is None:
            return True
        left = self.settings.linger_ms / 1000 - (time.monotonic() - self.lingering_since)
        if left > 0 and wait and left <= INLINE_LINGER:
            time.sleep(left)
            return True
        return left <= 0

    # -- records to actions --------------------------------------------------------------

    def _actions(self, batch: SinkBatch) -> tuple[list[Action], list[Rejected]]:
        """The bulk actions of the batch's records not taken yet (the runtime repeats a
        batch after RetriableError), and the records that cannot become one."""
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
        failures: list[Rejected] = []
        taken = self.taken
        for position, (topic, partition, offset) in enumerate(coordinates):
            if offset < taken.get((topic, partition), 0):
                continue
            taken[(topic, partition)] = offset + 1
            raw = encoded[position]
            plain = raw is not None and raw != b"null"
            try:
                if by_coordinates and raw is not None and plain \
                        and b"\n" not in raw and b"\r" not in raw:
                    index, topic_name = names.get(topic) or names.setdefault(
                        topic, (self._index(topic, schemas[position]).encode(), topic.encode()))
                    actions.append(Action(INSERT_BY_COORDINATES % (
                        index, topic_name, partition, offset, raw), topic, partition, offset,
                        batch, position))
                    continue
                if not plain and values is None:
                    values = batch.values
                lines = self._action(coordinates[position], schemas[position],
                                     None if plain or values is None else values[position],
                                     raw if plain else None,
                                     records[position] if records is not None else None)
            except DataError as exc:
                failures.append((Action(b"", topic, partition, offset, batch, position), exc))
                continue
            if lines is not None:
                actions.append(Action(lines, topic, partition, offset, batch, position))
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
            length = len(action.lines)
            if request and (len(request) >= self.settings.batch_size
                            or (limit >= 0 and size + length > limit)):
                yield request
                request, size = [], 0
            request.append(action)
            size += length
        if request:
            yield request

    # -- sending -------------------------------------------------------------------------

    def _send(self, *, everything: bool) -> None:
        """Send the buffered requests: the full ones, and the partial last one too with
        ``everything``. Raises RetriableError when some stay unacknowledged after
        max.retries; they stay buffered, and so does every later request, sent again
        after them so an upsert never overtakes an older one of the same key."""
        requests = list(self._requests(self.pending))
        held: list[Action] = []
        if requests and not everything and len(requests[-1]) < self.settings.batch_size:
            held = requests.pop()
        if not requests:
            return
        unsent: list[Action] = []
        error: RetriableError | None = None
        for request, (rejected, retry, failure) in zip(
                requests, self.pool.map(self._bulk, requests), strict=True):
            self.rejected.extend(rejected)
            if error is None:
                unsent.extend(retry)
            else:
                unsent.extend(without(request, (action for action, _ in rejected)))
            error = error or failure
        self.pending = unsent + held
        if not self.pending:
            self.lingering_since = None
        if error is not None:
            raise error

    def _bulk(self, actions: list[Action]
              ) -> tuple[list[Rejected], list[Action], RetriableError | None]:
        """Send one bulk request, retrying what passes: the rejected documents, and
        those not written after max.retries with the last error."""
        rejected: list[Rejected] = []
        pending = actions
        attempt = 0
        error: RetriableError
        while True:
            try:
                response = self.server.send_bulk(
                    self.client, b"".join([action.lines for action in pending]),
                    ANSWER_FIELDS, self.settings)
                if not response["errors"]:
                    return rejected, [], None
                retry, error = self._outcome(pending, response["items"], rejected)
                if not retry:
                    return rejected, [], None
                pending = retry
            except RetriableError as exc:
                error = exc
            if attempt >= self.settings.max_retries:
                return rejected, pending, error
            time.sleep(exponential_backoff(attempt, self.settings.retry_backoff_ms / 1000,
                                           MAX_BACKOFF))
            attempt += 1

    def _outcome(self, actions: list[Action], items: list[dict[str, Any]],
                 rejected: list[Rejected]) -> tuple[list[Action], RetriableError]:
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
                   reject: Callable[[Rejected], None]) -> None:
        behavior = self.settings.behavior_on_malformed_documents
        message = f"the server rejected document {where(action)}: {text}"
        if behavior == "ignore":
            log.debug("Task %s: %s; dropped (behavior.on.malformed.documents=ignore)",
                      self.context.task_id, message)
        elif behavior == "warn":
            log.warning("Task %s: %s; dropped (behavior.on.malformed.documents=warn)",
                        self.context.task_id, message)
        else:
            reject((action, DataError(
                f"{message}; fix the record, or set behavior.on.malformed.documents to "
                "ignore or warn")))


def where(action: Action) -> str:
    """``index/id`` of an action, for messages."""
    ((_, meta),) = orjson.loads(action.lines.partition(b"\n")[0]).items()
    return f"{meta['_index']}/{meta['_id']}"


def without(actions: list[Action], dropped: Iterable[Action]) -> list[Action]:
    """``actions`` but those in ``dropped`` (the same objects)."""
    gone = set(map(id, dropped))
    return [action for action in actions if id(action) not in gone]


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
