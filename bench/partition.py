"""A network partition between worker hosts: nothing lost, nothing paid twice, no late write taken.

    sudo .venv/bin/python bench/partition.py [--jobs 30] [--render 5] [--timeout 120] [--hold SECONDS]

The servers (redis-server, moto's S3 server, the sandbox vendor, a webhook receiver) run in the root network
namespace, bound to an address that exists only on a bridge of this machine (tests/support/netns.py). Two worker
hosts are two network namespaces, each joined to the bridge by its own veth link and running a real
`celery -A workers worker`; host B runs beat (the sweeper) too. Jobs are enqueued; once every one of them is
submitted (rendering at the sandbox, polled by both hosts), host A's link is taken down. Host B must finish every
job through the sweeper: A's reserved and running steps are taken over once their leases run out. When every job
has ended and its webhook was delivered, the job records are noted (their store versions), the link is healed and
host A reconnects, replays what it held and makes its late writes. None may change anything: every job succeeded,
0 duplicate submits at the vendor, one webhook event id per job, no record's version moved, every stored output
still the bytes its job names.

Prints one line of figures (and the jobs at fault, if any); exit status 1 when a rule was broken. Never asserts on
time: tests/integration/test_partition.py runs it and asserts the rules.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
import httpx

from infra.local.processes import ServerProcess, free_port, port_open
from infra.local.stack import BIN, FAST_SETTINGS, beat_argv, stack_env, worker_argv
from infra.local.webhook_receiver import WebhookReceiver, start_receiver
from tests.support import netns

#: the tests' fast schedules, with leases as short as the settings allow, for a run of about a minute
PARTITION_SETTINGS = {
    **FAST_SETTINGS,
    # leases as short as the settings allow: a vendor call's is 1.5 x this + 30 s, a webhook's 2 x this + 30 s;
    # a step host A was running when cut off is taken over once its lease has run out
    "GENQUEUE_PROVIDER_TIMEOUT_SECONDS": "2",
    "GENQUEUE_WEBHOOK_TIMEOUT_SECONDS": "2",
    "GENQUEUE_STEP_LEASE_SECONDS": "6",
    "GENQUEUE_SWEEP_GRACE_SECONDS": "2",
    # every job submitted at once, so all of them are rendering when the link goes down
    "GENQUEUE_PROVIDERS__SANDBOX__RATE_PER_SECOND": "100",
    "GENQUEUE_PROVIDERS__SANDBOX__BURST": "100",
}

#: what a worker logs for a task whose step the job store no longer names (workers/steps.run_step)
STALE_TASK = re.compile(r"has moved on; dropping duplicate or stale task")
#: what the sweeper logs for each step it took over (workers/sweeper.py)
TAKEN_OVER = re.compile(r"sweeper: job (\S+) step \S+ was overdue; republished")
#: what a worker logs once it requeued the messages it held when the broker went away (workers/broker_recovery.py)
REQUEUED = re.compile(r"requeued the messages still unacked|requeued \d+ of \d+ unacked messages")


@dataclass
class Report:
    """What one partition run saw; `ok` is whether every rule held."""

    jobs: int
    enqueued: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    #: jobs not ended (or never enqueued) at the end of the run
    lost: list[str] = field(default_factory=list)
    duplicate_submits: int = 0
    #: submits the sandbox accepted in this run
    submits: int = 0
    #: distinct webhook event ids per job: the fewest and the most any job got
    event_ids_min: int = 0
    event_ids_max: int = 0
    #: deliveries received in all (a retried event counts each time) and how many did not verify
    deliveries: int = 0
    unverified: int = 0
    #: jobs whose record changed after host B had finished them (a late write taken)
    changed_after_heal: list[str] = field(default_factory=list)
    #: jobs whose stored output is not the bytes the job names
    output_mismatch: list[str] = field(default_factory=list)
    #: seconds from the first enqueue until every job was submitted
    submitted_seconds: float = 0.0
    #: seconds from link down until every job had ended, and until every webhook was delivered
    recovered_seconds: float | None = None
    told_seconds: float | None = None
    #: how long the link stayed down
    down_seconds: float = 0.0
    #: distinct jobs whose step the sweeper took over after the cut
    taken_over: int = 0
    #: seconds from heal until host A answered a ping again (None: it never did)
    back_seconds: float | None = None
    #: stale tasks dropped after the heal, by host A and by host B; A's broker-recovery requeues
    late_dropped_a: int = 0
    late_dropped_b: int = 0
    requeued_a: int = 0
    #: host A's worker was still running at the end
    host_a_alive: bool = False

    @property
    def late_rejected(self) -> int:
        """Late tasks found stale and dropped after the heal, on either host."""
        return self.late_dropped_a + self.late_dropped_b

    @property
    def ok(self) -> bool:
        return (
            self.enqueued == self.jobs
            and not self.lost
            and self.statuses == Counter({"succeeded": self.jobs})
            and self.duplicate_submits == 0
            and self.submits == self.jobs
            and self.event_ids_min == 1
            and self.event_ids_max == 1
            and self.unverified == 0
            and not self.changed_after_heal
            and not self.output_mismatch
        )

    def summary(self) -> str:
        recovered = "never" if self.recovered_seconds is None else f"{self.recovered_seconds:.1f} s"
        told = "never" if self.told_seconds is None else f"{self.told_seconds:.1f} s"
        back = "never" if self.back_seconds is None else f"{self.back_seconds:.1f} s"
        low, high = self.event_ids_min, self.event_ids_max
        ids = str(low) if low == high else f"{low}-{high}"
        return (
            f"partition: jobs {self.enqueued}, lost {len(self.lost)}, duplicate submits {self.duplicate_submits},"
            f" event ids per job {ids}, recovered in {recovered} after link down (webhooks {told}),"
            f" taken over by the sweeper {self.taken_over}, link down {self.down_seconds:.1f} s,"
            f" host A back {back} after heal, host A late writes rejected: {self.late_rejected}"
            f" (dropped on A {self.late_dropped_a}, on B {self.late_dropped_b}; A requeued {self.requeued_a}),"
            f" changed after heal {len(self.changed_after_heal)}, outputs changed {len(self.output_mismatch)},"
            f" submitted in {self.submitted_seconds:.1f} s, deliveries {self.deliveries}"
        )


def count(pattern: re.Pattern[str], text: str) -> int:
    return len(pattern.findall(text))


def log_text(process: ServerProcess, offset: int = 0) -> str:
    """The process's log from byte `offset` on."""
    process.log_tail(0)  # flushes
    with open(process.log_path, "rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def log_size(process: ServerProcess) -> int:
    process.log_tail(0)
    return process.log_path.stat().st_size


def run_partition(
    jobs: int, workdir: Path, render_seconds: float = 5.0, timeout: float = 90.0, hold_seconds: float = 0.0
) -> Report:
    """One partition run in `workdir` (see the module doc); every process, namespace and link it made is gone
    when it returns or raises. `timeout` bounds the wait for recovery after the cut and for host A after the heal;
    `hold_seconds` keeps the link down that much longer after host B finished (past the broker connection's 30 s
    socket timeout, host A's consumer reconnects and requeues what it held: workers/broker_recovery.py).
    Needs root and `ip netns` (netns.unavailable() says why not)."""
    from producer.api import Producer
    from shared.constants import JOB_KEY
    from shared.queueing import make_celery
    from shared.settings import Settings
    from shared.storage import Storage
    from shared.webhooks.signing import generate_secret

    report = Report(jobs=jobs)
    processes: list[ServerProcess] = []
    receiver: WebhookReceiver | None = None
    saved_environ = dict(os.environ)
    with netns.rig() as rig:
        try:
            address = rig.server_address

            def serve(name: str, argv: list[str], port: int) -> ServerProcess:
                process = ServerProcess(argv, workdir / f"{name}.log")
                processes.append(process)
                process.wait_until(lambda: port_open(port, address), timeout=30, what=name)
                return process

            redis_port, moto_port, sandbox_port = free_port(), free_port(), free_port()
            data = workdir / "redis"
            data.mkdir(exist_ok=True)
            redis_argv = [shutil.which("redis-server") or "redis-server", "--port", str(redis_port), "--bind", address]
            redis_argv += ["--protected-mode", "no", "--dir", str(data), "--save", "", "--appendonly", "yes"]
            serve("redis", redis_argv, redis_port)
            serve("moto", [sys.executable, "-m", "moto.server", "-H", address, "-p", str(moto_port)], moto_port)
            sandbox_argv = [str(BIN / "genqueue"), "sandbox", "--host", address, "--port", str(sandbox_port)]
            serve("sandbox", [*sandbox_argv, "--delay", str(render_seconds), "--output-bytes", "65536"], sandbox_port)
            sandbox = f"http://{address}:{sandbox_port}"
            secret = generate_secret()
            receiver = start_receiver(secret, host=address)
            redis_url = f"redis://{address}:{redis_port}/0"
            s3 = f"http://{address}:{moto_port}"
            env = stack_env(redis_url, s3, sandbox, secret, bucket=f"partition-{uuid.uuid4().hex[:8]}")
            env.update(PARTITION_SETTINGS)
            os.environ.update(env)
            settings = Settings()
            Storage(settings).ensure_bucket()

            host_a, host_b = rig.add_host("a"), rig.add_host("b")

            def start(name: str, argv: list[str], ready: str) -> ServerProcess:
                process = ServerProcess(argv, workdir / f"{name}.log", env=env)
                processes.append(process)
                process.wait_until(lambda: ready in process.log_tail(20000), timeout=60, what=name)
                return process

            worker_a = start("host-a", host_a.argv(worker_argv("hosta", concurrency=8)), "ready.")
            worker_b = start("host-b", host_b.argv(worker_argv("hostb", concurrency=8)), "ready.")
            start("beat", host_b.argv(beat_argv(workdir / "celerybeat-schedule")), "beat: Starting")

            producer = Producer(settings)
            before = httpx.get(f"{sandbox}/_control/stats", timeout=10).json()
            started = time.monotonic()
            ids = []
            for n in range(jobs):
                job = producer.submit(
                    "sandbox", "sandbox-video", f"partition {n}", {"duration": 3}, webhook_url=receiver.url
                )
                ids.append(job.id)
            report.enqueued = len(ids)
            while not all(producer.get(job_id).provider_task_id for job_id in ids):
                if time.monotonic() - started > 30:
                    raise RuntimeError("not every job was submitted within 30 s")
                time.sleep(0.1)
            report.submitted_seconds = time.monotonic() - started
            time.sleep(min(1.0, render_seconds / 4))  # both hosts polling, mid-render

            cut_b = log_size(worker_b)
            host_a.cut()
            cut = time.monotonic()
            while time.monotonic() - cut < timeout:
                current = [producer.get(job_id) for job_id in ids]
                if report.recovered_seconds is None and all(job.status.terminal for job in current):
                    report.recovered_seconds = time.monotonic() - cut
                if all(job.status.terminal and job.webhook is not None and job.webhook.delivered for job in current):
                    report.told_seconds = time.monotonic() - cut
                    break
                time.sleep(0.2)
            report.taken_over = len(set(TAKEN_OVER.findall(log_text(worker_b, cut_b))))
            time.sleep(hold_seconds)

            # what host B left: each record's version, to see whether anything writes to it after the heal
            versions = {job_id: producer.store.redis.hget(JOB_KEY.format(job_id=job_id), "version") for job_id in ids}
            heal_a, heal_b = log_size(worker_a), log_size(worker_b)
            host_a.heal()
            healed = time.monotonic()
            report.down_seconds = healed - cut
            control = make_celery(settings)
            node = f"hosta@{socket.gethostname()}"
            while time.monotonic() - healed < timeout and worker_a.proc.poll() is None:
                if control.control.ping(destination=[node], timeout=1.0):
                    report.back_seconds = time.monotonic() - healed
                    break
            # let host A replay what it held and finish what it was doing: its countdowns, its requeued messages
            settle = time.monotonic() + 8.0
            while time.monotonic() < settle:
                time.sleep(0.5)
            report.host_a_alive = worker_a.proc.poll() is None
            after_a, after_b = log_text(worker_a, heal_a), log_text(worker_b, heal_b)
            report.late_dropped_a, report.late_dropped_b = count(STALE_TASK, after_a), count(STALE_TASK, after_b)
            report.requeued_a = count(REQUEUED, after_a)

            s3_client = boto3.client("s3", endpoint_url=s3)
            for job_id in ids:
                job = producer.get(job_id)
                report.statuses[job.status.value] += 1
                if not job.status.terminal:
                    report.lost.append(f"{job_id}: still {job.status.value}")
                if producer.store.redis.hget(JOB_KEY.format(job_id=job_id), "version") != versions[job_id]:
                    report.changed_after_heal.append(job_id)
                for output in job.outputs:
                    body = s3_client.get_object(Bucket=output.bucket, Key=output.key)["Body"].read()
                    if hashlib.sha256(body).hexdigest() != output.sha256:
                        report.output_mismatch.append(f"{job_id}: {output.key}")
            per_job = []
            for job_id in ids:
                events = receiver.for_job(job_id)
                per_job.append(len({event.headers.get("webhook-id") for event in events}))
                report.deliveries += len(events)
                report.unverified += sum(not event.verified for event in events)
            report.event_ids_min, report.event_ids_max = min(per_job, default=0), max(per_job, default=0)
            after = httpx.get(f"{sandbox}/_control/stats", timeout=10).json()
            report.duplicate_submits = int(after["duplicate_submits"]) - int(before["duplicate_submits"])
            report.submits = int(after["submits"].get("sandbox", 0)) - int(before["submits"].get("sandbox", 0))
        finally:
            for host in rig.hosts:
                if not host.linked:
                    host.heal()  # so the processes on it stop cleanly
            for process in reversed(processes):
                process.stop()
            if receiver is not None:
                receiver.stop()
            os.environ.clear()
            os.environ.update(saved_environ)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--render", type=float, default=5.0, help="seconds the sandbox takes to render a job")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--hold", type=float, default=0.0, help="seconds to keep the link down after B finished")
    args = parser.parse_args()
    reason = netns.unavailable()
    if reason is not None:
        print(f"partition: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        report = run_partition(args.jobs, Path(tmp), args.render, args.timeout, args.hold)
    print(report.summary())
    for line in (report.lost + report.changed_after_heal + report.output_mismatch)[:20]:
        print("  ", line)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
