"""The server side: the client, what a failed request means, indices and data streams.

Only the bulk API and a few index calls are used, all of them alike in Elasticsearch
and OpenSearch, so one client (opensearch-py) serves both; nothing checks the server's
product or version. Every call here raises ``ConnectError`` (``RetriableError`` for
what passes) saying what to fix. The client costs ~1 s and ~25 MB to import: only this
module imports it, and only a running task or a validation imports this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import urllib3
from opensearchpy import OpenSearch
from opensearchpy import exceptions as os_errors

from kanal_worker.api import ConnectError, RetriableError, Schema, Type
from kanal_worker.api.schema import DECIMAL, TIMESTAMP

if TYPE_CHECKING:
    from kanal_worker.connectors.elasticsearch.settings import ElasticsearchSinkSettings

FIELD_TYPES = {Type.INT8: "byte", Type.INT16: "short", Type.INT32: "integer",
               Type.INT64: "long", Type.FLOAT32: "float", Type.FLOAT64: "double",
               Type.BOOLEAN: "boolean", Type.STRING: "text", Type.BYTES: "binary"}
"""Confluent's mapping of Connect types to field types (schema.ignore=false)."""


def connect(settings: ElasticsearchSinkSettings) -> OpenSearch:
    user, password = settings.connection_username, settings.password()
    return OpenSearch(
        hosts=settings.connection_url,
        http_auth=(user, password) if user and password else None,
        timeout=urllib3.Timeout(connect=settings.connection_timeout_ms / 1000,
                                read=settings.read_timeout_ms / 1000),
        # retries are the task's (max.retries), then the runtime's: never the client's
        max_retries=0, retry_on_timeout=False,
        maxsize=settings.max_in_flight_requests)


def request_error(error: Exception, settings: ElasticsearchSinkSettings) -> ConnectError:
    """What a failed request means for the task: retry it, or stop with the fix."""
    urls = ",".join(settings.connection_url)
    if isinstance(error, os_errors.ConnectionError):
        return RetriableError(f"cannot reach connection.url={urls} ({_reason(error)}); check "
                              "the URL and that the server is running")
    if isinstance(error, os_errors.AuthenticationException):
        return ConnectError(f"the server at connection.url={urls} refused the credentials "
                            "(401); set connection.username and connection.password to a "
                            "valid user")
    if isinstance(error, os_errors.AuthorizationException):
        return ConnectError(f"connection.username={settings.connection_username} may not "
                            f"write to the server at {urls} (403: {_reason(error)}); grant it "
                            "the index and bulk privileges")
    if isinstance(error, os_errors.TransportError) and retriable_status(error.status_code):
        return RetriableError(f"the server at connection.url={urls} answered "
                              f"{error.status_code} ({_reason(error)})")
    return ConnectError(f"request to connection.url={urls} failed: {_reason(error)}")


def retriable_status(status: object) -> bool:
    return isinstance(status, int) and (status == 429 or status >= 500)


def send_bulk(client: OpenSearch, body: bytes, fields: str,
              settings: ElasticsearchSinkSettings) -> dict[str, Any]:
    """One bulk request; its answer, reduced to ``fields`` (a filter_path)."""
    try:
        answer: dict[str, Any] = client.bulk(body=body, filter_path=fields)
    except os_errors.TransportError as exc:
        raise request_error(exc, settings) from None
    return answer


def refused(status: int, kind: str, error: object,
            settings: ElasticsearchSinkSettings) -> ConnectError:
    """A bulk item refused for lack of credentials or privileges."""
    return request_error(os_errors.AuthorizationException(status, kind, error), settings)


def server_problems(settings: ElasticsearchSinkSettings) -> dict[str, list[str]]:
    """Whether the server answers with these credentials (a GET of its root)."""
    client = connect(settings)
    try:
        client.info()
    except os_errors.TransportError as exc:
        denied = os_errors.AuthenticationException | os_errors.AuthorizationException
        key = "connection.password" if isinstance(exc, denied) else "connection.url"
        return {key: [str(request_error(exc, settings))]}
    finally:
        client.close()
    return {}


def _reason(error: Exception) -> str:
    if isinstance(error, os_errors.TransportError) and isinstance(error.info, dict):
        cause = error.info.get("error")
        if isinstance(cause, dict):
            return f"{cause.get('type')}: {cause.get('reason')}"
    if isinstance(error, os_errors.ConnectionError):
        return str(error.info or error.error)
    return str(error)


def mapping(schema: Schema) -> dict[str, Any]:
    """The field mapping of a Connect schema (Confluent's rules; Kanal's values are
    written with numeric decimals and millisecond timestamps, which these accept)."""
    if schema.name == TIMESTAMP:
        return {"type": "date"}
    if schema.name == DECIMAL:
        return {"type": "double"}
    if schema.type == Type.STRUCT:
        return {"properties": {f.name: mapping(f.schema) for f in schema.fields}}
    if schema.type == Type.ARRAY:
        assert schema.value_schema is not None
        return mapping(schema.value_schema)
    if schema.type == Type.MAP:
        return {"type": "object"}
    return {"type": FIELD_TYPES[schema.type]}


def ensure_index(client: OpenSearch, index: str, schema: Schema | None,
                 settings: ElasticsearchSinkSettings) -> None:
    """Create the index (with a mapping from ``schema`` unless schema.ignore) or data
    stream when it does not exist; one that exists is left as it is."""
    try:
        _ensure_index(client, index, schema, settings)
    except os_errors.TransportError as exc:
        raise request_error(exc, settings) from None


def _ensure_index(client: OpenSearch, index: str, schema: Schema | None,
                  settings: ElasticsearchSinkSettings) -> None:
    if settings.data_stream_type != "NONE":
        _ensure_data_stream(client, index)
        return
    if client.indices.exists(index=index):
        return
    body: dict[str, Any] = {}
    if schema is not None and schema.type == Type.STRUCT and not settings.schema_ignore:
        body["mappings"] = mapping(schema)
    try:
        client.indices.create(index=index, body=body)
    except os_errors.RequestError as exc:
        if exc.error != "resource_already_exists_exception":  # another task was quicker
            raise


def _ensure_data_stream(client: OpenSearch, name: str) -> None:
    """Elasticsearch has index templates for logs-*-* and metrics-*-* built in;
    OpenSearch has none, so a data stream template for exactly this name is added."""
    try:
        client.indices.get_data_stream(name=name)
        return
    except os_errors.NotFoundError:
        pass
    try:
        client.indices.create_data_stream(name=name)
    except os_errors.RequestError as exc:
        if exc.error == "resource_already_exists_exception":
            return
        client.indices.put_index_template(name=f"kanal-{name}", body={
            "index_patterns": [name], "data_stream": {}, "priority": 1})
        client.indices.create_data_stream(name=name)
