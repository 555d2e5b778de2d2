"""The overall deadline of shared/http_deadline.py, against a real server on 127.0.0.1 that trickles its answer."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from shared.http_deadline import Deadline, deadline_transport, shared_ssl_context
from shared.netguard import guarded_client

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\nX-Padding: " + b"p" * 40 + b"\r\n\r\n" + b"b" * 40


class Trickler:
    """Answers every request on its connection with ANSWER, one byte every `pause` seconds (headers included)."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/x"
        self.connections = 0
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the client hung up
            while conn.recv(65536):  # a request (small, one read)
                for index in range(len(ANSWER)):
                    conn.sendall(ANSWER[index : index + 1])
                    time.sleep(self.pause)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    server = Trickler(pause=0.05)
    yield server
    server.close()


def test_a_trickling_answer_is_cut_at_the_deadline_though_no_read_times_out(trickler: Trickler) -> None:
    with httpx.Client(transport=deadline_transport(), timeout=5.0) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout), Deadline(0.5) as deadline:
            client.get(trickler.url)
        took = time.monotonic() - started
        assert deadline.expired
        assert took < 0.5 + 2  # each byte came within 0.05 s: only the deadline ended it


def test_without_a_deadline_it_is_a_plain_transport(trickler: Trickler) -> None:
    trickler.pause = 0.005
    with httpx.Client(transport=deadline_transport(), timeout=5.0) as client:
        response = client.get(trickler.url)  # slow, but every read returns in time
    assert response.status_code == 200 and response.content == b"b" * 40


def test_the_deadline_holds_on_a_reused_connection_and_nested_deadlines_keep_the_earliest(
    trickler: Trickler,
) -> None:
    with httpx.Client(transport=deadline_transport(), timeout=5.0) as client:
        trickler.pause = 0.0
        client.get(trickler.url)  # the connection goes back to the pool
        trickler.pause = 0.05
        with Deadline(60), pytest.raises(httpx.ReadTimeout), Deadline(0.3):
            client.get(trickler.url)
    assert trickler.connections == 1  # one connection, served twice
    assert Deadline(1).expired is False  # not entered: no deadline


def test_guarded_clients_keep_to_the_deadline(trickler: Trickler) -> None:
    host_port = trickler.url.split("/")[2]
    for client in (
        guarded_client(True, timeout=5.0),
        guarded_client(False, timeout=5.0, allowlist=[host_port]),
    ):
        with client, pytest.raises(httpx.ReadTimeout), Deadline(0.3):
            client.get(trickler.url)


def test_every_transport_shares_the_process_tls_context() -> None:
    """Making a TLS context loads the CA bundle: every thread's transport uses one made once, even when 16 threads
    ask at the same moment."""
    with ThreadPoolExecutor(16) as pool:
        contexts = list(pool.map(lambda _: shared_ssl_context(), range(16)))
    assert all(context is contexts[0] for context in contexts)
    transports = [deadline_transport(), deadline_transport()]
    assert all(transport._pool._ssl_context is contexts[0] for transport in transports)
    assert contexts[0].verify_mode is ssl.CERT_REQUIRED
