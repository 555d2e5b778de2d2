"""Jobs per second through the whole pipeline (submit → poll → finalize → webhook) against an instant sandbox.

Starts its own redis-server, moto's S3 server, sandbox (delay 0, 1 KiB outputs), webhook receiver and one
celery worker (threads pool), enqueues N jobs through the Producer API, and prints the enqueue rate, the
end-to-end rate, and the worker's peak memory. Usage: python bench/pipeline_throughput.py [--jobs 300]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import bench_stack


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    settings_env = {
        "GENQUEUE_POLL_INITIAL_SECONDS": "0.05",
        "GENQUEUE_POLL_MAX_INTERVAL_SECONDS": "0.5",
        # the pipeline is measured here, not the sandbox provider's default rate limit (5/s)
        "GENQUEUE_PROVIDERS__SANDBOX__RATE_PER_SECOND": "10000",
        "GENQUEUE_PROVIDERS__SANDBOX__BURST": "10000",
        "GENQUEUE_PROVIDERS__SANDBOX__MAX_IN_FLIGHT": "10000",
    }
    with bench_stack(sandbox_delay=0.0, output_bytes=1024, settings=settings_env) as bench:
        receiver = bench.receiver
        worker = bench.stack.start_workers(concurrency=args.concurrency)
        from producer.api import Producer
        from shared.settings import Settings
        from shared.storage import Storage

        settings = Settings()
        Storage(settings).ensure_bucket()
        producer = Producer(settings)
        started = time.monotonic()
        ids = [
            producer.submit("sandbox", "sandbox-image", f"bench {n}", webhook_url=receiver.url).id
            for n in range(args.jobs)
        ]
        enqueued = time.monotonic() - started
        pending = set(ids)
        while pending and time.monotonic() - started < 600:
            pending = {job_id for job_id in pending if not producer.get(job_id).status.terminal}
            time.sleep(0.2)
        finished = time.monotonic() - started
        statuses: dict[str, int] = {}
        for job_id in ids:
            status = producer.get(job_id).status.value
            statuses[status] = statuses.get(status, 0) + 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len({e.body["data"]["id"] for e in receiver.events}) < len(ids):
            time.sleep(0.2)
        hooks = len({e.body["data"]["id"] for e in receiver.events if e.verified})
        print(f"jobs: {args.jobs}  worker: threads -c {args.concurrency}")
        print(f"enqueue: {args.jobs / enqueued:8.1f} jobs/s  ({enqueued:.2f} s)")
        print(f"pipeline: {args.jobs / finished:7.1f} jobs/s end to end ({finished:.2f} s)  statuses: {statuses}")
        print(f"webhooks verified: {hooks}/{args.jobs}  worker peak RSS: {peak_rss_mib(worker.pid):.1f} MiB")


if __name__ == "__main__":
    main()
