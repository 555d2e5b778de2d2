"""A large batch against the sandbox: Redis memory per job, worker memory, submit pace, interactive start delay.

Starts its own redis-server, moto's S3 server, sandbox (0.5 s renders, 1 KiB outputs), a webhook receiver, one
celery worker (threads pool) and celery beat (sweeper and dispatcher). Then:

1. countdown memory: a separate worker (on its own Redis database) is handed N countdown tasks, as a batch held in
   Celery would be, and its memory growth is measured;
2. the batch: N jobs to provider `bulk` (the sandbox, rate limit --rate/s, burst --rate, 200 in flight) enqueued
   with the batch API, Redis memory measured before and after, then followed to the end; one interactive job is
   submitted when a third of the batch has ended, and its start delay measured.

Prints a table of figures. Usage: python bench/batch_scale.py [--jobs 10000] [--rate 50]

Held mode (`--held 1000,10000,100000`): for each size N, in a fresh process with a fresh stack of its own (redis,
moto, sandbox, one worker, beat), a batch of N jobs to provider `held` (the sandbox, 1 submit a second, burst 1,
1 in flight: the dispatcher releases at most about one job a pass, the rest stay held) is planned and enqueued with
the batch API, while the worker (which runs the dispatcher tasks beat sends to the poll queue; beat itself only
schedules) is running. Measured for each N:

- Redis used_memory before and after the enqueue, over N: bytes per held job (target <= 2048);
- the worker's RSS when idle (nothing held) and its largest while N jobs are held, during the enqueue and some
  dispatcher tasks after it (target: flat, at most +10 MiB);
- the dispatcher's pass time: workers.dispatcher.dispatch_pass called in this process --passes times against the
  same Redis, a second apart, under the dispatcher's lock (so the worker's dispatcher waits meanwhile), as the
  dispatcher task calls it; the median is reported.

Prints a table (N, enqueue pace, Redis bytes per job, worker RSS idle -> held, pass ms, targets, met) and the ratio of
the median pass time at the largest N over the smallest (target: independent of N, at most 2x).
Usage: python bench/batch_scale.py --held 1000,10000,100000 [--passes 9]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import redis
from _stack import bench_stack

from infra.local.stack import LocalStack

if TYPE_CHECKING:
    from producer.api import Producer

MiB = 1024 * 1024
#: the provider of held mode's batches, and its limits: one submit a second, one in flight
HELD_PROVIDER = "held"
HELD_LIMITS = {"RATE_PER_SECOND": "1", "BURST": "1", "MAX_IN_FLIGHT": "1"}
#: held mode's targets: Redis bytes per held job, worker RSS growth still counted as flat, pass time ratio
BYTES_TARGET = 2048
FLAT_MIB = 10.0
PASS_RATIO_TARGET = 2.0
#: seconds the worker's RSS is sampled after the enqueue (beat starts a dispatcher task every 10 s)
HELD_WATCH_SECONDS = 15.0
#: held mode's warm-up: interactive jobs to provider `warm` (no tight limits), enough to busy every worker thread,
#: so that the idle RSS already counts what a thread's first job costs (its HTTP clients, the S3 client)
WARM_PROVIDER = "warm"
WARM_LIMITS = {"RATE_PER_SECOND": "100", "BURST": "100", "MAX_IN_FLIGHT": "100"}
WARM_JOBS = 48


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


def time_passes(passes: int) -> tuple[list[float], int]:
    """Milliseconds each of `passes` dispatcher passes took, run here a dispatch interval apart under the
    dispatcher's lock (as workers.dispatcher.dispatch does), and the jobs they released."""
    from shared.constants import DISPATCH_LOCK_KEY
    from shared.models import utcnow
    from workers import context
    from workers.dispatcher import dispatch_pass

    interval = context.settings().dispatch_interval_seconds
    lock = context.store().redis.lock(DISPATCH_LOCK_KEY, timeout=max(5.0, interval * 5))
    if not lock.acquire(blocking=True, blocking_timeout=60):  # the worker's dispatcher task ends within 10 s
        raise RuntimeError("the dispatcher's lock was not free within 60 s")
    times: list[float] = []
    released = 0
    try:
        for _ in range(passes):
            time.sleep(interval)
            lock.reacquire()
            started = time.perf_counter()
            released += dispatch_pass(utcnow())
            times.append((time.perf_counter() - started) * 1000)
    finally:
        lock.release()
    return times, released


def warm_up(producer: Producer) -> None:
    """Run WARM_JOBS interactive jobs to the end (at most two minutes)."""
    ids = [producer.submit(WARM_PROVIDER, "sandbox-image", f"warm-up {n}").id for n in range(WARM_JOBS)]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(producer.get(job_id).status.terminal for job_id in ids):
        time.sleep(1.0)


def held_run(jobs: int, passes: int) -> dict[str, float]:
    """Held mode for one size, on a stack of its own (run in a fresh process: the settings, the job store and the
    Celery app a process caches point at one stack); its figures by name."""
    poll_settings = {"GENQUEUE_POLL_INITIAL_SECONDS": "0.5", "GENQUEUE_POLL_MAX_INTERVAL_SECONDS": "2"}
    with bench_stack(sandbox_delay=0.5, output_bytes=1024, settings=poll_settings) as bench:
        stack, tmp, sandbox = bench.stack, bench.workdir, bench.sandbox_url
        limits = {HELD_PROVIDER: HELD_LIMITS, WARM_PROVIDER: WARM_LIMITS}
        for provider, provider_limits in limits.items():
            prefix = f"GENQUEUE_PROVIDERS__{provider.upper()}__"
            settings_env = {"DIALECT": "sandbox", "BASE_URL": f"{sandbox}/sandbox", "API_KEY": "sk-bench"}
            os.environ.update({prefix + name: value for name, value in (settings_env | provider_limits).items()})
        stack.env = dict(os.environ)

        from producer.api import Producer
        from producer.batch import BatchOptions, BatchProducer
        from shared.settings import Settings
        from shared.storage import Storage

        settings = Settings()
        Storage(settings).ensure_bucket()
        batches = BatchProducer(Producer(settings))
        client = redis.Redis.from_url(bench.redis_url)
        path = Path(tmp) / "batch.jsonl"
        path.write_text(
            "".join(
                json.dumps({"provider": HELD_PROVIDER, "model": "sandbox-image", "prompt": f"bench picture {n}"}) + "\n"
                for n in range(jobs)
            )
        )
        options = BatchOptions(name=f"held-{jobs}", webhook_url=None)
        plan = batches.plan(path, options)

        worker = stack.start_workers(concurrency=16)
        stack.start_beat()
        warm_up(batches.producer)
        time.sleep(HELD_WATCH_SECONDS)  # a dispatcher task or two with nothing held
        idle = rss_mib(worker.pid)
        memory_before = int(client.info("memory")["used_memory"])
        samples: list[float] = []

        def progress(done: int) -> None:
            if done % 1000 == 0 or done == jobs:
                samples.append(rss_mib(worker.pid))
                print(f"\r{done}/{jobs} enqueued", end="", file=sys.stderr, flush=True)

        started = time.monotonic()
        result = batches.enqueue(plan, options, on_progress=progress)
        enqueue_seconds = time.monotonic() - started
        print(file=sys.stderr)
        memory_held = int(client.info("memory")["used_memory"])
        pass_ms, released = time_passes(passes)
        watch_until = time.monotonic() + HELD_WATCH_SECONDS
        while time.monotonic() < watch_until:  # the worker's own dispatcher tasks over the held jobs
            samples.append(rss_mib(worker.pid))
            time.sleep(1.0)
        held = batches.batches.held_count(result.batch.id, result.batch.providers)
        return {
            "jobs": jobs,
            "enqueued": result.enqueued,
            "enqueue_seconds": enqueue_seconds,
            "bytes_per_job": (memory_held - memory_before) / jobs,
            "rss_idle": idle,
            "rss_held": max(samples),
            "pass_median": statistics.median(pass_ms),
            "pass_min": min(pass_ms),
            "pass_max": max(pass_ms),
            "released": released,
            "held_at_end": held,
        }


def held_main(sizes: list[int], passes: int) -> None:
    """Held mode: `held_run` for each size, each in a fresh process; the table of figures."""
    results: list[dict[str, float]] = []
    for jobs in sizes:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            results.append(pool.submit(held_run, jobs, passes).result())
    header = (
        "N",
        "enqueue",
        "Redis B/job",
        "worker RSS MiB (idle -> held)",
        "dispatcher pass ms (median; min-max)",
        "held at end",
        "target",
        "met",
    )
    rows = [header]
    for r in results:
        growth = r["rss_held"] - r["rss_idle"]
        met = r["bytes_per_job"] <= BYTES_TARGET and growth <= FLAT_MIB
        rows.append(
            (
                f"{r['jobs']:.0f}",
                f"{r['enqueued'] / r['enqueue_seconds']:.0f} jobs/s ({r['enqueue_seconds']:.0f} s)",
                f"{r['bytes_per_job']:.0f}",
                f"{r['rss_idle']:.0f} -> {r['rss_held']:.0f} ({growth:+.1f})",
                f"{r['pass_median']:.2f}; {r['pass_min']:.2f}-{r['pass_max']:.2f} ({r['released']:.0f} released)",
                f"{r['held_at_end']:.0f}",
                f"<= {BYTES_TARGET} B, RSS <= +{FLAT_MIB:g} MiB",
                "yes" if met else "NO",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    smallest, largest = results[0], results[-1]
    ratio = largest["pass_median"] / smallest["pass_median"]
    print(
        f"dispatcher pass time, N={largest['jobs']:.0f} over N={smallest['jobs']:.0f}: {ratio:.2f}x "
        f"(target <= {PASS_RATIO_TARGET:g}x: {'met' if ratio <= PASS_RATIO_TARGET else 'NOT met'})"
    )


def sizes(text: str) -> list[int]:
    """`1000,10000,100000` -> [1000, 10000, 100000], smallest first."""
    return sorted(int(part) for part in text.split(",") if part.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=50.0, help="the provider's rate limit, submits per second")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--countdown-tasks", type=int, default=5_000)
    parser.add_argument("--held", type=sizes, help="held mode: batch sizes, comma-separated (1000,10000,100000)")
    parser.add_argument("--passes", type=int, default=9, help="held mode: dispatcher passes timed per size")
    args = parser.parse_args()
    if args.held:
        held_main(args.held, args.passes)
        return
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
