"""Google Cloud Storage servers a test runs itself: an emulator of its own (to restart it
without disturbing the shared one) and a proxy that enforces a bucket's permissions,
which the emulator does not have."""

from __future__ import annotations

import http.server
import re
import subprocess
import threading
from pathlib import Path

import orjson
import requests

from tests.integration.standalone import wait_for

OWN_PORT = 14543
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Emulator:
    """fake-gcs-server on ``OWN_PORT`` with its objects under ``root``; buckets outlive a
    restart, resumable upload sessions do not."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root
        self.url = f"http://127.0.0.1:{OWN_PORT}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Emulator:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        with (self.root / "gcs.log").open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(OWN_PORT),
                 "-external-url", self.url, "-public-host", f"127.0.0.1:{OWN_PORT}",
                 "-backend", "filesystem", "-filesystem-root", str(self.root / "data"),
                 "-log-level", "warn"], stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._answers, 60, f"fake-gcs-server on {self.url}")
        return self

    def _answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/storage/v1/b", timeout=2).ok
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(30)
            self.process = None


class PermissionProxy:
    """An HTTP proxy in front of a GCS endpoint that answers 403, with GCS's JSON error
    body, to every write into ``bucket`` (what a service account without
    ``storage.objects.create`` gets) while ``enforcing``; reads and other buckets pass
    through."""

    def __init__(self, target: str, bucket: str) -> None:
        self.target = target.rstrip("/")
        self.enforcing = True
        self.refused = 0
        bucket_path = re.compile(rf"/(upload/)?storage/v1/b/{re.escape(bucket)}(/|\?|$)")
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.enforcing and self.command in WRITES and bucket_path.match(self.path):
                    proxy.refused += 1
                    return self._answer(403, {"error": {
                        "code": 403, "message": "kanal-test@example.iam.gserviceaccount.com "
                        "does not have storage.objects.create access to the Google Cloud "
                        "Storage object. Permission 'storage.objects.create' denied on "
                        "resource (or it may not exist).", "errors": [{
                            "message": "Permission 'storage.objects.create' denied",
                            "domain": "global", "reason": "forbidden"}]}})
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length")}
                answer = requests.request(self.command, proxy.target + self.path, data=body,
                                          headers=headers, timeout=30, allow_redirects=False)
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding",
                                           "connection", "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)
                return None

            def _answer(self, status: int, document: dict[str, object]) -> None:
                data = orjson.dumps(document)
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> PermissionProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
