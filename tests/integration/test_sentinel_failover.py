"""Redis through Sentinel: the broker and the job store find the master through a sentinel, and when the master
dies (kill -9) mid-run and the sentinel promotes its replica, the workers, beat and the producer follow by themselves:
every job ends succeeded, none was submitted twice. A durable write (a submit's intent) waits for a replica, and
with none nothing is sent."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis

from infra.local.processes import ServerProcess, free_port, port_open
from infra.local.stack import LocalStack
from producer.api import Producer
from shared import lifecycle
from shared.models import GenerationRequest, Job, utcnow
from shared.store import JobStore, NotReplicated
from tests.integration.conftest import settings_for

pytestmark = pytest.mark.integration

MASTER = "genqueue-test"


@dataclass
class Rig:
    master: ServerProcess
    master_port: int
    replica_port: int
    sentinel_port: int

    def master_address(self) -> tuple[str, int]:
        host, port = redis.Redis(port=self.sentinel_port).sentinel_get_master_addr_by_name(MASTER)
        return str(host.decode() if isinstance(host, bytes) else host), int(port)


def redis_server(workdir: Path, name: str, port: int, *extra: str) -> ServerProcess:
    binary = shutil.which("redis-server")
    assert binary is not None
    (workdir / name).mkdir(exist_ok=True)
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir / name), "--save", "", *extra]
    server = ServerProcess(argv, workdir / f"{name}.log")
    server.wait_until(lambda: port_open(port), what=name)
    return server


def sentinel_env(rig: Rig, pipeline_env: dict[str, str]) -> dict[str, str]:
    """The pipeline's settings, with Redis found through the rig's sentinel."""
    return {
        **pipeline_env,
        "GENQUEUE_REDIS_URL": f"redis://127.0.0.1:{rig.master_port}/0",
        "GENQUEUE_REDIS_SENTINELS": json.dumps([f"127.0.0.1:{rig.sentinel_port}"]),
        "GENQUEUE_REDIS_SENTINEL_MASTER": MASTER,
        # a write the failover loses (replication is asynchronous) leaves its step leased until this runs out
        "GENQUEUE_STEP_LEASE_SECONDS": "10",
        # a submit's intent is on the replica before its POST (Redis WAIT): without it, an intent the failover loses
        # is a job sent again (replication is asynchronous), which is what "never paid twice" rules out
        "GENQUEUE_REDIS_MIN_REPLICAS": "1",
    }


def wait_ended(producer: Producer, jobs: list[Job], until: float) -> dict[str, Job]:
    """The jobs that ended by monotonic time `until`, by id (a read that fails mid-failover is tried again)."""
    ended: dict[str, Job] = {}
    while time.monotonic() < until and len(ended) < len(jobs):
        for job in jobs:
            try:
                current = producer.get(job.id)
            except redis.RedisError:
                continue
            if current.status.terminal:
                ended[job.id] = current
        time.sleep(0.5)
    return ended


def wait_for_role(client: redis.Redis, role: str, until: float) -> str:
    """The server's replication role once it is `role`, or by monotonic time `until` whatever it is (the sentinel
    turns a returning old master into a replica some seconds after it sees it again)."""
    current = client.info("replication")["role"]
    while current != role and time.monotonic() < until:
        time.sleep(0.2)
        current = client.info("replication")["role"]
    return str(current)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    """A master, its replica and one sentinel (quorum 1, a master is down after 1 s without answers)."""
    master_port, replica_port, sentinel_port = free_port(), free_port(), free_port()
    servers = [redis_server(tmp_path, "master", master_port, "--appendonly", "yes")]
    servers.append(redis_server(tmp_path, "replica", replica_port, "--replicaof", "127.0.0.1", str(master_port)))
    deadline = time.monotonic() + 30
    while redis.Redis(port=replica_port).info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica did not sync"
        time.sleep(0.1)
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\nsentinel monitor {MASTER} 127.0.0.1 {master_port} 1\n"
        f"sentinel down-after-milliseconds {MASTER} 1000\nsentinel failover-timeout {MASTER} 3000\n"
    )
    binary = shutil.which("redis-server")
    assert binary is not None
    sentinel = ServerProcess([binary, str(config), "--sentinel"], tmp_path / "sentinel.log")
    sentinel.wait_until(lambda: port_open(sentinel_port), what="redis-sentinel")
    servers.append(sentinel)
    yield Rig(servers[0], master_port, replica_port, sentinel_port)
    for server in reversed(servers):
        server.stop()


def test_workers_and_producer_follow_a_sentinel_failover_and_no_job_is_lost_or_paid_twice(
    rig: Rig, pipeline_env: dict[str, str], sandbox_url: str, tmp_path: Path
) -> None:
    env = sentinel_env(rig, pipeline_env)
    stack = LocalStack(tmp_path / "processes", env=env)
    (tmp_path / "processes").mkdir()
    stats_before = httpx.get(f"{sandbox_url}/_control/stats").json()
    httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 4.0})
    try:
        stack.start_workers(name="sentinel", concurrency=8)
        stack.start_beat()
        producer = Producer(settings_for(env))
        jobs = [producer.submit("sandbox", "sandbox-video", f"failover {n}", {"duration": 3}) for n in range(10)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(producer.get(j.id).provider_task_id for j in jobs):
            time.sleep(0.2)
        assert all(producer.get(j.id).provider_task_id for j in jobs), "not every job was submitted"
        # what the master has acknowledged is on the replica before the master dies
        assert redis.Redis(port=rig.master_port).execute_command("WAIT", 1, 5000) == 1
        killed = time.monotonic()
        rig.master.proc.kill()
        while rig.master_address()[1] != rig.replica_port:
            assert time.monotonic() - killed < 60, "the sentinel did not promote the replica"
            time.sleep(0.2)
        promoted = time.monotonic() - killed
        ended = wait_ended(producer, jobs, until=killed + 120)
        recovered = time.monotonic() - killed
    finally:
        httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 0.5})
        stack.stop()
    stats_after = httpx.get(f"{sandbox_url}/_control/stats").json()
    print(f"failover: replica promoted {promoted:.1f} s after kill -9, all {len(jobs)} jobs ended {recovered:.1f} s")
    assert {job.status.value for job in ended.values()} == {"succeeded"} and len(ended) == len(jobs)
    assert stats_after["duplicate_submits"] == stats_before["duplicate_submits"]
    assert stats_after["submits"]["sandbox"] - stats_before["submits"]["sandbox"] == len(jobs)


def test_a_failover_in_the_middle_of_paced_submits_loses_no_job_and_pays_none_twice(
    rig: Rig, pipeline_env: dict[str, str], sandbox_url: str, tmp_path: Path
) -> None:
    """The master dies while submits are still being paced out (2 a second) and comes back on its old address
    with its append-only file, as a restarted host's would, right after the promotion: the sentinel makes it a
    replica, and every job still ends succeeded, each submitted once."""
    env = sentinel_env(rig, pipeline_env)
    stack = LocalStack(tmp_path / "processes", env=env)
    (tmp_path / "processes").mkdir()
    stats_before = httpx.get(f"{sandbox_url}/_control/stats").json()
    httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 2.0})
    returned: ServerProcess | None = None
    try:
        stack.start_workers(name="sentinel", concurrency=8)
        stack.start_beat()
        producer = Producer(settings_for(env))
        jobs = [producer.submit("throttled", "sandbox-video", f"paced {n}", {"duration": 3}) for n in range(12)]
        deadline = time.monotonic() + 60
        while sum(bool(producer.get(j.id).provider_task_id) for j in jobs) < 3:
            assert time.monotonic() < deadline, "no job was submitted"
            time.sleep(0.1)
        submitted_at_kill = sum(bool(producer.get(j.id).provider_task_id) for j in jobs)
        killed = time.monotonic()
        rig.master.proc.kill()
        while rig.master_address()[1] != rig.replica_port:
            assert time.monotonic() - killed < 60, "the sentinel did not promote the replica"
            time.sleep(0.2)
        promoted = time.monotonic() - killed
        returned = redis_server(tmp_path, "master", rig.master_port, "--appendonly", "yes")
        ended = wait_ended(producer, jobs, until=killed + 120)
        recovered = time.monotonic() - killed
        old_master_role = wait_for_role(redis.Redis(port=rig.master_port), "slave", until=time.monotonic() + 30)
    finally:
        httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 0.5})
        stack.stop()
        if returned is not None:
            returned.stop()
    stats_after = httpx.get(f"{sandbox_url}/_control/stats").json()
    stuck = {job.id: producer.get(job.id).status.value for job in jobs if job.id not in ended}
    print(
        f"failover mid-submits: {submitted_at_kill} of {len(jobs)} submitted at kill -9, replica promoted"
        f" {promoted:.1f} s after, old master back as {old_master_role}, all ended {recovered:.1f} s after"
    )
    assert not stuck, f"jobs not ended: {stuck}"
    assert {job.status.value for job in ended.values()} == {"succeeded"}
    assert old_master_role == "slave"
    assert stats_after["duplicate_submits"] == stats_before["duplicate_submits"]
    # the throttled provider is the sandbox's own API under another name
    assert stats_after["submits"]["sandbox"] - stats_before["submits"].get("sandbox", 0) == len(jobs)


def make_job(job_id: str) -> Job:
    now = utcnow()
    step = lifecycle.new_step("submit", now)
    return Job(
        id=job_id,
        provider="sandbox",
        request=GenerationRequest(model="sandbox-image"),
        deadline_at=now + timedelta(hours=1),
        step=step,
    )


def test_a_durable_write_waits_for_a_replica_and_says_when_none_has_it(rig: Rig, redis_url: str) -> None:
    replicated = JobStore(redis.Redis(port=rig.master_port), min_replicas=1)
    replicated.create(make_job("job_durable"))
    written = replicated.update("job_durable", lambda j: j.model_copy(update={"poll_count": 1}), durable=True)
    assert written is not None and redis.Redis(port=rig.replica_port).exists("genqueue:job:job_durable")
    alone = JobStore(redis.Redis.from_url(redis_url), min_replicas=1, replica_timeout_seconds=0.2)
    alone.create(make_job("job_alone"))
    with pytest.raises(NotReplicated, match="0 of 1 replicas"):
        alone.update("job_alone", lambda j: j.model_copy(update={"poll_count": 1}), durable=True)
    stored = alone.get("job_alone")
    assert stored is not None and stored.poll_count == 1  # the write stands on the master


def test_with_no_replica_to_take_the_intent_nothing_is_sent(
    redis_url: str, pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    """GENQUEUE_REDIS_MIN_REPLICAS=1 on a Redis without replicas: the submit withdraws its intent and waits, rather
    than send a POST a failover could forget."""
    env = {**pipeline_env, "GENQUEUE_REDIS_URL": redis_url.rsplit("/", 1)[0] + "/6", "GENQUEUE_REDIS_MIN_REPLICAS": "1"}
    env["GENQUEUE_CAPACITY_RECHECK_SECONDS"] = "1"
    stack = LocalStack(tmp_path, env=env)
    try:
        worker = stack.start_workers(name="unreplicated", concurrency=2)
        producer = Producer(settings_for(env))
        job = producer.submit("sandbox", "sandbox-image", "never sent")
        deadline = time.monotonic() + 30
        while "not sent, tried again" not in worker.log_tail(20000) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)  # a few more tries
        current = producer.get(job.id)
        log = worker.log_tail(20000)
    finally:
        stack.stop()
    assert f"submit: job {job.id}: written, but 0 of 1 replicas have it; not sent, tried again" in log
    assert current.status.value == "queued" and current.submit_started_at is None
    assert current.provider_task_id is None and current.step is not None and current.step.name == "submit"


def test_beat_follows_a_sentinel_failover(rig: Rig, pipeline_env: dict[str, str], tmp_path: Path) -> None:
    """celery beat publishes the sweeper through Sentinel: after kill -9 of the master its tasks reach the promoted
    replica (no worker here consumes them, so they pile up in the `poll` queue there)."""
    env = sentinel_env(rig, pipeline_env)
    stack = LocalStack(tmp_path, env=env)
    try:
        stack.start_beat()
        first = redis.Redis(port=rig.master_port)
        deadline = time.monotonic() + 30
        while first.llen("poll") < 2:
            assert time.monotonic() < deadline, "beat sent nothing"
            time.sleep(0.2)
        killed = time.monotonic()
        rig.master.proc.kill()
        while rig.master_address()[1] != rig.replica_port:
            assert time.monotonic() - killed < 60, "the sentinel did not promote the replica"
            time.sleep(0.2)
        promoted = redis.Redis(port=rig.replica_port)
        at_promotion = promoted.llen("poll")
        while promoted.llen("poll") < at_promotion + 3:
            assert time.monotonic() - killed < 60, "beat sent nothing to the promoted master"
            time.sleep(0.2)
    finally:
        stack.stop()
