"""`make demo`: the seed's pipeline on the local real stack.

generator → Kafka (vehicle.telemetry) → speeding router → vehicle.speeding →
Azure Blob Storage sink (Azurite) in hourly JSON folders. Shows progress while it runs,
then where the files are and a few of them.

`make demo DEMO_ARGS=--mqtt`: the vehicles publish their readings over MQTT (mosquitto)
instead, the MQTT source brings them into vehicle.telemetry, and the sink keeps the
speeding ones (a Filter with the same predicate) in the same hourly folders.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

from azure.storage.blob import BlobServiceClient
from confluent_kafka.admin import AdminClient, NewTopic

from dev.stack_env import stack_env
from kanal_worker.connectors.telemetry import publish_over_mqtt, reading

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "demo"
KANAL = str(Path(sys.executable).parent / "kanal")
CONTAINER = "telemetry"
GENERATED = 60000
TIMEOUT_SECONDS = 180
SEED, VEHICLES, STEP_MS, RATE = 42, 200, 300, 6000
"""The generator's settings in examples/demo/telemetry-generator.properties."""
MQTT_SOURCE = ROOT / "examples" / "mqtt" / "mqtt-source.properties"


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


def exported(service: BlobServiceClient) -> int:
    container = service.get_container_client(CONTAINER)
    if not container.exists():
        return 0
    return sum(container.download_blob(b.name).readall().count(b"\n")
               for b in container.list_blobs())


def mqtt_sink_config(workdir: Path) -> Path:
    """The demo's Azure sink reading vehicle.telemetry and keeping the speeding readings
    (the MQTT source writes their JSON unchanged, so the router's predicate, which needs
    the parsed value, runs on the sink's side)."""
    definition = json.loads((EXAMPLES / "azure-blob-sink.json").read_text())
    definition["config"].update({
        "topics": "vehicle.telemetry",
        "transforms": "speedingOnly",
        "transforms.speedingOnly.type": "org.apache.kafka.connect.transforms.Filter",
        "transforms.speedingOnly.predicate": "isSpeeding",
        "transforms.speedingOnly.negate": "true",
        "predicates": "isSpeeding",
        "predicates.isSpeeding.type": "FieldValueMatches",
        "predicates.isSpeeding.field": "speed_kmh",
        "predicates.isSpeeding.operator": "gt",
        "predicates.isSpeeding.value": "120"})
    path = workdir / "azure-blob-sink-mqtt.json"
    path.write_text(json.dumps(definition, indent=2))
    return path


def tasks_running(connector: str, tasks: int) -> bool:
    try:
        with urllib.request.urlopen(
                f"http://127.0.0.1:8083/connectors/{connector}/status", timeout=5) as reply:
            status = json.load(reply)
    except OSError:
        return False
    return [t["state"] for t in status["tasks"]] == ["RUNNING"] * tasks


def vehicles_publish(url: str) -> threading.Thread:
    """The vehicles: the generator's readings over MQTT, once the source subscribed."""
    def publish() -> None:
        deadline = time.monotonic() + 60
        while not tasks_running("mqtt-source", 2) and time.monotonic() < deadline:
            time.sleep(0.5)
        publish_over_mqtt(url, GENERATED, rate=RATE, seed=SEED, vehicles=VEHICLES,
                          step_ms=STEP_MS)
    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    return thread


def run_pipeline(env: dict[str, str], workdir: Path, service: BlobServiceClient,
                 mqtt_url: str | None) -> None:
    """Run until every speeding reading is in a committed blob (or the timeout)."""
    worker = workdir / "worker.properties"
    worker.write_text((EXAMPLES / "worker.properties").read_text() +
                      f"offset.storage.file.filename={workdir / 'offsets.json'}\n")
    if mqtt_url is None:
        connectors = [EXAMPLES / "telemetry-generator.properties",
                      EXAMPLES / "azure-blob-sink.json"]
    else:
        connectors = [MQTT_SOURCE, mqtt_sink_config(workdir)]
    args = [KANAL, "standalone", str(worker), *map(str, connectors)]
    print(f"$ kanal {' '.join(args[1:])}\n", flush=True)
    child_env = {**os.environ, "AZURITE_ACCOUNT_KEY": env["AZURITE_ACCOUNT_KEY"]}
    process = subprocess.Popen(args, env=child_env)
    if mqtt_url is not None:
        vehicles_publish(mqtt_url)
    speeding = sum(reading(SEED, seq, VEHICLES, 0, STEP_MS)["speed_kmh"] > 120
                   for seq in range(GENERATED))
    try:
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(3)
            if exported(service) >= speeding:
                break
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(60)
    if process.returncode not in (0, None):
        raise SystemExit(f"kanal standalone exited with {process.returncode}")
    how = "published over MQTT" if mqtt_url else "generated"
    print(f"\n{GENERATED} readings {how}, {speeding} of them speeding "
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mqtt", action="store_true",
                        help="the vehicles publish over MQTT; the MQTT source brings them in")
    args = parser.parse_args()
    env = stack_env("kafka", "azurite", *(["mqtt"] if args.mqtt else []))
    fresh_topics(env["KANAL_BOOTSTRAP_SERVERS"])
    service = fresh_container(env["AZURITE_CONNECTION_STRING"])
    with tempfile.TemporaryDirectory(prefix="kanal-demo-") as workdir:
        run_pipeline(env, Path(workdir), service,
                     env["KANAL_MQTT_URL"] if args.mqtt else None)
    show(service)


if __name__ == "__main__":
    main()
