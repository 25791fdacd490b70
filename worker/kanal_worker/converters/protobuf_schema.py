"""Protobuf schemas as a schema registry holds them, and descriptors to work with.

Java clients register ``.proto`` text; confluent-kafka's Python serializer registers a
base64 ``FileDescriptorProto``. Both read into a descriptor pool here: descriptors as they
are, text through protoc (grpcio-tools' bundled compiler), with the imports a registry
leaves out (``google/protobuf/*``, ``google/type/*``, ``confluent/*``) supplied from the
descriptors the protobuf runtime and the registry client ship. Schemas Kanal writes are
printed back to ``.proto`` text, so what it registers reads like what Java registers.
"""

from __future__ import annotations

import base64
import binascii
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TypeAlias

from confluent_kafka.schema_registry.confluent import meta_pb2
from confluent_kafka.schema_registry.confluent.type import decimal_pb2
from google.protobuf import (
    any_pb2,
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    empty_pb2,
    field_mask_pb2,
    struct_pb2,
    timestamp_pb2,
    wrappers_pb2,
)
from google.protobuf.message import DecodeError
from google.type import date_pb2, dayofweek_pb2, latlng_pb2, money_pb2, timeofday_pb2

from kanal_worker.api import DataError

FieldProto: TypeAlias = descriptor_pb2.FieldDescriptorProto
BUILTIN_MODULES: tuple[ModuleType, ...] = (
    descriptor_pb2, any_pb2, duration_pb2, empty_pb2, field_mask_pb2, struct_pb2,
    timestamp_pb2, wrappers_pb2, date_pb2, timeofday_pb2, dayofweek_pb2, latlng_pb2,
    money_pb2, meta_pb2, decimal_pb2)
"""Files a schema imports without a reference (under ``google/protobuf/``, ``google/type/``
and ``confluent/``: what registry clients skip when they register references)."""
PROTOC_TIMEOUT = 60.0
MAIN_FILE = "kanal_schema.proto"
"""The name a registered schema's own file gets (the registry keeps no file name)."""

_SCALAR_NAMES = {
    FieldProto.TYPE_DOUBLE: "double", FieldProto.TYPE_FLOAT: "float",
    FieldProto.TYPE_INT64: "int64", FieldProto.TYPE_UINT64: "uint64",
    FieldProto.TYPE_INT32: "int32", FieldProto.TYPE_FIXED64: "fixed64",
    FieldProto.TYPE_FIXED32: "fixed32", FieldProto.TYPE_BOOL: "bool",
    FieldProto.TYPE_STRING: "string", FieldProto.TYPE_BYTES: "bytes",
    FieldProto.TYPE_UINT32: "uint32", FieldProto.TYPE_SFIXED32: "sfixed32",
    FieldProto.TYPE_SFIXED64: "sfixed64", FieldProto.TYPE_SINT32: "sint32",
    FieldProto.TYPE_SINT64: "sint64"}
SCALAR_TYPES = {name: kind for kind, name in _SCALAR_NAMES.items()}
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def _descriptors(modules: Iterable[ModuleType]) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for module in modules:
        proto = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        files[proto.name] = proto
    return files


_BUILTINS = _descriptors(BUILTIN_MODULES)


def builtin_files() -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """The files every registered schema may import without a reference, by name."""
    return dict(_BUILTINS)


@dataclass
class ParsedSchema:
    """A registered schema read into a pool: its main file and every file it needs."""

    main: descriptor_pb2.FileDescriptorProto
    files: dict[str, descriptor_pb2.FileDescriptorProto]
    pool: descriptor_pool.DescriptorPool = field(init=False)
    messages: dict[str, tuple[descriptor_pb2.DescriptorProto, str]] = field(init=False)
    """Every message by full name, with the syntax of its file."""
    enums: dict[str, descriptor_pb2.EnumDescriptorProto] = field(init=False)

    def __post_init__(self) -> None:
        self.pool = descriptor_pool.DescriptorPool()
        added: set[str] = set()
        for proto in self._in_dependency_order():
            if proto.name not in added:
                self.pool.Add(proto)
                added.add(proto.name)
        self.messages = {}
        self.enums = {}
        for proto in self.files.values():
            prefix = f".{proto.package}" if proto.package else ""
            syntax = proto.syntax or "proto2"
            self._index(prefix, proto.message_type, proto.enum_type, syntax)

    def _in_dependency_order(self) -> list[descriptor_pb2.FileDescriptorProto]:
        ordered: list[descriptor_pb2.FileDescriptorProto] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            proto = self.files.get(name)
            if proto is None:
                raise DataError(f"Protobuf schema imports {name}, which is neither a reference "
                                "of the schema nor a well-known file")
            for dependency in proto.dependency:
                visit(dependency)
            ordered.append(proto)

        for name in self.files:
            visit(name)
        return ordered

    def _index(self, prefix: str, messages: Iterable[descriptor_pb2.DescriptorProto],
               enums: Iterable[descriptor_pb2.EnumDescriptorProto], syntax: str) -> None:
        for enum in enums:
            self.enums[f"{prefix}.{enum.name}"] = enum
        for message in messages:
            full = f"{prefix}.{message.name}"
            self.messages[full] = (message, syntax)
            self._index(full, message.nested_type, message.enum_type, syntax)

    def message_name(self, indexes: list[int]) -> str:
        """The full name (leading dot) of the message that ``indexes`` point at in the
        main file, as Confluent's message-index array addresses it."""
        name = f".{self.main.package}" if self.main.package else ""
        candidates = self.main.message_type
        for index in indexes:
            if not 0 <= index < len(candidates):
                raise DataError(f"Protobuf message index {indexes} is out of range for the "
                                f"schema's {len(candidates)} message(s)")
            message = candidates[index]
            name = f"{name}.{message.name}"
            candidates = message.nested_type
        return name

    def message_indexes(self, full_name: str) -> list[int]:
        """The message-index array of the message named ``full_name`` in the main file."""
        prefix = f".{self.main.package}" if self.main.package else ""
        candidates = self.main.message_type
        path: list[int] = []
        while True:
            for index, message in enumerate(candidates):
                name = f"{prefix}.{message.name}"
                if full_name == name or full_name.startswith(name + "."):
                    path.append(index)
                    prefix, candidates = name, message.nested_type
                    break
            else:
                raise DataError(f"message {full_name.lstrip('.')} is not in the schema")
            if prefix == full_name:
                return path


def parse_schema(schema: str, references: Mapping[str, str]) -> ParsedSchema:
    """A registered schema (``.proto`` text or a base64 descriptor) with the schemas of its
    references by import name (already resolved, transitively)."""
    given = {MAIN_FILE: schema, **references}
    files = builtin_files()
    texts: dict[str, str] = {}
    for name, text in given.items():
        descriptor = _as_descriptor(text)
        if descriptor is None:
            texts[name] = text
        else:
            descriptor.name = name
            files[name] = descriptor
    if texts:
        files.update(_compile(texts, files))
    main = files[MAIN_FILE]
    defined = _symbols(main)  # a registered well-known file (a wrapper at the root) replaces it
    return ParsedSchema(main, {name: proto for name, proto in files.items()
                               if proto is main or not _symbols(proto) & defined})


def _symbols(file: descriptor_pb2.FileDescriptorProto) -> set[str]:
    return {f"{file.package}.{item.name}" for item in (*file.message_type, *file.enum_type)}


def _as_descriptor(text: str) -> descriptor_pb2.FileDescriptorProto | None:
    """The descriptor a base64 schema holds; None for ``.proto`` text."""
    compact = "".join(text.split())
    if not _BASE64.fullmatch(compact):
        return None
    try:
        return descriptor_pb2.FileDescriptorProto.FromString(
            base64.b64decode(compact, validate=True))
    except (binascii.Error, DecodeError):
        return None


def _compile(texts: Mapping[str, str], known: Mapping[str, descriptor_pb2.FileDescriptorProto]
             ) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """``.proto`` texts compiled by protoc, against the descriptors already known."""
    with tempfile.TemporaryDirectory(prefix="kanal-protoc-") as work:
        root = Path(work)
        for name, text in texts.items():
            path = root / "src" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        known_set = descriptor_pb2.FileDescriptorSet(
            file=[p for n, p in known.items() if n not in texts])
        (root / "known.pb").write_bytes(known_set.SerializeToString())
        command = [sys.executable, "-c", "import sys; from grpc_tools import protoc; "
                   "sys.exit(protoc.main(sys.argv))",
                   f"--descriptor_set_in={root / 'known.pb'}", f"--proto_path={root / 'src'}",
                   f"--descriptor_set_out={root / 'out.pb'}", "--include_imports", *texts]
        try:
            done = subprocess.run(command, capture_output=True, text=True,
                                  timeout=PROTOC_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise DataError(f"protoc did not compile the Protobuf schema in "
                            f"{PROTOC_TIMEOUT:.0f} s") from None
        if done.returncode != 0:
            detail = done.stderr.replace(str(root / "src") + "/", "").strip()
            raise DataError(f"Invalid Protobuf schema in the registry: {detail}")
        compiled = descriptor_pb2.FileDescriptorSet.FromString(
            (root / "out.pb").read_bytes())
    return {proto.name: proto for proto in compiled.file if proto.name in texts}


# -- printing ----------------------------------------------------------------------------


def proto_text(file: descriptor_pb2.FileDescriptorProto) -> str:
    """``file`` as ``.proto`` text (the form Java clients register): the syntax, package,
    imports, messages with nested messages, enums, oneofs, ``optional`` and
    ``confluent.field_meta`` options -- what a Connect schema maps to."""
    lines = [f'syntax = "{file.syntax or "proto2"}";']
    if file.package:
        lines.append(f"package {file.package};")
    if file.dependency:
        lines.append("")
        lines.extend(f'import "{name}";' for name in file.dependency)
    for message in file.message_type:
        lines.append("")
        lines.extend(_message_lines(message, ""))
    for enum in file.enum_type:
        lines.append("")
        lines.extend(_enum_lines(enum, ""))
    return "\n".join(lines) + "\n"


def _message_lines(message: descriptor_pb2.DescriptorProto, indent: str) -> list[str]:
    inner = indent + "  "
    lines = [f"{indent}message {message.name} {{"]
    entries = {nested.name: nested for nested in message.nested_type if nested.options.map_entry}
    printed_oneofs: set[int] = set()
    for item in message.field:
        entry = entries.get(item.type_name.rpartition(".")[2])
        if entry is not None and item.label == FieldProto.LABEL_REPEATED:
            key, value = (_field_line(part).partition(" ")[0] for part in entry.field)
            lines.append(f"{inner}map<{key}, {value}> {item.name} = {item.number};")
            continue
        in_oneof = item.HasField("oneof_index") and not item.proto3_optional
        if not in_oneof:
            lines.append(inner + _field_line(item))
            continue
        if item.oneof_index in printed_oneofs:
            continue
        printed_oneofs.add(item.oneof_index)
        lines.append(f"{inner}oneof {message.oneof_decl[item.oneof_index].name} {{")
        lines.extend(inner + "  " + _field_line(member) for member in message.field
                     if member.HasField("oneof_index") and
                     member.oneof_index == item.oneof_index)
        lines.append(f"{inner}}}")
    for nested in message.nested_type:
        if nested.name not in entries:
            lines.extend(_message_lines(nested, inner))
    for enum in message.enum_type:
        lines.extend(_enum_lines(enum, inner))
    lines.append(f"{indent}}}")
    return lines


def _field_line(item: FieldProto) -> str:
    label = ("repeated " if item.label == FieldProto.LABEL_REPEATED else
             "optional " if item.proto3_optional else "")
    kind = _SCALAR_NAMES.get(item.type) or item.type_name
    line = f"{label}{kind} {item.name} = {item.number}"
    if item.options.HasExtension(meta_pb2.field_meta):
        params = item.options.Extensions[meta_pb2.field_meta].params
        entries = ", ".join(f"{{ key: {_quoted(k)}, value: {_quoted(params[k])} }}"
                            for k in sorted(params))
        line += f" [(confluent.field_meta) = {{ params: [{entries}] }}]"
    return line + ";"


def _enum_lines(enum: descriptor_pb2.EnumDescriptorProto, indent: str) -> list[str]:
    return [f"{indent}enum {enum.name} {{",
            *(f"{indent}  {value.name} = {value.number};" for value in enum.value),
            f"{indent}}}"]


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
