"""The schema registry layer against the test registry: fail-over, retries, auth, errors,
subjects and the wire header."""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import pytest

from kanal_worker.api import ConfigError, DataError, RetriableError, Schema, SchemaAndValue, Type
from kanal_worker.converters.registry import (
    HEADER,
    RegistryConverter,
    RegistryConverterSettings,
    RegistrySchema,
    SchemaReference,
    SchemaRegistry,
    SchemaRegistrySettings,
)
from tests.schema_registry import TestRegistry

RECORD = json.dumps({"type": "record", "name": "Reading", "namespace": "fleet",
                     "fields": [{"name": "speed", "type": "double"}]})


def _registry(url: str, sleeps: list[float] | None = None, **config: str) -> SchemaRegistry:
    settings = SchemaRegistrySettings.parse({"schema.registry.url": url,
                                             "retries.wait.ms": "10", **config})
    return SchemaRegistry(settings, sleep=(sleeps.append if sleeps is not None
                                           else lambda _: None))


def _dead_url() -> str:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{free.getsockname()[1]}"


def _subject() -> str:
    return f"readings-{uuid.uuid4().hex[:8]}-value"


def test_register_then_read_by_id_and_latest(schema_registry: TestRegistry) -> None:
    registry = _registry(schema_registry.url)
    subject = _subject()
    schema_id = registry.register(subject, RegistrySchema(RECORD, "AVRO"))
    assert registry.register(subject, RegistrySchema(RECORD, "AVRO")) == schema_id
    assert json.loads(registry.schema(schema_id).schema_str) == json.loads(RECORD)
    latest = registry.latest(subject)
    assert (latest.schema_id, latest.version) == (schema_id, 1)
    assert registry.lookup(subject, RegistrySchema(RECORD, "AVRO")).schema_id == schema_id


def test_a_dead_url_of_the_list_fails_over_to_the_next(schema_registry: TestRegistry) -> None:
    registry = _registry(f"{_dead_url()}, {schema_registry.url}")
    assert registry.register(_subject(), RegistrySchema(RECORD, "AVRO")) > 0


def test_server_errors_are_retried_with_backoff_then_retriable(
        schema_registry: TestRegistry) -> None:
    sleeps: list[float] = []
    registry = _registry(schema_registry.url, sleeps, **{"max.retries": "3"})
    with schema_registry.failing(503), pytest.raises(RetriableError) as failure:
        registry.register(_subject(), RegistrySchema(RECORD, "AVRO"))
    assert sleeps == [0.01, 0.02, 0.04]
    assert "HTTP 503" in str(failure.value) and "4 attempt(s)" in str(failure.value)
    assert "schema.registry.url" in str(failure.value)


def test_a_registry_that_is_down_is_retriable_and_back_up_answers(
        schema_registry: TestRegistry) -> None:
    registry = _registry(schema_registry.url, **{"max.retries": "1"})
    subject = _subject()
    with schema_registry.down(), pytest.raises(RetriableError, match="unreachable"):
        registry.register(subject, RegistrySchema(RECORD, "AVRO"))
    assert registry.register(subject, RegistrySchema(RECORD, "AVRO")) > 0


@pytest.mark.parametrize(("config", "key"), [
    ({"basic.auth.credentials.source": "USER_INFO", "basic.auth.user.info": "fleet:wrong"},
     "basic.auth.user.info"),
    ({"bearer.auth.token": "stale"}, "bearer.auth.token"),
    ({}, "basic.auth.user.info"),
])
def test_refused_credentials_name_the_key_to_fix(schema_registry: TestRegistry,
                                                 config: dict[str, str], key: str) -> None:
    registry = _registry(schema_registry.url, **config)
    with schema_registry.requiring(users={"fleet": "s3cret"}, token="fresh"), \
            pytest.raises(ConfigError) as failure:
        registry.register(_subject(), RegistrySchema(RECORD, "AVRO"))
    assert failure.value.key == key
    assert "HTTP 401" in str(failure.value) and "wrong" not in str(failure.value)


@pytest.mark.parametrize("config", [
    {"basic.auth.credentials.source": "USER_INFO", "basic.auth.user.info": "fleet:s3cret"},
    {"bearer.auth.token": "fresh"},
])
def test_user_info_and_bearer_tokens_are_sent(schema_registry: TestRegistry,
                                              config: dict[str, str]) -> None:
    registry = _registry(schema_registry.url, **config)
    with schema_registry.requiring(users={"fleet": "s3cret"}, token="fresh"):
        assert registry.register(_subject(), RegistrySchema(RECORD, "AVRO")) > 0


def test_user_info_in_the_url_is_used_with_the_url_source(
        schema_registry: TestRegistry) -> None:
    url = schema_registry.url.replace("http://", "http://fleet:s3cret@")
    registry = _registry(url)
    with schema_registry.requiring(users={"fleet": "s3cret"}):
        assert registry.register(_subject(), RegistrySchema(RECORD, "AVRO")) > 0
    assert "s3cret" not in " ".join(registry.urls)


def test_an_unknown_schema_id_is_a_data_error(schema_registry: TestRegistry) -> None:
    with pytest.raises(DataError, match="no schema with that id"):
        _registry(schema_registry.url).schema(987654)


def test_an_incompatible_schema_is_refused_with_the_fix(schema_registry: TestRegistry) -> None:
    registry = _registry(schema_registry.url)
    subject = _subject()
    registry.register(subject, RegistrySchema(RECORD, "AVRO"))
    required = json.loads(RECORD)
    required["fields"].append({"name": "driver", "type": "string"})
    with pytest.raises(DataError, match="incompatible") as failure:
        registry.register(subject, RegistrySchema(json.dumps(required), "AVRO"))
    assert "optional or with a default" in str(failure.value)
    optional = json.loads(RECORD)
    optional["fields"].append({"name": "driver", "type": ["null", "string"], "default": None})
    assert registry.register(subject, RegistrySchema(json.dumps(optional), "AVRO")) > 0
    assert registry.latest(subject).version == 2


def test_references_are_resolved_transitively(schema_registry: TestRegistry) -> None:
    registry = _registry(schema_registry.url)
    base, middle = _subject(), _subject()
    registry.register(base, RegistrySchema('{"type": "string"}', "JSON"))
    registry.register(middle, RegistrySchema(
        '{"$ref": "base.json"}', "JSON", [SchemaReference("base.json", base, 1)]))
    top = RegistrySchema('{"$ref": "middle.json"}', "JSON",
                         [SchemaReference("middle.json", middle, 1)])
    assert registry.references(top) == {"middle.json": '{"$ref": "base.json"}',
                                        "base.json": '{"type": "string"}'}


@pytest.mark.parametrize(("config", "key"), [
    ({"schema.registry.url": "localhost:8081"}, "schema.registry.url"),
    ({"value.subject.name.strategy": "com.example.MyStrategy"}, "value.subject.name.strategy"),
    ({"basic.auth.credentials.source": "SASL_INHERIT"}, "basic.auth.credentials.source"),
    ({"schemas.cache.config": "0"}, "schemas.cache.config"),
])
def test_bad_settings_name_their_key(config: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as failure:
        RegistryConverterSettings.parse({"schema.registry.url": "http://registry:8081",
                                         **config})
    assert failure.value.key == key


def test_user_info_without_a_colon_names_the_key() -> None:
    with pytest.raises(ConfigError) as failure:
        _registry("http://registry:8081", **{"basic.auth.credentials.source": "USER_INFO",
                                              "basic.auth.user.info": "fleet"})
    assert failure.value.key == "basic.auth.user.info"


def test_strategies_accept_short_and_full_class_names() -> None:
    parsed = RegistryConverterSettings.parse({
        "schema.registry.url": "http://registry:8081",
        "key.subject.name.strategy": "RecordNameStrategy",
        "value.subject.name.strategy":
            "io.confluent.kafka.serializers.subject.TopicRecordNameStrategy"})
    assert (parsed.key_subject_name_strategy, parsed.value_subject_name_strategy) == (
        "RecordNameStrategy", "TopicRecordNameStrategy")


class _Text(RegistryConverter):
    """The smallest registry converter: UTF-8 text under a JSON Schema string."""

    schema_type = "JSON"

    def to_connect(self, topic: str, data: bytes | None) -> SchemaAndValue:
        assert data is not None
        schema_id = self.read_header(topic, data)
        schema = self.reader(schema_id, lambda s: Schema(Type.STRING, doc=s.schema_str))
        return SchemaAndValue(schema, data[HEADER.size:].decode())

    def from_connect(self, topic: str, schema: Schema | None, value: Any) -> bytes | None:
        schema_id, _ = self.writer_schema(topic, RegistrySchema('{"type":"string"}', "JSON"),
                                          schema.name if schema else None)
        return self.header(schema_id) + str(value).encode()


def _text(url: str, is_key: bool = False, **config: str) -> _Text:
    return _Text({"schema.registry.url": url, **config}, is_key)


@pytest.mark.parametrize(("strategy", "is_key", "subject"), [
    ("TopicNameStrategy", False, "{topic}-value"),
    ("TopicNameStrategy", True, "{topic}-key"),
    ("RecordNameStrategy", False, "fleet.Reading"),
    ("TopicRecordNameStrategy", True, "{topic}-fleet.Reading"),
])
def test_subjects_follow_the_strategy_of_the_side(
        schema_registry: TestRegistry, strategy: str, is_key: bool, subject: str) -> None:
    topic = f"readings-{uuid.uuid4().hex[:8]}"
    side = "key" if is_key else "value"
    converter = _text(schema_registry.url, is_key, **{f"{side}.subject.name.strategy": strategy})
    data = converter.from_connect(topic, Schema(Type.STRING, name="fleet.Reading"), "fast")
    assert data is not None
    assert subject.format(topic=topic) in schema_registry.state.subjects
    read = converter.to_connect(topic, data)
    assert read.value == "fast" and read.schema is not None
    assert read.schema.doc == '{"type":"string"}'


def test_record_strategies_refuse_primitives_naming_the_key(
        schema_registry: TestRegistry) -> None:
    converter = _text(schema_registry.url, **{"value.subject.name.strategy":
                                              "RecordNameStrategy"})
    with pytest.raises(DataError, match=r"value\.subject\.name\.strategy=RecordNameStrategy"):
        converter.from_connect("readings", Schema(Type.STRING), "fast")


@pytest.mark.parametrize("data", [b"", b"\x00\x00", b'{"speed": 80}'])
def test_data_without_the_wire_header_says_which_converter_to_use(
        schema_registry: TestRegistry, data: bytes) -> None:
    with pytest.raises(DataError) as failure:
        _text(schema_registry.url).to_connect("readings", data)
    message = str(failure.value)
    assert "topic readings" in message and "Unknown magic byte" in message
    assert "value.converter" in message


def test_lookup_without_auto_register_names_the_fix(schema_registry: TestRegistry) -> None:
    converter = _text(schema_registry.url, **{"auto.register.schemas": "false"})
    with pytest.raises(DataError, match=r"auto\.register\.schemas=true"):
        converter.from_connect(f"readings-{uuid.uuid4().hex[:8]}", None, "fast")


def test_schemas_are_read_once_per_id(schema_registry: TestRegistry) -> None:
    converter = _text(schema_registry.url)
    data = converter.from_connect(f"readings-{uuid.uuid4().hex[:8]}", None, "fast")
    assert data is not None
    converter.to_connect("readings", data)
    before = len(schema_registry.requests)
    for _ in range(3):
        converter.to_connect("readings", data)
    assert len(schema_registry.requests) == before
