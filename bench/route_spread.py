"""One model over two providers: N sora-2 jobs to VicSee alone, to VeoGen alone, then to `--provider auto`; with
`--batch`, each run is one batch of N lines (held and paced out by the dispatcher, which releases a route's jobs
as fast as its providers' limits add up), optionally under `--budget-usd`.

Starts its own redis-server, moto's S3 server, sandbox (--render-seconds renders, 1 KiB outputs), webhook receiver
and one celery worker (threads pool). VicSee is limited to --vicsee-rate submits a second and VeoGen to
--veogen-rate (burst 1 each), so each provider alone finishes at its own pace; routed with the cheapest policy
(VeoGen's $0.15 by a price setting against VicSee's 20 credits at $0.01), the jobs VeoGen's rate cannot take now
go to VicSee, and the run should finish near the two paces added up. Prints each run's time and pace, where the
routed jobs went, and the duplicate submits the sandbox saw (0 expected). Never asserts on time.

Usage: python bench/route_spread.py [--jobs 300] [--vicsee-rate 6] [--veogen-rate 3] [--render-seconds 0.5]
       python bench/route_spread.py --batch --jobs 1000 [--budget-usd 500]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _stack import bench_stack

#: a run's seconds, the providers its jobs went to, their statuses, and (a batch under a budget) what it committed
Result = tuple[float, Counter[str], Counter[str], float | None]


def run(producer: object, provider: str, jobs: int, label: str) -> Result:
    """Submit `jobs` sora-2 jobs to `provider` and wait for all to end: seconds, providers used, statuses."""
    from producer.api import Producer

    assert isinstance(producer, Producer)
    started = time.monotonic()
    ids = [
        producer.submit(provider, "sora-2", f"{label} {n}", {"duration": 10}, route_policy="cheapest").id
        for n in range(jobs)
    ]
    pending = set(ids)
    while pending and time.monotonic() - started < 1800:
        pending = {job_id for job_id in pending if not producer.get(job_id).status.terminal}
        time.sleep(0.2)
    seconds = time.monotonic() - started
    finals = [producer.get(job_id) for job_id in ids]
    return seconds, Counter(job.provider for job in finals), Counter(job.status.value for job in finals), None


def run_batch(producer: object, provider: str, jobs: int, label: str, budget_usd: float | None) -> Result:
    """One batch of `jobs` sora-2 lines to `provider`, waited for until it completes: as `run`, and what the batch
    committed against its budget (USD; None without one)."""
    from producer.api import Producer
    from producer.batch import BatchOptions, BatchProducer
    from producer.batch_file import ParsedLine
    from shared.batch import BatchLine
    from shared.models import Budget

    assert isinstance(producer, Producer)
    batches = BatchProducer(producer)
    budget = None if budget_usd is None else Budget(currency="usd", amount=budget_usd)
    options = BatchOptions(name=f"{label} {time.time():.0f}", budget=budget)
    lines = [
        ParsedLine(n, BatchLine(provider=provider, model="sora-2", prompt=f"{label} {n}", options={"duration": 10}))
        for n in range(1, jobs + 1)
    ]
    started = time.monotonic()
    plan = batches.plan_lines(lines, options)
    assert not plan.refused, plan.refused[:3]
    batch = batches.enqueue(plan, options).batch
    summary = batches.summary(batch)
    while not summary["completed_at"] and time.monotonic() - started < 3600:
        time.sleep(0.5)
        summary = batches.summary(batches.get(options.name))
    seconds = time.monotonic() - started
    finals = [job for _, job in batches.jobs(batches.get(options.name))]
    used = Counter(job.provider for job in finals)
    return seconds, used, Counter(job.status.value for job in finals), summary["committed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--vicsee-rate", type=float, default=6.0)
    parser.add_argument("--veogen-rate", type=float, default=3.0)
    parser.add_argument("--render-seconds", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", action="store_true", help="each run one batch, paced by the dispatcher")
    parser.add_argument("--budget-usd", type=float, default=None, help="with --batch: each batch's budget")
    args = parser.parse_args()
    command = shlex.join(["python", "bench/route_spread.py", *sys.argv[1:]])
    settings_env = {
        "GENQUEUE_POLL_INITIAL_SECONDS": "0.2",
        "GENQUEUE_POLL_MAX_INTERVAL_SECONDS": "1",
        "GENQUEUE_CAPACITY_RECHECK_SECONDS": "0.5",
        "GENQUEUE_PROVIDERS__VICSEE__RATE_PER_SECOND": str(args.vicsee_rate),
        "GENQUEUE_PROVIDERS__VICSEE__BURST": "1",
        "GENQUEUE_PROVIDERS__VICSEE__MAX_IN_FLIGHT": "10000",
        "GENQUEUE_PROVIDERS__VICSEE__USD_PER_CREDIT": "0.01",
        "GENQUEUE_PROVIDERS__VEOGEN__RATE_PER_SECOND": str(args.veogen_rate),
        "GENQUEUE_PROVIDERS__VEOGEN__BURST": "1",
        "GENQUEUE_PROVIDERS__VEOGEN__MAX_IN_FLIGHT": "10000",
        "GENQUEUE_PROVIDERS__VEOGEN__PRICES": '{"sora-2": {"usd_per_job": 0.15}}',
    }
    with bench_stack(sandbox_delay=args.render_seconds, output_bytes=1024, settings=settings_env) as bench:
        bench.stack.start_workers(concurrency=args.concurrency)
        if args.batch:
            bench.stack.start_beat()  # the dispatcher's passes
        from producer.api import Producer
        from shared.settings import Settings
        from shared.storage import Storage

        settings = Settings()
        Storage(settings).ensure_bucket()
        producer = Producer(settings)
        before = httpx.get(f"{bench.sandbox_url}/_control/stats").json()["duplicate_submits"]
        rows = []
        for provider, label in (("vicsee", "VicSee alone"), ("veogen", "VeoGen alone"), ("auto", "auto, cheapest")):
            if args.batch:
                result = run_batch(producer, provider, args.jobs, label, args.budget_usd)
            else:
                result = run(producer, provider, args.jobs, label)
            rows.append((label, *result))
            seconds = result[0]
            print(f"{label}: {seconds:.1f} s", flush=True)
            time.sleep(1.5)  # the buckets refill between runs
        duplicates = httpx.get(f"{bench.sandbox_url}/_control/stats").json()["duplicate_submits"] - before

    print()
    print(f"command: {command}")
    print(
        f"{args.jobs} sora-2 jobs a run; VicSee {args.vicsee_rate:g}/s, VeoGen {args.veogen_rate:g}/s (burst 1);"
        f" renders {args.render_seconds:g} s; one worker, threads -c {args.concurrency}"
        + (f"; each run one batch (budget ${args.budget_usd:g})" if args.batch and args.budget_usd else "")
        + ("; each run one batch" if args.batch and not args.budget_usd else "")
    )
    print(f"{'run':<16} | {'seconds':>8} | {'jobs/s':>7} | {'where the jobs went':<28} | {'committed':>9} | statuses")
    print(f"{'-' * 16}-+-{'-' * 8}-+-{'-' * 7}-+-{'-' * 28}-+-{'-' * 9}-+---------")
    for label, seconds, used, statuses, committed in rows:
        went = ", ".join(f"{name} {count}" for name, count in sorted(used.items()))
        spent = "-" if committed is None else f"${committed:.2f}"
        print(
            f"{label:<16} | {seconds:>8.1f} | {args.jobs / seconds:>7.2f} | {went:<28} | {spent:>9} | {dict(statuses)}"
        )
    combined = args.vicsee_rate + args.veogen_rate
    routed = rows[2][1]
    print(
        f"routed pace {args.jobs / routed:.2f} jobs/s against the two limits added up, {combined:g}/s:"
        f" {args.jobs / routed / combined:.2f} of it; duplicate submits (sandbox): {duplicates}"
    )


if __name__ == "__main__":
    main()
