"""RegexRouter and TimestampRouter: rewrite the record's topic."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import TypeVar

from pydantic import field_validator

from kanal_worker.api.config import Settings, setting
from kanal_worker.api.errors import DataError
from kanal_worker.api.plugins import Transformation
from kanal_worker.api.records import ConnectRecord
from kanal_worker.api.schema import EPOCH
from kanal_worker.transforms._dateformat import SimpleDateFormat
from kanal_worker.transforms._java import check_replacement, compile_java_regex, java_replacement
from kanal_worker.transforms._util import APACHE_PACKAGE, config_checked

R = TypeVar("R", bound=ConnectRecord)



class RegexRouterSettings(Settings):
    regex: str = setting(key="regex", importance="HIGH",
                         doc="Regular expression to use for matching.")
    replacement: str = setting(key="replacement", importance="HIGH", doc="Replacement string.")

    _regex_compiles = field_validator("regex")(config_checked(compile_java_regex, "regex"))
    _replacement_valid = field_validator("replacement")(
        config_checked(check_replacement, "replacement"))


class RegexRouter(Transformation[R]):
    """Update the record topic using the configured regular expression and replacement
    string. When the whole topic matches, the first match is replaced (Java's
    ``Matcher.replaceFirst``: ``$1`` and ``${name}`` refer to groups)."""

    settings = RegexRouterSettings
    aliases = (f"{APACHE_PACKAGE}RegexRouter",)

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: RegexRouterSettings = RegexRouterSettings.parse(config)
        self.regex = compile_java_regex(parsed.regex, "regex")
        self.replacement = java_replacement(parsed.replacement)

    def apply(self, record: R) -> R:
        if self.regex.fullmatch(record.topic) is None:
            return record
        try:
            topic = self.regex.sub(self.replacement, record.topic, count=1)
        except (re.error, IndexError) as exc:
            raise DataError(f"Cannot apply replacement to topic {record.topic}: {exc}") from exc
        return record.replace(topic=topic)


def _valid_date_format(pattern: str) -> str:
    try:
        SimpleDateFormat(pattern)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    return pattern


class TimestampRouterSettings(Settings):
    topic_format: str = setting(
        "${topic}-${timestamp}", key="topic.format", importance="HIGH",
        doc="Format string which can contain ${topic} and ${timestamp} as placeholders for "
            "the topic and timestamp, respectively.")
    timestamp_format: str = setting(
        "yyyyMMdd", key="timestamp.format", importance="HIGH",
        doc="Format string for the timestamp that is compatible with "
            "java.text.SimpleDateFormat.")

    _format_compiles = field_validator("timestamp_format")(_valid_date_format)


class TimestampRouter(Transformation[R]):
    """Update the record's topic field as a function of the original topic value and the
    record timestamp (formatted in UTC). This is mainly useful for sink connectors, since the
    topic field is often used to determine the equivalent entity name in the destination
    system (e.g. database table or search index name)."""

    settings = TimestampRouterSettings
    aliases = (f"{APACHE_PACKAGE}TimestampRouter",)

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        parsed: TimestampRouterSettings = TimestampRouterSettings.parse(config)
        self.topic_format = parsed.topic_format
        self.timestamp_format = SimpleDateFormat(parsed.timestamp_format)

    def apply(self, record: R) -> R:
        if record.timestamp is None:
            raise DataError(f"Timestamp missing on record: {_describe(record)}")
        formatted = self.timestamp_format.format(
            EPOCH + dt.timedelta(milliseconds=record.timestamp))
        topic = self.topic_format.replace("${topic}", record.topic)
        return record.replace(topic=topic.replace("${timestamp}", formatted))


def _describe(record: ConnectRecord) -> str:
    return (f"{type(record).__name__}{{topic='{record.topic}', "
            f"kafkaPartition={record.kafka_partition}, timestamp=null}}")
