import pytest

from kanal_worker.api.errors import ConfigError
from kanal_worker.config.properties import format_properties, parse_properties


def test_separators_comments_and_whitespace() -> None:
    text = "# comment\n! also\nname=sink\ntopics : a,b\nfile  /tmp/x\n  tasks.max=3  \n"
    assert parse_properties(text) == {"name": "sink", "topics": "a,b", "file": "/tmp/x",
                                      "tasks.max": "3  "}


def test_continuation_and_escapes() -> None:
    text = "value=one \\\n    two\nkey\\=x=y\nunicode=caf\\u00e9\ntab=a\\tb\n"
    assert parse_properties(text) == {"value": "one two", "key=x": "y", "unicode": "café",
                                      "tab": "a\tb"}


def test_key_without_value_is_empty() -> None:
    assert parse_properties("flag\n") == {"flag": ""}


def test_malformed_lines_name_the_line() -> None:
    with pytest.raises(ConfigError, match=r"w\.properties:2: line has a value but no key"):
        parse_properties("a=1\n=orphan\n", "w.properties")
    with pytest.raises(ConfigError, match=r":1: malformed \\uxxxx escape"):
        parse_properties("a=\\u12\n")


def test_round_trip() -> None:
    values = {"a b": "x", "c=d": " lead", "multi": "l1\nl2", "path": "C:\\dir"}
    assert parse_properties(format_properties(values)) == values
