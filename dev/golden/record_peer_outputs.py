"""Record what Apache Kafka Connect's transforms and predicates produce, as golden fixtures.

Run against the reference worker of ``dev/stack up connect``:

    .venv/bin/python dev/golden/record_peer_outputs.py [CASE ...]

Each case is a real Apache pipeline: a FileStreamSource connector reads the case's lines
(each becomes a record whose value is the line, schema STRING, key null, timestamp the
time it was read: Kafka keeps it as the message timestamp, so replays can use it), the case's
``transforms.*`` / ``predicates.*`` run on it, and the worker's JsonConverter (schemas
enabled) and SimpleHeaderConverter write it to Kafka. The script reads those bytes back,
so a fixture holds exactly what Apache produced, schemas included. Structured input is
built by the chain itself (HoistField, Cast, InsertField, TimestampConverter, ...), and
schemaless maps come from the record key, which FileStreamSource leaves without a schema.

When the chain fails, the worker fails the task; the fixture records the records produced
before the failure and the exception from the task's trace. Configuration mistakes are
recorded from the worker's validate endpoint.

Fixtures go to ``tests/golden/<case>.json``; ``tests/integration/test_transforms_golden.py``
replays them through Kanal.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "golden"
PEER = "http://127.0.0.1:18083"
BOOTSTRAP = "127.0.0.1:9092"
T = "org.apache.kafka.connect.transforms."
P = "org.apache.kafka.connect.transforms.predicates."

Step = tuple[str, dict[str, str]]


@dataclass
class Case:
    name: str
    description: str
    lines: list[str]
    steps: list[Step]
    predicates: list[Step] = field(default_factory=list)
    config_only: bool = False
    """Only ask the worker's validate endpoint (the configuration is invalid)."""
    drops_all: bool = False
    """Every record is filtered out; Apache then commits no source offset to wait for, so
    the case is done once its task has run for a while."""


def struct_value(*extra: Step) -> list[Step]:
    """Value {speed: float64 from the line, vehicle: optional string, source: topic}."""
    return [
        ("mkspeed", {"type": T + "HoistField$Value", "field": "speed"}),
        ("mkcast", {"type": T + "Cast$Value", "spec": "speed:float64"}),
        ("mkvehicle", {"type": T + "InsertField$Value", "static.field": "vehicle",
                       "static.value": "truck-7"}),
        ("mksource", {"type": T + "InsertField$Value", "topic.field": "source!"}),
        *extra,
    ]


def nested_value(*extra: Step) -> list[Step]:
    """Value {reading: {speed, vehicle, source}, fleet: "north"}, named and versioned."""
    return struct_value(
        ("mkwrap", {"type": T + "HoistField$Value", "field": "reading"}),
        ("mkfleet", {"type": T + "InsertField$Value", "static.field": "fleet",
                     "static.value": "north"}),
        ("mkname", {"type": T + "SetSchemaMetadata$Value", "schema.name": "dev.kanal.Reading",
                    "schema.version": "2"}),
        *extra,
    )


def timestamp_value(*extra: Step) -> list[Step]:
    """Value {at: Timestamp parsed from the line, speed: int32 12}."""
    return [
        ("mkat", {"type": T + "HoistField$Value", "field": "at"}),
        ("mkts", {"type": T + "TimestampConverter$Value", "field": "at",
                  "target.type": "Timestamp", "format": "yyyy-MM-dd HH:mm:ss.SSS"}),
        *extra,
    ]


def schemaless_key(*extra: Step) -> list[Step]:
    """Key map {outer: {id: null, vehicle: "truck-7", count: 12 (int), topic}} without schema."""
    return [
        ("mkid", {"type": T + "HoistField$Key", "field": "id"}),
        ("mkveh", {"type": T + "InsertField$Key", "static.field": "vehicle",
                   "static.value": "truck-7"}),
        ("mkcount", {"type": T + "InsertField$Key", "static.field": "count",
                     "static.value": "12"}),
        ("mkint", {"type": T + "Cast$Key", "spec": "count:int32"}),
        ("mktopic", {"type": T + "InsertField$Key", "topic.field": "topic"}),
        ("mkouter", {"type": T + "HoistField$Key", "field": "outer"}),
        ("mklevel", {"type": T + "InsertField$Key", "static.field": "level",
                     "static.value": "top"}),
        *extra,
    ]


SPEEDS = ["88.5", "130", "-7.25", "0"]
STAMPS = ["2024-05-01 10:15:30.123", "1969-12-31 23:59:59.999", "2024-02-29 00:00:00.000"]

CASES = [
    Case("cast-struct-fields", "Cast fields of a struct to narrower and other types",
         SPEEDS, struct_value(("t", {"type": T + "Cast$Value",
                                     "spec": "speed:int8,vehicle:string,source:string"}))),
    Case("cast-struct-to-string", "Cast a float64 field to string (Java's Double.toString)",
         [*SPEEDS, "12345678.9", "0.0001"],
         struct_value(("t", {"type": T + "Cast$Value", "spec": "speed:string"}))),
    Case("cast-struct-to-boolean-float32", "Cast to boolean and float32",
         SPEEDS, struct_value(("t", {"type": T + "Cast$Value", "spec": "speed:float32"}),
                              ("b", {"type": T + "Cast$Value", "spec": "speed:boolean"}))),
    Case("cast-whole-value", "Cast the whole string value to int64, then fail on text",
         ["12", "-5", "+7", "abc"], [("t", {"type": T + "Cast$Value", "spec": "int64"})]),
    Case("cast-whole-value-int16-overflow", "A string out of int16's range fails",
         ["32767", "32768"], [("t", {"type": T + "Cast$Value", "spec": "int16"})]),
    Case("cast-schemaless-key", "Cast fields of a schemaless map",
         ["x"], schemaless_key(("t", {"type": T + "Cast$Key", "spec": "level:boolean"}))),
    Case("cast-timestamp-field", "Cast a Timestamp field to string and to int64",
         STAMPS, timestamp_value(("t", {"type": T + "Cast$Value", "spec": "at:string"}))),
    Case("cast-timestamp-field-int64", "Cast a Timestamp field to int64",
         STAMPS, timestamp_value(("t", {"type": T + "Cast$Value", "spec": "at:int64"}))),
    Case("drop-headers", "Insert headers, then drop one",
         ["a"], [("h1", {"type": T + "InsertHeader", "header": "keep", "value.literal": "1"}),
                 ("h2", {"type": T + "InsertHeader", "header": "drop", "value.literal": "2"}),
                 ("t", {"type": T + "DropHeaders", "headers": "drop,absent"})]),
    Case("extract-field-struct", "Extract a field of a struct",
         SPEEDS, struct_value(("t", {"type": T + "ExtractField$Value", "field": "speed"}))),
    Case("extract-field-nested-v2", "Extract a nested field with field.syntax.version=V2",
         SPEEDS, nested_value(("t", {"type": T + "ExtractField$Value", "field": "reading.speed",
                                     "field.syntax.version": "V2"}))),
    Case("extract-field-schemaless-key", "Extract a field of a schemaless map",
         ["x"], schemaless_key(("t", {"type": T + "ExtractField$Key", "field": "outer"}))),
    Case("extract-field-unknown", "Extracting a field the schema lacks fails",
         ["1"], struct_value(("t", {"type": T + "ExtractField$Value", "field": "nope"}))),
    Case("filter-topic-matches", "Filter drops records whose topic matches",
         ["a", "b"], [("t", {"type": T + "Filter", "predicate": "golden"})],
         [("golden", {"type": P + "TopicNameMatches", "pattern": "kg-.*"})], drops_all=True),
    Case("filter-topic-matches-negated", "Filter with negate keeps records whose topic matches",
         ["a", "b"], [("t", {"type": T + "Filter", "predicate": "golden", "negate": "true"})],
         [("golden", {"type": P + "TopicNameMatches", "pattern": "kg-.*"})]),
    Case("filter-has-header-key", "Filter drops records with a header",
         ["a"], [("h", {"type": T + "InsertHeader", "header": "x", "value.literal": "1"}),
                 ("t", {"type": T + "Filter", "predicate": "hx"}),
                 ("after", {"type": T + "HoistField$Value", "field": "never"})],
         [("hx", {"type": P + "HasHeaderKey", "name": "x"})], drops_all=True),
    Case("conditional-insert-tombstone", "A transform skipped by a negated tombstone predicate",
         ["a"], [("t", {"type": T + "HoistField$Value", "field": "wrapped",
                        "predicate": "tomb", "negate": "true"})],
         [("tomb", {"type": P + "RecordIsTombstone"})]),
    Case("flatten-nested-struct", "Flatten a nested struct",
         SPEEDS, nested_value(("t", {"type": T + "Flatten$Value"}))),
    Case("flatten-delimiter", "Flatten with another delimiter",
         ["1"], nested_value(("t", {"type": T + "Flatten$Value", "delimiter": "_"}))),
    Case("flatten-schemaless-key", "Flatten a nested schemaless map",
         ["x"], schemaless_key(("t", {"type": T + "Flatten$Key"}))),
    Case("header-from-move", "Move struct fields to headers",
         SPEEDS, struct_value(("t", {"type": T + "HeaderFrom$Value", "fields": "speed,vehicle",
                                     "headers": "h_speed,h_vehicle", "operation": "move"}))),
    Case("header-from-copy-schemaless", "Copy schemaless key fields to headers",
         ["x"], schemaless_key(("t", {"type": T + "HeaderFrom$Key", "fields": "outer,level",
                                      "headers": "h_outer,h_level", "operation": "copy"}))),
    Case("hoist-field-value", "Wrap the string value in a struct",
         ["a", ""], [("t", {"type": T + "HoistField$Value", "field": "line"})]),
    Case("hoist-field-key", "Wrap the null schemaless key in a map",
         ["a"], [("t", {"type": T + "HoistField$Key", "field": "id"})]),
    Case("insert-field-struct", "Insert topic and static fields (partition and timestamp are "
         "null for source records and left out)",
         ["1"], struct_value(("t", {"type": T + "InsertField$Value", "topic.field": "t",
                                    "partition.field": "p", "timestamp.field": "ts?",
                                    "static.field": "s!", "static.value": "v"}))),
    Case("insert-field-offset-on-source", "offset.field needs a sink record",
         ["1"], struct_value(("t", {"type": T + "InsertField$Value", "offset.field": "o"}))),
    Case("insert-header-literals", "Header literals typed like Values.parseString",
         ["a"], [(f"h{i}", {"type": T + "InsertHeader", "header": f"h{i}",
                            "value.literal": literal})
                 for i, literal in enumerate(["42", "true", "3.14", "hello world", "-129",
                                              "2024-05-01", "null"])]),
    Case("mask-field-struct", "Mask struct fields with empty values",
         SPEEDS, struct_value(("t", {"type": T + "MaskField$Value",
                                     "fields": "speed,vehicle"}))),
    Case("mask-field-replacement", "Mask with a replacement",
         SPEEDS, struct_value(("t", {"type": T + "MaskField$Value", "fields": "vehicle,source",
                                     "replacement": "****"}),
                              ("n", {"type": T + "MaskField$Value", "fields": "speed",
                                     "replacement": "99"}))),
    Case("mask-field-schemaless-key", "Mask schemaless map fields",
         ["x"], schemaless_key(("t", {"type": T + "MaskField$Key", "fields": "level,outer"}))),
    Case("regex-router", "Route with a regular expression and group references",
         ["a"], [("t", {"type": T + "RegexRouter", "regex": "kg-([a-z0-9]+)-(.*)",
                        "replacement": "kg-$1-$2.routed-$1"})]),
    Case("regex-router-no-match", "A topic that does not fully match keeps its name",
         ["a"], [("t", {"type": T + "RegexRouter", "regex": "kg", "replacement": "other"})]),
    Case("replace-field-exclude-rename", "Exclude and rename struct fields",
         SPEEDS, struct_value(("t", {"type": T + "ReplaceField$Value", "exclude": "source",
                                     "renames": "speed:kmh,vehicle:id"}))),
    Case("replace-field-include", "Include only some struct fields",
         ["1"], struct_value(("t", {"type": T + "ReplaceField$Value",
                                    "include": "vehicle,missing"}))),
    Case("replace-field-schemaless-key", "Rename schemaless map fields",
         ["x"], schemaless_key(("t", {"type": T + "ReplaceField$Key",
                                      "renames": "outer:inner"}))),
    Case("set-schema-metadata", "Name and version a struct schema",
         ["1"], struct_value(("t", {"type": T + "SetSchemaMetadata$Value",
                                    "schema.name": "dev.kanal.Speed",
                                    "schema.version": "7"}))),
    Case("set-schema-metadata-primitive", "Name a string schema",
         ["a"], [("t", {"type": T + "SetSchemaMetadata$Value", "schema.name": "line"})]),
    Case("timestamp-converter-string-to-timestamp", "Parse the whole value as a Timestamp",
         STAMPS, [("t", {"type": T + "TimestampConverter$Value", "target.type": "Timestamp",
                         "format": "yyyy-MM-dd HH:mm:ss.SSS"})]),
    Case("timestamp-converter-to-unix", "Timestamp field to Unix microseconds",
         STAMPS, timestamp_value(("t", {"type": T + "TimestampConverter$Value", "field": "at",
                                        "target.type": "unix",
                                        "unix.precision": "microseconds"}))),
    Case("timestamp-converter-to-unix-seconds", "Timestamp field to Unix seconds",
         STAMPS, timestamp_value(("t", {"type": T + "TimestampConverter$Value", "field": "at",
                                        "target.type": "unix",
                                        "unix.precision": "seconds"}))),
    Case("timestamp-converter-to-date-time", "Timestamp field to Date, and another to Time",
         STAMPS, timestamp_value(
             ("copy", {"type": T + "InsertField$Value", "static.field": "other",
                       "static.value": "2024-05-01 10:15:30.123"}),
             ("other", {"type": T + "TimestampConverter$Value", "field": "other",
                        "target.type": "Time", "format": "yyyy-MM-dd HH:mm:ss.SSS"}),
             ("t", {"type": T + "TimestampConverter$Value", "field": "at",
                    "target.type": "Date"}))),
    Case("timestamp-converter-to-string", "Timestamp field to a formatted string",
         STAMPS, timestamp_value(("t", {"type": T + "TimestampConverter$Value", "field": "at",
                                        "target.type": "string",
                                        "format": "EEE, d MMM yyyy HH:mm:ss Z"}))),
    Case("timestamp-converter-unparseable", "A string that does not match the format fails",
         ["2024-05-01", "garbage"], [("t", {"type": T + "TimestampConverter$Value",
                                            "target.type": "Date", "format": "yyyy-MM-dd"})]),
    Case("timestamp-router", "Route by the record timestamp (FileStreamSource stamps each "
         "record with the time it read the line)",
         ["a"], [("t", {"type": T + "TimestampRouter", "topic.format": "${topic}.${timestamp}",
                        "timestamp.format": "yyyy-MM-dd'T'HH"})]),
    Case("value-to-key", "Key from value fields",
         SPEEDS, struct_value(("t", {"type": T + "ValueToKey", "fields": "vehicle,speed"}))),
    Case("value-to-key-missing-field", "A field the value lacks fails",
         ["1"], struct_value(("t", {"type": T + "ValueToKey", "fields": "nope"}))),
    Case("config-missing-required", "Required keys of every transform missing",
         [], [("cast", {"type": T + "Cast$Value"}),
              ("extract", {"type": T + "ExtractField$Value"}),
              ("drop", {"type": T + "DropHeaders"}),
              ("hfrom", {"type": T + "HeaderFrom$Value"}),
              ("hoist", {"type": T + "HoistField$Key"}),
              ("ih", {"type": T + "InsertHeader"}),
              ("mask", {"type": T + "MaskField$Value"}),
              ("router", {"type": T + "RegexRouter"}),
              ("tsc", {"type": T + "TimestampConverter$Value"}),
              ("v2k", {"type": T + "ValueToKey"})],
         [("topic", {"type": P + "TopicNameMatches"}), ("header", {"type": P + "HasHeaderKey"})],
         config_only=True),
    Case("config-invalid-values", "Values Apache's validators reject",
         [], [("cast", {"type": T + "Cast$Value", "spec": "a:bytes"}),
              ("cast2", {"type": T + "Cast$Value", "spec": "a:int8,int16"}),
              ("hfrom", {"type": T + "HeaderFrom$Value", "fields": "a", "headers": "b",
                         "operation": "swap"}),
              ("mask", {"type": T + "MaskField$Value", "fields": "a", "replacement": ""}),
              ("router", {"type": T + "RegexRouter", "regex": "(", "replacement": "x"}),
              ("replace", {"type": T + "ReplaceField$Value", "renames": "a:b:c"}),
              ("tsc", {"type": T + "TimestampConverter$Value", "target.type": "epoch"}),
              ("tsc2", {"type": T + "TimestampConverter$Value", "target.type": "unix",
                        "unix.precision": "minutes"}),
              ("ssm", {"type": T + "SetSchemaMetadata$Value", "schema.version": "x"}),
              ("unknown", {"type": T + "NoSuchTransform"})],
         [("topic", {"type": P + "TopicNameMatches", "pattern": "["})],
         config_only=True),
    Case("config-negate-without-predicate", "negate needs a predicate",
         [], [("neg", {"type": T + "Filter", "negate": "true"})], config_only=True),
    Case("config-checked-at-start", "Mistakes Apache finds only when the task configures",
         ["1"], [("ins", {"type": T + "InsertField$Value"}),
                 ("hfrom", {"type": T + "HeaderFrom$Value", "fields": "a,b", "headers": "c",
                            "operation": "copy"}),
                 ("ssm", {"type": T + "SetSchemaMetadata$Value"}),
                 ("tsc", {"type": T + "TimestampConverter$Value", "target.type": "string"})],
         config_only=True),
]


def connector_config(case: Case, name: str, file: str, topic: str) -> dict[str, str]:
    config = {
        "name": name,
        "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
        "tasks.max": "1",
        "file": file,
        "topic": topic,
        "transforms": ",".join(alias for alias, _ in case.steps),
    }
    for alias, settings in case.steps:
        config.update({f"transforms.{alias}.{k}": v for k, v in settings.items()})
    if case.predicates:
        config["predicates"] = ",".join(alias for alias, _ in case.predicates)
        for alias, settings in case.predicates:
            config.update({f"predicates.{alias}.{k}": v for k, v in settings.items()})
    return config


def rest(method: str, path: str, body: Any = None, missing_ok: bool = False) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(PEER + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
    except urllib.error.HTTPError as exc:
        text = exc.read()
        if exc.code == 404 and missing_ok:
            return None
        if exc.code >= 500 or exc.code == 404:
            raise RuntimeError(f"{method} {path}: {exc.code} {text!r}") from None
    return json.loads(text) if text else None


def validate(config: dict[str, str]) -> dict[str, list[str]]:
    """The errors the worker's validate endpoint reports, by key (transforms and predicates)."""
    plugin = urllib.parse.quote(config["connector.class"])
    answer = rest("PUT", f"/connector-plugins/{plugin}/config/validate", config)
    return {c["value"]["name"]: c["value"]["errors"] for c in answer["configs"]
            if c["value"]["errors"] and c["value"]["name"].startswith(("transforms",
                                                                       "predicates"))}


def task_state(name: str) -> tuple[str, str | None]:
    status = rest("GET", f"/connectors/{urllib.parse.quote(name)}/status", missing_ok=True)
    tasks = (status or {}).get("tasks") or []
    if not tasks:
        return "UNASSIGNED", None
    return tasks[0]["state"], tasks[0].get("trace")


def read_position(name: str) -> int:
    answer = rest("GET", f"/connectors/{urllib.parse.quote(name)}/offsets", missing_ok=True) or {}
    for entry in answer.get("offsets", []):
        return int(entry["offset"].get("position", 0))
    return 0


def failure(trace: str) -> list[dict[str, str]]:
    """The exceptions of a Java trace, outermost first ('Caused by' chain)."""
    chain = []
    for line in trace.splitlines():
        if not line or line.startswith(("\t", " ")):
            continue
        exception, _, message = line.removeprefix("Caused by: ").partition(": ")
        chain.append({"exception": exception, "message": message})
    return chain


def read_topics(base: str) -> list[dict[str, Any]]:
    """Every record of ``base`` and of the topics routed to ``base.*``."""
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    topics = sorted(t for t in admin.list_topics(timeout=10).topics
                    if t == base or t.startswith(base + "."))
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"golden-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    records: list[dict[str, Any]] = []
    try:
        for topic in topics:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            for partition in sorted(partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                           timeout=10)
                if high <= low:
                    continue
                consumer.assign([TopicPartition(topic, partition, low)])
                remaining = high - low
                while remaining:
                    for message in consumer.consume(remaining, 5):
                        if message.error():
                            continue
                        remaining -= 1
                        records.append({
                            "topic": message.topic(),
                            "timestamp": message.timestamp()[1],
                            "key": _text(message.key()),
                            "value": _text(message.value()),
                            "headers": [[k, _text(v)] for k, v in message.headers() or []],
                        })
    finally:
        consumer.close()
    return records


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8")


def record(case: Case, work: Path, run: str) -> dict[str, Any]:
    topic = f"kg-{run}-{case.name}"
    source = work / f"{case.name}.txt"
    source.write_text("".join(line + "\n" for line in case.lines), encoding="utf-8")
    name = f"golden-{case.name}-{run}"
    config = connector_config(case, name, str(source), topic)
    fixture: dict[str, Any] = {
        "name": case.name, "description": case.description, "lines": case.lines,
        "topic": topic, "config": {k: v for k, v in config.items()
                                   if k.startswith(("transforms", "predicates"))},
        "validate_errors": validate(config),
    }
    if case.config_only or fixture["validate_errors"]:
        if case.config_only and not fixture["validate_errors"]:
            fixture["start_failure"] = start_failure(name, config)
        return fixture
    rest("PUT", f"/connectors/{urllib.parse.quote(name)}/config", config)
    size = source.stat().st_size
    deadline = time.monotonic() + 90
    trace = None
    running_since: float | None = None
    try:
        while time.monotonic() < deadline:
            state, trace = task_state(name)
            if state == "FAILED" or read_position(name) >= size:
                break
            if state == "RUNNING" and running_since is None:
                running_since = time.monotonic()
            if case.drops_all and running_since and time.monotonic() - running_since > 10:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"{case.name}: the peer did not finish in time")
        if state == "FAILED":
            time.sleep(2)  # let the failed task's producer deliver what it had sent
    finally:
        rest("DELETE", f"/connectors/{urllib.parse.quote(name)}")
    fixture["outputs"] = read_topics(topic)
    if state == "FAILED" and trace:
        fixture["failure"] = failure(trace)
    return fixture


def start_failure(name: str, config: dict[str, str]) -> list[dict[str, str]] | None:
    """Create the connector anyway and report how its task fails when it configures."""
    rest("PUT", f"/connectors/{urllib.parse.quote(name)}/config", config)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state, trace = task_state(name)
            if state == "FAILED" and trace:
                return failure(trace)
            time.sleep(0.5)
        return None
    finally:
        rest("DELETE", f"/connectors/{urllib.parse.quote(name)}")


def record_cases(description: str, cases: list[Any], fixtures: Path,
                 record_one: Callable[[Any, Path, str], dict[str, Any]],
                 outcome: Callable[[dict[str, Any]], str]) -> int:
    """Record the cases named on the command line (default: all) into ``fixtures``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    args = parser.parse_args()
    chosen = [c for c in cases if not args.cases or c.name in args.cases]
    run = uuid.uuid4().hex[:6]
    fixtures.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kanal-golden-") as work:
        for case in chosen:
            fixture = record_one(case, Path(work), run)
            path = fixtures / f"{case.name}.json"
            path.write_text(json.dumps(fixture, indent=2, ensure_ascii=False) + "\n",
                            encoding="utf-8")
            print(f"{case.name}: {outcome(fixture)}", flush=True)
    return 0


def _outcome(fixture: dict[str, Any]) -> str:
    return ("validate errors" if fixture["validate_errors"]
            else f"{len(fixture.get('outputs', []))} record(s)"
            + (f", failed: {fixture['failure'][-1]['message'][:60]}"
               if fixture.get("failure") else ""))


def main() -> int:
    return record_cases(__doc__.splitlines()[0], CASES, FIXTURES, record, _outcome)


if __name__ == "__main__":
    sys.exit(main())
