"""What each Redis setting costs a job-store write, measured side by side in one run on this machine.

Starts its own servers (a master with a replica, a sentinel, a TLS-only master with a private CA) and times
`JobStore.update` on one job (a read and the compare-and-set script: what every step does) through:
plain `redis://`, Sentinel (`GENQUEUE_REDIS_SENTINELS`), a durable write (`GENQUEUE_REDIS_MIN_REPLICAS=1`: the
intent before a vendor POST waits for the replica), and `rediss://` with `GENQUEUE_REDIS_CA_FILE`.
Prints p50 / p99 per write and the ratio to plain; figures are for loopback, where a round trip is ~50 µs.

    .venv/bin/python bench/redis_settings.py [--writes 3000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from infra.local.processes import ServerProcess, free_port, port_open
from shared import lifecycle
from shared.models import GenerationRequest, Job, utcnow
from shared.store import JobStore, redis_client
from tests.support.tls import make_certificates, start_tls_redis

PASSWORD = "bench-password"


def server(workdir: Path, name: str, port: int, *extra: str) -> ServerProcess:
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is needed: infra/local/ensure-system-deps.sh"
    (workdir / name).mkdir()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir / name), "--save", ""]
    process = ServerProcess([*argv, *extra], workdir / f"{name}.log")
    process.wait_until(lambda: port_open(port), what=name)
    return process


def a_job() -> Job:
    now = utcnow()
    return Job(
        id=f"job_bench_{time.monotonic_ns()}",
        provider="sandbox",
        request=GenerationRequest(model="sandbox-image", prompt="a flower opening"),
        deadline_at=now + timedelta(hours=1),
        step=lifecycle.new_step("submit", now),
    )


def time_writes(store: JobStore, writes: int, durable: bool) -> tuple[list[float], list[float]]:
    """Seconds per write (the first tenth, warm-up, left out), and per PING on the same client."""
    job = a_job()
    store.create(job)
    pings = []
    for _ in range(writes):
        started = time.perf_counter()
        store.redis.ping()
        pings.append(time.perf_counter() - started)
    seconds = []
    for n in range(writes + writes // 10):
        started = time.perf_counter()
        store.update(job.id, lambda current, n=n: current.model_copy(update={"poll_count": n}), durable=durable)
        seconds.append(time.perf_counter() - started)
    return seconds[writes // 10 :], pings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=3000)
    writes = parser.parse_args().writes
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        master_port, replica_port, sentinel_port = free_port(), free_port(), free_port()
        processes = [server(workdir, "master", master_port)]
        try:
            processes.append(server(workdir, "replica", replica_port, "--replicaof", "127.0.0.1", str(master_port)))
            while redis.Redis(port=replica_port).info("replication").get("master_link_status") != "up":
                time.sleep(0.1)
            config = workdir / "sentinel.conf"
            monitor = f"sentinel monitor bench 127.0.0.1 {master_port} 1"
            config.write_text(f"port {sentinel_port}\nbind 127.0.0.1\n{monitor}\n")
            binary = shutil.which("redis-server")
            assert binary is not None
            sentinel = ServerProcess([binary, str(config), "--sentinel"], workdir / "sentinel.log")
            processes.append(sentinel)
            sentinel.wait_until(lambda: port_open(sentinel_port), what="sentinel")
            certificates = make_certificates(workdir)
            tls_server, tls_port = start_tls_redis(workdir, certificates, PASSWORD)
            processes.append(tls_server)

            plain = f"redis://127.0.0.1:{master_port}/0"
            rows = {
                "redis:// (plain)": time_writes(JobStore(redis_client(plain)), writes, durable=False),
                "Sentinel": time_writes(
                    JobStore(redis_client(plain, sentinels=[f"127.0.0.1:{sentinel_port}"], master="bench")),
                    writes,
                    durable=False,
                ),
                "durable write, 1 replica (WAIT)": time_writes(
                    JobStore(redis_client(plain), min_replicas=1), writes, durable=True
                ),
                "rediss:// verified (TLS)": time_writes(
                    JobStore(
                        redis_client(f"rediss://:{PASSWORD}@127.0.0.1:{tls_port}/0", ca_file=str(certificates.ca))
                    ),
                    writes,
                    durable=False,
                ),
            }
        finally:
            for process in reversed(processes):
                process.stop()
    base = statistics.median(rows["redis:// (plain)"][0])
    print(f"job-store write (read + compare-and-set), {writes} writes each, loopback; {' '.join(sys.argv)}")
    print(f"{'setting':34} {'PING p50 µs':>11} {'write p50 µs':>12} {'write p99 µs':>12} {'write / plain':>13}")
    for name, (seconds, pings) in rows.items():
        p50 = statistics.median(seconds)
        p99 = statistics.quantiles(seconds, n=100)[98]
        ping = statistics.median(pings)
        print(f"{name:34} {ping * 1e6:11.0f} {p50 * 1e6:12.0f} {p99 * 1e6:12.0f} {p50 / base:13.2f}")
    print("a durable write is made once per submit (its intent), not per poll; the others apply to every call")


if __name__ == "__main__":
    main()
