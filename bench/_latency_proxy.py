"""A userspace netem for the benches: a TCP proxy that delays every chunk by D ms in each direction, and counts.

The kernel here has no netem qdisc, so added latency is simulated in front of a server instead: the proxy accepts
connections, opens one to the target per connection, and forwards each chunk it reads `delay_ms` later (in order,
without holding back the chunks behind it: a pipeline of requests stays a pipeline). A round trip through it costs
2 × delay_ms more, plus the event loop's timer slack (measured: `ProxyStats.mean_added_ms`).

It also counts, per direction, the chunks and bytes it forwards; with `protocol="redis"` the commands the clients
send (RESP arrays, by command name); with `protocol="http"` the HTTP requests they send (by method). Chunks
from a client to the server approximate its round trips (a client waits for each answer before it writes again;
a pipeline is one chunk).

Two ways to run it:

- in this process: `LatencyProxy(...).start()` runs the proxy's event loop in a daemon thread; `stats()` takes
  a snapshot; `stop()` closes everything and joins the thread;
- as its own process (so it takes no GIL from the bench): `python bench/_latency_proxy.py --target HOST:PORT
  --delay-ms 1 --protocol redis --stats-file F` prints `listening PORT` on its first line, writes its stats as
  JSON to F on SIGUSR1, and again on SIGTERM before it exits. `ProxyProcess` starts and stops one by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

Protocol = Literal["redis", "http"] | None

_HTTP_REQUEST = re.compile(rb"(GET|PUT|POST|HEAD|DELETE|PATCH|OPTIONS) /[^ \r\n]* HTTP/1\.[01]\r\n")


@dataclass
class ProxyStats:
    """What the proxy forwarded so far (`up`: client to server, `down`: server to client)."""

    connections: int = 0
    chunks_up: int = 0
    chunks_down: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    #: Redis commands sent by the clients (protocol="redis"), by lower-case command name
    commands: dict[str, int] = field(default_factory=dict)
    #: HTTP requests sent by the clients (protocol="http"), by method
    requests: dict[str, int] = field(default_factory=dict)
    #: the delay actually added per forwarded chunk, averaged (requested delay + timer slack)
    mean_added_ms: float = 0.0

    def minus(self, before: ProxyStats) -> ProxyStats:
        """The counts since `before` (mean_added_ms is the mean over the chunks of that interval)."""
        chunks = self.chunks_up + self.chunks_down - before.chunks_up - before.chunks_down
        total_now = self.mean_added_ms * (self.chunks_up + self.chunks_down)
        total_before = before.mean_added_ms * (before.chunks_up + before.chunks_down)
        return ProxyStats(
            connections=self.connections - before.connections,
            chunks_up=self.chunks_up - before.chunks_up,
            chunks_down=self.chunks_down - before.chunks_down,
            bytes_up=self.bytes_up - before.bytes_up,
            bytes_down=self.bytes_down - before.bytes_down,
            commands=dict(Counter(self.commands) - Counter(before.commands)),
            requests=dict(Counter(self.requests) - Counter(before.requests)),
            mean_added_ms=(total_now - total_before) / chunks if chunks else 0.0,
        )

    @classmethod
    def from_json(cls, text: str) -> ProxyStats:
        return cls(**json.loads(text))


class RespCounter:
    """Counts the commands in a client's RESP stream (arrays of bulk strings, as every Redis client sends them)."""

    def __init__(self, names: Counter[str]) -> None:
        self.buffer = bytearray()
        self.names = names

    def feed(self, data: bytes) -> None:
        self.buffer += data
        buf = self.buffer
        pos = 0
        while True:
            parsed = self._one(buf, pos)
            if parsed is None:
                break
            pos = parsed
        if pos:
            del buf[:pos]

    def _one(self, buf: bytearray, pos: int) -> int | None:
        """The position after one complete command starting at `pos`, counting it; None when incomplete."""
        if pos >= len(buf):
            return None
        if buf[pos] != ord("*"):  # an inline command: one line
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return None
            self.names[bytes(buf[pos:end]).split(b" ", 1)[0].decode(errors="replace").lower()] += 1
            return end + 2
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return None
        count = int(buf[pos + 1 : end])
        pos = end + 2
        name = ""
        for index in range(count):
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return None
            length = int(buf[pos + 1 : end])
            start = end + 2
            if start + length + 2 > len(buf):
                return None
            if index == 0:
                name = bytes(buf[start : start + length]).decode(errors="replace").lower()
            pos = start + length + 2
        self.names[name] += 1
        return pos


class LatencyProxy:
    """A delaying, counting TCP proxy in front of `target_host:target_port` (see the module docstring)."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        delay_ms: float = 0.0,
        protocol: Protocol = None,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.target = (target_host, target_port)
        self.delay = delay_ms / 1000.0
        self.protocol = protocol
        self.listen = (listen_host, listen_port)
        self.port = 0
        self._stats = ProxyStats()
        self._commands: Counter[str] = Counter()
        self._requests: Counter[str] = Counter()
        self._added_total = 0.0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url_host_port(self) -> str:
        return f"{self.listen[0]}:{self.port}"

    def stats(self) -> ProxyStats:
        """A snapshot of the counts so far."""
        with self._lock:
            chunks = self._stats.chunks_up + self._stats.chunks_down
            return ProxyStats(
                connections=self._stats.connections,
                chunks_up=self._stats.chunks_up,
                chunks_down=self._stats.chunks_down,
                bytes_up=self._stats.bytes_up,
                bytes_down=self._stats.bytes_down,
                commands=dict(self._commands),
                requests=dict(self._requests),
                mean_added_ms=1000.0 * self._added_total / chunks if chunks else 0.0,
            )

    async def serve(self) -> None:
        """Listen (setting `port`) and serve until the loop stops."""
        self._server = await asyncio.start_server(self._handle, *self.listen)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        with self._lock:
            self._stats.connections += 1
        self._writers.update((client_writer, server_writer))
        counter = None
        if self.protocol == "redis":
            counter = RespCounter(self._commands)
        up = asyncio.create_task(self._pipe(client_reader, server_writer, True, counter))
        down = asyncio.create_task(self._pipe(server_reader, client_writer, False, None))
        try:
            await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass  # the proxy is closing
        finally:
            for writer in (client_writer, server_writer):
                writer.close()
                self._writers.discard(writer)
            for task in (up, down):
                task.cancel()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: bool, counter: RespCounter | None
    ) -> None:
        """Forward what `reader` gives to `writer`, each chunk `delay` after it was read, in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.create_task(self._send(queue, writer))
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                read_at = time.monotonic()
                with self._lock:
                    if up:
                        self._stats.chunks_up += 1
                        self._stats.bytes_up += len(data)
                        if counter is not None:
                            counter.feed(data)
                        elif self.protocol == "http":
                            for match in _HTTP_REQUEST.finditer(data):
                                self._requests[match.group(1).decode()] += 1
                    else:
                        self._stats.chunks_down += 1
                        self._stats.bytes_down += len(data)
                queue.put_nowait((read_at, data))
            queue.put_nowait((0.0, b""))
            await sender
        except (ConnectionError, asyncio.CancelledError):
            sender.cancel()
            raise

    async def _send(self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter) -> None:
        while True:
            read_at, data = await queue.get()
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            wait = read_at + self.delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            with self._lock:
                self._added_total += time.monotonic() - read_at
            writer.write(data)
            await writer.drain()

    def start(self) -> LatencyProxy:
        """Run the proxy in a daemon thread; returns once it listens."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self.serve())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="latency-proxy")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the latency proxy did not start")
        return self

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        """Close the listener and every connection, and end the thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None


class ProxyProcess:
    """A LatencyProxy run as its own process (this file's command line), started and stopped by its pid."""

    def __init__(self, target: str, delay_ms: float, protocol: Protocol, stats_file: Path) -> None:
        self.stats_file = stats_file
        argv = [sys.executable, __file__, "--target", target, "--delay-ms", str(delay_ms)]
        argv += ["--stats-file", str(stats_file)] + (["--protocol", protocol] if protocol else [])
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "listening":
            self.stop()
            raise RuntimeError(f"the latency proxy did not start: {line}")
        self.port = int(line[1])

    def stats(self, timeout: float = 5.0) -> ProxyStats:
        """Ask the process for its counts (SIGUSR1) and read them."""
        before = self.stats_file.stat().st_mtime_ns if self.stats_file.exists() else 0
        os.kill(self.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats_file.exists() and self.stats_file.stat().st_mtime_ns != before:
                return ProxyStats.from_json(self.stats_file.read_text())
            time.sleep(0.01)
        raise TimeoutError("the latency proxy wrote no stats")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _main() -> None:
    parser = argparse.ArgumentParser(description="a delaying, counting TCP proxy (see bench/_latency_proxy.py)")
    parser.add_argument("--target", required=True, help="HOST:PORT of the server")
    parser.add_argument("--delay-ms", type=float, default=1.0, help="added to every chunk, each direction")
    parser.add_argument("--protocol", choices=("redis", "http"), default=None)
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to listen on (port 0: any free one)")
    parser.add_argument("--stats-file", type=Path, default=None, help="written on SIGUSR1 and at exit")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    listen_host, _, listen_port = args.listen.rpartition(":")
    proxy = LatencyProxy(host, int(port), args.delay_ms, args.protocol, listen_host, int(listen_port))

    def dump() -> None:
        if args.stats_file is not None:
            partial = args.stats_file.with_suffix(".partial")
            partial.write_text(json.dumps(asdict(proxy.stats())))
            partial.replace(args.stats_file)

    async def run() -> None:
        await proxy.serve()
        print(f"listening {proxy.port}", flush=True)
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR1, dump)
        loop.add_signal_handler(signal.SIGTERM, done.set)
        loop.add_signal_handler(signal.SIGINT, done.set)
        await done.wait()
        dump()
        await proxy._close()

    asyncio.run(run())


if __name__ == "__main__":
    _main()
