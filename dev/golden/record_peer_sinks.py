"""Record what Apache Kafka Connect's FileStreamSink writes, and the dead-letter headers its
error handling adds, as golden fixtures.

Run against the reference worker of ``dev/stack up connect``:

    .venv/bin/python dev/golden/record_peer_sinks.py [CASE ...]

Each case produces its values (raw bytes, a null value is a tombstone) to a fresh topic
and runs a FileStreamSink connector on the peer with the case's converters and transforms,
``errors.tolerance=all`` and a dead-letter queue with context headers. The fixture holds
the file's lines as Apache wrote them (``String.valueOf`` of each value) and, for each
dead-lettered record, its offset and ``__connect.errors.*`` headers (the stack trace
left out: Java's frames are not Kanal's).

Fixtures go to ``tests/golden/sinks/<case>.json``;
``tests/integration/test_sinks_golden.py`` runs the same cases through Kanal.
"""

from __future__ import annotations

import base64
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from record_peer_outputs import BOOTSTRAP, T, record_cases, rest  # a sibling script

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "golden" / "sinks"
STRING = {"value.converter": "org.apache.kafka.connect.storage.StringConverter"}
BYTES = {"value.converter": "org.apache.kafka.connect.converters.ByteArrayConverter"}
SCHEMALESS = {"value.converter": "org.apache.kafka.connect.json.JsonConverter",
              "value.converter.schemas.enable": "false"}
WITH_SCHEMAS = {"value.converter": "org.apache.kafka.connect.json.JsonConverter",
                "value.converter.schemas.enable": "true"}
IGNORED_HEADERS = ("__connect.errors.exception.stacktrace",)


@dataclass
class Case:
    name: str
    description: str
    values: list[str | None]
    config: dict[str, str]
    failures: int = 0
    """How many of ``values`` fail (and go to the dead-letter queue)."""


def envelope(schema: dict[str, Any], payload: Any) -> str:
    return json.dumps({"schema": schema, "payload": payload}, ensure_ascii=False)


def optional(type_: str, **more: Any) -> dict[str, Any]:
    return {"type": type_, "optional": True, **more}


DECIMAL = {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
           "parameters": {"scale": "2"}, "optional": True}
TIMESTAMP = optional("int64", name="org.apache.kafka.connect.data.Timestamp", version=1)
DATE = optional("int32", name="org.apache.kafka.connect.data.Date", version=1)
TIME = optional("int32", name="org.apache.kafka.connect.data.Time", version=1)
READING = {"type": "struct", "name": "dev.kanal.Reading", "optional": False, "fields": [
    {"field": "vehicle", **optional("string")},
    {"field": "speed", "type": "double", "optional": False},
    {"field": "ratio", **optional("float")},
    {"field": "gear", **optional("int8")},
    {"field": "rpm", **optional("int16")},
    {"field": "odometer", **optional("int32")},
    {"field": "trip", **optional("int64")},
    {"field": "moving", **optional("boolean")},
    {"field": "driver", **optional("string")},
    {"field": "engine", **optional("struct", fields=[
        {"field": "temp", **optional("double")}, {"field": "code", **optional("string")}])},
    {"field": "wheels", **optional("array", items={"type": "int32", "optional": False})},
    {"field": "tags", **optional("map", keys={"type": "string", "optional": False},
                                 values=optional("int64"))},
    {"field": "zones", **optional("map", keys={"type": "int32", "optional": False},
                                  values=optional("string"))},
    {"field": "price", **DECIMAL},
    {"field": "at", **TIMESTAMP},
    {"field": "day", **DATE},
    {"field": "time", **TIME},
]}
TWELVE_KEYS = {f"sensor{i}": i for i in range(12)}
THIRTEEN_KEYS = {f"sensor{i}": i for i in range(13)}
WIDE = {f"{word}_{n}": n for n, word in enumerate(
    ["vehicle", "speed", "lat", "lon", "heading", "fuel", "odometer", "driver", "route",
     "stop", "door", "temp", "load", "axle", "brake", "horn", "light", "wiper", "seat",
     "belt", "gear", "clutch", "mirror", "tire", "battery", "radio"])}

CASES = [
    Case("string-lines", "StringConverter: each value as it is, JSON text included",
         ["plain text", '{"vehicle": "truck-7", "speed": 88.5}', "  spaced  ", "ünïcödé",
          "", None], STRING),
    Case("string-hoisted-struct", "StringConverter, then HoistField$Value: a Struct",
         ["truck-7", "", None],
         {**STRING, "transforms": "h", "transforms.h.type": T + "HoistField$Value",
          "transforms.h.field": "line"}),
    Case("bytes-values", "ByteArrayConverter: Apache prints the array's identity hash",
         ["truck-7", '{"a": 1}'], BYTES),
    Case("json-schemaless-objects", "JsonConverter without schemas: objects as HashMaps",
         [json.dumps(v, ensure_ascii=False) for v in (
             {"vehicle": "truck-7", "speed": 88.5},
             {"b": 2, "a": 1, "c": None},
             {"nested": {"z": [1, 2.5, "x", None, True], "y": {}}, "empty": [],
              "flag": False},
             {"ünï": "cödé", "Aa": 1, "BB": 2},
             TWELVE_KEYS, THIRTEEN_KEYS, WIDE,
             {"speed": 1.0, "big": 1e21, "small": 0.0001, "tiny": 1e-7, "neg": -0.0,
              "huge": 12345678.9, "int": 9007199254740993, "whole": 100.0},
             {},
         )], SCHEMALESS),
    Case("json-schemaless-scalars", "JsonConverter without schemas: numbers, strings, "
         "booleans, arrays, null",
         ["42", "-7", "1.50", "1e3", "2.5E-4", '"text"', '"with \\"quotes\\""', "true",
          "false", "null", "[1, 2, [3, {\"k\": \"v\"}]]", "[]", None], SCHEMALESS),
    Case("json-schemaless-insert-field", "JsonConverter without schemas, then "
         "InsertField$Value (the benchmark's decode-encode)",
         ['{"vehicle": "truck-7", "speed": 88}', '{"vehicle": "car-1", "speed": 130.5}'],
         {**SCHEMALESS, "transforms": "tag", "transforms.tag.type": T + "InsertField$Value",
          "transforms.tag.static.field": "pipeline", "transforms.tag.static.value": "bench"}),
    Case("json-schemaless-copied-maps", "Transforms that copy a map (InsertField) or build "
         "a LinkedHashMap (Flatten): Java's iteration order depends on how the map was made",
         [json.dumps(v) for v in (
             {"id": 1}, {"vehicle": "truck-7", "speed": 88, "lat": 1.5, "lon": 2.5, "fuel": 3},
             TWELVE_KEYS, {"zeta": {"b": 1, "a": {"y": 2, "x": 3}}, "alpha": 0})],
         {**SCHEMALESS, "transforms": "tag,flat",
          "transforms.tag.type": T + "InsertField$Value",
          "transforms.tag.static.field": "pipeline", "transforms.tag.static.value": "bench",
          "transforms.flat.type": T + "Flatten$Value"}),
    Case("json-schemaless-inserted", "InsertField on maps of a few keys",
         [json.dumps(v) for v in ({"id": 1}, {"b": 1, "a": 2}, {"k1": 1, "k2": 2, "k3": 3},
                                  {f"f{i}": i for i in range(6)}, TWELVE_KEYS)],
         {**SCHEMALESS, "transforms": "tag", "transforms.tag.type": T + "InsertField$Value",
          "transforms.tag.static.field": "pipeline", "transforms.tag.static.value": "bench"}),
    Case("json-schemaless-replaced", "ReplaceField (a map sized in advance), then MaskField "
         "and Cast (copies)",
         [json.dumps(v) for v in ({"id": 1, "secret": "s"},
                                  {"k1": 1, "k2": 2, "k3": 3, "secret": "s", "speed": "88"},
                                  {f"f{i}": i for i in range(7)})],
         {**SCHEMALESS, "transforms": "r,m,c", "transforms.r.type": T + "ReplaceField$Value",
          "transforms.r.exclude": "secret", "transforms.r.renames": "k1:first,f6:last",
          "transforms.m.type": T + "MaskField$Value", "transforms.m.fields": "k2",
          "transforms.c.type": T + "Cast$Value", "transforms.c.spec": "speed:int32"}),
    Case("json-schemas-struct", "JsonConverter with schemas: a Struct of every type",
         [envelope(READING, {
             "vehicle": "truck-7", "speed": 88.5, "ratio": 0.1, "gear": 3, "rpm": -2000,
             "odometer": 123456, "trip": 9007199254740993, "moving": True, "driver": None,
             "engine": {"temp": 90.25, "code": None}, "wheels": [1, 2, 3, 4],
             "tags": {"north": 1, "fleet": 7, "a": None},
             "zones": [[3, "c"], [1, "a"], [2, None]],
             "price": base64.b64encode((12345).to_bytes(2, "big")).decode(),
             "at": 1714558530123, "day": 19844, "time": 36930123}),
          envelope(READING, {"speed": 0.0})], WITH_SCHEMAS),
    Case("json-schemas-values", "JsonConverter with schemas: primitives, arrays and maps",
         [envelope({"type": "string", "optional": False}, "text"),
          envelope({"type": "int64", "optional": False}, 42),
          envelope({"type": "double", "optional": False}, 1e-5),
          envelope({"type": "float", "optional": False}, 0.1),
          envelope({"type": "boolean", "optional": False}, True),
          envelope({"type": "array", "items": {"type": "string", "optional": True},
                    "optional": False}, ["a", None, "c"]),
          envelope({"type": "map", "keys": {"type": "string", "optional": False},
                    "values": {"type": "double", "optional": False},
                    "optional": False}, {"speed": 88.5, "limit": 80}),
          envelope(DECIMAL, base64.b64encode((-5).to_bytes(1, "big", signed=True)).decode()),
          envelope(TIMESTAMP, 0),
          envelope({"type": "string", "optional": True}, None),
          None], WITH_SCHEMAS),
    Case("dlq-json-malformed", "Malformed JSON fails in the value converter",
         ['{"n": 1}', '{"n": 2, "speed": ', '{"n": 3}', "not json"], SCHEMALESS, failures=2),
    Case("dlq-json-envelope", "JSON without the schema envelope, schemas enabled",
         ['{"n": 1}', envelope({"type": "int32", "optional": False}, 2)], WITH_SCHEMAS,
         failures=1),
    Case("dlq-transform-data", "A transform that refuses the record's type",
         ['{"n": 1}', "42", '{"n": 3}'],
         {**SCHEMALESS, "transforms": "n", "transforms.n.type": T + "ExtractField$Value",
          "transforms.n.field": "n"}, failures=1),
    Case("dlq-transform-unknown-field", "ExtractField of a field the struct lacks",
         [envelope({"type": "struct", "optional": False,
                    "fields": [{"field": "n", "type": "int32", "optional": False}]}, {"n": 1})],
         {**WITH_SCHEMAS, "transforms": "x", "transforms.x.type": T + "ExtractField$Value",
          "transforms.x.field": "nope"}, failures=1),
    Case("dlq-transform-cast", "Cast of text that is not a number",
         ["88", "fast"], {**STRING, "transforms": "c", "transforms.c.type": T + "Cast$Value",
                          "transforms.c.spec": "int32"}, failures=1),
]


def produce(topic: str, values: list[str | None]) -> None:
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": BOOTSTRAP})
    for value in values:
        producer.produce(topic, value=None if value is None else value.encode())
    assert producer.flush(30) == 0


def dead_letters(topic: str, expected: int, timeout: float = 60) -> list[dict[str, Any]]:
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"golden-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < expected and time.monotonic() < deadline:
            for message in consumer.consume(10, 0.5):
                if message.error() is not None:
                    continue
                headers = {k: None if v is None else v.decode()
                           for k, v in message.headers() or []
                           if k.startswith("__connect.errors.") and k not in IGNORED_HEADERS}
                found.append({"value": message.value().decode(), "headers": headers})
    finally:
        consumer.close()
    if len(found) < expected:
        raise RuntimeError(f"{topic}: {len(found)} of {expected} dead letters")
    return found


def record(case: Case, work: Path, run: str) -> dict[str, Any]:
    topic = f"ks-{run}-{case.name}"
    produce(topic, case.values)
    out = work / f"{case.name}.txt"
    name = f"golden-sink-{case.name}-{run}"
    config = {"connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
              "tasks.max": "1", "topics": topic, "file": str(out),
              "key.converter": "org.apache.kafka.connect.storage.StringConverter",
              "errors.tolerance": "all", "errors.deadletterqueue.topic.name": f"{topic}-dlq",
              "errors.deadletterqueue.topic.replication.factor": "1",
              "errors.deadletterqueue.context.headers.enable": "true", **case.config}
    rest("PUT", f"/connectors/{urllib.parse.quote(name)}/config", config)
    lines = len(case.values) - case.failures
    try:
        deadline = time.monotonic() + 90
        while not (out.exists() and out.read_bytes().count(b"\n") >= lines):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{case.name}: the peer wrote no {lines} lines in time")
            time.sleep(0.5)
        dead = dead_letters(f"{topic}-dlq", case.failures) if case.failures else []
    finally:
        rest("DELETE", f"/connectors/{urllib.parse.quote(name)}")
    return {"name": case.name, "description": case.description, "topic": topic,
            "values": case.values,
            "config": {k: v for k, v in config.items()
                       if k not in ("name", "topics", "file")
                       and not k.startswith("errors.")},
            "lines": out.read_text(encoding="utf-8").split("\n")[:-1],
            "dead_letters": dead}


def main() -> int:
    return record_cases(__doc__.splitlines()[0], CASES, FIXTURES, record, lambda fixture: (
        f"{len(fixture['lines'])} line(s), {len(fixture['dead_letters'])} dead letter(s)"))


if __name__ == "__main__":
    sys.exit(main())
