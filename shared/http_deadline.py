"""An overall deadline for an HTTP exchange, on top of httpx's per-operation timeouts.

httpx's timeouts bound each connect, read and write on its own: a server that sends one byte a second (status
line, headers or body) never trips a 15 s read timeout and holds the caller for as long as it likes. Inside
`with Deadline(seconds):`, every network operation of a transport made by `deadline_transport`, in the same
thread, is given at most the time left; once none is left the next one fails at once with httpx's ReadTimeout
(WriteTimeout, ConnectTimeout), so the exchange ends by the deadline, headers included, whatever the server
does. Sync httpx does its I/O in the calling thread, so the deadline is kept per thread and no thread is started.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

import httpcore
import httpx

from shared.once import once_per_process

_local = threading.local()
#: a write is sent in pieces of this size, each given the time left, so a receiver that does not read cannot
#: stretch one write past the deadline
WRITE_PIECE_BYTES = 64 * 1024
#: httpx's own pool limits (httpx.HTTPTransport's defaults)
POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


class Deadline:
    """`with Deadline(seconds):` ends every network operation of deadline transports in this thread by then.

    Nested deadlines keep the earliest. `expired` tells, after a timeout, whether it was this deadline.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at: float | None = None
        self._outer: float | None = None

    def __enter__(self) -> Self:
        self._outer = getattr(_local, "at", None)
        self.at = time.monotonic() + self.seconds
        _local.at = self.at if self._outer is None else min(self.at, self._outer)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        _local.at = self._outer

    @property
    def expired(self) -> bool:
        """True once the deadline has passed (False before the block is entered)."""
        return self.at is not None and time.monotonic() >= self.at


def _bounded(timeout: float | None, error: type[httpcore.TimeoutException]) -> float | None:
    """`timeout` cut to the time left before this thread's deadline; `error` when none is left."""
    at: float | None = getattr(_local, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        # a zero timeout would make the socket non-blocking (an OSError, not a timeout)
        raise error("the exchange's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), WRITE_PIECE_BYTES):
            piece = buffer[start : start + WRITE_PIECE_BYTES]
            self._inner.write(piece, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        # the socket timeout bounds the whole handshake (CPython keeps one deadline across its reads and writes)
        inner = self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _bounded(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, _bounded(timeout, httpcore.ConnectTimeout), socket_options)
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@once_per_process
def shared_ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context (certificates verified against its CA bundle), made once per process.

    Making one loads and parses the whole CA bundle, which a profile of the worker showed costing more than the
    requests themselves when each thread's new client made its own. An SSLContext may be shared by any number of
    connections and threads.
    """
    return httpx.create_ssl_context()


def deadline_transport(ssl_context: ssl.SSLContext | None = None) -> httpx.HTTPTransport:
    """An httpx.HTTPTransport (HTTP/1.1, no proxy) whose connections keep to the caller's `Deadline`.

    Outside a Deadline it behaves as a plain HTTPTransport. `ssl_context` defaults to the process's shared one.
    """
    context = ssl_context if ssl_context is not None else shared_ssl_context()
    transport = httpx.HTTPTransport(verify=context)
    # httpx.HTTPTransport takes no network backend: its connection pool is rebuilt around ours, with the arguments
    # HTTPTransport gives it (tests/unit/test_http_deadline.py fails if httpx stops sending through `_pool`)
    transport._pool = httpcore.ConnectionPool(
        ssl_context=context,
        max_connections=POOL_LIMITS.max_connections,
        max_keepalive_connections=POOL_LIMITS.max_keepalive_connections,
        keepalive_expiry=POOL_LIMITS.keepalive_expiry,
        network_backend=_DeadlineBackend(),
    )
    return transport
