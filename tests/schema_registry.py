"""A small schema registry speaking Confluent's REST API, for tests.

No Confluent-compatible registry can be installed on the test machines, so the tests run
this one: subjects and versions, ``/schemas/ids/{id}``, lookups, references and
``schemaType`` (AVRO, JSON, PROTOBUF; Protobuf also ``?format=serialized``), ``/config``
compatibility NONE / BACKWARD (409 on an incompatible schema), ``/compatibility``,
optional basic or bearer auth, and switches to answer HTTP 500 or to stop listening, as
a registry that is down does. It serves on an ephemeral 127.0.0.1 port from a thread,
over TLS when given a server context.
"""

from __future__ import annotations

import base64
import io
import json
import re
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import fastavro
import fastavro.utils
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.serialization import MessageField, SerializationContext

from kanal_worker.converters.protobuf_schema import parse_schema

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
COMPATIBILITY = ("NONE", "BACKWARD")


@dataclass(frozen=True)
class Stored:
    schema: str
    schema_type: str
    references: tuple[tuple[str, str, int], ...]

    def answer(self) -> dict[str, Any]:
        body: dict[str, Any] = {"schema": self.schema}
        if self.schema_type != "AVRO":
            body["schemaType"] = self.schema_type
        if self.references:
            body["references"] = [{"name": n, "subject": s, "version": v}
                                  for n, s, v in self.references]
        return body


class RegistryError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Registry:
    """The registry's state; the HTTP handler only parses and answers."""

    schemas: list[Stored] = field(default_factory=list)
    subjects: dict[str, list[int]] = field(default_factory=dict)
    compatibility: str = "BACKWARD"
    subject_compatibility: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def schema_id(self, stored: Stored) -> int:
        if stored not in self.schemas:
            self.schemas.append(stored)
        return self.schemas.index(stored) + 1

    def by_id(self, schema_id: int) -> Stored:
        if not 1 <= schema_id <= len(self.schemas):
            raise RegistryError(404, 40403, "Schema not found")
        return self.schemas[schema_id - 1]

    def versions(self, subject: str) -> list[int]:
        if subject not in self.subjects:
            raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
        return self.subjects[subject]

    def version(self, subject: str, version: str) -> dict[str, Any]:
        ids = self.versions(subject)
        number = len(ids) if version in ("latest", "-1") else int(version)
        if not 1 <= number <= len(ids):
            raise RegistryError(404, 40402, f"Version {version} not found.")
        schema_id = ids[number - 1]
        return {"subject": subject, "version": number, "id": schema_id,
                **self.by_id(schema_id).answer()}

    def register(self, subject: str, stored: Stored) -> dict[str, Any]:
        self._check(stored)
        ids = self.subjects.setdefault(subject, [])
        for number, schema_id in enumerate(ids, 1):
            if self.by_id(schema_id) == stored:
                return {"id": schema_id, "subject": subject, "version": number}
        if ids and not self.compatible(subject, stored, self.by_id(ids[-1])):
            raise RegistryError(409, 409, f"Schema being registered is incompatible with an "
                                          f"earlier schema for subject \"{subject}\"")
        schema_id = self.schema_id(stored)
        ids.append(schema_id)
        return {"id": schema_id, "subject": subject, "version": len(ids)}

    def lookup(self, subject: str, stored: Stored) -> dict[str, Any]:
        for number, schema_id in enumerate(self.versions(subject), 1):
            if self.by_id(schema_id) == stored:
                return self.version(subject, str(number))
        raise RegistryError(404, 40403, "Schema not found")

    def level(self, subject: str | None) -> str:
        return self.subject_compatibility.get(subject or "", self.compatibility)

    def compatible(self, subject: str, new: Stored, old: Stored) -> bool:
        """BACKWARD: ``new`` reads what was written with ``old``."""
        if self.level(subject) == "NONE" or new.schema_type != old.schema_type:
            return self.level(subject) == "NONE"
        if new.schema_type == "AVRO":
            return _avro_reads(json.loads(new.schema), self._named(new),
                               json.loads(old.schema), self._named(old))
        if new.schema_type == "JSON":
            return _json_reads(json.loads(new.schema), json.loads(old.schema))
        return _protobuf_reads(new.schema, old.schema)

    def _check(self, stored: Stored) -> None:
        try:
            if stored.schema_type == "AVRO":
                fastavro.parse_schema(json.loads(stored.schema), named_schemas=self._named(
                    stored))
            elif stored.schema_type == "JSON":
                json.loads(stored.schema)
        except (ValueError, TypeError, KeyError, fastavro.schema.SchemaParseException) as exc:
            raise RegistryError(422, 42201, f"Invalid schema: {exc}") from None
        for _, subject, version in stored.references:
            self.version(subject, str(version))

    def _named(self, stored: Stored) -> dict[str, Any]:
        named: dict[str, Any] = {}
        for _, subject, version in stored.references:
            fastavro.parse_schema(json.loads(self.version(subject, str(version))["schema"]),
                                  named_schemas=named)
        return named


def _avro_reads(reader: Any, reader_names: dict[str, Any], writer: Any,
                writer_names: dict[str, Any]) -> bool:
    """Whether Avro's schema resolution reads data of ``writer`` with ``reader``: records
    generated for the writer's schema read back with the reader's schema."""
    parsed_writer = fastavro.parse_schema(writer, writer_names)
    buffer = io.BytesIO()
    for datum in fastavro.utils.generate_many(parsed_writer, 3):
        fastavro.schemaless_writer(buffer, parsed_writer, datum)
    try:
        parsed_reader = fastavro.parse_schema(reader, reader_names)
        buffer.seek(0)
        for _ in range(3):
            fastavro.schemaless_reader(buffer, parsed_writer, parsed_reader)
    except (fastavro.read.SchemaResolutionError, ValueError, TypeError, EOFError):
        return False
    return True


def _json_reads(reader: Any, writer: Any) -> bool:
    """BACKWARD for JSON Schema objects, as far as tests need it: the reader requires no
    property the writer may leave out, and properties both have keep their type."""
    if not isinstance(reader, dict) or not isinstance(writer, dict):
        return reader == writer
    reader_props, writer_props = reader.get("properties", {}), writer.get("properties", {})
    if not set(reader.get("required", [])) <= set(writer.get("required", [])):
        return False
    if reader.get("additionalProperties") is False and set(writer_props) - set(reader_props):
        return False
    return all(_json_reads(reader_props[name], writer_props[name])
               for name in set(reader_props) & set(writer_props)) and \
        reader.get("type") == writer.get("type")


_PROTO_FIELD = re.compile(r"^\s*(?:optional |repeated |required )?([\w.]+)\s+(\w+)\s*=\s*(\d+)",
                          re.MULTILINE)


def _protobuf_reads(reader: str, writer: str) -> bool:
    """BACKWARD for Protobuf, as far as tests need it: field numbers both use keep their
    type (added and removed fields are compatible on the wire)."""
    def numbers(text: str) -> dict[str, str]:
        return {m.group(3): m.group(1) for m in _PROTO_FIELD.finditer(text)}
    old, new = numbers(writer), numbers(reader)
    return all(new[n] == old[n] for n in set(old) & set(new))


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the registry's state, not its access log."""

    # http.server's method names
    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        test = self.server.test_registry
        test.requests.append((method, self.path))
        try:
            if test.failing_with:
                raise RegistryError(test.failing_with, test.failing_with * 100,
                                    "Internal Server Error")
            if not test.authorized(self.headers.get("Authorization")):
                raise RegistryError(401, 401, "Unauthorized")
            with test.state.lock:
                status, answer = 200, _route(test.state, method, self.path, body)
        except RegistryError as exc:
            status, answer = exc.status, {"error_code": exc.code, "message": exc.message}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _stored(body: Any) -> Stored:
    if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
        raise RegistryError(422, 42201, "Invalid schema: a JSON body with a schema is needed")
    references = tuple((r["name"], r["subject"], int(r["version"]))
                       for r in body.get("references") or [])
    return Stored(body["schema"], body.get("schemaType") or "AVRO", references)


def _route(state: Registry, method: str, raw_path: str, body: Any) -> Any:
    answer = _answer(state, method, raw_path, body)
    if "format=serialized" in urllib.parse.urlsplit(raw_path).query and \
            isinstance(answer, dict) and answer.get("schemaType") == "PROTOBUF":
        answer = {**answer, "schema": _serialized_protobuf(state, answer)}
    return answer


def _serialized_protobuf(state: Registry, answer: dict[str, Any]) -> str:
    """``?format=serialized``: a Protobuf schema as the base64 ``FileDescriptorProto``
    Python clients read (the registry keeps what was registered, ``.proto`` text or not)."""
    references: dict[str, str] = {}
    pending = list(answer.get("references") or [])
    while pending:
        reference = pending.pop()
        referenced = state.version(reference["subject"], str(reference["version"]))
        references[reference["name"]] = referenced["schema"]
        pending.extend(referenced.get("references") or [])
    parsed = parse_schema(answer["schema"], references)
    return base64.b64encode(parsed.main.SerializeToString()).decode()


def _answer(state: Registry, method: str, raw_path: str, body: Any) -> Any:
    path = [urllib.parse.unquote(p) for p in urllib.parse.urlsplit(raw_path).path
            .strip("/").split("/")]
    match method, path:
        case "GET", ["subjects"]:
            return sorted(state.subjects)
        case "GET", ["subjects", subject, "versions"]:
            return list(range(1, len(state.versions(subject)) + 1))
        case "GET", ["subjects", subject, "versions", version]:
            return state.version(subject, version)
        case "POST", ["subjects", subject, "versions"]:
            return state.register(subject, _stored(body))
        case "POST", ["subjects", subject]:
            return state.lookup(subject, _stored(body))
        case "GET", ["schemas", "ids", schema_id]:
            return state.by_id(int(schema_id)).answer()
        case "GET", ["schemas", "types"]:
            return ["AVRO", "JSON", "PROTOBUF"]
        case "GET", ["config", *subject]:
            return {"compatibilityLevel": state.level(subject[0] if subject else None)}
        case "PUT", ["config", *subject]:
            level = (body or {}).get("compatibility")
            if level not in COMPATIBILITY:
                raise RegistryError(422, 42203, f"Invalid compatibility level {level}")
            if subject:
                state.subject_compatibility[subject[0]] = level
            else:
                state.compatibility = level
            return {"compatibility": level}
        case "POST", ["compatibility", "subjects", subject, "versions", version]:
            latest = state.by_id(state.version(subject, version)["id"])
            return {"is_compatible": state.compatible(subject, _stored(body), latest)}
    raise RegistryError(404, 404, f"HTTP 404 Not Found: {method} {raw_path}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    test_registry: TestRegistry


class TestRegistry:
    """The registry server: ``url``, its ``state``, and the switches tests flip."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.state = Registry()
        self.users: dict[str, str] = {}
        self.token: str | None = None
        self.failing_with = 0
        self.requests: list[tuple[str, str]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> TestRegistry:
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.test_registry = self
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="test-schema-registry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are refused) until ``start`` again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @contextmanager
    def down(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            self.start()

    @contextmanager
    def failing(self, status: int = 500) -> Iterator[None]:
        self.failing_with = status
        try:
            yield
        finally:
            self.failing_with = 0

    @contextmanager
    def requiring(self, *, users: dict[str, str] | None = None,
                  token: str | None = None) -> Iterator[None]:
        self.users, self.token = dict(users or {}), token
        try:
            yield
        finally:
            self.users, self.token = {}, None

    def framed(self, data: bytes | None, subject: str) -> bytes:
        """The payload of ``data`` after checking its wire header: magic byte 0 and the
        id of the subject's latest schema."""
        assert data is not None and len(data) >= 5 and data[0] == 0, data
        assert int.from_bytes(data[1:5], "big") == self.state.subjects[subject][-1]
        return data[5:]

    def authorized(self, header: str | None) -> bool:
        if not self.users and self.token is None:
            return True
        if header is None:
            return False
        kind, _, credentials = header.partition(" ")
        if kind == "Bearer":
            return self.token is not None and credentials == self.token
        if kind == "Basic":
            user, _, password = base64.b64decode(credentials).decode().partition(":")
            return self.users.get(user) == password
        return False


def confluent_client(url: str) -> SchemaRegistryClient:
    """confluent-kafka's own client, for its serializers (the cross-checks)."""
    return SchemaRegistryClient({"url": url})


def value_context(topic: str) -> SerializationContext:
    return SerializationContext(topic, MessageField.VALUE)
