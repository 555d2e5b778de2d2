"""The sandbox's HTTP server: routing to the dialects, faults, /_control/ and file serving.

Paths: `/{vicsee,veogen,gateway,veo3api,sandbox}/...` go to that dialect; `/_control/...` to sandbox.control;
`GET|HEAD /files/{task_id}/{n}.{ext}` serves output `n` of a finished task (no auth), streamed in 1 MiB chunks
with Content-Length and Content-Type; anything else is 404.

For a dialect route the order is: count the request (submit attempt or poll), apply the first matching fault
(sleep `delay_seconds`, then answer `status` in the dialect's error shape with Retry-After when given),
check the API key (401 in the dialect's shape), then run the handler. A download fault matches on the
dialect of the task the file belongs to. A file is 404 until its task has succeeded.

The server is a ThreadingHTTPServer speaking HTTP/1.1 with keep-alive, a thread per connection, and logs
nothing per request unless SANDBOX_VERBOSE is set; handler errors are always printed to stderr.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from sandbox import control
from sandbox.config import Fault, SandboxConfig
from sandbox.dialects import DIALECTS, for_path
from sandbox.dialects.base import Dialect, ErrorFactory, Request, Response, authorize
from sandbox.files import CONTENT_TYPES, iter_content
from sandbox.state import Store

VERBOSE_ENV = "SANDBOX_VERBOSE"
#: request bodies larger than this are refused with 413
MAX_BODY = 16 * 1024 * 1024
_FILE_PATH = re.compile(r"/files/(?P<id>[A-Za-z0-9_.-]+)/(?P<n>\d+)\.(?P<ext>[A-Za-z0-9]+)")


def _plain_error(status: int, message: str | None = None) -> Response:
    return Response(status, {"error": message or f"HTTP {status}"})


def _fault_response(error: ErrorFactory, fault: Fault) -> Response:
    assert fault.status is not None
    response = error(fault.status)
    if fault.retry_after is not None:
        response.headers["Retry-After"] = f"{fault.retry_after:g}"
    return response


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hangs up mid-request is normal under load and not worth a traceback
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)

    def __init__(self, address: tuple[str, int], store: Store) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.store = store
        super().__init__(address, _Handler)
        # for answers to clients that send no Host header (HTTP/1.0)
        self.fallback_host = f"{address[0] or '127.0.0.1'}:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "genqueue-sandbox/1"
    # headers and body go out in separate writes; without this Nagle + delayed ACK add ~40 ms per answer
    disable_nagle_algorithm = True
    # idle keep-alive connections give their thread back after this many seconds
    timeout = 120
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get(VERBOSE_ENV):
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        self._headers_sent = False
        try:
            path = urlsplit(self.path).path
            body = self._read_body()
            if body is None:
                return
            if path.startswith(control.PREFIX):
                self._send(control.handle(self.command, path, body, self.server.store))
            elif path.startswith("/files/"):
                self._serve_file(path)
            else:
                self._send(self._dialect_response(path, body))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            if not self._headers_sent:
                self._send(_plain_error(500, "internal sandbox error"))

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering 400/413 for one that cannot be read."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._send(_plain_error(400 if length < 0 else 413, "bad Content-Length"))
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            total += size
            if total > MAX_BODY:
                self.close_connection = True
                self._send(_plain_error(413, "request body too large"))
                return None
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _host(self) -> str:
        return self.headers.get("Host") or self.server.fallback_host

    def _send(self, response: Response) -> None:
        payload = json.dumps(response.body, separators=(",", ":")).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self._headers_sent = True
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _dialect_response(self, path: str, body: bytes) -> Response:
        dialect = for_path(path)
        if dialect is None:
            return _plain_error(404, f"no such path: {path}")
        sub_path = path[len(dialect.prefix) :] or "/"
        method = "GET" if self.command == "HEAD" else self.command
        route, params, path_known = dialect.match(method, sub_path)
        if route is None:
            if path_known:
                return dialect.error(405, f"{self.command} is not allowed on {sub_path}")
            return dialect.error(404, f"no such endpoint: {self.command} {sub_path}")
        store = self.server.store
        if route.target == "submit":
            store.count_attempt(dialect.name)
        else:
            store.count_poll(dialect.name)
        fault = store.take_fault(route.target, dialect.name)
        if fault is not None and fault.delay_seconds:
            time.sleep(fault.delay_seconds)
        if fault is not None and fault.status is not None and not fault.after_accept:
            return _fault_response(dialect.error, fault)
        key = authorize(self.headers.get("Authorization"), dialect.scheme, store.config.api_keys)
        if key is None:
            return dialect.error(401)
        try:
            response = route.handler(Request(method, sub_path, params, body, self._host(), key), store)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            return dialect.error(500)
        if fault is not None and fault.after_accept and response.status < 300:
            return _fault_response(dialect.error, fault)
        return response

    def _serve_file(self, path: str) -> None:
        store = self.server.store
        found = _FILE_PATH.fullmatch(path)
        task = store.task(found["id"]) if found else None
        dialect: Dialect | None = DIALECTS.get(task.dialect) if task else None
        error: ErrorFactory = dialect.error if dialect else _plain_error
        fault = store.take_fault("download", task.dialect if task else None)
        if fault is not None and fault.delay_seconds:
            time.sleep(fault.delay_seconds)
        if fault is not None and fault.status is not None:
            self._send(_fault_response(error, fault))
            return
        if self.command not in ("GET", "HEAD"):
            self._send(error(405, f"{self.command} is not allowed on files"))
            return
        if found is None or task is None or task.phase() != "succeeded":
            self._send(error(404, "file not found"))
            return
        n = int(found["n"])
        if n >= task.outputs or found["ext"] != task.ext:
            self._send(error(404, "file not found"))
            return
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPES[task.ext])
        self.send_header("Content-Length", str(task.output_bytes))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self._headers_sent = True
        if self.command == "HEAD":
            return
        store.count_download()
        for chunk in iter_content(task.id, n, task.output_bytes):
            self.wfile.write(chunk)


class SandboxServer:
    """A sandbox bound to its port. `start()` serves in a daemon thread, `serve_forever()` in this one."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.store = Store(config)
        self._httpd = _HTTPServer((config.host, config.port), self.store)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually bound (differs from config.port when that was 0)."""
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """`http://HOST:PORT`, with a wildcard bind address replaced by loopback so clients can use it."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.config.host, self.config.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> SandboxServer:
        """Serve in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="sandbox", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until `stop()` (from another thread) or KeyboardInterrupt."""
        try:
            self._httpd.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._httpd.server_close()

    def stop(self) -> None:
        """Stop accepting requests and close the listening socket; open keep-alive connections are daemons."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> SandboxServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_in_thread(config: SandboxConfig | None = None) -> SandboxServer:
    """Start a sandbox on `config.port` (0 picks a free port) in a daemon thread and return it."""
    return SandboxServer(config or SandboxConfig()).start()


def serve(config: SandboxConfig | None = None) -> None:
    """Run a sandbox in this thread until interrupted; prints `sandbox listening on http://H:P` first."""
    config = config or SandboxConfig()
    server = SandboxServer(config)
    print(f"sandbox listening on http://{config.host}:{server.port}", flush=True)
    server.serve_forever()
