import json
from pathlib import Path

import pytest

from kanal_worker.api.errors import ConfigError
from kanal_worker.config.connector import SinkSettings
from kanal_worker.config.loader import load_connector
from kanal_worker.runtime.registry import find
from kanal_worker.runtime.validation import errors_of, validate


def test_connector_forms_agree(tmp_path: Path) -> None:
    props = tmp_path / "sink.properties"
    props.write_text("name=sink\nconnector.class=FileStreamSink\ntopics=a\nfile=/tmp/o\n")
    rest = tmp_path / "sink.json"
    rest.write_text(json.dumps({"name": "sink", "config": {
        "connector.class": "FileStreamSink", "topics": "a", "file": "/tmp/o"}}))
    manifest = tmp_path / "sink.yaml"
    manifest.write_text(
        "apiVersion: kanal.dev/v1alpha1\nkind: Connector\nmetadata: {name: sink}\n"
        "spec:\n  clusterRef: {name: c}\n  class: FileStreamSink\n  tasksMax: 1\n"
        "  config: {topics: a, file: /tmp/o}\n")
    configs = [load_connector(p).config for p in (props, rest, manifest)]
    assert configs[0] == configs[1]
    assert {k: v for k, v in configs[2].items() if k != "tasks.max"} == configs[0]


def test_aliases_resolve_to_the_same_plugin() -> None:
    names = ["FileStreamSink", "FileStreamSinkConnector",
             "org.apache.kafka.connect.file.FileStreamSinkConnector"]
    assert len({find("connector", n, "connector.class").cls for n in names}) == 1


def test_unknown_connector_lists_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        find("connector", "com.example.Nope", "connector.class")
    assert info.value.key == "connector.class"
    assert "FileStreamSinkConnector" in info.value.message


def test_sink_needs_topics_and_names_the_key() -> None:
    errors = SinkSettings.config_errors({"name": "x", "connector.class": "FileStreamSink"})
    assert any("topics" in m for messages in errors.values() for m in messages)


def test_validate_reports_every_error_by_key() -> None:
    infos = validate({"name": "s", "connector.class": "FileStreamSource", "tasks.max": "zero"})
    errors = errors_of(infos)
    assert set(errors) == {"tasks.max", "topic"}
    assert infos["error_count"] == 2
    assert "Common" in infos["groups"]
    definition = next(c["definition"] for c in infos["configs"]
                      if c["definition"]["name"] == "tasks.max")
    assert definition["type"] == "LONG" and definition["default_value"] == "1"
