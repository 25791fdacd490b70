"""A read-only Confluent-compatible schema registry holding the workload's Avro schema:
what AvroConverter asks when it reads the Avro workload (``GET /schemas/ids/<id>``).
No registry runs in ``dev/stack``, and the bench needs only this one answer."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from bench.env import HOST
from bench.workload import AVRO_SCHEMA, AVRO_SCHEMA_ID


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.rstrip("/") == f"/schemas/ids/{AVRO_SCHEMA_ID}":
            status, body = 200, {"schema": json.dumps(AVRO_SCHEMA)}
        else:
            status, body = 404, {"error_code": 40403, "message": "Schema not found"}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the bench prints its own progress."""


class Registry:
    """``with Registry() as url:`` serves the schema on a free port of ``HOST``."""

    def __enter__(self) -> str:
        self.server = ThreadingHTTPServer((HOST, 0), _Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://{HOST}:{self.server.server_port}"

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
