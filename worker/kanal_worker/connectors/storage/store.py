"""What the storage core needs from an object store: the backend protocol.

A store is a flat namespace of named objects (blobs, S3 objects, GCS objects, HDFS
files). The core hands a backend whole files as parts and asks for them to become
visible in one step, so a reader never sees half a file:

- ``put(name, data)``: create ``name`` with ``data`` in one request (a file smaller
  than one part);
- ``stage(name, part_id, data)`` then ``commit(name, part_ids)``: a staged upload
  (Azure blocks, an S3 multipart upload, a GCS resumable upload, an HDFS temporary
  file). Part ids are ``000000``, ``000001``, ... in order; every part but the last is
  exactly the configured part size. ``commit`` makes ``name`` consist of exactly those
  parts, atomically;
- ``create(name, data)``: conditional create; False when ``name`` already exists;
- ``names(prefix)`` and ``delete(name)``: listing and removal, for access probes and
  housekeeping;
- ``close()``;
- for a store that renames at commit (``RenamingStore``), ``commit_as(name, part_ids,
  final_name)``: commit what was staged under ``name`` as ``final_name``, for names
  known only when a file ends (``Layout.ends_names``).

Every call may be repeated with the same arguments (a retry after a failure, a replay
after a crash): the core's files are deterministic, so writing an existing object
again writes the same bytes. A backend that writes conditionally (S3's
``enable.conditional.writes``) treats "already exists" on ``put`` and ``commit`` as
success for that reason. Failures are reported as ``RetriableError`` when waiting can
fix them (the runtime backs off and retries the write) and ``ConnectError`` with a
hint naming the key to fix otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class ObjectStore(Protocol):
    """The part of a store the sink task writes through."""

    def put(self, name: str, data: bytes) -> None:
        """Create or replace ``name`` with ``data`` in one request."""

    def stage(self, name: str, part_id: str, data: bytes) -> None:
        """Upload a part of ``name`` that stays invisible until ``commit``."""

    def commit(self, name: str, part_ids: list[str]) -> None:
        """Make ``name`` consist of exactly the staged ``part_ids``, atomically."""

    def close(self) -> None: ...


class ManagedStore(ObjectStore, Protocol):
    """A store that can also create conditionally, list and delete (access probes)."""

    def create(self, name: str, data: bytes) -> bool:
        """Create ``name`` unless it exists; whether it was created."""

    def names(self, prefix: str) -> Iterator[str]:
        """The names of the objects starting with ``prefix``."""

    def delete(self, name: str) -> None:
        """Remove ``name``; removing a missing object is not an error."""


class RenamingStore(ObjectStore, Protocol):
    """A store that writes a file under a temporary name and renames it when committed,
    so the final name may hold what is known only then (HDFS)."""

    def commit_as(self, name: str, part_ids: list[str], final_name: str) -> None:
        """Make ``final_name`` consist of exactly the parts staged for ``name``."""
