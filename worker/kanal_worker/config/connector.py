"""The keys every connector shares, under Kafka Connect's names, groups and defaults."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator, model_validator

from kanal_worker.api.config import CommaList, Settings, setting


class CommonSettings(Settings):
    name: str = setting(key="name", importance="HIGH", group="Common",
                        doc="Globally unique name to use for this connector.",
                        display="Connector name", width="MEDIUM")
    connector_class: str = setting(
        key="connector.class", importance="HIGH", group="Common", display="Connector class",
        width="LONG",
        doc="Name or alias of the class for this connector, e.g. FileStreamSink or "
            "org.apache.kafka.connect.file.FileStreamSinkConnector.")
    tasks_max: int = setting(1, key="tasks.max", importance="HIGH", group="Common", ge=1,
                             display="Tasks max", width="SHORT",
                             doc="Maximum number of tasks to use for this connector.")
    key_converter: str | None = setting(
        None, key="key.converter", importance="LOW", group="Common",
        display="Key converter class", width="SHORT",
        doc="Converter class for keys; overrides the worker's key.converter.")
    value_converter: str | None = setting(
        None, key="value.converter", importance="LOW", group="Common",
        display="Value converter class", width="SHORT",
        doc="Converter class for values; overrides the worker's value.converter.")
    header_converter: str | None = setting(
        None, key="header.converter", importance="LOW", group="Common",
        display="Header converter class", width="SHORT",
        doc="HeaderConverter class for headers; overrides the worker's header.converter.")
    transforms: CommaList = setting(
        [], key="transforms", importance="LOW", group="Transforms", display="Transforms",
        doc="Aliases for the transformations to be applied to records, in order.")
    predicates: CommaList = setting(
        [], key="predicates", importance="LOW", group="Predicates", display="Predicates",
        doc="Aliases for the predicates used by transformations.")
    errors_retry_timeout: int = setting(
        0, key="errors.retry.timeout", importance="MEDIUM", group="Error Handling",
        display="Retry Timeout for Errors", ge=-1,
        doc="Maximum duration in milliseconds that a failed operation is retried; 0 means "
            "no retries, -1 infinite retries.")
    errors_retry_delay_max_ms: int = setting(
        60000, key="errors.retry.delay.max.ms", importance="MEDIUM", group="Error Handling",
        display="Maximum Delay Between Retries for Errors", ge=1,
        doc="Maximum duration in milliseconds between consecutive retry attempts.")
    errors_tolerance: Literal["none", "all"] = setting(
        "none", key="errors.tolerance", importance="MEDIUM", group="Error Handling",
        display="Error Tolerance",
        doc="'none' fails the task on the first error; 'all' skips problematic records.")
    errors_log_enable: bool = setting(
        False, key="errors.log.enable", importance="MEDIUM", group="Error Handling",
        display="Log Errors",
        doc="Log each error with the failed operation and the problematic record.")
    errors_log_include_messages: bool = setting(
        False, key="errors.log.include.messages", importance="MEDIUM", group="Error Handling",
        display="Log Error Details",
        doc="Include the record's key, value and headers in error logs.")

    @field_validator("errors_tolerance", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class SinkSettings(CommonSettings):
    topics: CommaList = setting(
        [], key="topics", importance="HIGH", group="Common", display="Topics",
        doc="List of topics to consume, separated by commas.")
    topics_regex: str = setting(
        "", key="topics.regex", importance="HIGH", group="Common", display="Topics regex",
        doc="Regular expression giving the topics to consume; excludes 'topics'.")
    dlq_topic: str = setting(
        "", key="errors.deadletterqueue.topic.name", importance="MEDIUM",
        group="Error Handling", display="Dead Letter Queue Topic Name",
        doc="Topic that receives the records that failed; empty disables the DLQ.")
    dlq_replication_factor: int = setting(
        3, key="errors.deadletterqueue.topic.replication.factor", importance="MEDIUM",
        group="Error Handling", display="Dead Letter Queue Topic Replication Factor",
        doc="Replication factor used to create the dead letter queue topic when it does "
            "not exist; capped at the number of brokers.")
    dlq_context_headers: bool = setting(
        False, key="errors.deadletterqueue.context.headers.enable", importance="MEDIUM",
        group="Error Handling", display="Enable Error Context Headers",
        doc="Add __connect.errors.* headers with the error context to DLQ records.")

    @field_validator("topics_regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        if value:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"Invalid regex: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_topic_source(self) -> SinkSettings:
        if self.topics and self.topics_regex:
            raise ValueError("topics and topics.regex are mutually exclusive; set only one")
        if not self.topics and not self.topics_regex:
            raise ValueError("Must configure one of topics or topics.regex")
        if self.dlq_topic and self.dlq_topic in self.topics:
            raise ValueError(f"The DLQ topic '{self.dlq_topic}' may not be included in the "
                             "list of topics ('topics=...') consumed by the connector")
        return self


class SourceSettings(CommonSettings):
    exactly_once_support: Literal["requested", "required"] = setting(
        "requested", key="exactly.once.support", importance="MEDIUM",
        group="Exactly Once Support",
        doc="Whether the connector must provide exactly-once semantics.")
    transaction_boundary: Literal["poll", "interval", "connector"] = setting(
        "poll", key="transaction.boundary", importance="MEDIUM", group="Exactly Once Support",
        doc="With exactly-once sources: one transaction per poll, per interval, or as the "
            "connector defines.")
    dlq_topic: str = setting(
        "", key="errors.deadletterqueue.topic.name", importance="MEDIUM",
        group="Error Handling", display="Dead Letter Queue Topic Name",
        doc="Kanal extension: source records that fail conversion or a transform go here.")
    dlq_replication_factor: int = setting(
        3, key="errors.deadletterqueue.topic.replication.factor", importance="MEDIUM",
        group="Error Handling",
        doc="Replication factor of the DLQ topic when Kanal creates it.")
    dlq_context_headers: bool = setting(
        False, key="errors.deadletterqueue.context.headers.enable", importance="MEDIUM",
        group="Error Handling", doc="Add __connect.errors.* headers to DLQ records.")
