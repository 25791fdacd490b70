"""The HDFS sink's configuration, under Confluent kafka-connect-hdfs's keys.

The storage keys every sink shares come from ``StorageSinkSettings`` (``topics.dir``,
``flush.size``, ``rotate.interval.ms``, ``format.class``, the partitioners); HDFS's own
are declared here. Kanal talks to HDFS over WebHDFS, the namenode's HTTP interface, so
``hdfs.url`` may name it directly (``http://namenode:9870``); an ``hdfs://host:port``
URL as Confluent's configurations carry it means WebHDFS on the same host at
``kanal.webhdfs.port``.
"""

from __future__ import annotations

import getpass
import os
from typing import NamedTuple
from urllib.parse import urlsplit

from pydantic import field_validator

from kanal_worker.api import setting
from kanal_worker.connectors.storage.settings import CONNECTOR, KANAL, MEBIBYTE, StorageSinkSettings

HDFS = "HDFS"
SCHEMES = {"hdfs": False, "webhdfs": False, "http": False, "swebhdfs": True, "https": True}
"""URL schemes hdfs.url accepts, and whether WebHDFS is then reached over TLS."""


class WebHdfsAddress(NamedTuple):
    host: str
    port: int
    https: bool

    def __str__(self) -> str:
        return f"{'https' if self.https else 'http'}://{self.host}:{self.port}/webhdfs/v1"


class HdfsSinkSettings(StorageSinkSettings):
    format_class: str = setting(
        "AvroFormat", key="format.class", importance="HIGH", group=CONNECTOR,
        display="Format class",
        doc="AvroFormat (Confluent's default), JsonFormat, ParquetFormat or ByteArrayFormat "
            "(io.confluent.connect.hdfs.avro.AvroFormat and the other class names work too).")
    # -- HDFS ----------------------------------------------------------------------------
    hdfs_url: str = setting(
        key="hdfs.url", importance="HIGH", group=HDFS, display="HDFS URL",
        doc="The namenode: http://host:port (WebHDFS, Hadoop 3's port is 9870), "
            "webhdfs://host:port, https:// or swebhdfs:// for TLS, or hdfs://host:port "
            "(then WebHDFS is reached on that host at kanal.webhdfs.port).")
    logs_dir: str = setting(
        "logs", key="logs.dir", importance="HIGH", group=HDFS, display="Logs directory",
        doc="Where files are written before they are renamed to their final name "
            "(Kanal keeps no write-ahead log there: file names are deterministic).")
    webhdfs_port: int = setting(
        9870, key="kanal.webhdfs.port", importance="LOW", group=KANAL, ge=1, le=65535,
        display="WebHDFS port",
        doc="Kanal: the namenode's HTTP port, used when hdfs.url is an hdfs:// URL.")
    hdfs_user: str = setting(
        "", key="kanal.hdfs.user", importance="MEDIUM", group=KANAL, display="HDFS user",
        doc="Kanal: the user files are written as (simple authentication); default "
            "HADOOP_USER_NAME, else the worker's login name, else kanal.")
    hdfs_part_size: int = setting(
        8 * MEBIBYTE, key="kanal.hdfs.part.size", importance="LOW", group=KANAL,
        ge=MEBIBYTE, display="Part Size",
        doc="Kanal: bytes per append to a file being written; a file smaller than one part "
            "is written in one request.")

    @property
    def part_size(self) -> int:
        return self.hdfs_part_size

    @property
    def compression_type(self) -> str:
        return "none"

    @property
    def compression_level(self) -> int:
        return -1

    @field_validator("hdfs_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise ValueError(f"Invalid HDFS URL {value!r}: use http://namenode:9870 "
                             "(WebHDFS) or hdfs://namenode:8020")
        return value.strip()

    @property
    def webhdfs(self) -> WebHdfsAddress:
        parts = urlsplit(self.hdfs_url)
        https = SCHEMES[parts.scheme]
        if parts.scheme == "hdfs":
            port = self.webhdfs_port
        else:
            port = parts.port or (9871 if https else 9870)
        return WebHdfsAddress(parts.hostname or "", port, https)

    @property
    def user(self) -> str:
        return self.hdfs_user or os.environ.get("HADOOP_USER_NAME") or _login_name()


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container's arbitrary uid without a passwd entry
        return "kanal"
