"""A large batch against the sandbox: Redis memory per job, worker memory, submit pace, interactive start delay.

Starts its own redis-server, moto's S3 server, sandbox (0.5 s renders, 1 KiB outputs), a webhook receiver, one
celery worker (threads pool) and celery beat (sweeper and dispatcher). Then:

1. countdown memory: a separate worker (on its own Redis database) is handed N countdown tasks, as a batch held in
   Celery would be, and its memory growth is measured;
2. the batch: N jobs to provider `bulk` (the sandbox, rate limit --rate/s, burst --rate, 200 in flight) enqueued
   with the batch API, Redis memory measured before and after, then followed to the end; one interactive job is
   submitted when a third of the batch has ended, and its start delay measured.

Prints a table of figures. Usage: python bench/batch_scale.py [--jobs 10000] [--rate 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import redis
from _stack import bench_stack

from infra.local.stack import LocalStack

MiB = 1024 * 1024


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def countdown_memory(workdir: Path, env: dict[str, str], tasks: int) -> tuple[float, float, int]:
    """RSS of an idle worker, RSS after it was handed `tasks` countdown tasks, and how many it fetched."""
    env = dict(env)
    env["GENQUEUE_REDIS_URL"] = env["GENQUEUE_REDIS_URL"].rsplit("/", 1)[0] + "/3"
    workdir.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(workdir, env=env)
    try:
        worker = stack.start_workers(name="countdowns", queues="poll", concurrency=16)
        time.sleep(3.0)
        idle = rss_mib(worker.pid)
        from shared.queueing import make_celery
        from shared.settings import Settings

        settings = Settings(redis_url=env["GENQUEUE_REDIS_URL"])
        app = make_celery(settings, main="bench")
        for n in range(tasks):
            app.send_task("genqueue.poll", args=[f"job_bench{n}"], queue="poll", countdown=1500)
        client = redis.Redis.from_url(env["GENQUEUE_REDIS_URL"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            queued = int(client.llen("poll"))
            time.sleep(1.0)
            if int(client.llen("poll")) == queued:  # the worker took all it will take
                break
        fetched = tasks - int(client.llen("poll"))
        return idle, rss_mib(worker.pid), fetched
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=50.0, help="the provider's rate limit, submits per second")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--countdown-tasks", type=int, default=5_000)
    args = parser.parse_args()
    poll_settings = {"GENQUEUE_POLL_INITIAL_SECONDS": "0.5", "GENQUEUE_POLL_MAX_INTERVAL_SECONDS": "2"}
    with bench_stack(sandbox_delay=0.5, output_bytes=1024, settings=poll_settings) as bench:
        stack, tmp, redis_url, sandbox = bench.stack, bench.workdir, bench.redis_url, bench.sandbox_url
        os.environ.update(
            {
                "GENQUEUE_PROVIDERS__BULK__DIALECT": "sandbox",
                "GENQUEUE_PROVIDERS__BULK__BASE_URL": f"{sandbox}/sandbox",
                "GENQUEUE_PROVIDERS__BULK__API_KEY": "sk-bench",
                "GENQUEUE_PROVIDERS__BULK__RATE_PER_SECOND": str(args.rate),
                "GENQUEUE_PROVIDERS__BULK__BURST": str(int(args.rate)),
                "GENQUEUE_PROVIDERS__BULK__MAX_IN_FLIGHT": "200",
            }
        )
        stack.env = dict(os.environ)

        idle, holding, fetched = countdown_memory(Path(tmp) / "countdowns", stack.env, args.countdown_tasks)

        from producer.api import Producer
        from producer.batch import BatchOptions, BatchProducer
        from shared.settings import Settings
        from shared.storage import Storage

        settings = Settings()
        Storage(settings).ensure_bucket()
        producer = Producer(settings)
        batches = BatchProducer(producer)
        client = redis.Redis.from_url(redis_url)
        path = Path(tmp) / "batch.jsonl"
        path.write_text(
            "".join(
                json.dumps({"provider": "bulk", "model": "sandbox-image", "prompt": f"bench picture {n}"}) + "\n"
                for n in range(args.jobs)
            )
        )
        memory_before = int(client.info("memory")["used_memory"])
        options = BatchOptions(name="bench", webhook_url=None)
        started = time.monotonic()
        plan = batches.plan(path, options)
        planned = time.monotonic()
        result = batches.enqueue(plan, options)
        enqueued = time.monotonic()
        memory_held = int(client.info("memory")["used_memory"])

        worker = stack.start_workers(concurrency=args.concurrency)
        worker_start_rss = rss_mib(worker.pid)
        stack.start_beat()
        run_started = time.monotonic()
        per_second: list[int] = []
        last_submits = 0
        interactive_id = None
        interactive_at = 0.0
        interactive_started = None
        peak_queue = 0
        rss_samples: list[float] = []
        while True:
            time.sleep(1.0)
            summary = batches.summary(batches.get("bench"))
            submits = int(httpx.get(f"{sandbox}/_control/stats").json()["submits"].get("sandbox", 0))
            per_second.append(submits - last_submits)
            last_submits = submits
            peak_queue = max(peak_queue, int(client.llen("submit")))
            ended = sum(v for k, v in summary["counts"].items() if k in ("succeeded", "failed", "canceled"))
            if interactive_id is None and ended >= args.jobs // 3:
                interactive_at = time.time()
                interactive_id = producer.submit("bulk", "sandbox-image", "interactive").id
            if interactive_id is not None and interactive_started is None:
                job = producer.get(interactive_id)
                if job.submit_started_at is not None:  # recorded by the worker just before its vendor POST
                    interactive_started = job.submit_started_at.timestamp() - interactive_at
            rss_samples.append(rss_mib(worker.pid))
            print(f"\r{ended}/{args.jobs} ended, {submits} submits", end="", file=sys.stderr, flush=True)
            if summary["completed_at"] or time.monotonic() - run_started > 3600:
                break
        run_time = time.monotonic() - run_started
        print(file=sys.stderr)
        memory_after = int(client.info("memory")["used_memory"])
        busy = [count for count in per_second if count > 0]
        steady = busy[2:-2] if len(busy) > 6 else busy
        interactive = producer.get(interactive_id) if interactive_id else None
        rows = [
            ("jobs", f"{args.jobs} ({result.enqueued} enqueued)", ""),
            ("final counts", str(summary["counts"]), ""),
            ("validate file", f"{args.jobs / (planned - started):.0f} lines/s", ""),
            ("enqueue (held in Redis)", f"{args.jobs / (enqueued - planned):.0f} jobs/s", ""),
            ("Redis memory per held job", f"{(memory_held - memory_before) / args.jobs:.0f} B", ""),
            ("Redis memory per ended job", f"{(memory_after - memory_before) / args.jobs:.0f} B", "job kept"),
            ("run time", f"{run_time:.0f} s", f"{args.jobs / run_time:.1f} jobs/s end to end"),
            ("submit rate (steady)", f"{statistics.mean(steady):.1f}/s", f"limit {args.rate:g}/s"),
            ("submit rate (busiest second)", f"{max(per_second)}/s", f"burst {int(args.rate)}"),
            ("submit queue, longest", str(peak_queue), "messages waiting"),
            (
                "worker RSS",
                f"peak {rss_mib(worker.pid, 'VmHWM'):.0f} MiB",
                f"threads -c {args.concurrency}; {worker_start_rss:.0f} MiB at start, "
                f"{rss_samples[len(rss_samples) // 2]:.0f} at half-way, {rss_samples[-1]:.0f} at the end",
            ),
            (
                "interactive start delay",
                f"{interactive_started:.2f} s" if interactive_started is not None else "n/a",
                f"ended {interactive.status.value}" if interactive else "",
            ),
            (
                "countdowns held by a worker",
                f"+{holding - idle:.0f} MiB",
                f"{fetched} of {args.countdown_tasks} fetched ({idle:.0f} -> {holding:.0f} MiB)",
            ),
        ]
        width = max(len(name) for name, _, _ in rows)
        for name, value, note in rows:
            print(f"{name:<{width}}  {value:>22}  {note}")


if __name__ == "__main__":
    main()
