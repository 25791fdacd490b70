"""Google Cloud Storage servers a test runs itself: an emulator of its own (to restart it
without disturbing the shared one) and a proxy that refuses writes into a bucket as GCS
does (the emulator enforces no IAM)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import orjson
import requests

from tests.integration.refusing_proxy import RefusingProxy
from tests.integration.standalone import wait_for

OWN_PORT = 14543


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


def gcs_refusal(endpoint: str, bucket: str, status: int, message: str) -> RefusingProxy:
    """A proxy in front of ``endpoint`` answering writes into ``bucket`` with ``status``
    and GCS's JSON error body: 403 is a service account without
    ``storage.objects.create``, 401 credentials GCS no longer accepts."""
    reason = "forbidden" if status == 403 else "authError"
    body = orjson.dumps({"error": {"code": status, "message": message, "errors": [
        {"message": message, "domain": "global", "reason": reason}]}})
    return RefusingProxy(endpoint, rf"/(upload/)?storage/v1/b/{re.escape(bucket)}(/|\?|$)",
                         status, body, "application/json; charset=UTF-8")
