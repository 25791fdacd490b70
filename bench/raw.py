"""The physical limits, as small programs run in their own process like a worker would be:

    python -m bench.raw consume BOOTSTRAP TOPIC COUNT [SETTINGS_JSON]
    python -m bench.raw produce BOOTSTRAP TOPIC LINES_FILE
    python -m bench.raw upload CONNECTION_STRING CONTAINER FILE_JSON
    python -m bench.raw upload-gcs ENDPOINT BUCKET FILE_JSON
    python -m bench.raw upload-s3 CONNECTION_JSON BUCKET FILE_JSON

Each prints one JSON object: when the first and the last record moved (monotonic
seconds since the start), CPU seconds at those moments and the peak resident memory.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any


def _report(started: float, first: float, cpu_first: float, done: float, cpu_done: float,
            count: int, first_count: int, **extra: Any) -> None:
    print(json.dumps({
        "startup_s": first - started, "active_s": done - first, "count": count,
        "active_records": count - first_count, "cpu_s": cpu_done - cpu_first,
        "cpu_total_s": cpu_done, "peak_rss_mb": _peak_rss_mb(), **extra}), flush=True)


def _peak_rss_mb() -> float:
    """This process's peak resident memory. Not ``ru_maxrss``: Linux carries it over
    ``exec`` from the forked parent, so a child of a big process would report the parent."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def consume(bootstrap: str, topic: str, count: int, settings: dict[str, str]) -> None:
    """Batched consume of ``count`` records, touching nothing but their number."""
    from confluent_kafka import Consumer

    started = time.monotonic()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-raw-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": "false",
                         **settings})
    consumer.subscribe([topic])
    seen = first_count = 0
    first = cpu_first = 0.0
    while seen < count and time.monotonic() - started < 600:
        messages = consumer.consume(2000, 0.5)
        if messages and not seen:
            first, cpu_first, first_count = time.monotonic(), time.process_time(), len(messages)
        seen += len(messages)
    done, cpu_done = time.monotonic(), time.process_time()
    consumer.close()
    _report(started, first, cpu_first, done, cpu_done, seen, first_count)


def produce(bootstrap: str, topic: str, lines_file: str) -> None:
    """The lines of a file produced as fast as confluent-kafka allows (with the producer
    settings of Kanal's source tasks), acknowledged: the limit of a source."""
    from confluent_kafka import Producer

    started = time.monotonic()
    with open(lines_file, "rb") as handle:
        values = handle.read().splitlines()
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": "true",
                         "linger.ms": "5", "compression.type": "lz4"})
    send = producer.produce
    first, cpu_first = time.monotonic(), time.process_time()
    for n, value in enumerate(values):
        while True:
            try:
                send(topic, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        if n % 1000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    done, cpu_done = time.monotonic(), time.process_time()
    _report(started, first, cpu_first, done, cpu_done, len(values) - left, 0)


def _upload_all(plan_file: str, started: float,
                make_send: Callable[[Executor, int], Callable[[str, bytes], None]]) -> None:
    """Read the plan's files, then send them all, ``threads`` files and ``threads`` parts
    in flight, and report (``make_send(part_pool, part_size)`` sends one file)."""
    with open(plan_file) as handle:
        plan = json.load(handle)
    contents = []
    for name, path in plan["files"]:
        with open(path, "rb") as source:
            contents.append((name, source.read()))
    first, cpu_first = time.monotonic(), time.process_time()
    with ThreadPoolExecutor(plan.get("threads", 4)) as parts, \
            ThreadPoolExecutor(plan.get("threads", 4)) as files:
        send = make_send(parts, plan["block_size"])
        for future in [files.submit(send, name, data) for name, data in contents]:
            future.result()
    done, cpu_done = time.monotonic(), time.process_time()
    total = sum(len(data) for _, data in contents)
    _report(started, first, cpu_first, done, cpu_done, total, 0, bytes=total)


def upload(connection: str, container: str, plan_file: str) -> None:
    """Upload files as block blobs: one request for a file within one block, else its
    blocks staged then committed (what a sink's upload does, minus everything else)."""
    from azure.storage.blob import BlobBlock, BlobServiceClient

    started = time.monotonic()
    client = BlobServiceClient.from_connection_string(connection).get_container_client(
        container)

    def make_send(blocks: Executor, block_size: int) -> Callable[[str, bytes], None]:
        def send(name: str, data: bytes) -> None:
            blob = client.get_blob_client(name)
            if len(data) <= block_size:
                blob.upload_blob(data, overwrite=True)
                return
            starts = range(0, len(data), block_size)
            ids = [f"{n:08d}".encode().hex() for n in range(len(starts))]
            list(blocks.map(lambda i, at: blob.stage_block(i, data[at:at + block_size]),
                            ids, starts))
            blob.commit_block_list([BlobBlock(block_id=i) for i in ids])
        return send

    _upload_all(plan_file, started, make_send)


def upload_s3(connection: str, bucket: str, plan_file: str) -> None:
    """Upload files to S3 with boto3: one PutObject for a file within one part, else a
    multipart upload of its parts."""
    import boto3

    env = json.loads(connection)
    started = time.monotonic()
    client = boto3.client("s3", endpoint_url=env["KANAL_S3_ENDPOINT"],
                          region_name=env["KANAL_S3_REGION"],
                          aws_access_key_id=env["KANAL_S3_ACCESS_KEY"],
                          aws_secret_access_key=env["KANAL_S3_SECRET_KEY"])

    def make_send(parts: Executor, part_size: int) -> Callable[[str, bytes], None]:
        def send(name: str, data: bytes) -> None:
            if len(data) <= part_size:
                client.put_object(Bucket=bucket, Key=name, Body=data)
                return
            upload = client.create_multipart_upload(Bucket=bucket, Key=name)["UploadId"]
            starts = range(0, len(data), part_size)
            etags = list(parts.map(lambda n, at: client.upload_part(
                Bucket=bucket, Key=name, UploadId=upload, PartNumber=n,
                Body=data[at:at + part_size])["ETag"], range(1, len(starts) + 1), starts))
            client.complete_multipart_upload(
                Bucket=bucket, Key=name, UploadId=upload,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag}
                                           for n, etag in enumerate(etags, 1)]})
        return send

    _upload_all(plan_file, started, make_send)


def upload_gcs(endpoint: str, bucket_name: str, plan_file: str) -> None:
    """Upload files to GCS with google-cloud-storage as the GCS sink does: one request
    for a file within one part, else a resumable upload in part-sized chunks."""
    import io

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    started = time.monotonic()
    client = storage.Client(project="kanal-bench", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": endpoint})
    bucket = client.bucket(bucket_name)

    def make_send(_: Executor, part_size: int) -> Callable[[str, bytes], None]:
        def send(name: str, data: bytes) -> None:
            if len(data) <= part_size:
                bucket.blob(name).upload_from_string(data, checksum=None)
            else:
                bucket.blob(name, chunk_size=part_size).upload_from_file(
                    io.BytesIO(data), size=len(data), checksum=None)
        return send

    _upload_all(plan_file, started, make_send)


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "consume":
        consume(args[0], args[1], int(args[2]), json.loads(args[3]) if len(args) > 3 else {})
    elif command == "produce":
        produce(args[0], args[1], args[2])
    elif command == "upload":
        upload(args[0], args[1], args[2])
    elif command == "upload-s3":
        upload_s3(args[0], args[1], args[2])
    elif command == "upload-gcs":
        upload_gcs(args[0], args[1], args[2])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
