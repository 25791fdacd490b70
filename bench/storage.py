"""B2: Kanal's AzureBlobStorageSinkConnector into Azurite against a raw
azure-storage-blob upload of the very same bytes (the blobs Kanal wrote, downloaded),
in the same block sizes and with as many uploads in flight: the storage's limit.
B2gcs: the same for the GcsSinkConnector into fake-gcs-server against a raw
google-cloud-storage upload (one request per small file, resumable uploads in
``gcs.part.size`` chunks for the others)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from bench.measure import Sample, watch
from bench.sinks import JSON, STRING
from bench.systems import Kanal, delete_groups
from bench.workload import Workload

FORMATS = {
    "json": {"format.class": "JsonFormat"},
    "json-gzip": {"format.class": "JsonFormat", "az.compression.type": "gzip"},
    "parquet": {"format.class": "ParquetFormat"},
    "avro": {"format.class": "AvroFormat"},
}
BLOCK_SIZE = 5 * 1024 * 1024
"""azblob.block.size for both: Azure's smallest allowed, so JSON files span blocks."""
UPLOAD_THREADS = 4
"""kanal.upload.threads' default, and the raw uploader's pool."""


def flush_size(workload: Workload) -> int:
    """Records per file: 50,000 at 1M records (3 full files per partition), 1,000 at 20k."""
    return max(1000, workload.records // 20)


def complete_files(workload: Workload) -> int:
    """Records in complete files, which is what the sink commits: without a time-based
    rotation the last, partial file of each partition stays open (round robin puts
    records // partitions, or one more, in each partition)."""
    size = flush_size(workload)
    per = [workload.records // workload.partitions + (p < workload.records % workload.partitions)
           for p in range(workload.partitions)]
    return sum(n // size * size for n in per)


class Committed:
    """Records a consumer group committed on the workload topic."""

    def __init__(self, bootstrap: str, group: str, workload: Workload) -> None:
        self.partitions = [TopicPartition(workload.topic, p) for p in range(workload.partitions)]
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "log_level": 0})

    def __call__(self) -> int:
        try:
            offsets = self.consumer.committed(self.partitions, timeout=5)
        except Exception:
            return 0
        return sum(max(tp.offset, 0) for tp in offsets)

    def close(self) -> None:
        self.consumer.close()


def _container(connection: str, name: str) -> object:
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(connection).get_container_client(name)


def _download(connection: str, container: str, target: Path) -> list[tuple[str, str]]:
    """Every blob of ``container`` into ``target``: (blob name, local path)."""
    client = _container(connection, container)
    files = []
    target.mkdir(parents=True, exist_ok=True)
    for i, blob in enumerate(client.list_blobs()):  # type: ignore[attr-defined]
        path = target / f"{i:06d}"
        path.write_bytes(client.download_blob(blob.name).readall())  # type: ignore[attr-defined]
        files.append((blob.name, str(path)))
    return files


def _drop(connection: str, container: str) -> None:
    with contextlib.suppress(Exception):  # already gone
        _container(connection, container).delete_container()  # type: ignore[attr-defined]


Download = Callable[[Path], list[tuple[str, str]]]


def kanal_store(workload: Workload, bootstrap: str, run: int, workdir: Path, fmt: str,
                bench: str, name: str, store: dict[str, str],
                download: Download) -> tuple[Sample, list[tuple[str, str]]]:
    """Kanal's sink with ``store``'s keys until every complete file is committed; then
    the files it wrote (``download``)."""
    connector = {"name": name, "tasks.max": "1", "topics": workload.topic,
                 "flush.size": str(flush_size(workload)),
                 "kanal.upload.threads": str(UPLOAD_THREADS),
                 "key.converter": STRING, "value.converter": JSON,
                 "value.converter.schemas.enable": "false", **FORMATS[fmt], **store}
    kanal = Kanal(workdir / name, bootstrap, [connector])
    target = complete_files(workload)
    sample = Sample(bench, fmt, "kanal", run, target)
    files: list[tuple[str, str]] = []
    progress = Committed(bootstrap, f"connect-{name}", workload)
    try:
        kanal.start()
        window = watch(progress, target, kanal.pid, workload.timeout,
                       started=kanal.started, interval=0.1, alive=kanal.alive)
        sample.peak_rss_mb = kanal.peak_rss_mb() if kanal.alive() else 0.0
        window.fill(sample)
    finally:
        progress.close()
        kanal.stop()
        if not sample.ok:
            sample.note += " | " + kanal.tail(5).replace("\n", " / ")
        delete_groups(bootstrap, f"connect-{name}")
    if sample.ok:
        files = download(workdir / name / "blobs")
        total = sum(Path(path).stat().st_size for _, path in files)
        sample.extra.update(blobs=len(files), blob_bytes=total)
        if sample.active_s:
            sample.extra["mb_per_s"] = (total * sample.active_records / target
                                        / sample.active_s / 1e6)
    return sample, files


def raw_upload(workload: Workload, run: int, workdir: Path, fmt: str, bench: str,
               files: list[tuple[str, str]], command: list[str]) -> Sample:
    """``python -m bench.raw COMMAND... PLAN``: upload ``files`` as the sink did."""
    plan = workdir / f"raw-{uuid.uuid4().hex[:8]}.json"
    plan.write_text(json.dumps({"block_size": BLOCK_SIZE, "threads": UPLOAD_THREADS,
                                "files": files}))
    target = complete_files(workload)
    sample = Sample(bench, fmt, "raw upload", run, target)
    try:
        out = subprocess.run([sys.executable, "-m", "bench.raw", *command, str(plan)],
                             capture_output=True, text=True, timeout=workload.timeout,
                             check=False)
        try:
            result = json.loads(out.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            sample.ok, sample.note = False, f"raw upload failed: {out.stderr[-500:]}"
            return sample
        total = result["bytes"]
        sample.startup_s, sample.active_s = result["startup_s"], result["active_s"]
        sample.cpu_s, sample.cpu_total_s = result["cpu_s"], result["cpu_total_s"]
        sample.peak_rss_mb = result["peak_rss_mb"]
        sample.active_records = target  # the bytes of every committed record, uploaded
        sample.extra.update(blobs=len(files), blob_bytes=total,
                            mb_per_s=total / sample.active_s / 1e6 if sample.active_s else 0)
    finally:
        plan.unlink(missing_ok=True)
    return sample


def kanal_azure(workload: Workload, bootstrap: str, connection: str, run: int,
                workdir: Path, fmt: str) -> tuple[Sample, list[tuple[str, str]], str]:
    name = f"bench-kanal-az-{uuid.uuid4().hex[:8]}"
    sample, files = kanal_store(
        workload, bootstrap, run, workdir, fmt, "B2 azure sink", name,
        {"connector.class": "AzureBlobStorageSinkConnector",
         "azblob.connection.string": connection, "azblob.container.name": name,
         "azblob.block.size": str(BLOCK_SIZE)},
        lambda target: _download(connection, name, target))
    _drop(connection, name)
    return sample, files, name


def raw_azure(workload: Workload, connection: str, run: int, workdir: Path, fmt: str,
              files: list[tuple[str, str]]) -> Sample:
    from azure.storage.blob import BlobServiceClient

    container = f"bench-raw-{uuid.uuid4().hex[:8]}"
    BlobServiceClient.from_connection_string(connection).create_container(container)
    try:
        return raw_upload(workload, run, workdir, fmt, "B2 azure sink", files,
                          ["upload", connection, container])
    finally:
        _drop(connection, container)


def b2(workload: Workload, bootstrap: str, connection: str, run: int, workdir: Path,
       formats: list[str]) -> list[Sample]:
    """For each format: Kanal, then the raw upload of what Kanal wrote."""
    samples = []
    for fmt in formats:
        started = time.monotonic()
        kanal, files, name = kanal_azure(workload, bootstrap, connection, run, workdir, fmt)
        samples.append(kanal)
        if files:
            samples.append(raw_azure(workload, connection, run, workdir, fmt, files))
        shutil.rmtree(workdir / name, ignore_errors=True)
        kanal.extra["seconds"] = time.monotonic() - started
    return samples


GCS_FORMATS = ("json", "parquet")


def _gcs_bucket(endpoint: str, name: str) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    client = gcs.Client(project="kanal-bench", credentials=AnonymousCredentials(),
                        client_options={"api_endpoint": endpoint})
    return client.create_bucket(name)


def _gcs_download(bucket: Any, target: Path) -> list[tuple[str, str]]:
    files = []
    target.mkdir(parents=True, exist_ok=True)
    for i, blob in enumerate(bucket.client.list_blobs(bucket)):
        path = target / f"{i:06d}"
        path.write_bytes(blob.download_as_bytes())
        files.append((blob.name, str(path)))
    return files


def _gcs_drop(bucket: Any) -> None:
    with contextlib.suppress(Exception):  # already gone
        bucket.delete(force=True)


def b2_gcs(workload: Workload, bootstrap: str, endpoint: str, run: int, workdir: Path,
           formats: list[str]) -> list[Sample]:
    """For JSON and Parquet: Kanal's GCS sink, then the raw upload of what it wrote."""
    samples = []
    for fmt in [f for f in formats if f in GCS_FORMATS]:
        started = time.monotonic()
        name = f"bench-kanal-gcs-{uuid.uuid4().hex[:8]}"
        bucket = _gcs_bucket(endpoint, name)
        try:
            kanal, files = kanal_store(
                workload, bootstrap, run, workdir, fmt, "B2 gcs sink", name,
                {"connector.class": "GcsSinkConnector", "gcs.bucket.name": name,
                 "store.url": endpoint, "gcs.part.size": str(BLOCK_SIZE)},
                lambda target: _gcs_download(bucket, target))  # noqa: B023
        finally:
            _gcs_drop(bucket)
        samples.append(kanal)
        if files:
            raw = _gcs_bucket(endpoint, f"bench-raw-{uuid.uuid4().hex[:8]}")
            try:
                samples.append(raw_upload(workload, run, workdir, fmt, "B2 gcs sink", files,
                                          ["upload-gcs", endpoint, raw.name]))
            finally:
                _gcs_drop(raw)
        shutil.rmtree(workdir / name, ignore_errors=True)
        kanal.extra["seconds"] = time.monotonic() - started
    return samples
