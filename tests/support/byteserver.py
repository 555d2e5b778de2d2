"""A local HTTP server that serves a deterministic stream of N bytes, generated on the fly, and fails on demand.

    GET /bytes/{n}[/{name}]         n bytes of `stream_bytes(n)`, with Content-Length (`name` is ignored)
        ?status=403                 answer that status with a short body instead
        &cut=K                      announce n bytes, send the first K, then close the connection
        &ctype=video/mp4            send this Content-Type (none by default)

Used in a thread by the tests (`ByteServer`) and as a process by bench/ (`python -m tests.support.byteserver`).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

CHUNK_BYTES = 64 * 1024
_PATTERN = random.Random(20240611).randbytes(CHUNK_BYTES)


def stream_bytes(n: int) -> Iterator[bytes]:
    """The n bytes served for /bytes/{n}, in chunks; each chunk starts with its own index, so order is checkable."""
    for index, start in enumerate(range(0, n, CHUNK_BYTES)):
        chunk = index.to_bytes(8, "big") + _PATTERN[8:]
        yield chunk[: min(CHUNK_BYTES, n - start)]


def expected_sha256(n: int) -> str:
    """The sha256 hex digest of `stream_bytes(n)`."""
    hasher = hashlib.sha256()
    for chunk in stream_bytes(n):
        hasher.update(chunk)
    return hasher.hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        segments = parts.path.strip("/").split("/")
        if len(segments) not in (2, 3) or segments[0] != "bytes" or not segments[1].isdigit():
            self._plain(404, b"not found\n")
            return
        status = int(query.get("status", "200"))
        if status != 200:
            self._plain(status, f"status {status}\n".encode())
            return
        size = int(segments[1])
        cut = int(query["cut"]) if "cut" in query else None
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        if "ctype" in query:
            self.send_header("Content-Type", query["ctype"])
        if cut is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        for chunk in stream_bytes(size):
            if cut is not None and sent + len(chunk) > cut:
                self.wfile.write(chunk[: cut - sent])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)
            sent += len(chunk)

    def _plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class ByteServer:
    """The server in a daemon thread on 127.0.0.1 and a free port; use as a context manager."""

    def __init__(self, port: int = 0) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="byteserver", daemon=True)

    def url(self, n: int, name: str = "", **query: str | int) -> str:
        """The URL serving n bytes, ending in `/name` if given, with the query options (status, cut, ctype)."""
        path = f"{self.base_url}/bytes/{n}" + (f"/{name}" if name else "")
        return path + (f"?{urlencode(query)}" if query else "")

    def __enter__(self) -> ByteServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), _Handler)
    httpd.daemon_threads = True
    httpd.serve_forever()


if __name__ == "__main__":
    main()
