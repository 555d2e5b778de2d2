"""A real HTTP receiver for genqueue's webhooks, for the demo and the tests.

It verifies every POST with the `standardwebhooks` package (the reference verifier), records it, and answers
200, or whatever status the test asks for next.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook


@dataclass
class ReceivedEvent:
    """One POST the receiver got: path, headers, parsed body, whether the signature verified, the answer sent."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    verified: bool
    answered: int
    #: the body as it came, for checking its signature against other secrets
    raw: bytes = b""


@dataclass
class WebhookReceiver:
    """A receiver running in a thread; `url` is where to point a job's webhook."""

    secret: str | None
    server: ThreadingHTTPServer
    events: list[ReceivedEvent] = field(default_factory=list)
    planned_answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    #: paths that always answer 410 Gone (an endpoint its owner deleted)
    gone_paths: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks"

    def answer_next(self, status: int, count: int = 1, headers: dict[str, str] | None = None) -> None:
        """Answer the next `count` POSTs with `status` (and headers) instead of 200."""
        with self.lock:
            self.planned_answers.extend([(status, headers or {})] * count)

    def for_job(self, job_id: str) -> list[ReceivedEvent]:
        with self.lock:
            return [event for event in self.events if event.body.get("data", {}).get("id") == job_id]

    def wait_for(self, job_id: str, timeout: float = 30.0, answered: int = 200) -> ReceivedEvent:
        """The first event for `job_id` that was answered `answered`; TimeoutError when none came in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.for_job(job_id):
                if event.answered == answered:
                    return event
            time.sleep(0.05)
        raise TimeoutError(f"no webhook for {job_id} within {timeout}s")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_receiver(secret: str | None, host: str = "127.0.0.1", port: int = 0) -> WebhookReceiver:
    """Start a receiver in a daemon thread."""
    receiver: WebhookReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            verified = False
            if receiver.secret:
                try:
                    Webhook(receiver.secret).verify(raw, headers)
                    verified = True
                except Exception:
                    verified = False
            try:
                body = json.loads(raw)
            except ValueError:
                body = {}
            with receiver.lock:
                if self.path in receiver.gone_paths:
                    status, extra = 410, {}
                elif receiver.planned_answers:
                    status, extra = receiver.planned_answers.pop(0)
                else:
                    status, extra = 200, {}
                receiver.events.append(ReceivedEvent(self.path, headers, body, verified, status, raw))
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    receiver = WebhookReceiver(secret=secret, server=server)
    threading.Thread(target=server.serve_forever, daemon=True, name="webhook-receiver").start()
    return receiver
