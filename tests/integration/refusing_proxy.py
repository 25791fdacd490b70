"""An HTTP proxy that refuses chosen requests the way a store refuses them, for the
permission and credential errors the emulators cannot produce (they enforce no IAM)."""

from __future__ import annotations

import http.server
import re
import threading

import requests

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection",
                        "content-encoding", "keep-alive", "expect"})


class RefusingProxy:
    """Forwards to ``target``, keeping the Host header (S3 signatures cover it), except
    writes whose path matches ``refused`` while ``refusing``: those get ``status`` with
    ``body`` (``content_type``) as the store would answer them."""

    def __init__(self, target: str, refused: str, status: int, body: bytes,
                 content_type: str) -> None:
        self.target = target.rstrip("/")
        self.refusing = True
        self.refused = 0
        pattern = re.compile(refused)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body_in = self._body()
                if proxy.refusing and self.command in WRITES and pattern.match(self.path):
                    proxy.refused += 1
                    return self._answer(status, {"Content-Type": content_type}, body)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in HOP_BY_HOP}
                answer = requests.request(self.command, proxy.target + self.path,
                                          data=body_in, headers=headers, timeout=30,
                                          allow_redirects=False)
                self._answer(answer.status_code,
                             {k: v for k, v in answer.headers.items()
                              if k.lower() not in HOP_BY_HOP}, answer.content)
                return None

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        data += self.rfile.read(size)
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return data
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(self, code: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(code)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> RefusingProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
