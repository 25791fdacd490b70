"""Hostile input to the parsers no other suite fuzzes (found when checking the property
tests of converters, transforms and the REST API): worker/connector ``.properties``
files, config placeholders, header values, string payloads.

No services: these run with the unit tests' speed.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kanal_worker.api.errors import ConfigError, DataError
from kanal_worker.config.properties import format_properties, parse_properties
from kanal_worker.config.providers import env_provider, resolve
from kanal_worker.converters.simple import SimpleHeaderConverter, StringConverter

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(TEXT.filter(bool), TEXT, max_size=8))
def test_properties_files_round_trip_any_key_and_value(values: dict[str, str]) -> None:
    assert parse_properties(format_properties(values)) == values


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_properties_parser_answers_garbage_with_config_errors(text: str) -> None:
    try:
        parsed = parse_properties(text)
    except ConfigError as error:
        assert error.message
    else:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.items())


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_values_without_known_providers_are_left_alone(value: str) -> None:
    assert resolve({"k": value}, {}) == {"k": value}


@settings(max_examples=200, deadline=None)
@given(prefix=TEXT.filter(lambda s: "${" not in s), secret=TEXT.filter(lambda s: "\0" not in s),
       suffix=TEXT.filter(lambda s: "${" not in s))
def test_env_placeholders_resolve_exactly(prefix: str, secret: str, suffix: str) -> None:
    name = "KANAL_HOSTILE_INPUT_VALUE"
    os.environ[name] = secret
    try:
        resolved = resolve({"k": f"{prefix}${{env:{name}}}{suffix}"},
                           {"env": env_provider({})})
    finally:
        del os.environ[name]
    assert resolved == {"k": f"{prefix}{secret}{suffix}"}


def test_missing_env_placeholder_names_the_key_not_a_value() -> None:
    with pytest.raises(ConfigError) as error:
        resolve({"azblob.account.key": "${env:KANAL_SURELY_UNSET_VARIABLE}"},
                {"env": env_provider({})})
    assert error.value.key == "azblob.account.key"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64) | TEXT.map(str.encode))
def test_header_values_convert_or_raise_data_errors(data: bytes) -> None:
    headers = SimpleHeaderConverter({})
    try:
        converted = headers.to_connect_header("t", "h", data)
    except DataError:
        return
    again = headers.from_connect_header("t", "h", converted.schema, converted.value)
    assert again is None or isinstance(again, bytes)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_string_payloads_round_trip(text: str) -> None:
    strings = StringConverter({}, False)
    assert strings.to_connect("t", strings.from_connect("t", None, text)).value == text
