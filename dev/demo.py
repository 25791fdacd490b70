"""`make demo`: the seed's pipeline on the local real stack.

generator → Kafka (vehicle.telemetry) → speeding router → vehicle.speeding →
Azure Blob Storage sink (Azurite) in hourly JSON folders. Shows progress while it runs,
then where the files are and a few of them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from azure.storage.blob import BlobServiceClient
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from dev.stack_env import stack_env

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "demo"
KANAL = str(Path(sys.executable).parent / "kanal")
CONTAINER = "telemetry"
GENERATED = 60000
TIMEOUT_SECONDS = 180


def fresh_topics(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = ["vehicle.telemetry", "vehicle.speeding"]
    existing = [n for n in names if n in admin.list_topics(timeout=10).topics]
    if existing:
        for future in admin.delete_topics(existing).values():
            future.result(30)
        time.sleep(2)
    topics = [NewTopic("vehicle.telemetry", 6, 1), NewTopic("vehicle.speeding", 3, 1)]
    for future in admin.create_topics(topics).values():
        future.result(30)


def fresh_container(connection: str) -> BlobServiceClient:
    service = BlobServiceClient.from_connection_string(connection)
    container = service.get_container_client(CONTAINER)
    if container.exists():
        container.delete_container()
        time.sleep(1)
    return service


def topic_total(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kanal-demo-probe"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in partitions)
    finally:
        consumer.close()


def exported(service: BlobServiceClient) -> int:
    container = service.get_container_client(CONTAINER)
    if not container.exists():
        return 0
    return sum(container.download_blob(b.name).readall().count(b"\n")
               for b in container.list_blobs())


def run_pipeline(env: dict[str, str], workdir: Path, service: BlobServiceClient) -> None:
    """Run until every speeding reading is in a committed blob (or the timeout)."""
    bootstrap = env["KANAL_BOOTSTRAP_SERVERS"]
    worker = workdir / "worker.properties"
    worker.write_text((EXAMPLES / "worker.properties").read_text() +
                      f"offset.storage.file.filename={workdir / 'offsets.json'}\n")
    args = [KANAL, "standalone", str(worker), str(EXAMPLES / "telemetry-generator.properties"),
            str(EXAMPLES / "azure-blob-sink.json")]
    print(f"$ kanal {' '.join(args[1:])}\n", flush=True)
    child_env = {**os.environ, "AZURITE_ACCOUNT_KEY": env["AZURITE_ACCOUNT_KEY"]}
    process = subprocess.Popen(args, env=child_env)
    try:
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(3)
            produced = (topic_total(bootstrap, "vehicle.telemetry") +
                        topic_total(bootstrap, "vehicle.speeding"))
            if produced >= GENERATED and exported(service) >= topic_total(
                    bootstrap, "vehicle.speeding"):
                break
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(60)
    if process.returncode not in (0, None):
        raise SystemExit(f"kanal standalone exited with {process.returncode}")
    speeding = topic_total(bootstrap, "vehicle.speeding")
    print(f"\n{GENERATED} readings generated, {speeding} of them speeding "
          f"(> 120 km/h), {exported(service)} exported to Azure Blob Storage.")


def show(service: BlobServiceClient) -> None:
    container = service.get_container_client(CONTAINER)
    blobs = list(container.list_blobs())
    folders = Counter(b.name.rsplit("/", 1)[0] for b in blobs)
    print(f"\nContainer '{CONTAINER}' at {service.url}: {len(blobs)} files")
    for folder, files in sorted(folders.items()):
        print(f"  {folder}/  ({files} files)")
    print("\nA few of them:")
    for blob in blobs[:2]:
        print(f"\n  {blob.name}")
        for line in container.download_blob(blob.name).readall().splitlines()[:3]:
            print(f"    {line.decode()}")


def main() -> None:
    env = stack_env("kafka", "azurite")
    fresh_topics(env["KANAL_BOOTSTRAP_SERVERS"])
    service = fresh_container(env["AZURITE_CONNECTION_STRING"])
    with tempfile.TemporaryDirectory(prefix="kanal-demo-") as workdir:
        run_pipeline(env, Path(workdir), service)
    show(service)


if __name__ == "__main__":
    main()
