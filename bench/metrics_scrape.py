"""What a Prometheus scrape costs as the store grows: the exporter (counters and indexes) next to the report that
reads every job (`genqueue stats`, shared/metrics.collect), measured in one run against a redis-server of its own.

    .venv/bin/python bench/metrics_scrape.py [--steps 10,1000,10000,100000]

Jobs are written through the job store's own write script (so the counters and due indexes are what real writes
leave), a tenth of them still running with a step due. Prints, at each size: Redis memory, the exporter's scrape
time (median of 5) and the commands it sent, and the full read's time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis
from prometheus_client import generate_latest

from infra.local.stack import LocalStack
from producer import metrics_exporter
from shared import lifecycle
from shared.metrics import collect
from shared.models import Cost, GenerationRequest, Job, JobStatus, utcnow
from shared.store import JobStore


def a_job(n: int) -> Job:
    now = utcnow()
    running = n % 10 == 0
    return Job(
        id=f"job_bench_{n:08d}",
        status=JobStatus.RUNNING if running else JobStatus.SUCCEEDED,
        provider=("sandbox", "vicsee", "veogen")[n % 3],
        request=GenerationRequest(model="sandbox-video", prompt="a flower opening, 16:9"),
        deadline_at=now + timedelta(hours=1),
        cost=Cost(usd=0.18),
        poll_count=4,
        step=lifecycle.new_step("poll", now) if running else None,
    )


def fill(store: JobStore, start: int, end: int) -> None:
    for n in range(start, end):
        store.create(a_job(n))


def commands_sent(client: redis.Redis) -> int:
    """Commands Redis ran since its statistics were reset, leaving out the INFO asking."""
    return sum(int(entry["calls"]) for name, entry in client.info("commandstats").items() if name != "cmdstat_info")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="10,1000,10000,100000", help="store sizes to measure at, ascending")
    sizes = [int(size) for size in parser.parse_args().steps.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(Path(tmp))
        try:
            client = redis.Redis.from_url(stack.start_redis())
            store = JobStore(client)
            print(f"exporter scrape against the full read of every job; {' '.join(sys.argv)}")
            print(f"{'jobs':>8} {'redis MiB':>9} {'scrape ms':>9} {'cmds/scrape':>11} {'read-all ms':>11} {'ratio':>7}")
            written = 0
            for size in sizes:
                fill(store, written, size)
                written = size
                registry = metrics_exporter.registry_for(client)
                generate_latest(registry)
                seconds = []
                commands = 0
                for _ in range(5):
                    client.config_resetstat()
                    started = time.perf_counter()
                    generate_latest(registry)
                    seconds.append(time.perf_counter() - started)
                    commands = commands_sent(client)
                scrape = statistics.median(seconds)
                started = time.perf_counter()
                collect(client, utcnow())
                read_all = time.perf_counter() - started
                memory = int(client.info("memory")["used_memory"]) / 2**20
                print(
                    f"{size:>8} {memory:>9.1f} {scrape * 1000:>9.2f} {commands:>11} {read_all * 1000:>11.0f}"
                    f" {read_all / scrape:>7.0f}x"
                )
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
