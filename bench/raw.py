"""The physical limits, as small programs run in their own process like a worker would be:

    python -m bench.raw consume BOOTSTRAP TOPIC COUNT [SETTINGS_JSON]
    python -m bench.raw native-consume BOOTSTRAP TOPIC COUNT [SETTINGS_JSON]
    python -m bench.raw avro-consume BOOTSTRAP TOPIC COUNT REGISTRY_URL
    python -m bench.raw produce BOOTSTRAP TOPIC LINES_FILE
    python -m bench.raw upload CONNECTION_STRING CONTAINER FILE_JSON
    python -m bench.raw bulk URL INDEX LINES_FILE BATCH IN_FLIGHT
    python -m bench.raw mqtt-publish MQTT_URL TOPIC LINES_FILE COUNT
    python -m bench.raw mqtt-subscribe MQTT_URL CLIENT_ID FILTER COUNT
    python -m bench.raw select POSTGRES_URL TABLE FETCH_ROWS
    python -m bench.raw copy|executemany POSTGRES_URL SOURCE_TABLE TARGET_TABLE
    python -m bench.raw replicate POSTGRES_URL SLOT PUBLICATION COUNT
    python -m bench.raw upload-gcs ENDPOINT BUCKET FILE_JSON
    python -m bench.raw upload-s3 CONNECTION_JSON BUCKET FILE_JSON
    python -m bench.raw deserialize-protobuf BOOTSTRAP TOPIC COUNT REGISTRY_URL

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


def consume(bootstrap: str, topic: str, count: int, settings: dict[str, str],
            decode: Callable[[Any], Any] | None = None, native: bool = False) -> None:
    """Batched consume of ``count`` records, touching nothing but their number, or each
    record's value with ``decode``; with ``native``, through Kanal's native fetch (whole
    polls as buffers) instead of confluent-kafka's messages."""
    from confluent_kafka import Consumer

    started = time.monotonic()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-raw-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": "false",
                         **settings})
    fetch = consumer.consume
    if native:
        from kanal_worker import native as native_fetch

        fetcher = native_fetch.fetcher(consumer)
        if fetcher is None:
            raise SystemExit("the native fetch cannot attach (see the log)")
        consumer.subscribe([topic], on_assign=lambda _, partitions: [
            fetcher.forward(p.topic, p.partition) for p in partitions])

        def fetch(limit: int, timeout: float) -> Any:
            consumer.consume(limit, 0)  # rebalances and errors
            return fetcher.consume(limit, timeout)
    else:
        consumer.subscribe([topic])
    seen = first_count = 0
    first = cpu_first = 0.0
    while seen < count and time.monotonic() - started < 600:
        messages = fetch(2000, 0.5)
        if decode is not None:
            for message in messages:
                decode(message)
        if messages and not seen:
            first, cpu_first, first_count = time.monotonic(), time.process_time(), len(messages)
        seen += len(messages)
    done, cpu_done = time.monotonic(), time.process_time()
    if native:
        fetcher.close()
    consumer.close()
    _report(started, first, cpu_first, done, cpu_done, seen, first_count)


def avro_consume(bootstrap: str, topic: str, count: int, registry_url: str) -> None:
    """``consume`` with the fetch settings of Kanal's sink tasks, each value decoded by
    confluent-kafka's AvroDeserializer: the Python limit of reading Avro records."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from kanal_worker.runtime.sink import FETCH_DEFAULTS

    deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
    context = SerializationContext(topic, MessageField.VALUE)
    consume(bootstrap, topic, count, dict(FETCH_DEFAULTS),
            lambda message: deserialize(message.value(), context))


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


def bulk(url: str, index: str, lines_file: str, batch: int, in_flight: int) -> None:
    """Index the lines of a file as documents (one id each, like the sink's) with the bulk
    API: ``batch`` documents per request, ``in_flight`` requests at a time, each
    response checked for errors (what a search sink does, minus everything else)."""
    from concurrent.futures import ThreadPoolExecutor

    from opensearchpy import OpenSearch

    started = time.monotonic()
    with open(lines_file, "rb") as handle:
        values = handle.read().splitlines()
    client = OpenSearch(hosts=[url], timeout=60, maxsize=in_flight)
    client.indices.create(index=index)
    bodies = [b"".join(b'{"index":{"_index":"%s","_id":"%d"}}\n%s\n' % (index.encode(), n, v)
                       for n, v in enumerate(values[at:at + batch], start=at))
              for at in range(0, len(values), batch)]

    def send(body: bytes) -> int:
        response = client.bulk(body=body)
        if response["errors"]:
            raise RuntimeError(f"bulk errors: {response['items'][:1]}")
        return len(response["items"])

    first, cpu_first = time.monotonic(), time.process_time()
    with ThreadPoolExecutor(in_flight) as pool:
        count = sum(pool.map(send, bodies))
    done, cpu_done = time.monotonic(), time.process_time()
    client.close()
    _report(started, first, cpu_first, done, cpu_done, count, 0)
def mqtt_client(url: str, client_id: str = "", persistent: bool = False,
                 on_message: Any = None) -> Any:
    """A Paho MQTT 5 client connected to ``url`` (tcp://host:port), its network thread
    running; ``persistent`` resumes the session ``client_id`` left on the broker."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    properties = Properties(PacketTypes.CONNECT)
    if persistent:
        properties.SessionExpiryInterval = 0xFFFFFFFF
    client.max_inflight_messages_set(1000)  # as the MQTT sink
    client.on_message = on_message  # before connecting: a resumed session sends at once
    client.connect(host, int(port), clean_start=not persistent, properties=properties)
    client.loop_start()
    return client


def mqtt_publish(url: str, topic: str, lines_file: str, count: int) -> None:
    """The first ``count`` lines of a file published at QoS 1, every one acknowledged by the
    broker: the limit of the MQTT sink."""
    with open(lines_file, "rb") as handle:
        values = handle.read().splitlines()[:count]
    started = time.monotonic()
    client = mqtt_client(url)
    first, cpu_first = time.monotonic(), time.process_time()
    sent: list[Any] = []
    for n, value in enumerate(values):
        if n >= 10000:  # at most 10,000 unacknowledged, as the MQTT sink (message ids)
            sent[n - 10000].wait_for_publish(600)
        sent.append(client.publish(topic, value, qos=1))
    for info in sent[-10000:]:
        info.wait_for_publish(600)
    done, cpu_done = time.monotonic(), time.process_time()
    client.disconnect()
    client.loop_stop()
    _report(started, first, cpu_first, done, cpu_done, len(values), 0)


def mqtt_subscribe(url: str, client_id: str, topic_filter: str, count: int) -> None:
    """Receive ``count`` messages at QoS 1 from the session ``client_id`` (acknowledged as
    they arrive, touching nothing but their number): the limit of the MQTT source."""
    import threading

    received = 0
    first = cpu_first = 0.0
    all_in = threading.Event()

    def on_message(*_args: Any) -> None:
        nonlocal received, first, cpu_first
        if not received:
            first, cpu_first = time.monotonic(), time.process_time()
        received += 1
        if received >= count:
            all_in.set()

    started = time.monotonic()
    client = mqtt_client(url, client_id, persistent=True, on_message=on_message)
    client.subscribe(topic_filter, qos=1)
    all_in.wait(600)
    done, cpu_done = time.monotonic(), time.process_time()
    client.disconnect()
    client.loop_stop()
    _report(started, first, cpu_first, done, cpu_done, received, 1)
def select(url: str, table: str, fetch_rows: int) -> None:
    """Every row of ``table`` through a server-side cursor, ``fetch_rows`` at a time (what
    a source must at least do to read them)."""
    import psycopg

    started = time.monotonic()
    seen = first_count = 0
    first = cpu_first = 0.0
    with psycopg.connect(url) as connection, connection.cursor(name="bench") as cursor:
        cursor.execute(f"SELECT * FROM {table} ORDER BY seq")
        while rows := cursor.fetchmany(fetch_rows):
            if not seen:
                first, cpu_first, first_count = time.monotonic(), time.process_time(), len(rows)
            seen += len(rows)
    done, cpu_done = time.monotonic(), time.process_time()
    _report(started, first, cpu_first, done, cpu_done, seen, first_count)


def load(method: str, url: str, source: str, target: str) -> None:
    """The rows of ``source`` (read before the clock starts) into a new table like it, in
    one transaction: by ``COPY`` or by ``executemany`` of 3,000-row INSERT batches."""
    import psycopg

    started = time.monotonic()
    with psycopg.connect(url) as connection:
        rows = connection.execute(f'SELECT * FROM "{source}"').fetchall()
        connection.execute(f'CREATE TABLE "{target}" (LIKE "{source}" INCLUDING ALL)')
        connection.commit()
        width = len(rows[0]) if rows else 0
        first, cpu_first = time.monotonic(), time.process_time()
        with connection.cursor() as cursor:
            if method == "copy":
                with cursor.copy(f'COPY "{target}" FROM STDIN') as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                insert = f'INSERT INTO "{target}" VALUES ({", ".join(["%s"] * width)})'
                for start in range(0, len(rows), 3000):
                    cursor.executemany(insert, rows[start:start + 3000])
        connection.commit()
        done, cpu_done = time.monotonic(), time.process_time()
    _report(started, first, cpu_first, done, cpu_done, len(rows), 0)


def replicate(url: str, slot: str, publication: str, count: int) -> None:
    """``count`` inserts read from a pgoutput slot with psycopg2, counted by their message
    tag only, the position confirmed every 10,000 messages."""
    import select

    import psycopg2
    import psycopg2.extras

    started = time.monotonic()
    connection = psycopg2.connect(url, connection_factory=psycopg2.extras
                                  .LogicalReplicationConnection)
    cursor = connection.cursor()
    cursor.start_replication(slot_name=slot, decode=False, options={
        "proto_version": "1", "publication_names": publication})
    seen = messages = 0
    first = cpu_first = 0.0
    while seen < count and time.monotonic() - started < 600:
        message = cursor.read_message()
        if message is None:
            select.select([cursor], [], [], 0.5)
            continue
        if not seen:
            first, cpu_first = time.monotonic(), time.process_time()
        if message.payload[:1] == b"I":
            seen += 1
        messages += 1
        if messages % 10_000 == 0:
            cursor.send_feedback(flush_lsn=message.data_start)
    done, cpu_done = time.monotonic(), time.process_time()
    connection.close()
    _report(started, first, cpu_first, done, cpu_done, seen, 0)
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


def deserialize_protobuf(bootstrap: str, topic: str, count: int, registry_url: str) -> None:
    """``consume`` (librdkafka's fetch settings), each value read by confluent-kafka's
    ProtobufDeserializer into the generated message class (B6)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from bench.protobuf import reading_class

    deserialize = ProtobufDeserializer(reading_class(), {},
                                       SchemaRegistryClient({"url": registry_url}))
    context = SerializationContext(topic, MessageField.VALUE)
    consume(bootstrap, topic, count, {}, lambda message: deserialize(message.value(), context))


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command in ("consume", "native-consume"):
        consume(args[0], args[1], int(args[2]), json.loads(args[3]) if len(args) > 3 else {},
                native=command == "native-consume")
    elif command == "avro-consume":
        avro_consume(args[0], args[1], int(args[2]), args[3])
    elif command == "produce":
        produce(args[0], args[1], args[2])
    elif command == "upload":
        upload(args[0], args[1], args[2])
    elif command == "bulk":
        bulk(args[0], args[1], args[2], int(args[3]), int(args[4]))
    elif command == "mqtt-publish":
        mqtt_publish(args[0], args[1], args[2], int(args[3]))
    elif command == "mqtt-subscribe":
        mqtt_subscribe(args[0], args[1], args[2], int(args[3]))
    elif command == "select":
        select(args[0], args[1], int(args[2]))
    elif command in ("copy", "executemany"):
        load(command, args[0], args[1], args[2])
    elif command == "replicate":
        replicate(args[0], args[1], args[2], int(args[3]))
    elif command == "upload-s3":
        upload_s3(args[0], args[1], args[2])
    elif command == "upload-gcs":
        upload_gcs(args[0], args[1], args[2])
    elif command == "deserialize-protobuf":
        deserialize_protobuf(args[0], args[1], int(args[2]), args[3])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
