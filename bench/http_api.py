"""The HTTP API against the Producer it wraps, side by side in one run: creates per second, the latency the API
adds, and how soon an events stream shows a job's change.

Starts its own redis-server, moto, the sandbox and one `genqueue api` (uvicorn, one process). No workers: a
created job waits in the submit queue, so what is measured is the enqueue alone. Then:

1. `Producer.submit` in this process, N jobs from T threads: creates/s and the per-create latency;
2. `POST /v1/jobs` to the API with the same requests from T threads (one httpx client each, keep-alive):
   creates/s and latency; the difference of the medians is what the API adds (HTTP, auth, JSON);
3. events: a client holds `GET /v1/jobs/{id}/events` open; this process then writes the job (a cancel) through the
   job store and times the moment the write returned to the moment the client has the `job.updated` event.

Prints a table. Usage: python bench/http_api.py [--jobs 2000] [--threads 8] [--events 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _stack import bench_stack

LINE = {"provider": "sandbox", "model": "sandbox-image"}


def timed_runs(jobs: int, threads: int, create: Callable[[int], None]) -> tuple[float, list[float]]:
    """Creates per second over `jobs` calls of `create(n)` from `threads` threads, and each call's seconds."""
    latencies: list[float] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        start = time.perf_counter()
        create(n)
        took = time.perf_counter() - start
        with lock:
            latencies.append(took)

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(jobs)))
    return jobs / (time.perf_counter() - start), latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def event_delays(api_url: str, key: str, count: int) -> list[float]:
    """For `count` jobs: seconds from a committed write of the job to its event reaching a client."""
    from producer.api import Producer
    from shared import lifecycle
    from shared.models import utcnow

    producer = Producer()
    headers = {"Authorization": f"Bearer {key}"}
    delays = []
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as client:
        for n in range(count):
            job = client.post("/v1/jobs", json={**LINE, "prompt": f"event {n}"}).json()
            seen: list[float] = []
            opened = threading.Event()

            def follow(job_id: str = job["id"], opened: threading.Event = opened, seen: list[float] = seen) -> None:
                with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
                    for line in stream.iter_lines():
                        if line.startswith("data: "):
                            if not opened.is_set():
                                opened.set()  # the job as it is: the stream is subscribed by now
                                continue
                            seen.append(time.perf_counter())
                            return

            reader = threading.Thread(target=follow)
            reader.start()
            opened.wait(10)
            producer.store.update(job["id"], lambda j: lifecycle.cancel(j, utcnow()))
            written = time.perf_counter()
            reader.join(10)
            if seen:
                delays.append(seen[0] - written)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    with bench_stack(sandbox_delay=1.0, output_bytes=1024, settings={}) as bench:
        api_url = bench.stack.start_api()
        from producer.api import Producer
        from shared.keys import KeyStore

        producer = Producer()
        key = KeyStore(producer.store.redis).create(f"bench-{uuid.uuid4().hex[:6]}").key
        run = uuid.uuid4().hex[:6]

        def direct(n: int) -> None:
            producer.submit("sandbox", "sandbox-image", f"direct {run} {n}")

        local = threading.local()

        def over_http(n: int) -> None:
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
            answer = local.client.post("/v1/jobs", json={**LINE, "prompt": f"http {run} {n}"})
            if answer.status_code != 201:
                raise RuntimeError(answer.text)

        timed_runs(min(200, args.jobs), args.threads, direct)  # warm both paths up
        timed_runs(min(200, args.jobs), args.threads, over_http)
        direct_rate, direct_latency = timed_runs(args.jobs, args.threads, direct)
        http_rate, http_latency = timed_runs(args.jobs, args.threads, over_http)
        delays = event_delays(api_url, key, args.events)
    ms = 1000.0
    rows = [
        ("Producer.submit", direct_rate, direct_latency),
        ("POST /v1/jobs", http_rate, http_latency),
    ]
    print(f"# {args.jobs} creates each from {args.threads} threads; one `genqueue api` process (uvicorn); no workers")
    print(f"{'path':<18} {'creates/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, rate, latency in rows:
        print(f"{name:<18} {rate:>10.0f} {percentile(latency, 0.5) * ms:>8.1f} {percentile(latency, 0.99) * ms:>8.1f}")
    print(f"API / Producer creates per second: {http_rate / direct_rate:.2f}")
    added = (percentile(http_latency, 0.5) - percentile(direct_latency, 0.5)) * ms
    added99 = (percentile(http_latency, 0.99) - percentile(direct_latency, 0.99)) * ms
    print(f"latency the API adds: p50 {added:.1f} ms, p99 {added99:.1f} ms")
    if delays:
        print(
            f"events: write -> client, {len(delays)} jobs: p50 {statistics.median(delays) * ms:.1f} ms,"
            f" p99 {percentile(delays, 0.99) * ms:.1f} ms, max {max(delays) * ms:.1f} ms"
        )
    print(json.dumps({"direct_per_s": direct_rate, "http_per_s": http_rate, "event_delays": len(delays)}))


if __name__ == "__main__":
    main()
