"""The fault-injection suite: a few hundred jobs across every dialect while the world misbehaves.

Starts its own redis-server (AOF on), moto's S3 server, the sandbox, a webhook receiver, one celery worker per
queue and beat (the sweeper), all supervised: a worker that dies is started again, as docker-compose's restart
policy does. While jobs run it injects: kill -9 of each kind of worker several times, a kill -9 and restart of
Redis, 429 storms with Retry-After, 5xx bursts, vendor answers slower than our timeout, generations that fail,
credits that run out (then are topped up), expired output links, a webhook receiver that is down for a while and
one endpoint that answers 410 Gone, and poison records (job records no reader can parse, written straight into
Redis, due before every real job). Then it prints a table: enqueued, succeeded, failed by code, lost (must be 0),
duplicate vendor submits counted at the sandbox (must be 0), webhooks per terminal event, poison records set aside.

    python bench/chaos.py                 # the long form: 300 jobs
    python bench/chaos.py --jobs 60 --short
    python bench/chaos.py --jobs 40 --each   # every scenario on its own, then all together: one row each
tests/chaos/ runs the short form in `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.local.processes import ServerProcess
from infra.local.stack import LocalStack, stack_env
from infra.local.webhook_receiver import WebhookReceiver, start_receiver

WORKER_KINDS = ("submit", "poll", "finalize", "webhooks")
JOB_KINDS = [
    ("vicsee", "sora-2", {"duration": 10}),
    ("veogen", "gpt-4o-image", {}),
    ("gateway", "veo3", {}),
    ("veo3api", "veo3_fast", {}),
    ("sandbox", "sandbox-video", {"duration": 2}),
]
CHAOS_SETTINGS = {
    "GENQUEUE_POLL_INITIAL_SECONDS": "0.3",
    "GENQUEUE_POLL_MAX_INTERVAL_SECONDS": "1.5",
    "GENQUEUE_RETRY_BASE_SECONDS": "0.3",
    "GENQUEUE_WEBHOOK_RETRY_DELAYS": "[0.5, 1, 2, 4, 8, 8]",
    "GENQUEUE_VISIBILITY_TIMEOUT": "60",
    "GENQUEUE_SWEEP_GRACE_SECONDS": "5",
    "GENQUEUE_SWEEP_INTERVAL_SECONDS": "1",
    "GENQUEUE_STEP_LEASE_SECONDS": "6",
    "GENQUEUE_DISPATCH_TASK_SECONDS": "3",
    "GENQUEUE_PROVIDER_TIMEOUT_SECONDS": "3",
    "GENQUEUE_JOB_TIMEOUT_SECONDS": "240",
    "GENQUEUE_WAIT_INTERVAL_SECONDS": "0.2",
    # so that each job's story can be read back from the logs (`told`)
    "GENQUEUE_LOG_FORMAT": "json",
}
#: the short form (tests/chaos/): the same faults, with the pauses they cause cut short. A provider out of credits
#: sends one probe every 60 s by default and an open breaker waits 30 s: here both recover within a few seconds of
#: the fault ending (credits are topped up at 9 s; the gateway's 503 burst opens its breaker), so the run is not
#: spent waiting out a pause whose start and end it has already shown
SHORT_SETTINGS = {
    "GENQUEUE_PROVIDERS__VEO3API__CREDIT_PROBE_INTERVAL_SECONDS": "4",
    "GENQUEUE_PROVIDERS__GATEWAY__BREAKER_COOLDOWN_SECONDS": "3",
}


@dataclass
class Supervisor:
    """Keeps one worker per queue (and beat) running: a dead one is started again, and counted."""

    stack: LocalStack
    workers: dict[str, ServerProcess] = field(default_factory=dict)
    restarts: Counter[str] = field(default_factory=Counter)
    kills: Counter[str] = field(default_factory=Counter)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start_all(self) -> None:
        for kind in WORKER_KINDS:
            self.workers[kind] = self.stack.start_workers(name=f"chaos-{kind}", queues=kind, concurrency=8)
        self.workers["beat"] = self.stack.start_beat()

    def _restart(self, kind: str) -> None:
        if kind == "beat":
            self.workers[kind] = self.stack.start_beat()
        else:
            self.workers[kind] = self.stack.start_workers(name=f"chaos-{kind}", queues=kind, concurrency=8)
        self.restarts[kind] += 1

    def kill(self, kind: str) -> None:
        with self.lock:
            self.workers[kind].kill(signal.SIGKILL)
            self.kills[kind] += 1

    def watch(self) -> None:
        while not self.stopping.wait(0.5):
            for kind, process in list(self.workers.items()):
                if process.proc.poll() is not None and not self.stopping.is_set():
                    with self.lock:
                        try:
                            self._restart(kind)
                        except RuntimeError as exc:  # e.g. Redis still down: try again next round
                            print(f"supervisor: restarting {kind} failed: {str(exc)[:120]}", file=sys.stderr)


@dataclass
class Report:
    enqueued: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    duplicate_submits: int = 0
    accepted_submits: int = 0
    webhook_min_delivered: int = 0
    webhook_ids_consistent: bool = True
    webhook_unverified: int = 0
    untold: list[str] = field(default_factory=list)
    gone_endpoint_jobs: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)
    redis_restarts: int = 0
    seconds: float = 0.0
    #: the batch run alongside: its jobs, their statuses, whether it completed and its webhook arrived
    batch_total: int = 0
    batch_statuses: Counter[str] = field(default_factory=Counter)
    batch_codes: Counter[str] = field(default_factory=Counter)
    batch_completed: bool = False
    batch_webhooks: int = 0
    #: corrupt job records planted mid-run, and how many of them the loops set aside (must be all)
    poisoned: list[str] = field(default_factory=list)
    quarantined: int = 0
    #: ended jobs whose end the workers' JSON logs tell, in a line carrying the job's id, of all ended jobs
    told: int = 0
    ended: int = 0

    def table(self) -> str:
        rows = [
            ("jobs enqueued", str(self.enqueued)),
            ("succeeded", str(self.statuses.get("succeeded", 0))),
            *[(f"failed: {code}", str(n)) for code, n in sorted(self.codes.items())],
            ("canceled", str(self.statuses.get("canceled", 0))),
            ("LOST (not ended or never told; must be 0)", str(len(self.lost) + len(self.untold))),
            ("duplicate vendor submits at the sandbox (must be 0)", str(self.duplicate_submits)),
            ("vendor submits accepted", str(self.accepted_submits)),
            ("webhooks delivered per terminal event (min)", str(self.webhook_min_delivered)),
            ("same webhook-id on every retry", "yes" if self.webhook_ids_consistent else "NO"),
            ("webhooks failing signature verification", str(self.webhook_unverified)),
            ("jobs whose endpoint answered 410 (delivery stopped)", str(self.gone_endpoint_jobs)),
            ("kill -9 of workers", ", ".join(f"{k} {n}" for k, n in sorted(self.kills.items()))),
            ("workers restarted by the supervisor", ", ".join(f"{k} {n}" for k, n in sorted(self.restarts.items()))),
            ("redis-server kill -9 + restart (AOF)", str(self.redis_restarts)),
            ("poison records planted, set aside (quarantined)", f"{len(self.poisoned)}, {self.quarantined}"),
            (
                "batch alongside (jobs by status)",
                f"{self.batch_total}: "
                + ", ".join(f"{k} {n}" for k, n in sorted(self.batch_statuses.items()))
                + "".join(f"; {code} {n}" for code, n in sorted(self.batch_codes.items())),
            ),
            (
                "batch completed, batch.completed webhooks",
                f"{'yes' if self.batch_completed else 'NO'}, {self.batch_webhooks}",
            ),
            ("jobs whose end their log lines tell (by job_id)", f"{self.told} of {self.ended}"),
            ("wall time", f"{self.seconds:.1f} s"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)

    @property
    def ok(self) -> bool:
        return (
            not self.lost
            and not self.untold
            and self.duplicate_submits == 0
            and self.webhook_ids_consistent
            and self.batch_completed
            and self.quarantined == len(self.poisoned)
        )


def submit_all(producer: object, count: int, receiver: WebhookReceiver, ids: dict[int, str], run: str) -> None:
    """Enqueue `count` jobs over about 8 s (while the faults happen), retrying through a Redis outage with the
    same idempotency key, as a well-behaved client does."""
    from producer.api import Producer

    assert isinstance(producer, Producer)
    for n in range(count):
        provider, model, options = JOB_KINDS[n % len(JOB_KINDS)]
        webhook = receiver.url + ("/gone" if n % 10 == 9 else "")
        for _ in range(200):
            try:
                job = producer.submit(
                    provider,
                    model,
                    f"chaos {run} job {n}",
                    dict(options),
                    webhook_url=webhook,
                    idempotency_key=f"chaos-{run}-{n}",
                )
                ids[n] = job.id
                break
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
                time.sleep(0.25)
        time.sleep(8.0 / count)


#: every fault scenario; `all` runs them together, on one timeline
SCENARIOS = (
    "429-storm",
    "5xx-burst",
    "vendor-timeouts",
    "failed-generations",
    "credits-run-out",
    "expired-links",
    "webhook-receiver-down",
    "kill-workers",
    "redis-restart",
    "poison-records",
)

#: job records no version of genqueue can read: broken JSON, JSON nested past the reader's limit, the wrong shape
POISON_RECORDS = {
    "broken-json": '{"id": "poison", "status": ',
    "too-deep": json.dumps({"id": "poison", "request": {"extra": json.loads("[" * 300 + "]" * 300)}}),
    "wrong-shape": json.dumps({"id": "poison", "status": "submitted", "provider": 7}),
}


def plant_poison(client: redis.Redis, run: str) -> list[str]:
    """Write POISON_RECORDS straight into Redis as job records whose step is overdue before every real job's, so
    the sweeper meets them first on every pass; the ids planted."""
    from shared.constants import DUE_KEY, JOB_KEY

    planted = []
    for kind, data in POISON_RECORDS.items():
        job_id = f"job_poison_{kind}_{run}"
        client.hset(JOB_KEY.format(job_id=job_id), mapping={"data": data, "version": "1", "status": "submitted"})
        client.zadd(DUE_KEY, {job_id: 0})
        planted.append(job_id)
    return planted


def submit_batch(producer: object, count: int, receiver: WebhookReceiver, workdir: Path, name: str) -> None:
    """Enqueue a batch of `count` jobs as `genqueue batch submit` does; through a Redis outage, run it again under
    the same name, which resumes it."""
    from producer.api import Producer
    from producer.batch import BatchOptions, BatchProducer

    assert isinstance(producer, Producer)
    path = workdir / "chaos-batch.jsonl"
    lines = [{"provider": "sandbox", "model": "sandbox-image", "prompt": f"batch {n}"} for n in range(count)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    batches = BatchProducer(producer)
    options = BatchOptions(name=name, webhook_url=receiver.url + "/batch")
    for _ in range(200):
        try:
            batches.enqueue(batches.plan(path, options), options)
            return
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            time.sleep(0.25)


def inject_faults(
    sandbox: str,
    receiver: WebhookReceiver,
    supervisor: Supervisor,
    restart_redis: object,
    plant_poison: object,
    short: bool,
    report: Report,
    scenarios: frozenset[str] = frozenset(SCENARIOS),
) -> None:
    """The fault timeline of the chosen scenarios, relative to the start of the run."""
    control = httpx.Client(base_url=f"{sandbox}/_control", timeout=10)
    timeline: list[tuple[float, str, object]] = [
        (
            0.5,
            "429-storm",
            lambda: control.post(
                "/faults", json={"target": "submit", "dialect": "vicsee", "status": 429, "retry_after": 1, "count": 15}
            ),
        ),
        (
            1.0,
            "5xx-burst",
            lambda: control.post(
                "/faults",
                json=[
                    {"target": "poll", "dialect": "veogen", "status": 500, "count": 15},
                    {"target": "submit", "dialect": "gateway", "status": 503, "count": 6},
                ],
            ),
        ),
        (1.5, "failed-generations", lambda: control.post("/fail_next", json={"count": 4, "reason": "content policy"})),
        (
            2.0,
            "vendor-timeouts",
            lambda: control.post(
                "/faults",
                json=[
                    {"target": "submit", "dialect": "sandbox", "status": None, "delay_seconds": 4, "count": 2},
                    {"target": "poll", "dialect": "vicsee", "status": None, "delay_seconds": 4, "count": 3},
                ],
            ),
        ),
        (2.5, "expired-links", lambda: control.post("/faults", json={"target": "download", "status": 403, "count": 3})),
        (3.0, "webhook-receiver-down", lambda: receiver.answer_next(503, count=25)),
        (0.2, "credits-run-out", lambda: control.post("/balance", json={"dialect": "veo3api", "balance": 300})),
        (9.0, "credits-run-out", lambda: control.post("/balance", json={"dialect": "veo3api", "balance": 1e9})),
        (6.5, "redis-restart", restart_redis),
        (3.5, "poison-records", plant_poison),
    ]
    kill_times = [2.0, 5.0] if short else [2.0, 5.0, 9.0, 13.0]
    for at in kill_times:
        timeline.extend(
            (at + i * 0.3, "kill-workers", lambda kind=kind: supervisor.kill(kind))
            for i, kind in enumerate(WORKER_KINDS)
        )
    started = time.monotonic()
    for at, scenario, action in sorted(timeline, key=lambda item: item[0]):
        if scenario not in scenarios:
            continue
        time.sleep(max(0.0, at - (time.monotonic() - started)))
        try:
            action()  # type: ignore[operator]
        except (httpx.HTTPError, redis.exceptions.RedisError) as exc:
            print(f"fault injection at {at}s failed: {exc}", file=sys.stderr)


def run_chaos(
    jobs: int,
    short: bool,
    workdir: Path,
    timeout: float = 300.0,
    scenarios: frozenset[str] = frozenset(SCENARIOS),
    on_stack: Callable[[LocalStack], None] | None = None,
) -> Report:
    """One chaos run; `on_stack(stack)` is called once the servers are up and their settings exported (to start
    what watches the run: bench/dashboard.py's exporter), and what it starts on `stack` is stopped with it."""
    from shared.webhooks.signing import generate_secret

    report = Report()
    saved_environ = dict(os.environ)
    stack = LocalStack(workdir)
    receiver = start_receiver(generate_secret())
    receiver.gone_paths.add("/hooks/gone")
    supervisor = Supervisor(stack)
    watcher = threading.Thread(target=supervisor.watch, daemon=True)
    try:
        redis_port = __import__("infra.local.processes", fromlist=["free_port"]).free_port()
        redis_url = stack.start_redis(redis_port)
        redis_process = stack.processes[-1]
        s3 = stack.start_moto()
        sandbox = stack.start_sandbox(delay=1.0, output_bytes=64 * 1024)
        env = stack_env(redis_url, s3, sandbox, receiver.secret or "", bucket="chaos")
        env.update(CHAOS_SETTINGS)
        if short:
            env.update(SHORT_SETTINGS)
        os.environ.update(env)
        stack.env = dict(os.environ)
        from producer.api import Producer
        from shared.settings import Settings
        from shared.storage import Storage

        settings = Settings()
        Storage(settings).ensure_bucket()
        if on_stack is not None:
            on_stack(stack)
        supervisor.start_all()
        watcher.start()

        def restart_redis() -> None:
            nonlocal redis_process
            redis_process.kill(signal.SIGKILL)
            redis_process.proc.wait(5)
            time.sleep(1.0)
            stack.start_redis(redis_port)
            redis_process = stack.processes[-1]
            report.redis_restarts += 1

        producer = Producer(settings)
        ids: dict[int, str] = {}
        run = str(int(time.time()))

        def poison() -> None:
            report.poisoned.extend(plant_poison(producer.store.redis, run))

        started = time.monotonic()
        submitter = threading.Thread(target=submit_all, args=(producer, jobs, receiver, ids, run), daemon=True)
        submitter.start()
        batch_name = f"chaos-{run}"
        report.batch_total = max(10, jobs // 4)
        batcher = threading.Thread(
            target=submit_batch, args=(producer, report.batch_total, receiver, workdir, batch_name), daemon=True
        )
        batcher.start()
        inject_faults(sandbox, receiver, supervisor, restart_redis, poison, short, report, scenarios)
        submitter.join(timeout)
        batcher.join(timeout)
        deadline = started + timeout
        while time.monotonic() < deadline:
            settled = 0
            for job_id in list(ids.values()):
                try:
                    job = producer.get(job_id)
                except redis.exceptions.ConnectionError:
                    break
                hook_done = job.webhook is not None and (job.webhook.delivered or job.webhook.gave_up is not None)
                settled += job.status.terminal and hook_done
            if settled == jobs and batch_done(producer, batch_name):
                break
            time.sleep(1.0)
        report.seconds = time.monotonic() - started
        collect(report, producer, ids, jobs, receiver, sandbox)
        collect_batch(report, producer, batch_name, receiver)
        quarantined = {record.id for record in producer.store.quarantine.records()}
        report.quarantined = sum(job_id in quarantined for job_id in report.poisoned)
        report.kills, report.restarts = supervisor.kills, supervisor.restarts
        read_stories(report, producer, list(ids.values()), workdir)
    finally:
        supervisor.stopping.set()
        receiver.stop()
        stack.stop()
        os.environ.clear()
        os.environ.update(saved_environ)
    return report


def read_stories(report: Report, producer: object, job_ids: list[str], workdir: Path) -> None:
    """For each ended job, whether a JSON log line with its job_id names the status it ended in: the story an
    operator reads with `jq 'select(.job_id=="…")'` over the workers' logs."""
    stories: dict[str, list[str]] = {}
    for log_file in workdir.glob("*.log"):
        for line in log_file.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and "job_id" in record:
                    stories.setdefault(str(record["job_id"]), []).append(str(record.get("event", "")))
    for job_id in job_ids:
        job = producer.get(job_id)  # type: ignore[attr-defined]
        if job.status.terminal:
            report.ended += 1
            report.told += any(f": {job.status.value}" in event for event in stories.get(job_id, []))


def batch_done(producer: object, name: str) -> bool:
    from producer.batch import BatchProducer

    try:
        batches = BatchProducer(producer)  # type: ignore[arg-type]
        batch = batches.batches.get_by_name(name)
        return batch is not None and batch.completed_at is not None
    except redis.exceptions.ConnectionError:
        return False


def collect_batch(report: Report, producer: object, name: str, receiver: WebhookReceiver) -> None:
    """The batch's jobs by status; any not ended is lost; its completion and its webhook."""
    from producer.batch import BatchProducer

    batches = BatchProducer(producer)  # type: ignore[arg-type]
    batch = batches.batches.get_by_name(name)
    if batch is None:
        report.lost.append(f"batch {name}: never created")
        return
    jobs = list(batches.jobs(batch))
    for _, job in jobs:
        report.batch_statuses[job.status.value] += 1
        if job.error is not None and job.status.value == "failed":
            report.batch_codes[job.error.code] += 1
        if not job.status.terminal:
            report.lost.append(f"{job.id} (batch): still {job.status.value}")
    if len(jobs) != report.batch_total:
        report.lost.append(f"batch {name}: {len(jobs)} of {report.batch_total} lines enqueued")
    report.batch_completed = batch.completed_at is not None
    report.batch_webhooks = sum(
        1
        for event in receiver.for_job(batch.id)
        if event.body.get("type") == "batch.completed" and event.answered == 200
    )


def collect(
    report: Report, producer: object, ids: dict[int, str], jobs: int, receiver: WebhookReceiver, sandbox: str
) -> None:
    from producer.api import Producer

    assert isinstance(producer, Producer)
    report.enqueued = len(ids)
    report.lost.extend(f"line {n}: never enqueued" for n in range(jobs) if n not in ids)
    delivered_counts = []
    for job_id in ids.values():
        job = producer.get(job_id)
        report.statuses[job.status.value] += 1
        if job.error is not None and job.status.value == "failed":
            report.codes[job.error.code] += 1
        if not job.status.terminal:
            report.lost.append(f"{job_id}: still {job.status.value}")
            continue
        events = receiver.for_job(job_id)
        if len({e.headers.get("webhook-id") for e in events}) > 1:
            report.webhook_ids_consistent = False
        report.webhook_unverified += sum(not e.verified for e in events)
        if job.webhook_url and job.webhook_url.endswith("/gone"):
            report.gone_endpoint_jobs += 1
            continue
        delivered = sum(e.answered == 200 for e in events)
        delivered_counts.append(delivered)
        if delivered == 0:
            report.untold.append(f"{job_id}: no webhook delivered ({job.webhook.gave_up if job.webhook else 'none'})")
    report.webhook_min_delivered = min(delivered_counts, default=0)
    stats = httpx.get(f"{sandbox}/_control/stats", timeout=10).json()
    report.duplicate_submits = int(stats["duplicate_submits"])
    report.accepted_submits = sum(stats["submits"].values())


def scenario_table(results: list[tuple[str, Report]]) -> str:
    """One row per scenario: the figures that must hold in each."""
    lines = [
        f"{'scenario':<22} {'jobs':>5} {'ok':>5} {'failed (by code)':<44} "
        f"{'lost':>5} {'dup':>4} {'hooks':>5} {'batch':>5} {'time':>6}"
    ]
    for name, report in results:
        codes = ", ".join(f"{code} {n}" for code, n in sorted(report.codes.items())) or "-"
        lines.append(
            f"{name:<22} {report.enqueued:>5} {report.statuses.get('succeeded', 0):>5} {codes:<44} "
            f"{len(report.lost) + len(report.untold):>5} {report.duplicate_submits:>4} "
            f"{report.webhook_min_delivered:>5} {'done' if report.batch_completed else 'NO':>5} {report.seconds:>5.0f}s"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--short", action="store_true", help="fewer kill rounds")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument(
        "--each", action="store_true", help="run every scenario on its own (--jobs each), then all together"
    )
    parser.add_argument("--scenario", choices=SCENARIOS, action="append", help="only these (default: all together)")
    args = parser.parse_args()
    if args.each:
        results = []
        for name in (*SCENARIOS, "all"):
            chosen = frozenset(SCENARIOS) if name == "all" else frozenset({name})
            with tempfile.TemporaryDirectory() as tmp:
                results.append((name, run_chaos(args.jobs, args.short, Path(tmp), args.timeout, chosen)))
            print(scenario_table(results[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
        print(scenario_table(results))
        return 0 if all(report.ok for _, report in results) else 1
    scenarios = frozenset(args.scenario) if args.scenario else frozenset(SCENARIOS)
    with tempfile.TemporaryDirectory() as tmp:
        report = run_chaos(args.jobs, args.short, Path(tmp), args.timeout, scenarios)
    print(report.table())
    for line in (report.lost + report.untold)[:20]:
        print("  ", line)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
