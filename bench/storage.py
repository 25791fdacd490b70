"""B2: Kanal's object-store sinks against a raw upload of the very same bytes (the
files Kanal wrote, downloaded), in the same part sizes and with as many uploads in
flight: the storage's limit. ``azure``: AzureBlobStorageSinkConnector into Azurite
against azure-storage-blob; ``s3``: S3SinkConnector into versitygw against boto3;
``gcs``: GcsSinkConnector into fake-gcs-server against google-cloud-storage."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from bench.measure import Sample, watch
from bench.registry import Registry
from bench.sinks import SCHEMALESS, STRING
from bench.systems import Kanal, delete_groups
from bench.workload import Workload

FORMATS = {
    "json": {"format.class": "JsonFormat"},
    "json-gzip": {"format.class": "JsonFormat", "az.compression.type": "gzip"},
    "parquet": {"format.class": "ParquetFormat"},
    "avro": {"format.class": "AvroFormat"},
    "avro-parquet": {"format.class": "ParquetFormat"},
    # the partitioner settings of examples/azure-blob-sink.json; without its
    # rotate.interval.ms, so that sets end at flush.size and complete_files holds
    "json-hourly": {"format.class": "JsonFormat", "partitioner.class": "HourlyPartitioner",
                    "locale": "en-US", "timezone": "UTC", "timestamp.extractor": "RecordField",
                    "timestamp.field": "timestamp"},
}
AVRO_INPUT = {"avro-parquet"}
"""Formats fed the Avro workload through AvroConverter (the bench's registry); the others
read the schemaless JSON workload."""
AVRO_CONVERTER = "io.confluent.connect.avro.AvroConverter"
BLOCK_SIZE = 5 * 1024 * 1024
"""azblob.block.size / s3.part.size for both: the smallest allowed, so JSON files span
blocks."""

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


def until_committed(kanal: Kanal, sample: Sample, bootstrap: str, name: str,
                    workload: Workload) -> Sample:
    """Run ``kanal`` until connector ``name`` committed ``sample.records`` records of the
    workload topic, measuring it into ``sample``; then stop it and drop its group."""
    progress = Committed(bootstrap, f"connect-{name}", workload)
    try:
        kanal.start()
        window = watch(progress, sample.records, kanal.pid, workload.timeout,
                       started=kanal.started, interval=0.1, alive=kanal.alive)
        sample.peak_rss_mb = kanal.peak_rss_mb() if kanal.alive() else 0.0
        window.fill(sample)
    finally:
        progress.close()
        kanal.stop()
        if not sample.ok:
            sample.note += " | " + kanal.tail(5).replace("\n", " / ")
        delete_groups(bootstrap, f"connect-{name}")
    return sample
@dataclass(frozen=True)
class Store:
    """One object store of B2: how Kanal's connector reaches it and how the bench reads,
    prepares and drops a container or bucket there."""

    bench: str
    compression_key: str
    bucket_first: bool
    """whether the connector needs its bucket to exist (S3's does, Azure's creates it)"""
    connector: Callable[[str], dict[str, str]]
    """container or bucket name -> the connector's store keys"""
    download: Callable[[str, Path], list[tuple[str, str]]]
    create: Callable[[str], None]
    drop: Callable[[str], None]
    raw_args: Callable[[str], list[str]]
    """container or bucket name -> the arguments of ``python -m bench.raw``"""


def azure_store(connection: str) -> Store:
    def connector(container: str) -> dict[str, str]:
        return {"connector.class": "AzureBlobStorageSinkConnector",
                "azblob.connection.string": connection, "azblob.container.name": container,
                "azblob.block.size": str(BLOCK_SIZE)}

    def create(container: str) -> None:
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(connection).create_container(container)

    return Store("B2 azure sink", "az.compression.type", False, connector,
                 lambda c, t: _download(connection, c, t), create,
                 lambda c: _drop(connection, c), lambda c: ["upload", connection, c])


def s3_store(env: Mapping[str, str]) -> Store:
    def client() -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=env["KANAL_S3_ENDPOINT"],
                            region_name=env["KANAL_S3_REGION"],
                            aws_access_key_id=env["KANAL_S3_ACCESS_KEY"],
                            aws_secret_access_key=env["KANAL_S3_SECRET_KEY"])

    def connector(bucket: str) -> dict[str, str]:
        return {"connector.class": "io.confluent.connect.s3.S3SinkConnector",
                "s3.bucket.name": bucket, "s3.region": env["KANAL_S3_REGION"],
                "store.url": env["KANAL_S3_ENDPOINT"],
                "aws.access.key.id": env["KANAL_S3_ACCESS_KEY"],
                "aws.secret.access.key": env["KANAL_S3_SECRET_KEY"],
                "s3.part.size": str(BLOCK_SIZE)}

    def download(bucket: str, target: Path) -> list[tuple[str, str]]:
        s3, files = client(), []
        target.mkdir(parents=True, exist_ok=True)
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for i, key in enumerate(e["Key"] for page in pages for e in page.get("Contents", [])):
            path = target / f"{i:06d}"
            path.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            files.append((key, str(path)))
        return files

    def drop(bucket: str) -> None:
        s3 = client()
        with contextlib.suppress(Exception):  # already gone
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for key in [e["Key"] for page in pages for e in page.get("Contents", [])]:
                s3.delete_object(Bucket=bucket, Key=key)
            s3.delete_bucket(Bucket=bucket)

    connection = json.dumps({key: env[key] for key in (
        "KANAL_S3_ENDPOINT", "KANAL_S3_REGION", "KANAL_S3_ACCESS_KEY", "KANAL_S3_SECRET_KEY")})
    return Store("B2 s3 sink", "s3.compression.type", True, connector, download,
                 lambda bucket: client().create_bucket(Bucket=bucket), drop,
                 lambda bucket: ["upload-s3", connection, bucket])


def gcs_store(endpoint: str) -> Store:
    def bucket(name: str) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage as gcs

        client = gcs.Client(project="kanal-bench", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": endpoint})
        return client.bucket(name)

    def connector(name: str) -> dict[str, str]:
        return {"connector.class": "io.confluent.connect.gcs.GcsSinkConnector",
                "gcs.bucket.name": name, "store.url": endpoint,
                "gcs.part.size": str(BLOCK_SIZE)}

    def download(name: str, target: Path) -> list[tuple[str, str]]:
        files = []
        target.mkdir(parents=True, exist_ok=True)
        for i, blob in enumerate(bucket(name).client.list_blobs(name)):
            path = target / f"{i:06d}"
            path.write_bytes(blob.download_as_bytes())
            files.append((blob.name, str(path)))
        return files

    def drop(name: str) -> None:
        with contextlib.suppress(Exception):  # already gone
            bucket(name).delete(force=True)

    return Store("B2 gcs sink", "gcs.compression.type", True, connector, download,
                 lambda name: bucket(name).create(), drop,
                 lambda name: ["upload-gcs", endpoint, name])


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


def _format(store: Store, fmt: str) -> dict[str, str]:
    """FORMATS[fmt] with the compression key of ``store``."""
    return {store.compression_key if key == "az.compression.type" else key: value
            for key, value in FORMATS[fmt].items()}


def converters(fmt: str, registry: str) -> dict[str, str]:
    if fmt in AVRO_INPUT:
        return {"key.converter": STRING, "value.converter": AVRO_CONVERTER,
                "value.converter.schema.registry.url": registry}
    return dict(SCHEMALESS)


def sink_config(workload: Workload, store: Store, container: str, fmt: str,
                registry: str) -> dict[str, str]:
    """Kanal's object-store sink of ``workload`` in ``fmt`` (the name aside)."""
    return {"tasks.max": "1", "topics": workload.topic, **store.connector(container),
            "flush.size": str(flush_size(workload)),
            "kanal.upload.threads": str(UPLOAD_THREADS),
            **converters(fmt, registry), **_format(store, fmt)}


def kanal_sink(workload: Workload, bootstrap: str, store: Store, run: int,
               workdir: Path, fmt: str,
               registry: str) -> tuple[Sample, list[tuple[str, str]], str]:
    name = f"bench-kanal-{uuid.uuid4().hex[:8]}"
    container = name
    if store.bucket_first:
        store.create(container)
    connector = {"name": name, **sink_config(workload, store, container, fmt, registry)}
    target = complete_files(workload)
    sample = Sample(store.bench, fmt, "kanal", run, target)
    files: list[tuple[str, str]] = []
    until_committed(Kanal(workdir / name, bootstrap, [connector]), sample, bootstrap, name,
                    workload)
    if sample.ok:
        files = store.download(container, workdir / name / "blobs")
        total = sum(Path(path).stat().st_size for _, path in files)
        sample.extra.update(blobs=len(files), blob_bytes=total)
        if sample.active_s:
            sample.extra["mb_per_s"] = (total * sample.active_records / target
                                        / sample.active_s / 1e6)
    store.drop(container)
    return sample, files, name


def raw_upload(workload: Workload, store: Store, run: int, workdir: Path, fmt: str,
               files: list[tuple[str, str]]) -> Sample:
    container = f"bench-raw-{uuid.uuid4().hex[:8]}"
    store.create(container)
    plan = workdir / f"{container}.json"
    plan.write_text(json.dumps({"block_size": BLOCK_SIZE, "threads": UPLOAD_THREADS,
                                "files": files}))
    target = complete_files(workload)
    sample = Sample(store.bench, fmt, "raw upload", run, target)
    try:
        out = subprocess.run([sys.executable, "-m", "bench.raw", *store.raw_args(container),
                              str(plan)], capture_output=True, text=True,
                             timeout=workload.timeout, check=False)
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
        store.drop(container)
    return sample


def b2(workloads: Mapping[str, Workload], bootstrap: str, store: Store, run: int,
       workdir: Path, formats: list[str]) -> list[Sample]:
    """For each format: Kanal, then the raw upload of what Kanal wrote."""
    samples = []
    for fmt in formats:
        started = time.monotonic()
        workload = workloads["avro" if fmt in AVRO_INPUT else "json"]
        with Registry() as registry:
            kanal, files, name = kanal_sink(workload, bootstrap, store, run, workdir, fmt,
                                            registry)
        samples.append(kanal)
        if files:
            samples.append(raw_upload(workload, store, run, workdir, fmt, files))
        shutil.rmtree(workdir / name, ignore_errors=True)
        kanal.extra["seconds"] = time.monotonic() - started
    return samples
