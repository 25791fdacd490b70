"""The connector's configuration, under Confluent's keys and with Confluent's defaults.

A Confluent ``ElasticsearchSinkConnector`` configuration parses unchanged. This module
judges one value at a time; ``checks`` holds what needs several keys or the server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import BeforeValidator, PrivateAttr, SecretStr, field_validator

from kanal_worker.api import CommaList, Settings, comma_list, setting

CONNECTOR, CONVERSION, DATA_STREAM = "Connector", "Data Conversion", "Data Stream"
INDEX_FORBIDDEN = re.compile(r'[\\/*?"<>| ,#:A-Z]')
DATASET_FORBIDDEN = re.compile(r'[\\/*?"<>| ,#:\-A-Z]')


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


Lower = BeforeValidator(_lower)
Upper = BeforeValidator(_upper)


class ElasticsearchSinkSettings(Settings):
    # -- Connector -----------------------------------------------------------------------
    connection_url: CommaList = setting(
        key="connection.url", importance="HIGH", group=CONNECTOR, width="LONG",
        display="Connection URLs",
        doc="Elasticsearch or OpenSearch HTTP URLs, separated by commas, e.g. "
            "http://eshost1:9200,http://eshost2:9200; requests are spread over them. A URL "
            "without a scheme is http.")
    connection_username: str | None = setting(
        None, key="connection.username", group=CONNECTOR, width="SHORT",
        display="Connection Username",
        doc="User name for HTTP basic authentication; used only when "
            "connection.password is set too.")
    connection_password: SecretStr | None = setting(
        None, key="connection.password", group=CONNECTOR, width="SHORT",
        display="Connection Password",
        doc="Password for HTTP basic authentication; used only when connection.username "
            "is set too.")
    batch_size: int = setting(
        2000, key="batch.size", group=CONNECTOR, ge=1, le=1000000, width="SHORT",
        display="Batch Size",
        doc="Most records in one bulk request.")
    bulk_size_bytes: int = setting(
        5242880, key="bulk.size.bytes", importance="LOW", group=CONNECTOR, ge=-1,
        width="SHORT", display="Bulk Size (bytes)",
        doc="Most bytes in one bulk request (a single larger record is still sent, "
            "alone); -1 disables the limit.")
    max_in_flight_requests: int = setting(
        5, key="max.in.flight.requests", group=CONNECTOR, ge=1, le=1000, width="SHORT",
        display="Max In-flight Requests",
        doc="Bulk requests a task sends at the same time.")
    linger_ms: int = setting(
        1, key="linger.ms", importance="LOW", group=CONNECTOR, ge=0, le=604800000,
        width="SHORT", display="Linger (ms)",
        doc="How long a partial bulk request (fewer than batch.size records) waits for "
            "more records, across polls, before it is sent; a full one goes at once. "
            "Offsets are committed only up to the records the server acknowledged, so a "
            "long linger delays the commits too.")
    max_retries: int = setting(
        5, key="max.retries", importance="LOW", group=CONNECTOR, ge=0, width="SHORT",
        display="Max Retries",
        doc="Retries of a bulk request (or its rejected items) that failed with 429, a 5xx "
            "status or a connection error, before the runtime takes over: it pauses the "
            "partitions, keeps polling and retries with its own backoff, so an outage "
            "never fails the task.")
    retry_backoff_ms: int = setting(
        100, key="retry.backoff.ms", importance="LOW", group=CONNECTOR, ge=0, width="SHORT",
        display="Retry Backoff (ms)",
        doc="Wait before the first retry; it doubles with each retry.")
    connection_timeout_ms: int = setting(
        1000, key="connection.timeout.ms", importance="LOW", group=CONNECTOR, ge=1,
        width="SHORT", display="Connection Timeout",
        doc="Milliseconds to wait for a connection to the server.")
    read_timeout_ms: int = setting(
        3000, key="read.timeout.ms", importance="LOW", group=CONNECTOR, ge=1,
        width="SHORT", display="Read Timeout",
        doc="Milliseconds to wait for the answer to a request; a timed-out bulk request "
            "is retried like a 5xx.")

    # -- Data Conversion -----------------------------------------------------------------
    key_ignore: bool = setting(
        False, key="key.ignore", importance="HIGH", group=CONVERSION, width="SHORT",
        display="Ignore Key mode",
        doc="true: the document id is topic+partition+offset (each record one document, "
            "written once however often it is delivered). false: the id is the record "
            "key, and inserts and deletes carry the offset as external version, so an "
            "older record never overwrites a newer one.")
    schema_ignore: bool = setting(
        False, key="schema.ignore", importance="LOW", group=CONVERSION, width="SHORT",
        display="Ignore Schema mode",
        doc="false: an index created by the connector gets a mapping built from the "
            "record's value schema (records without one leave it to dynamic mapping). "
            "true: the server infers the mapping from the data.")
    write_method: Annotated[Literal["insert", "upsert"], Lower] = setting(
        "insert", key="write.method", importance="LOW", group=CONVERSION, width="SHORT",
        display="Write Method",
        doc="insert replaces the whole document; upsert merges the value into the "
            "document with the key as id (doc_as_upsert), creating it when missing.")
    behavior_on_null_values: Annotated[Literal["ignore", "delete", "fail"], Lower] = setting(
        "fail", key="behavior.on.null.values", importance="LOW", group=CONVERSION,
        width="SHORT", display="Behavior for null-valued records",
        doc="Records with a null value (tombstones): ignore skips them, delete deletes the "
            "document with the key as id, fail reports them as failed records (the task "
            "fails unless errors.tolerance=all sends them to the dead letter queue).")
    behavior_on_malformed_documents: Annotated[Literal["ignore", "warn", "fail"], Lower] = \
        setting("fail", key="behavior.on.malformed.documents", importance="LOW",
                group=CONVERSION, width="SHORT", display="Behavior on malformed documents",
                doc="Documents the server rejects (a mapping conflict, a value that is not "
                    "an object, ...): ignore drops them, warn drops them with a warning in "
                    "the log, fail reports them as failed records (the task fails unless "
                    "errors.tolerance=all sends them to the dead letter queue).")

    # -- Data Stream ---------------------------------------------------------------------
    data_stream_type: Annotated[Literal["NONE", "LOGS", "METRICS"], Upper] = setting(
        "NONE", key="data.stream.type", importance="LOW", group=DATA_STREAM, width="SHORT",
        display="Data Stream Type",
        doc="LOGS or METRICS writes each topic to the data stream "
            "<type>-<data.stream.dataset>-<topic> (created when missing) instead of the "
            "index <topic>; NONE writes to indices.")
    data_stream_dataset: str = setting(
        "", key="data.stream.dataset", importance="LOW", group=DATA_STREAM, width="MEDIUM",
        display="Data Stream Dataset",
        doc="The dataset part of data stream names (lowercase, at most 100 characters, "
            "none of \\/*?\"<>|,#:- or spaces); required with data.stream.type.")

    _topics: list[str] = PrivateAttr(default_factory=list)

    @classmethod
    def parse(cls, config: Mapping[str, Any], prefix: str = "") -> Self:
        """Also keep ``topics``: index names come from them and are checked up front."""
        settings: Self = super().parse(config, prefix)
        settings._topics = comma_list(config.get(prefix + "topics"))
        return settings

    @property
    def topics(self) -> list[str]:
        return self._topics

    @field_validator("connection_url")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("Missing required configuration with no default value; set it "
                             "to the server's URL, e.g. http://localhost:9200")
        urls = []
        for url in value:
            full = url if "://" in url else f"http://{url}"
            parts = urlsplit(full)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"Invalid URL {url!r}: use http(s)://host[:port]")
            if parts.username or parts.password:
                raise ValueError(f"URL {parts.hostname} carries credentials; put them in "
                                 "connection.username and connection.password instead")
            urls.append(full.rstrip("/"))
        return urls

    @field_validator("data_stream_dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        if value and (len(value) > 100 or DATASET_FORBIDDEN.search(value)
                      or value[0] in "_+."):
            raise ValueError(f"Invalid dataset {value!r}: use at most 100 lowercase "
                             "characters, none of \\/*?\"<>|,#:- or spaces, not starting "
                             "with _, + or .")
        return value

    def password(self) -> str | None:
        """The password, None when unset or blank."""
        text = (self.connection_password.get_secret_value().strip()
                if self.connection_password is not None else "")
        return text or None

    def index_for(self, topic: str) -> str:
        """Where a topic's records go: the index named like it, or its data stream."""
        if self.data_stream_type == "NONE":
            return topic
        return f"{self.data_stream_type.lower()}-{self.data_stream_dataset}-{topic}"


def index_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an index or data stream (the server's rules), else None."""
    if not name:
        return "it is empty"
    if name in (".", ".."):
        return "it is . or .."
    if name[0] in "-_+":
        return "it starts with -, _ or +"
    bad = INDEX_FORBIDDEN.search(name)
    if bad:
        what = "uppercase letters" if bad.group().isupper() else repr(bad.group())
        return f"it contains {what}"
    if len(name.encode()) > 255:
        return "it is longer than 255 bytes"
    return None
