"""genqueue against Celery's own ceiling, side by side in one run, on the very worker settings (issue 15, item 1).

Starts its own redis-server, moto S3, sandbox (delay 0, 1 KiB outputs) and webhook receiver (bench/_stack.py),
then measures, each part with a fresh worker started by `infra.local.stack.worker_argv` (threads pool, -c N,
INFO logging, no gossip/mingle) on genqueue's Celery app and `workers.app.worker_config` (acks_late, prefetch 1,
task events as configured: off until Flower asks), so the two cannot drift:

1. Celery's ceiling: N 4-task no-op chains (bench/_noop_chain.py, one task per genqueue queue, each publishing
   the next, on the workers' own app); again with the worker reaching Redis through the latency proxy.
2. The pipeline: N jobs through the Producer (sandbox provider, instant vendor, a webhook each), one genqueue
   worker on all four queues.
3. The same pipeline with the worker reaching Redis through bench/_latency_proxy.py (its own process): at 0 ms
   (the proxy's own cost, and the worker's Redis commands and round trips counted at the client side of the
   proxy) and at --latency-ms each way. The producer stays direct.
4. Realistic render times at genqueue's default poll schedule: veo3api jobs (the vendor answers an estimated time,
   "8-9 seconds" for an 8 s render) and vicsee jobs (no estimate), submitted at a steady pace: polls per job, and
   the lag from vendor-ready to the first webhook attempt (p50, p95).
5. The job's own HTTP I/O with nothing of genqueue around it: the submit, a poll, the download, the PutObject and
   the signed webhook POST of each job, sent plainly from one thread of the bench with httpx and boto3. Its CPU
   per job, added to the chain's, is the least any pipeline on these libraries can cost: the row "least
   possible" says whether the CPU target can be met at all on this machine.

How each figure is counted: jobs/s from the first enqueue to the last job's webhook at the receiver (a chain: to
its last task's UDP datagram to the bench); worker CPU from /proc/PID/stat (utime+stime) over that window;
Redis commands from the server's INFO commandstats delta over the window, without `info` itself (the only
command the bench sends in a window; the producer's and the first publish's commands count, as part of the job).
Commands run inside Lua scripts count there too (a script is one round trip but several commands), so the
worker's commands and round trips (chunks it writes) are also counted at its client side, by the proxy (parts 3a
and 1b), and the producer's by a counting proxy in the bench (part 3a). Redis CPU from INFO cpu; vendor HTTP
requests from the sandbox's /_control/stats (submit attempts, polls, downloads); webhook POSTs at the receiver;
S3 requests at a counting proxy (no delay) between the workers and moto. Vendor-ready is the vendor's render end
(the job's entered_at["submitted"], stamped just after the vendor's answer, plus the render time), and also, as
the issue's approximation, entered_at["finalizing"].

The machine is shared and noisy: read ratios, not absolute figures. Never asserts on time.
Usage: python bench/engine_ceiling.py [--jobs 300] [--concurrency 16] [--latency-ms 1] [--short]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import httpx  # noqa: E402
import redis  # noqa: E402
from _latency_proxy import LatencyProxy, ProxyProcess, ProxyStats  # noqa: E402
from _stack import BenchStack, bench_stack  # noqa: E402

from infra.local.processes import ServerProcess  # noqa: E402
from infra.local.stack import worker_argv  # noqa: E402

#: the figures the issue sets, as ratios measured in one run
TARGET_CPU_RATIO = 1.5
TARGET_RATE_RATIO = 0.60
TARGET_LATENCY_RATIO = 0.70
TARGET_POLLS = 1.3
TARGET_LAG_P50 = 1.0

#: the poll schedule of the throughput parts (as bench/pipeline_throughput.py): the instant vendor is polled soon
FAST_POLLS = {"GENQUEUE_POLL_INITIAL_SECONDS": "0.05", "GENQUEUE_POLL_MAX_INTERVAL_SECONDS": "0.5"}
#: the pipeline is measured, not the providers' default rate limits (5/s) and in-flight caps
UNLIMITED = {
    f"GENQUEUE_PROVIDERS__{name}__{key}": "10000"
    for name in ("SANDBOX", "VEO3API", "VICSEE")
    for key in ("RATE_PER_SECOND", "BURST", "MAX_IN_FLIGHT")
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank q-quantile (0 < q ≤ 1) of `values`; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))]


@dataclass
class Snapshot:
    """The counters read at one edge of a measured window."""

    at: float
    worker_cpu: float
    commands: Counter[str]
    redis_cpu: float
    sandbox: dict[str, Any]
    s3: ProxyStats
    proxy: ProxyStats | None = None
    proxy_cpu: float = 0.0


@dataclass
class Measured:
    """One part's figures, per job (or per chain)."""

    label: str
    jobs: int
    done: int
    seconds: float
    worker_cpu_ms: float
    redis_commands: float
    redis_cpu_ms: float
    top_commands: list[tuple[str, float]] = field(default_factory=list)
    vendor_requests: float = 0.0
    webhook_posts: float = 0.0
    s3_requests: float = 0.0
    s3_by_method: dict[str, float] = field(default_factory=dict)
    client_commands: float | None = None
    client_round_trips: float | None = None
    client_top: list[tuple[str, float]] = field(default_factory=list)
    producer_commands: float | None = None
    proxy_cpu_ms: float | None = None
    proxy_added_ms: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else float("nan")


class Bench:
    """The servers of one run, and how each part starts its worker and reads the counters."""

    def __init__(self, stack: BenchStack, args: argparse.Namespace) -> None:
        from producer.api import Producer
        from shared.settings import Settings

        self.stack = stack
        self.args = args
        self.redis = redis.Redis.from_url(stack.redis_url)
        self.redis_port = int(urlsplit(stack.redis_url).port or 6379)
        self.http = httpx.Client(base_url=stack.sandbox_url, timeout=10)
        moto = urlsplit(os.environ["GENQUEUE_S3_ENDPOINT_URL"])
        # the workers reach S3 through a counting proxy (no delay); the bench and producer go direct
        self.s3_proxy = LatencyProxy(moto.hostname or "127.0.0.1", int(moto.port or 80), 0.0, "http").start()
        self.worker_env = {"GENQUEUE_S3_ENDPOINT_URL": f"http://127.0.0.1:{self.s3_proxy.port}"}
        self.settings = Settings()
        self.producer = Producer(self.settings)
        self.seen = 0  # receiver events already looked at

    def close(self) -> None:
        self.s3_proxy.stop()
        self.http.close()

    def start_worker(self, name: str, env: dict[str, str], app: str = "workers") -> ServerProcess:
        """A worker as genqueue runs it (worker_argv), on app `app`, with `env` over the bench's environment."""
        argv = worker_argv(name, concurrency=self.args.concurrency)
        argv[argv.index("-A") + 1] = app
        process = ServerProcess(argv, self.stack.workdir / f"{name}.log", env={**os.environ, **self.worker_env, **env})
        process.wait_until(lambda: "ready." in process.log_tail(20000), 60, what=name)
        time.sleep(1.0)  # let its start-up commands pass before the window opens
        return process

    def commandstats(self) -> Counter[str]:
        stats: dict[str, Any] = self.redis.info("commandstats")
        return Counter({key.removeprefix("cmdstat_"): int(value["calls"]) for key, value in stats.items()})

    def snapshot(self, worker: ServerProcess, proxy: ProxyProcess | None = None) -> Snapshot:
        cpu = self.redis.info("cpu")
        return Snapshot(
            at=time.monotonic(),
            worker_cpu=cpu_seconds(worker.pid),
            commands=self.commandstats(),
            redis_cpu=float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            sandbox=self.http.get("/_control/stats").json(),
            s3=self.s3_proxy.stats(),
            proxy=proxy.stats() if proxy is not None else None,
            proxy_cpu=cpu_seconds(proxy.proc.pid) if proxy is not None else 0.0,
        )

    def measured(self, label: str, jobs: int, done: int, before: Snapshot, after: Snapshot) -> Measured:
        """Per-job figures from the counters at both edges of a window (vendor and S3 counts from `after`'s)."""
        n = max(done, 1)
        commands = after.commands - before.commands
        commands.pop("info", None)
        vendor = after.sandbox
        vendor_total = sum(vendor["submit_attempts"].values()) + sum(vendor["polls"].values()) + vendor["downloads"]
        s3 = after.s3.minus(before.s3)
        result = Measured(
            label=label,
            jobs=jobs,
            done=done,
            seconds=after.at - before.at,
            worker_cpu_ms=1000 * (after.worker_cpu - before.worker_cpu) / n,
            redis_commands=sum(commands.values()) / n,
            redis_cpu_ms=1000 * (after.redis_cpu - before.redis_cpu) / n,
            top_commands=[(name, calls / n) for name, calls in commands.most_common(10)],
            vendor_requests=vendor_total / n,
            s3_requests=sum(s3.requests.values()) / n,
            s3_by_method={method: count / n for method, count in sorted(s3.requests.items())},
        )
        if before.proxy is not None and after.proxy is not None:
            client = after.proxy.minus(before.proxy)
            result.client_commands = sum(client.commands.values()) / n
            result.client_round_trips = client.chunks_up / n
            result.client_top = [(name, calls / n) for name, calls in Counter(client.commands).most_common(10)]
            result.proxy_cpu_ms = 1000 * (after.proxy_cpu - before.proxy_cpu) / n
            result.proxy_added_ms = client.mean_added_ms
        return result

    def reset_sandbox(self, **config: Any) -> None:
        self.http.post("/_control/reset").raise_for_status()
        if config:
            self.http.post("/_control/config", json=config).raise_for_status()

    def proxy(self, delay_ms: float, name: str) -> ProxyProcess:
        stats = self.stack.workdir / f"{name}-stats.json"
        return ProxyProcess(f"127.0.0.1:{self.redis_port}", delay_ms, "redis", stats)

    # --- part 1: Celery's ceiling ---------------------------------------------------------------------------

    def chain(self, delay_ms: float | None) -> Measured:
        """N no-op chains on a fresh worker (through the latency proxy at `delay_ms`, or direct when None)."""
        from _noop_chain import CHAIN

        from shared.queueing import make_celery

        n = self.args.jobs
        done: set[str] = set()
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(0.2)
        stop = threading.Event()

        def listen() -> None:
            while not stop.is_set():
                try:
                    done.add(listener.recv(256).decode())
                except TimeoutError:
                    continue

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        proxy = self.proxy(delay_ms, "chain-proxy") if delay_ms is not None else None
        env = {
            "BENCH_DONE_ADDR": f"127.0.0.1:{listener.getsockname()[1]}",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")])),
        }
        if proxy is not None:
            env["GENQUEUE_REDIS_URL"] = f"redis://127.0.0.1:{proxy.port}/0"
        name = "chain" if proxy is None else "chain-latency"
        worker = self.start_worker(name, env, app="_noop_chain")
        try:
            publisher = make_celery(self.settings, main="bench-publisher")
            first, queue = CHAIN[0]
            before = self.snapshot(worker, proxy)
            for index in range(n):
                publisher.send_task(first, args=[f"chain-{index}"], queue=queue)
            deadline = time.monotonic() + 600
            while len(done) < n and time.monotonic() < deadline:
                time.sleep(0.01)
            after = self.snapshot(worker, proxy)
            label = "chain" if delay_ms is None else f"chain +{delay_ms:g} ms"
            return self.measured(label, n, len(done), before, after)
        finally:
            stop.set()
            thread.join()
            listener.close()
            worker.stop()
            if proxy is not None:
                proxy.stop()

    # --- parts 2 and 3: the pipeline ------------------------------------------------------------------------

    def webhooked(self, ids: set[str]) -> set[str]:
        """The ids of `ids` the receiver has had a POST for."""
        receiver = self.stack.receiver
        with receiver.lock:
            events = receiver.events[:]
        return {event.body.get("data", {}).get("id") for event in events} & ids

    def webhook_posts(self, ids: set[str]) -> int:
        receiver = self.stack.receiver
        with receiver.lock:
            return sum(1 for event in receiver.events if event.body.get("data", {}).get("id") in ids)

    def pipeline(self, delay_ms: float | None, label: str, count_producer: bool = False) -> Measured:
        """N sandbox jobs on a fresh genqueue worker (through the latency proxy at `delay_ms`, or direct); with
        `count_producer`, the producer reaches Redis through a counting proxy in this process."""
        n = self.args.jobs
        self.reset_sandbox()
        proxy = self.proxy(delay_ms, label.replace(" ", "-")) if delay_ms is not None else None
        env = dict(FAST_POLLS)
        if proxy is not None:
            env["GENQUEUE_REDIS_URL"] = f"redis://127.0.0.1:{proxy.port}/0"
        worker = self.start_worker("pipeline" if proxy is None else f"pipeline-{delay_ms:g}ms", env)
        producer, counting = self.producer, None
        if count_producer:
            from producer.api import Producer

            # the producer's own commands, counted at its client side by a proxy in this process (no delay)
            counting = LatencyProxy("127.0.0.1", self.redis_port, 0.0, "redis").start()
            producer = Producer(self.settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{counting.port}/0"}))
        try:
            before = self.snapshot(worker, proxy)
            url = self.stack.receiver.url
            ids = {producer.submit("sandbox", "sandbox-image", f"bench {i}", webhook_url=url).id for i in range(n)}
            deadline = time.monotonic() + 600
            done: set[str] = set()
            while len(done) < n and time.monotonic() < deadline:
                time.sleep(0.01)
                done = self.webhooked(ids)
            after = self.snapshot(worker, proxy)
            result = self.measured(label, n, len(done), before, after)
            result.webhook_posts = self.webhook_posts(ids) / max(len(done), 1)
            if counting is not None:
                result.producer_commands = sum(counting.stats().commands.values()) / max(len(done), 1)
            result.statuses = dict(Counter(self.producer.get(job_id).status.value for job_id in ids))
            return result
        finally:
            worker.stop()
            if counting is not None:
                counting.stop()
            if proxy is not None:
                proxy.stop()

    # --- part 5: the job's own I/O, with nothing of genqueue around it ------------------------------------

    def io_floor(self) -> Measured:
        """The HTTP requests one job must make, sent plainly from one thread of this process with the libraries
        genqueue uses (httpx, boto3): the submit, a poll, the output's download, its PutObject and the signed
        webhook POST. Its CPU (this thread's, `time.thread_time`) is the least any pipeline on these libraries
        can spend per job on top of Celery's own four tasks."""
        import boto3
        from botocore.config import Config

        from shared.webhooks.signing import signature_headers

        n = self.args.jobs
        self.reset_sandbox()
        base = f"{self.stack.sandbox_url}/sandbox"
        auth = {"Authorization": f"Bearer {os.environ['GENQUEUE_PROVIDERS__SANDBOX__API_KEY']}"}
        s3 = boto3.client(
            "s3", endpoint_url=os.environ["GENQUEUE_S3_ENDPOINT_URL"], config=Config(retries={"max_attempts": 1})
        )
        secret = os.environ["GENQUEUE_WEBHOOK_SECRET"]
        receiver = self.stack.receiver.url
        client = httpx.Client(timeout=10)

        def one_job(index: int) -> None:
            submit = {"model": "sandbox-image", "prompt": f"floor {index}", "options": {}}
            task_id = client.post(f"{base}/v1/jobs", json=submit, headers=auth).json()["id"]
            output = client.get(f"{base}/v1/jobs/{task_id}", headers=auth).json()["outputs"][0]
            with client.stream("GET", output) as answer:
                data = b"".join(answer.iter_bytes())
            s3.put_object(Bucket="bench", Key=f"floor/{index}", Body=data, ContentType="image/png")
            body = json.dumps({"type": "job.succeeded", "data": {"id": task_id}}).encode()
            headers = signature_headers(secret, f"msg_{index}", int(time.time()), body)
            client.post(receiver, content=body, headers={**headers, "Content-Type": "application/json"})

        try:
            for index in range(10):  # connections opened, code paths warm
                one_job(-1 - index)
            started, cpu = time.monotonic(), time.thread_time()
            for index in range(n):
                one_job(index)
            cpu_ms = 1000 * (time.thread_time() - cpu) / n
            seconds = time.monotonic() - started
        finally:
            client.close()
        return Measured("job I/O alone", n, n, seconds, cpu_ms, 0.0, 0.0)

    # --- part 4: realistic render times ---------------------------------------------------------------------

    def realistic(self) -> dict[str, dict[str, Any]]:
        """veo3api (estimated time) and vicsee (none) jobs with `render` s renders, at the default poll schedule."""
        render = self.args.render_seconds
        self.reset_sandbox(delay_seconds=render, output_bytes=self.args.output_bytes)
        worker = self.start_worker("realistic", {})
        url = self.stack.receiver.url
        kinds: dict[str, tuple[str, str, dict[str, Any], int]] = {
            "veo3api": ("veo3api", "veo3_fast", {}, self.args.realistic_jobs),
            "vicsee": ("vicsee", "sora-2", {"duration": 10}, max(1, self.args.realistic_jobs // 2)),
        }
        order = [kind for kind, spec in kinds.items() for _ in range(spec[3])]
        order = order[::2] + order[1::2]  # interleave the providers
        pace = self.args.spread_seconds / max(len(order), 1)
        ids: dict[str, list[str]] = {kind: [] for kind in kinds}
        try:
            started = time.monotonic()
            for index, kind in enumerate(order):
                provider, model, options, _ = kinds[kind]
                job = self.producer.submit(provider, model, f"realistic {index}", options, webhook_url=url)
                ids[kind].append(job.id)
                time.sleep(max(0.0, started + (index + 1) * pace - time.monotonic()))
            everything = {job_id for group in ids.values() for job_id in group}
            deadline = time.monotonic() + 300
            while len(self.webhooked(everything)) < len(everything) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # the worker records the webhook attempt after the receiver answered
        finally:
            worker.stop()
        return {kind: self._lags(group, render) for kind, group in ids.items()}

    def _lags(self, ids: list[str], render: float) -> dict[str, Any]:
        polls: list[float] = []
        ready_lag: list[float] = []
        finalizing_lag: list[float] = []
        statuses: Counter[str] = Counter()
        for job_id in ids:
            job = self.producer.get(job_id)
            statuses[job.status.value] += 1
            polls.append(job.poll_count)
            if job.webhook is None or not job.webhook.attempts:
                continue
            sent = job.webhook.attempts[0].at
            accepted = job.entered_at.get("submitted") or job.submit_started_at
            if accepted is not None:
                ready_lag.append((sent - accepted).total_seconds() - render)
            if "finalizing" in job.entered_at:
                finalizing_lag.append((sent - job.entered_at["finalizing"]).total_seconds())
        return {
            "jobs": len(ids),
            "statuses": dict(statuses),
            "polls": sum(polls) / max(len(polls), 1),
            "polls_max": max(polls, default=0),
            "ready_p50": percentile(ready_lag, 0.50),
            "ready_p95": percentile(ready_lag, 0.95),
            "finalizing_p50": percentile(finalizing_lag, 0.50),
            "finalizing_p95": percentile(finalizing_lag, 0.95),
        }


# --- the report ---------------------------------------------------------------------------------------------


def yes(met: bool) -> str:
    return "yes" if met else "NO"


def table(rows: list[tuple[str, str, str, str, str, str]]) -> str:
    header = ("figure", "genqueue", "celery chain", "ratio", "target", "met")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(6)]
    lines = [" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [header, *rows]]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def report(
    command: str,
    args: argparse.Namespace,
    chain: Measured,
    chain_slow: Measured,
    direct: Measured,
    proxied: Measured,
    slow: Measured,
    realistic: dict[str, dict[str, Any]],
    floor: Measured,
) -> None:
    lat = f"+{args.latency_ms:g} ms"
    cpu_ratio = direct.worker_cpu_ms / chain.worker_cpu_ms
    least_cpu_ratio = (chain.worker_cpu_ms + floor.worker_cpu_ms) / chain.worker_cpu_ms
    rate_ratio = direct.rate / chain.rate
    slow_ratio = slow.rate / direct.rate
    veo, vic = realistic["veo3api"], realistic["vicsee"]
    rows: list[tuple[str, str, str, str, str, str]] = [
        ("jobs/s end to end", f"{direct.rate:.1f}", f"{chain.rate:.1f}", f"{rate_ratio:.2f}", "≥ 0.60", ""),
        (
            "worker CPU ms/job",
            f"{direct.worker_cpu_ms:.1f}",
            f"{chain.worker_cpu_ms:.1f}",
            f"{cpu_ratio:.2f}",
            "≤ 1.5",
            "",
        ),
        (
            "  the job's HTTP I/O alone (5)",
            f"{floor.worker_cpu_ms:.1f}",
            "",
            f"{floor.worker_cpu_ms / chain.worker_cpu_ms:.2f}",
            "",
            "",
        ),
        (
            "  least possible: chain + (5)",
            f"{chain.worker_cpu_ms + floor.worker_cpu_ms:.1f}",
            "",
            f"{least_cpu_ratio:.2f}",
            "≤ 1.5",
            yes(least_cpu_ratio <= TARGET_CPU_RATIO),
        ),
        (
            "Redis commands/job (server, all)",
            f"{direct.redis_commands:.1f}",
            f"{chain.redis_commands:.1f}",
            f"{direct.redis_commands / chain.redis_commands:.2f}",
            "",
            "",
        ),
        (
            "  from the worker (3a / 1b, its client)",
            f"{proxied.client_commands or 0:.1f}",
            f"{chain_slow.client_commands or 0:.1f}",
            f"{(proxied.client_commands or 0) / (chain_slow.client_commands or 1):.2f}",
            "",
            "",
        ),
        (
            "  from the producer (3a, its client)",
            f"{proxied.producer_commands or 0:.1f}",
            "",
            "",
            "",
            "",
        ),
        (
            "  run inside Lua scripts (3a: rest)",
            f"{proxied.redis_commands - (proxied.client_commands or 0) - (proxied.producer_commands or 0):.1f}",
            "",
            "",
            "",
            "",
        ),
        (
            "worker Redis round trips/job",
            f"{proxied.client_round_trips or 0:.1f}",
            f"{chain_slow.client_round_trips or 0:.1f}",
            f"{(proxied.client_round_trips or 0) / (chain_slow.client_round_trips or 1):.2f}",
            "",
            "",
        ),
        (
            "Redis CPU ms/job",
            f"{direct.redis_cpu_ms:.2f}",
            f"{chain.redis_cpu_ms:.2f}",
            f"{direct.redis_cpu_ms / chain.redis_cpu_ms:.2f}" if chain.redis_cpu_ms else "-",
            "",
            "",
        ),
        ("HTTP requests/job: vendor", f"{direct.vendor_requests:.2f}", "", "", "", ""),
        ("HTTP requests/job: webhook", f"{direct.webhook_posts:.2f}", "", "", "", ""),
        (
            "HTTP requests/job: S3",
            f"{direct.s3_requests:.2f} "
            + "("
            + ", ".join(f"{m} {c:.1f}" for m, c in direct.s3_by_method.items())
            + ")",
            "",
            "",
            "",
            "",
        ),
        (
            "jobs/s, worker via proxy +0 ms",
            f"{proxied.rate:.1f}",
            "",
            f"{proxied.rate / direct.rate:.2f} of (2)",
            "(proxy cost)",
            "",
        ),
        (
            f"jobs/s, worker via proxy {lat}",
            f"{slow.rate:.1f}",
            f"{chain_slow.rate:.1f} ({chain_slow.rate / chain.rate:.2f} of chain)",
            f"{slow_ratio:.2f} of (2)",
            "≥ 0.70",
            yes(slow_ratio >= TARGET_LATENCY_RATIO),
        ),
        (
            "  same, against proxy +0 ms",
            "",
            "",
            f"{slow.rate / proxied.rate:.2f} of (3a)",
            "",
            "",
        ),
        ("polls/job, veo3api (estimate)", f"{veo['polls']:.2f} (max {veo['polls_max']:g})", "", "", "≤ 1.3", ""),
        (
            "vendor-ready→webhook p50/p95, veo3api",
            f"{veo['ready_p50']:.2f} / {veo['ready_p95']:.2f} s",
            "",
            "",
            "p50 < 1 s",
            yes(veo["ready_p50"] < TARGET_LAG_P50),
        ),
        (
            "finalizing→webhook p50/p95, veo3api",
            f"{veo['finalizing_p50']:.2f} / {veo['finalizing_p95']:.2f} s",
            "",
            "",
            "p50 < 1 s",
            yes(veo["finalizing_p50"] < TARGET_LAG_P50),
        ),
        ("polls/job, vicsee (no estimate)", f"{vic['polls']:.2f} (max {vic['polls_max']:g})", "", "", "", ""),
        (
            "vendor-ready→webhook p50/p95, vicsee",
            f"{vic['ready_p50']:.2f} / {vic['ready_p95']:.2f} s",
            "",
            "",
            "",
            "",
        ),
    ]
    rows[0] = (*rows[0][:5], yes(rate_ratio >= TARGET_RATE_RATIO))
    rows[1] = (*rows[1][:5], yes(cpu_ratio <= TARGET_CPU_RATIO))
    polls_row = next(i for i, row in enumerate(rows) if row[0].startswith("polls/job, veo3api"))
    rows[polls_row] = (*rows[polls_row][:5], yes(veo["polls"] <= TARGET_POLLS))

    print()
    print(f"command: {command}")
    print(
        f"worker: workers.app.worker_config via infra.local.stack.worker_argv: threads -c {args.concurrency}, "
        f"acks_late, prefetch 1, task events off (no Flower asks), --loglevel INFO; {args.jobs} jobs and {args.jobs}"
        " chains"
    )
    print(
        f"part 4: {veo['jobs']} veo3api + {vic['jobs']} vicsee jobs over {args.spread_seconds:g} s, "
        f"render {args.render_seconds:g} s, outputs {args.output_bytes} B, default poll schedule"
    )
    for m in (chain, chain_slow, direct, proxied, slow):
        extra = f"  statuses {m.statuses}" if m.statuses else ""
        added = (
            f"  proxy added {m.proxy_added_ms:.2f} ms/chunk, proxy CPU {m.proxy_cpu_ms:.1f} ms/job"
            if (m.proxy_added_ms is not None)
            else ""
        )
        print(f"  {m.label:<22} {m.done}/{m.jobs} in {m.seconds:.2f} s{added}{extra}")
    print(f"  part 4 statuses: veo3api {veo['statuses']}, vicsee {vic['statuses']}")
    print(
        f"  part 5: {floor.jobs} jobs' HTTP requests (submit, poll, download, PutObject, signed webhook POST) sent"
        f" plainly from one thread with httpx and boto3, {floor.seconds:.2f} s; its CPU is the least a job on these"
        " libraries costs on top of the chain's four tasks"
    )
    print()
    print(table(rows))
    print()
    print("Redis commands per job, pipeline (2), server INFO commandstats, top 10:")
    print("  " + ", ".join(f"{name} {calls:.1f}" for name, calls in direct.top_commands))
    print("Redis commands per chain, Celery chain (1), top 10:")
    print("  " + ", ".join(f"{name} {calls:.1f}" for name, calls in chain.top_commands))
    print("worker's Redis commands per job at the client (3a, via proxy), top 10:")
    print("  " + ", ".join(f"{name} {calls:.1f}" for name, calls in proxied.client_top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=None, help="jobs (and chains) per throughput part; 300")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=1.0, help="added each way between worker and Redis")
    parser.add_argument("--realistic-jobs", type=int, default=None, help="veo3api jobs in part 4 (+ half vicsee); 40")
    parser.add_argument("--render-seconds", type=float, default=None, help="sandbox render time in part 4; 8")
    parser.add_argument("--spread-seconds", type=float, default=None, help="part 4's jobs are submitted over it; 8")
    parser.add_argument("--output-bytes", type=int, default=256 * 1024, help="output size in part 4")
    parser.add_argument("--short", action="store_true", help="quick form (make bench): 100 jobs, part 4 smaller")
    args = parser.parse_args()
    defaults = (100, 12, 5.0, 4.0) if args.short else (300, 40, 8.0, 8.0)
    for name, value in zip(("jobs", "realistic_jobs", "render_seconds", "spread_seconds"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    command = shlex.join(["python", "bench/engine_ceiling.py", *sys.argv[1:]])
    print(f"command: {command}", flush=True)

    with bench_stack(sandbox_delay=0.0, output_bytes=1024, settings=UNLIMITED) as stack:
        from shared.storage import Storage

        bench = Bench(stack, args)
        try:
            Storage(bench.settings).ensure_bucket()
            steps: list[tuple[str, Callable[[], Any]]] = [
                ("1. celery chain", lambda: bench.chain(None)),
                ("2. pipeline", lambda: bench.pipeline(None, "pipeline")),
                ("3a. pipeline, proxy +0 ms", lambda: bench.pipeline(0.0, "pipeline +0 ms", count_producer=True)),
                (
                    f"3b. pipeline, proxy +{args.latency_ms:g} ms",
                    lambda: bench.pipeline(args.latency_ms, "pipeline +lat"),
                ),
                (f"1b. celery chain, proxy +{args.latency_ms:g} ms", lambda: bench.chain(args.latency_ms)),
                ("4. realistic renders", bench.realistic),
                ("5. job I/O alone", bench.io_floor),
            ]
            results: list[Any] = []
            for title, step in steps:
                started = time.monotonic()
                results.append(step())
                print(f"{title}: {time.monotonic() - started:.1f} s", flush=True)
            chain, direct, proxied, slow, chain_slow, realistic, floor = results
            slow.label = f"pipeline +{args.latency_ms:g} ms"
            report(command, args, chain, chain_slow, direct, proxied, slow, realistic, floor)
        finally:
            bench.close()


if __name__ == "__main__":
    main()
