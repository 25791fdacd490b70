"""The HTTP connectors' configuration: Aiven's HTTP sink keys and castorm's HTTP source keys."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, SecretStr, field_validator

from kanal_worker.api import CommaList, Settings, setting

CONNECTION, AUTHORIZATION, BATCHING, DELIVERY, REQUEST, RESPONSE, KAFKA = (
    "Connection", "Authorization", "Batching", "Delivery", "Request", "Response", "Kafka")
ESCAPES = {"\\n": "\n", "\\r": "\r", "\\t": "\t", "\\\\": "\\"}


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


Lower = BeforeValidator(_lower)
Upper = BeforeValidator(_upper)


def http_url(value: str | None) -> str | None:
    """An HTTP(S) URL with a host, or ValueError saying what one looks like."""
    if not value:
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"Invalid URL {value!r}: use http(s)://host[:port]/path")
    return value


def unescape(value: str) -> str:
    """``\\n``, ``\\r``, ``\\t`` and ``\\\\`` as the characters they stand for (Aiven's
    batch strings may hold them)."""
    return re.sub(r"\\[nrt\\]", lambda m: ESCAPES[m.group(0)], value)


def header_pairs(value: str, key: str, separator: str = ",") -> list[tuple[str, str]]:
    """``Name: Value<separator>Name2: Value2`` as pairs; ValueError naming ``key`` for an
    item without a colon."""
    pairs = []
    for item in value.split(separator):
        if not item.strip():
            continue
        name, colon, content = item.partition(":")
        if not colon or not name.strip():
            raise ValueError(f"{key} item {item.strip()!r} is not a header: write "
                             "Name:value, several separated by commas")
        pairs.append((name.strip(), content.strip()))
    return pairs


class HttpSinkSettings(Settings):
    """Aiven's HTTP sink keys (``io.aiven.kafka.connect.http.HttpSinkConnector``)."""

    http_url: str = setting(
        key="http.url", importance="HIGH", group=CONNECTION, display="HTTP URL",
        doc="The URL to send data to (POST).")
    http_authorization_type: Annotated[Literal["none", "static", "oauth2"], Lower] = setting(
        key="http.authorization.type", importance="HIGH", group=AUTHORIZATION,
        display="Authorization type", dependents=("http.headers.authorization",),
        doc="none; static sends http.headers.authorization with every request; oauth2 "
            "fetches a bearer token with the OAuth2 client credentials grant (oauth2.*).")
    http_headers_authorization: SecretStr | None = setting(
        None, key="http.headers.authorization", group=AUTHORIZATION,
        display="Authorization header",
        doc="The static content of the Authorization header; needed with "
            "http.authorization.type=static.")
    http_headers_content_type: str | None = setting(
        None, key="http.headers.content.type", importance="LOW", group=CONNECTION,
        display="Content-Type", doc="The Content-Type sent with each request.")
    http_headers_additional: CommaList = setting(
        [], key="http.headers.additional", importance="LOW", group=CONNECTION,
        display="Additional headers",
        doc="More headers for every request, as header:value separated by commas.")
    http_timeout: int = setting(
        30, key="http.timeout", importance="LOW", group=CONNECTION, display="HTTP timeout",
        ge=1, doc="Seconds to wait for a response.")
    oauth2_access_token_url: str | None = setting(
        None, key="oauth2.access.token.url", importance="HIGH", group=AUTHORIZATION,
        display="OAuth2 token URL",
        doc="Where the access token is fetched (client credentials grant); needed with "
            "http.authorization.type=oauth2.")
    oauth2_client_id: str | None = setting(
        None, key="oauth2.client.id", importance="HIGH", group=AUTHORIZATION,
        display="OAuth2 client id", doc="The client id used for fetching an access token.")
    oauth2_client_secret: SecretStr | None = setting(
        None, key="oauth2.client.secret", importance="HIGH", group=AUTHORIZATION,
        display="OAuth2 client secret", doc="The secret used for fetching an access token.")
    oauth2_client_authorization_mode: Annotated[Literal["HEADER", "URL"], Upper] = setting(
        "HEADER", key="oauth2.client.authorization.mode", group=AUTHORIZATION,
        display="OAuth2 client authorization mode",
        doc="HEADER sends the client id and secret as HTTP Basic authorization; URL sends "
            "them as client_id and client_secret form parameters.")
    oauth2_client_scope: str | None = setting(
        None, key="oauth2.client.scope", importance="LOW", group=AUTHORIZATION,
        display="OAuth2 scope", doc="The scope asked for with the access token.")
    oauth2_response_token_property: str = setting(
        "access_token", key="oauth2.response.token.property", importance="LOW",
        group=AUTHORIZATION, display="OAuth2 token property",
        doc="The JSON property of the token response holding the access token.")
    batching_enabled: bool = setting(
        False, key="batching.enabled", importance="HIGH", group=BATCHING,
        display="Batching", doc="Send up to batch.max.size records in one request.")
    batch_max_size: int = setting(
        500, key="batch.max.size", group=BATCHING, display="Batch size", ge=1, le=1_000_000,
        doc="The most records one request carries when batching.")
    batch_prefix: str = setting(
        "", key="batch.prefix", importance="HIGH", group=BATCHING, display="Batch prefix",
        doc="Written once before the first record of a batch; may hold \\n, \\r, \\t.")
    batch_suffix: str = setting(
        "\\n", key="batch.suffix", validate_default=True, importance="HIGH", group=BATCHING,
        display="Batch suffix",
        doc="Written once after the last record of a batch; may hold \\n, \\r, \\t.")
    batch_separator: str = setting(
        "\\n", key="batch.separator", validate_default=True, importance="HIGH", group=BATCHING,
        display="Batch separator",
        doc="Written between the records of a batch; may hold \\n, \\r, \\t.")
    max_retries: int = setting(
        1, key="max.retries", group=DELIVERY, display="Retries at retry.backoff.ms", ge=0,
        doc="Kanal: how many times a failed request is retried retry.backoff.ms apart; "
            "after that the delay doubles up to 30 s, and the connector keeps retrying "
            "(Aiven's fails the task instead).")
    retry_backoff_ms: int = setting(
        3000, key="retry.backoff.ms", group=DELIVERY, display="Retry backoff", ge=0,
        doc="Milliseconds to wait after a failed request before retrying it, unless the "
            "server's Retry-After asks for another delay.")

    @field_validator("http_url", "oauth2_access_token_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return http_url(value)

    @field_validator("batch_prefix", "batch_suffix", "batch_separator")
    @classmethod
    def _unescape(cls, value: str) -> str:
        return unescape(value)

    @field_validator("http_headers_additional")
    @classmethod
    def _headers(cls, value: list[str]) -> list[str]:
        header_pairs(",".join(value), "http.headers.additional")
        return value


class HttpSourceSettings(Settings):
    """castorm's HTTP source keys (class ``com.github.castorm.kafka.connect.http.
    HttpSourceConnector``)."""

    http_request_url: str = setting(
        key="http.request.url", importance="HIGH", group=REQUEST, display="URL",
        doc="The URL polled; ${offset.<property>} is replaced by the offset's property.")
    http_request_method: Annotated[Literal["GET", "POST", "PUT"], Upper] = setting(
        "GET", key="http.request.method", importance="LOW", group=REQUEST, display="Method",
        doc="The HTTP method of the request.")
    http_request_params: str = setting(
        "", key="http.request.params", group=REQUEST, display="Query parameters",
        doc="Query parameters, name=value pairs separated by &; values may hold "
            "${offset.<property>}.")
    http_request_headers: str = setting(
        "", key="http.request.headers", group=REQUEST, display="Headers",
        doc="Request headers, Name: Value pairs separated by commas.")
    http_request_body: str = setting(
        "", key="http.request.body", importance="LOW", group=REQUEST, display="Body",
        doc="The request body (POST, PUT); may hold ${offset.<property>}.")
    http_auth_type: Annotated[Literal["none", "basic"], Lower] = setting(
        "none", key="http.auth.type", importance="LOW", group=REQUEST,
        display="Authentication", doc="None, or Basic with http.auth.user and "
                                      "http.auth.password.")
    http_auth_user: str = setting(
        "", key="http.auth.user", importance="LOW", group=REQUEST, display="User",
        doc="The user of Basic authentication.")
    http_auth_password: SecretStr = setting(
        SecretStr(""), key="http.auth.password", importance="LOW", group=REQUEST,
        display="Password", doc="The password of Basic authentication.")
    http_client_connection_timeout_millis: int = setting(
        2000, key="http.client.connection.timeout.millis", importance="LOW", group=REQUEST,
        display="Connection timeout", ge=1, doc="Milliseconds to wait for a connection.")
    http_client_read_timeout_millis: int = setting(
        2000, key="http.client.read.timeout.millis", importance="LOW", group=REQUEST,
        display="Read timeout", ge=1, doc="Milliseconds to wait for a response.")
    http_timer_interval_millis: int = setting(
        60000, key="http.timer.interval.millis", group=REQUEST, display="Interval", ge=0,
        doc="Milliseconds between requests once a response brought no new records.")
    http_timer_catchup_interval_millis: int = setting(
        0, key="http.timer.catchup.interval.millis", importance="LOW", group=REQUEST,
        display="Catch-up interval", ge=0,
        doc="Milliseconds between requests while responses bring new records (the next "
            "page); Kanal's default 0 asks at once (castorm's waits 30000).")
    http_response_list_pointer: str = setting(
        "/", key="http.response.list.pointer", importance="HIGH", group=RESPONSE,
        display="List pointer",
        doc="JSON pointer (RFC 6901) to the array of records in the response; / is the "
            "whole response.")
    http_response_record_pointer: str = setting(
        "/", key="http.response.record.pointer", importance="LOW", group=RESPONSE,
        display="Record pointer",
        doc="JSON pointer, within an item of the list, to the record's value.")
    http_response_record_offset_pointer: str = setting(
        "", key="http.response.record.offset.pointer", importance="HIGH", group=RESPONSE,
        display="Offset pointers",
        doc="The offset of each record: name=/pointer pairs separated by commas (e.g. "
            "id=/id). 'key' also becomes the record key, 'timestamp' (epoch milliseconds or "
            "ISO 8601) its timestamp.")
    http_offset_initial: str = setting(
        "", key="http.offset.initial", importance="HIGH", group=RESPONSE,
        display="Initial offset",
        doc="The offset before the first record: name=value pairs separated by commas.")
    kafka_topic: str = setting(
        key="kafka.topic", importance="HIGH", group=KAFKA, display="Topic",
        doc="The topic the records are written to.")

    @field_validator("http_request_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value) or value

    @field_validator("http_response_list_pointer", "http_response_record_pointer")
    @classmethod
    def _pointer(cls, value: str) -> str:
        if value and not value.startswith("/"):
            raise ValueError(f"{value!r} is not a JSON pointer: start it with / (e.g. /items)")
        return value

    @field_validator("http_request_headers")
    @classmethod
    def _headers(cls, value: str) -> str:
        header_pairs(value, "http.request.headers")
        return value

    @field_validator("http_response_record_offset_pointer", "http_offset_initial")
    @classmethod
    def _pairs(cls, value: str) -> str:
        for item in value.split(","):
            if item.strip() and "=" not in item:
                raise ValueError(f"item {item.strip()!r} is not name=value; separate several "
                                 "by commas")
        return value

    @field_validator("http_response_record_offset_pointer")
    @classmethod
    def _offset_pointers(cls, value: str) -> str:
        for name, pointer in _pairs(value).items():
            if not pointer.startswith("/"):
                raise ValueError(f"{name}={pointer}: {pointer!r} is not a JSON pointer; start "
                                 "it with / (e.g. id=/id)")
        return value

    def offset_pointers(self) -> dict[str, str]:
        return _pairs(self.http_response_record_offset_pointer)

    def initial_offset(self) -> dict[str, str]:
        return _pairs(self.http_offset_initial)


def _pairs(value: str) -> dict[str, str]:
    pairs = (item.partition("=") for item in value.split(",") if item.strip())
    return {name.strip(): content.strip() for name, _, content in pairs}
