"""HttpSinkConnector: records POSTed to an HTTP endpoint, as Aiven's HTTP sink does.

What each status means (the policy users ask of Aiven's, which fails the task once
``max.retries`` are spent):

- 2xx: delivered.
- no connection, timeouts, 408, 425, 429, 5xx: retried for as long as it takes, with
  the server's Retry-After when it sends one, else ``retry.backoff.ms`` for the first
  ``max.retries`` retries and a doubling delay (up to 30 s) after them. The task
  raises RetriableError, so the runtime pauses the partitions and keeps polling.
- 401 (after a fresh OAuth2 token), 403, 407, 404, 405: the configuration is wrong; the
  task fails naming the key to fix, and nothing is committed.
- any other 4xx: the records are refused. A batch is sent again record by record to
  find which; each refused record goes to error handling (``errors.tolerance``,
  ``errors.deadletterqueue.*``) with the status and response in its headers.

Requests of a batch already answered are not sent again when the batch is retried:
the task remembers the last offset delivered per partition.
"""

from __future__ import annotations

from typing import Any

from kanal_worker.api import (
    ConnectError,
    DataError,
    RecordWriteError,
    SinkBatch,
    SinkConnector,
    SinkTask,
    SinkTaskContext,
    TopicPartition,
)
from kanal_worker.api.backoff import exponential_backoff
from kanal_worker.api.schema import Schema
from kanal_worker.connectors.http.client import (
    HttpFailure,
    HttpUnavailable,
    credentials_key,
    judge,
    problem,
    send,
    sink_client,
)
from kanal_worker.connectors.http.settings import HttpSinkSettings
from kanal_worker.converters.json import JsonConverter

MAX_BACKOFF = 30.0
VALIDATE_TIMEOUT = 10
"""Seconds validate waits for the server at most (a request, not a task, is waiting)."""
CONFIGURATION_STATUS = frozenset({404, 405})
"""Statuses that say the URL is wrong, not the records: they fail the task."""

Coordinates = tuple[str, int, int]
"""Topic, partition and offset of a record."""


class HttpSinkTask(SinkTask[HttpSinkSettings]):
    def __init__(self, settings: HttpSinkSettings, context: SinkTaskContext) -> None:
        super().__init__(settings, context)
        problems = config_problems(settings)
        if problems:
            key, messages = next(iter(problems.items()))
            raise ConnectError(f"{key}: {messages[0]}")
        self.client, self.oauth2 = sink_client(settings)
        self.json = JsonConverter({"schemas.enable": "false"}, False)
        self.delivered: dict[tuple[str, int], int] = {}
        """The last offset per partition (as a topic-partition tuple) the server accepted
        or refused for good."""
        self.refused: dict[tuple[str, int, int], Exception] = {}
        """Refused records not yet handed to error handling (a retry came between)."""
        self.failures = 0
        """Failed requests since the last answered one."""

    def write(self, batch: SinkBatch) -> None:
        where, bodies = self._pending(batch)
        size = self.settings.batch_max_size if self.settings.batching_enabled else 1
        for start in range(0, len(where), size):
            self._send(where[start:start + size], bodies[start:start + size])
        if self.refused:
            refused, self.refused = self.refused, {}
            raise RecordWriteError([(record, refused[coordinates]) for record, coordinates
                                    in zip(batch, batch.coordinates, strict=True)
                                    if coordinates in refused])

    def _pending(self, batch: SinkBatch) -> tuple[list[Coordinates], list[bytes]]:
        """The records not delivered yet and their bodies; null values are skipped."""
        where = batch.coordinates
        values = batch.values
        delivered = self.delivered
        if delivered or None in values:
            kept = [i for i, ((topic, partition, offset), value) in enumerate(zip(
                where, values, strict=True)) if value is not None
                and offset > delivered.get((topic, partition), -1)]
            if len(kept) < len(where):
                where = [where[i] for i in kept]
                values = [values[i] for i in kept]
                schemas = batch.value_schemas
                encoded = batch.encoded_values
                return where, [self._body(where[n][0], values[n], schemas[i], encoded[i])
                               for n, i in enumerate(kept)]
        if all(type(value) is str for value in values):  # StringConverter's: the fast path
            return where, [value.encode() for value in values]
        return where, [self._body(topic, value, schema, raw) for (topic, _, _), value, schema, raw
                       in zip(where, values, batch.value_schemas, batch.encoded_values,
                              strict=True)]

    def _body(self, topic: str, value: Any, schema: Schema | None,
              encoded: bytes | None) -> bytes:
        """A value as Aiven sends it: a string as its text, bytes as they are, anything
        else as JSON (JsonConverter without schemas)."""
        if isinstance(value, str):
            return value.encode()
        if isinstance(value, bytes):
            return value
        if encoded is not None:
            return encoded
        return self.json.from_connect(topic, schema, value) or b""

    def _send(self, where: list[Coordinates], bodies: list[bytes]) -> None:
        settings = self.settings
        if settings.batching_enabled:
            body = settings.batch_prefix.encode() + settings.batch_separator.encode().join(
                bodies) + settings.batch_suffix.encode()
        else:
            body = bodies[0]
        try:
            response = send(self.client, self.client.build_request(
                "POST", settings.http_url, content=body), "http.url")
            judge(response, "http.url", credentials_key(settings))
        except HttpUnavailable as exc:
            self.failures += 1
            if exc.retry_after is None:
                exc.retry_after = self._backoff()
            raise
        except HttpFailure as exc:
            self.failures = 0
            if exc.status is None or exc.status not in range(400, 500) or \
                    exc.key != "http.url" or exc.status in CONFIGURATION_STATUS:
                raise
            if len(where) > 1:
                for one, body in zip(where, bodies, strict=True):  # which are refused?
                    self._send([one], [body])
                return
            self.refused[where[0]] = DataError(str(exc))
        self.failures = 0
        # offsets rise within a partition: the last of each is what was delivered
        self.delivered.update(((topic, partition), offset)
                              for topic, partition, offset in where)

    def _backoff(self) -> float:
        """Seconds before the next try: retry.backoff.ms for the first max.retries
        retries, then doubling from there up to MAX_BACKOFF."""
        first = self.settings.retry_backoff_ms / 1000
        beyond = self.failures - 1 - self.settings.max_retries
        if beyond < 0:
            return first
        return exponential_backoff(beyond + 1, first, max(MAX_BACKOFF, first))

    def close(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.delivered.pop(tp, None)
        gone = set(partitions)
        self.refused = {c: e for c, e in self.refused.items()
                        if TopicPartition(c[0], c[1]) not in gone}

    def stop(self) -> None:
        self.client.close()
        if self.oauth2 is not None:
            self.oauth2.close()


def config_problems(settings: HttpSinkSettings) -> dict[str, list[str]]:
    """Keys that are needed together, by key."""
    kind = settings.http_authorization_type
    if kind == "static" and not settings.http_headers_authorization:
        return {"http.headers.authorization": [
            "Missing required configuration: http.authorization.type=static sends this "
            "header; set it (e.g. 'Bearer <token>')."]}
    if kind == "oauth2":
        for key, value in (("oauth2.access.token.url", settings.oauth2_access_token_url),
                           ("oauth2.client.id", settings.oauth2_client_id),
                           ("oauth2.client.secret", settings.oauth2_client_secret)):
            if not value:
                return {key: ["Missing required configuration: http.authorization.type="
                              "oauth2 needs it; set it."]}
    return {}


def reachability_problems(settings: HttpSinkSettings) -> dict[str, list[str]]:
    """What the server says to a request carrying no records (OPTIONS): whether it can
    be reached and, with OAuth2, whether the client credentials get a token. Any answer
    other than 401/403/407 counts as reachable; nothing is written."""
    client, oauth2 = sink_client(settings)
    try:
        if oauth2 is not None:
            oauth2.current()
        request = client.build_request("OPTIONS", settings.http_url,
                                       timeout=min(settings.http_timeout, VALIDATE_TIMEOUT))
        response = send(client, request, "http.url")
        if response.status_code in (401, 403, 407):
            judge(response, "http.url", credentials_key(settings))
    except (HttpFailure, HttpUnavailable) as exc:
        return problem(exc)
    finally:
        client.close()
        if oauth2 is not None:
            oauth2.close()
    return {}


class HttpSinkConnector(SinkConnector[HttpSinkSettings]):
    settings = HttpSinkSettings
    task_class = HttpSinkTask
    aliases = ("io.aiven.kafka.connect.http.HttpSinkConnector",)

    def validate(self, settings: HttpSinkSettings) -> dict[str, list[str]]:
        return config_problems(settings) or reachability_problems(settings)
