"""B5: the HTTP connectors against a raw httpx program doing the same requests.

**Sink**: Kanal's HttpSinkConnector POSTs the workload topic to a receiver in batches of
BATCH records (JSON lines, ``batching.enabled``); the raw program consumes the topic with
confluent-kafka and POSTs the same batches with one httpx client, one request at a time.
**Source**: Kanal's HttpSourceConnector pages through SOURCE_RECORDS items of the
receiver (``since=${offset.id}&limit=BATCH``) into a fresh topic; the raw program GETs the
same pages in a loop and produces each item. The receiver is its own process (uvicorn),
outside what is measured; it counts the records it received.

    python -m bench.web serve PORT LINES_FILE
    python -m bench.web post BOOTSTRAP TOPIC COUNT URL BATCH
    python -m bench.web get URL COUNT BATCH BOOTSTRAP TOPIC
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.measure import Sample, run_raw, watch
from bench.raw import _report
from bench.sinks import STRING
from bench.sources import TopicCounter, drop_topic, lines_file, new_topic
from bench.systems import Kanal, delete_groups
from bench.workload import Workload

BATCH = 500
SOURCE_RECORDS = 200_000
"""At most this many items for the source: the receiver holds them in memory."""


def serve(port: int, lines: str) -> None:
    """The receiver: ``POST /records/<name>`` counts JSON lines, ``GET /count/<name>``
    tells how many, ``GET /items?since=&limit=`` pages through the lines of LINES_FILE
    as items with ids 1, 2, ..."""
    import orjson
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    with open(lines, "rb") as handle:
        items = [{"id": n, **orjson.loads(line)}
                 for n, line in enumerate(handle.read().splitlines(), start=1)]
    counts: dict[str, int] = {}

    async def records(request: Request) -> Response:
        name = request.path_params["name"]
        counts[name] = counts.get(name, 0) + (await request.body()).count(b"\n")
        return Response(status_code=200)

    async def count(request: Request) -> Response:
        return PlainTextResponse(str(counts.get(request.path_params["name"], 0)))

    async def page(request: Request) -> Response:
        since = int(request.query_params.get("since", "0"))
        limit = int(request.query_params.get("limit", str(BATCH)))
        return Response(orjson.dumps({"items": items[since:since + limit]}),
                        media_type="application/json")

    app = Starlette(routes=[Route("/records/{name}", records, methods=["POST", "OPTIONS"]),
                            Route("/count/{name}", count), Route("/items", page)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def post(bootstrap: str, topic: str, count: int, url: str, batch: int) -> None:
    """Consume ``count`` records (with the fetch settings of Kanal's sink tasks, as B0
    does) and POST them in batches of ``batch`` JSON lines."""
    from confluent_kafka import Consumer

    from kanal_worker.runtime.sink import FETCH_DEFAULTS

    started = time.monotonic()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-raw-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": "false",
                         **FETCH_DEFAULTS})
    consumer.subscribe([topic])
    client = httpx.Client(timeout=30)
    sent = 0
    first = cpu_first = 0.0
    pending: list[bytes] = []
    while sent < count and time.monotonic() - started < 600:
        pending.extend(message.value() for message in consumer.consume(2000, 0.5)
                       if message.error() is None)
        while len(pending) >= batch or (pending and sent + len(pending) >= count):
            chunk, pending = pending[:batch], pending[batch:]
            client.post(url, content=b"\n".join(chunk) + b"\n").raise_for_status()
            if not sent:
                first, cpu_first = time.monotonic(), time.process_time()
            sent += len(chunk)
    done, cpu_done = time.monotonic(), time.process_time()
    consumer.close()
    _report(started, first, cpu_first, done, cpu_done, sent, batch)


def get(url: str, count: int, batch: int, bootstrap: str, topic: str) -> None:
    """GET pages of ``batch`` items until ``count`` arrived, producing each item."""
    import orjson
    from confluent_kafka import Producer

    started = time.monotonic()
    client = httpx.Client(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": "true",
                         "linger.ms": "5", "compression.type": "lz4"})
    since = received = 0
    first, cpu_first = time.monotonic(), time.process_time()
    while received < count:
        response = client.get(url, params={"since": since, "limit": batch})
        items = response.raise_for_status().json()["items"]
        if not items:
            break
        for item in items:
            while True:
                try:
                    producer.produce(topic, key=str(item["id"]).encode(),
                                     value=orjson.dumps(item))
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
        since = items[-1]["id"]
        received += len(items)
    left = producer.flush(120)
    done, cpu_done = time.monotonic(), time.process_time()
    _report(started, first, cpu_first, done, cpu_done, received - left, 0)


class Receiver:
    """``serve`` in its own process on a free port."""

    def __init__(self, lines: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, "-m", "bench.web", "serve",
                                         str(self.port), str(lines)])
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{self.url}/count/ready", timeout=2)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the bench receiver did not start") from None
                time.sleep(0.2)

    def count(self, name: str) -> int:
        try:
            return int(httpx.get(f"{self.url}/count/{name}", timeout=5).text)
        except httpx.HTTPError:
            return 0

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def _kanal(sample: Sample, workdir: Path, bootstrap: str, connector: dict[str, str],
           progress: Any, timeout: float) -> Sample:
    kanal = Kanal(workdir / connector["name"], bootstrap, [connector])
    try:
        kanal.start()
        window = watch(progress, sample.records, kanal.pid, timeout, started=kanal.started,
                       interval=0.05, alive=kanal.alive)
        sample.peak_rss_mb = kanal.peak_rss_mb() if kanal.alive() else 0.0
        window.fill(sample)
    finally:
        kanal.stop()
        if not sample.ok:
            sample.note += " | " + kanal.tail(5).replace("\n", " / ")
        shutil.rmtree(workdir / connector["name"], ignore_errors=True)
    return sample


def b5(workload: Workload, bootstrap: str, run: int, workdir: Path) -> list[Sample]:
    source_records = min(workload.records, SOURCE_RECORDS)
    receiver = Receiver(lines_file(workdir, source_records))
    samples = []
    try:
        name = f"bench-kanal-http-{uuid.uuid4().hex[:8]}"
        samples.append(_kanal(
            Sample("B5 http sink", f"batch {BATCH}", "kanal", run, workload.records), workdir,
            bootstrap, {"name": name, "connector.class": "HttpSinkConnector", "tasks.max": "1",
                        "topics": workload.topic, "http.url": f"{receiver.url}/records/{name}",
                        "http.authorization.type": "none", "batching.enabled": "true",
                        "batch.max.size": str(BATCH), "key.converter": STRING,
                        "value.converter": STRING},
            lambda: receiver.count(name), workload.timeout))
        delete_groups(bootstrap, f"connect-{name}")
        raw = f"raw-{uuid.uuid4().hex[:8]}"
        samples.append(run_raw(
            Sample("B5 http sink", f"batch {BATCH}", "httpx", run, workload.records),
            "bench.web", ["post", bootstrap, workload.topic, str(workload.records),
                          f"{receiver.url}/records/{raw}", str(BATCH)], workload.timeout))
        for system in ("kanal", "httpx"):
            topic = new_topic(bootstrap)
            sample = Sample("B5 http source", f"pages of {BATCH}", system, run, source_records)
            try:
                if system == "kanal":
                    counter = TopicCounter(bootstrap, topic)
                    try:
                        _kanal(sample, workdir, bootstrap, {
                            "name": f"bench-kanal-http-src-{uuid.uuid4().hex[:8]}",
                            "connector.class": "HttpSourceConnector", "tasks.max": "1",
                            "kafka.topic": topic, "http.request.url": f"{receiver.url}/items",
                            "http.request.params": f"since=${{offset.id}}&limit={BATCH}",
                            "http.response.list.pointer": "/items",
                            "http.response.record.offset.pointer": "id=/id, key=/id",
                            "http.offset.initial": "id=0",
                            "http.client.read.timeout.millis": "30000"},
                            counter, workload.timeout)
                    finally:
                        counter.close()
                else:
                    run_raw(sample, "bench.web", ["get", f"{receiver.url}/items",
                                                  str(source_records), str(BATCH), bootstrap,
                                                  topic], workload.timeout)
            finally:
                drop_topic(bootstrap, topic)
            samples.append(sample)
    finally:
        receiver.stop()
    return samples


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "serve":
        serve(int(args[0]), args[1])
    elif command == "post":
        post(args[0], args[1], int(args[2]), args[3], int(args[4]))
    elif command == "get":
        get(args[0], int(args[1]), int(args[2]), args[3], args[4])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
