"""HDFS access over WebHDFS (fsspec): the storage core's backend.

A file is written under a temporary name in ``logs.dir`` (one directory per task
instance, so a zombie and its successor never write the same temporary file) and
renamed to its final name when complete: HDFS renames are atomic, so a killed task
never leaves a half file under a final name, and a reader never sees one. A small file
is one create; a larger one is created with its first part and appended part by part.
A retried append first asks the file's length: a part that landed with its answer lost
is not appended twice, a half-landed one is truncated away.

A rename onto an existing final name fails in HDFS; that name was then written by a
replay or a zombie with the same records (file names and contents are deterministic),
so the temporary file is dropped and the commit counts as done. Failures become
``RetriableError`` when waiting can fix them (namenode unreachable, in safe mode) and
``ConnectError`` naming the key to fix otherwise (permissions, a wrong URL).
"""

from __future__ import annotations

import logging
import posixpath
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from fsspec.implementations.webhdfs import WebHDFS

from kanal_worker.api import ConnectError, RetriableError, TopicPartition
from kanal_worker.connectors.hdfs.settings import HdfsSinkSettings

log = logging.getLogger(__name__)
T = TypeVar("T")
TIMEOUT = (10.0, 60.0)
PROBE_TIMEOUT = (3.0, 10.0)
TRANSIENT = ("SafeModeException", "RetriableException", "StandbyException",
             "AlreadyBeingCreatedException", "RecoveryInProgressException")
OCTETS = {"content-type": "application/octet-stream"}


class _TimeoutSession(requests.Session):
    """fsspec's WebHDFS sets no timeout: a namenode that stops answering would block
    the task forever instead of becoming a retry."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__()
        self.timeout = timeout

    def request(self, method: str, url: str,  # type: ignore[override]
                *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


@dataclass
class Upload:
    """A file being written: its temporary path, the parts appended, their length."""
    temp: str
    parts: int = 0
    length: int = 0
    unsure: bool = False
    """The last append failed: its bytes may have landed, all or in part."""


class HdfsStore:
    """``ManagedStore`` on WebHDFS; one file's parts come in order from one thread."""

    def __init__(self, settings: HdfsSinkSettings,
                 timeout: tuple[float, float] = TIMEOUT) -> None:
        self.address = settings.webhdfs
        self.user = settings.user
        self.fs = WebHDFS(self.address.host, port=self.address.port, user=self.user,
                          use_https=self.address.https, skip_instance_cache=True)
        self.fs.session = _TimeoutSession(timeout)
        self.temp_top = posixpath.join("/", settings.logs_dir, "+tmp")
        self.temp_root = posixpath.join(self.temp_top, uuid.uuid4().hex)
        self.file_delim = settings.file_delim
        self.uploads: dict[str, Upload] = {}
        self._dirs: set[str] = set()

    # -- whole files -----------------------------------------------------------------------
    def put(self, name: str, data: bytes) -> None:
        temp = self._temp(name)
        self._call(lambda: self._create(temp, data), name)
        self._rename(temp, name)

    def create(self, name: str, data: bytes) -> bool:
        temp = self._temp(name)
        self._call(lambda: self._create(temp, data), name)
        return self._rename(temp, name, replace_ok=False)

    def names(self, prefix: str) -> Iterator[str]:
        path = _path(prefix)
        top = path if path.endswith("/") else posixpath.dirname(path)
        found = self._call(lambda: self._find(top), prefix)
        return iter([p.lstrip("/") for p in found if p.startswith(path)])

    def delete(self, name: str) -> None:
        self._call(lambda: self.fs._call("DELETE", "delete", path=_path(name),
                                          recursive="false"), name)

    # -- files in parts --------------------------------------------------------------------
    def stage(self, name: str, part_id: str, data: bytes) -> None:
        index = int(part_id)
        upload = self.uploads.get(name)
        if upload is None or (index == 0 and upload.parts > 0):
            upload = self.uploads[name] = Upload(self._temp(name))
        if index < upload.parts:
            return  # a repeat of a part already written
        if index == 0:
            self._call(lambda: self._create(upload.temp, data), name)
        else:
            self._call(lambda: self._append_once(upload, data), name)
        upload.parts = index + 1
        upload.length += len(data)

    def commit(self, name: str, part_ids: list[str]) -> None:
        self.commit_as(name, part_ids, name)

    def commit_as(self, name: str, part_ids: list[str], final_name: str) -> None:
        upload = self.uploads.get(name)
        if upload is None:
            raise ConnectError(f"HDFS: no file {name} is being written to commit")
        self._rename(upload.temp, final_name)
        del self.uploads[name]

    def remove_stale_temp_files(self, partitions: list[TopicPartition]) -> None:
        """Remove the temporary files other task instances left for ``partitions`` (a
        task killed mid-write), as kafka-connect-hdfs does when it opens a partition:
        their records come again from the committed offset, into files of this task."""
        starts = tuple(f"{tp.topic}{self.file_delim}{tp.partition}{self.file_delim}"
                       for tp in partitions)
        try:
            stale = [path for path in self._call(lambda: self._find(self.temp_top),
                                                 self.temp_top)
                     if not path.startswith(f"{self.temp_root}/")
                     and posixpath.basename(path).startswith(starts)]
            for path in stale:
                self._call(lambda: self.fs._call("DELETE", "delete", path=path,  # noqa: B023
                                                  recursive="false"), path)
        except ConnectError as exc:  # RetriableError too: they go at the next open
            log.warning("Could not remove temporary files in %s: %s", self.temp_top, exc)
            return
        if stale:
            log.info("Removed %d temporary files left by an earlier task in %s", len(stale),
                     self.temp_top)

    def close(self) -> None:
        """Remove this instance's temporary files (files not committed by now are
        written again from the committed offsets) and their directories."""
        try:
            self.fs._call("DELETE", "delete", path=self.temp_root, recursive="true")
        except (requests.RequestException, OSError, RuntimeError, ValueError) as exc:
            log.info("Could not remove %s: %s", self.temp_root, _first(exc))
        self.fs.session.close()

    # -- requests --------------------------------------------------------------------------
    def _create(self, path: str, data: bytes) -> None:
        self._mkdirs(posixpath.dirname(path))
        out = self.fs._call("CREATE", "put", path=path, redirect=False, overwrite="true")
        done = self.fs.session.put(self.fs._apply_proxy(out.headers["Location"]), data=data,
                                   headers=OCTETS)
        done.raise_for_status()

    def _append_once(self, upload: Upload, data: bytes) -> None:
        if upload.unsure:
            length = int(self.fs.info(upload.temp)["size"])
            if length == upload.length + len(data):
                upload.unsure = False
                return
            if length != upload.length:
                out = self.fs._call("TRUNCATE", "post", path=upload.temp,
                                    newlength=str(upload.length))
                if not out.json().get("boolean"):
                    raise RetriableError(f"HDFS is recovering {upload.temp} after a "
                                         "failed append")
            upload.unsure = False
        upload.unsure = True
        out = self.fs._call("APPEND", "post", path=upload.temp, redirect=False)
        done = self.fs.session.post(self.fs._apply_proxy(out.headers["Location"]), data=data,
                                    headers=OCTETS)
        done.raise_for_status()
        upload.unsure = False

    def _rename(self, temp: str, name: str, replace_ok: bool = True) -> bool:
        """Move ``temp`` to ``name``; whether it moved (False: ``name`` existed)."""
        final = _path(name)

        def rename() -> bool:
            self._mkdirs(posixpath.dirname(final))
            out = self.fs._call("RENAME", "put", path=temp, destination=final)
            if out.json().get("boolean"):
                return True
            if not self.fs.exists(final):
                self._dirs.discard(posixpath.dirname(final))  # removed meanwhile?
                if not self.fs.exists(temp):
                    raise FileNotFoundError(f"{temp} vanished before its rename to {final}")
                raise RetriableError(f"HDFS did not rename {temp} to {final}")
            self.fs._call("DELETE", "delete", path=temp, recursive="false")
            if replace_ok:
                log.info("%s already exists (written by an earlier attempt); kept it", final)
            return False

        return self._call(rename, name)

    def _mkdirs(self, directory: str) -> None:
        if directory not in self._dirs:
            self.fs._call("MKDIRS", "put", path=directory)
            self._dirs.add(directory)

    def _find(self, top: str) -> list[str]:
        try:
            return list(self.fs.find(top))
        except FileNotFoundError:
            return []

    def _temp(self, name: str) -> str:
        return posixpath.join(self.temp_root, name.lstrip("/"))

    def _call(self, request: Callable[[], T], name: str) -> T:
        try:
            return request()
        except PermissionError as exc:
            raise ConnectError(f"HDFS refused user {self.user} writing {name}: {_first(exc)}; "
                               "grant that user write access to topics.dir and logs.dir, or "
                               "set kanal.hdfs.user") from None
        except requests.ConnectionError as exc:
            raise RetriableError(f"HDFS unreachable at {self.address}: {_first(exc)}; check "
                                 "hdfs.url if this lasts") from None
        except requests.Timeout as exc:
            raise RetriableError(f"HDFS did not answer at {self.address}: {_first(exc)}") \
                from None
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status is None or status >= 500 or status in (408, 429):
                raise RetriableError(f"HDFS: {_first(exc)}") from None
            if status == 404:
                raise ConnectError(f"No WebHDFS at {self.address} ({_first(exc)}); check "
                                   "hdfs.url (and kanal.webhdfs.port for hdfs:// URLs)") \
                    from None
            raise ConnectError(f"HDFS: {_first(exc)}") from None
        except (RuntimeError, ValueError, FileNotFoundError) as exc:
            if any(kind in str(exc) for kind in TRANSIENT):
                raise RetriableError(f"HDFS: {_first(exc)}") from None
            raise ConnectError(f"HDFS: {_first(exc)}") from None
        except (KeyError, requests.JSONDecodeError) as exc:
            raise ConnectError(f"No WebHDFS answer at {self.address} ({exc!r}); check "
                               "hdfs.url") from None


def access_problems(settings: HdfsSinkSettings) -> dict[str, list[str]]:
    """What ``validate`` can tell before any data flows: whether the namenode answers, and
    whether the user may write to topics.dir and logs.dir (WebHDFS CHECKACCESS on their
    nearest existing ancestor). A task whose namenode goes away later retries instead
    (its status names hdfs.url)."""
    store = HdfsStore(settings, PROBE_TIMEOUT)
    problems: dict[str, list[str]] = {}
    try:
        for key, directory in (("topics.dir", settings.topics_dir),
                               ("logs.dir", settings.logs_dir)):
            path = _path(directory)
            while path != "/" and not store.fs.exists(path):
                path = posixpath.dirname(path)
            try:
                store.fs._call("CHECKACCESS", path=path, fsaction="-wx")
            except PermissionError as exc:
                problems[key] = [f"User {store.user} may not write to {path}: {_first(exc)}; "
                                 "grant write access or set kanal.hdfs.user"]
    except (requests.ConnectionError, requests.Timeout) as exc:
        problems["hdfs.url"] = [f"HDFS unreachable at {store.address}: {_first(exc)}; check "
                                "hdfs.url (and kanal.webhdfs.port for hdfs:// URLs)"]
    except (requests.RequestException, RuntimeError, ValueError) as exc:
        log.info("Cannot probe HDFS at %s now: %s", store.address, _first(exc))
    finally:
        store.close()
    return problems


def _path(name: str) -> str:
    return "/" + name.lstrip("/")


def _first(error: BaseException) -> str:
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__


