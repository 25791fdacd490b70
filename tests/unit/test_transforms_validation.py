"""``kanal validate`` and the REST validate name each bad transform and predicate key."""

from __future__ import annotations

import pytest

from kanal_worker.runtime.registry import plugins
from kanal_worker.runtime.validation import errors_of, validate

SOURCE = {"name": "v", "connector.class": "FileStreamSource", "topic": "t", "file": ""}

REQUIRED = {
    "Cast": "spec", "DropHeaders": "headers", "ExtractField": "field", "HeaderFrom": "fields",
    "HoistField": "field", "InsertField": "static.field", "InsertHeader": "header",
    "MaskField": "fields", "RegexRouter": "regex", "SetSchemaMetadata": "schema.version",
    "TimestampConverter": "target.type", "ValueToKey": "fields",
}


def transform_names() -> list[str]:
    return sorted(plugins("transform"))


def test_every_apache_transform_and_variant_is_registered() -> None:
    names = set(transform_names())
    for family in ("Cast", "ExtractField", "Flatten", "HeaderFrom", "HoistField", "InsertField",
                   "MaskField", "ReplaceField", "SetSchemaMetadata", "TimestampConverter"):
        assert {f"{family}$Key", f"{family}$Value"} <= names
    assert {"DropHeaders", "Filter", "InsertHeader", "RegexRouter", "TimestampRouter",
            "ValueToKey"} <= names
    assert set(plugins("predicate")) == {"TopicNameMatches", "HasHeaderKey",
                                         "RecordIsTombstone", "FieldValueMatches"}
    for info in plugins("transform").values():
        assert info.class_name.startswith(("org.apache.kafka.connect.transforms.",
                                           "io.debezium.transforms."))
        assert info.class_name.endswith(info.name)


@pytest.mark.parametrize("name", transform_names())
def test_a_missing_required_key_is_named(name: str) -> None:
    family = name.split("$")[0]
    class_name = plugins("transform")[name].class_name
    errors = errors_of(validate({**SOURCE, "transforms": "x", "transforms.x.type": class_name}))
    if family in REQUIRED:
        assert f"transforms.x.{REQUIRED[family]}" in errors, errors
    else:
        assert errors == {}


def test_values_are_checked_per_key() -> None:
    errors = errors_of(validate({
        **SOURCE, "transforms": "cast,ts", "predicates": "p",
        "transforms.cast.type": "Cast$Value", "transforms.cast.spec": "a:bytes",
        "transforms.ts.type": "TimestampConverter$Value", "transforms.ts.target.type": "string",
        "predicates.p.type": "TopicNameMatches", "predicates.p.pattern": "(",
    }))
    assert set(errors) == {"transforms.cast.spec", "transforms.ts.format",
                           "predicates.p.pattern"}


def test_an_unknown_transform_class_is_reported_on_its_type_key() -> None:
    errors = errors_of(validate({**SOURCE, "transforms": "x", "transforms.x.type": "Nope"}))
    assert list(errors) == ["transforms.x.type"]
