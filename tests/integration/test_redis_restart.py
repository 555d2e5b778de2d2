"""A worker outlives ten kill -9 restarts of its Redis broker in a row, with nothing restarting it, and keeps every
message it held: each job ends, and no message is left in Redis's `unacked` hash to wait for visibility_timeout.

The test runs its own redis-server (its own port and AOF directory, restarted on both), its own sandbox (renders of
3 s, so jobs are in flight at every kill), one `celery -A workers worker` and beat (the sweeper, as deployed), all
stopped by pid at the end. workers/broker_recovery.py says what used to stop the worker.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from kombu import Connection, Exchange, Producer, Queue

from infra.local.processes import ServerProcess, free_port
from infra.local.stack import FAST_SETTINGS, LocalStack, stack_env
from producer.api import Producer as JobProducer
from shared.constants import QUEUES
from shared.models import JobStatus
from shared.settings import Settings
from shared.storage import Storage
from tests.integration.conftest import settings_for
from workers.broker_recovery import restore_unacked, take_unacked

pytestmark = pytest.mark.integration

CYCLES = 10
JOBS_PER_CYCLE = 3
#: a worker must consume again this soon after Redis is back (a liveness bound, not a speed measurement)
CONSUME_AGAIN_SECONDS = 30.0
#: A step whose run died with Redis keeps its lease until the sweeper may resume it (submit and poll: provider
#: timeout × 1.5 + 30 s; finalize: the step lease, 120 s by default). Shorter here, and a job timeout long enough
#: that no job fails waiting for one.
SETTINGS = FAST_SETTINGS | {
    "GENQUEUE_PROVIDER_TIMEOUT_SECONDS": "2",
    "GENQUEUE_STEP_LEASE_SECONDS": "6",
    "GENQUEUE_JOB_TIMEOUT_SECONDS": "600",
}
#: kombu's Redis transport keeps every delivered, unacked message in this hash (its `unacked_key`)
UNACKED_KEY = "unacked"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, watched: ServerProcess) -> T:
    """The first truthy value of `probe()`, polled; an AssertionError naming `what`, with the log tail of
    `watched`, when none comes within `timeout` seconds, or at once when `watched` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if watched.proc.poll() is not None:
            exited = f"{' '.join(Path(arg).name for arg in watched.argv[:6])} exited ({watched.proc.returncode})"
            raise AssertionError(f"{exited} before {what}:\n{watched.log_tail()}")
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout:g}s:\n{watched.log_tail()}")


def redis_ready(client: redis.Redis) -> bool:
    """True once Redis answers commands (it refuses them while loading its AOF)."""
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False


@dataclass
class RestartStack:
    """The processes of this test; `restart_redis()` kills redis-server with SIGKILL and starts it again."""

    stack: LocalStack
    port: int
    redis: ServerProcess
    worker: ServerProcess
    beat: ServerProcess
    settings: Settings
    client: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        self.client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=5)

    def restart_redis(self) -> None:
        self.redis.kill(signal.SIGKILL)
        self.redis.proc.wait(10)
        self.stack.start_redis(self.port)  # the same port and AOF directory (the stack's redis-data/)
        self.redis = self.stack.processes[-1]
        wait_for("Redis loading its AOF", lambda: redis_ready(self.client), 30.0, self.redis)

    def unacked(self) -> int:
        return int(self.client.hlen(UNACKED_KEY))

    def queued(self) -> int:
        return sum(int(self.client.llen(queue)) for queue in QUEUES)

    def describe_unacked(self) -> list[str]:
        """The messages in `unacked`, as task[id] and when each was due."""
        described = []
        for raw in self.client.hvals(UNACKED_KEY):
            headers = json.loads(raw)[0]["headers"]
            described.append(f"{headers['task']}[{headers['id']}] eta {headers.get('eta')}")
        return described


@pytest.fixture
def restart_stack(tmp_path: Path, moto_endpoint: str, webhook_secret: str) -> Iterator[RestartStack]:
    stack = LocalStack(tmp_path)
    try:
        port = free_port()
        redis_url = stack.start_redis(port)
        redis_process = stack.processes[-1]
        sandbox_url = stack.start_sandbox(delay=3.0, output_bytes=64 * 1024)
        bucket = f"genqueue-restart-{uuid.uuid4().hex[:8]}"
        stack.env = stack_env(redis_url, moto_endpoint, sandbox_url, webhook_secret, bucket) | SETTINGS
        settings = settings_for(stack.env)
        Storage(settings).ensure_bucket()
        worker = stack.start_workers(concurrency=8)
        beat = stack.start_beat()
        yield RestartStack(stack, port, redis_process, worker, beat, settings)
    finally:
        stack.stop()


def test_worker_survives_ten_redis_restarts_and_loses_no_message(restart_stack: RestartStack) -> None:
    rs = restart_stack
    producer = JobProducer(rs.settings)
    job_ids: list[str] = []
    held_at_kill: list[int] = []

    def submit_some() -> list[str]:
        ids = [producer.submit("sandbox", "sandbox-image", f"restart probe {n}").id for n in range(JOBS_PER_CYCLE)]
        job_ids.extend(ids)
        return ids

    def consumed(ids: list[str]) -> bool:
        return all(producer.get(job_id).status is not JobStatus.QUEUED for job_id in ids)

    probe = submit_some()
    for cycle in range(1, CYCLES + 1):
        wait_for(f"the worker consuming before kill {cycle}", lambda ids=probe: consumed(ids), 60.0, rs.worker)
        # kill while the worker holds messages it has not acked: running steps and countdown polls
        held_at_kill.append(wait_for(f"unacked messages before kill {cycle}", rs.unacked, 30.0, rs.worker))
        rs.restart_redis()
        probe = submit_some()
        wait_for(
            f"the worker consuming again after restart {cycle}",
            lambda ids=probe: consumed(ids),
            CONSUME_AGAIN_SECONDS,
            rs.worker,
        )

    def ended() -> bool:
        return all(producer.get(job_id).status.terminal for job_id in job_ids)

    wait_for("every job ending", ended, 180.0, rs.worker)
    jobs = [producer.get(job_id) for job_id in job_ids]
    assert [job for job in jobs if job.status is not JobStatus.SUCCEEDED] == []

    # With beat stopped nothing new is published, so every message the worker was given ends acked: a duplicate
    # still waiting out a lease (at most 33 s here) finds its job ended and drops itself. A message left in
    # `unacked` belonged to a lost connection and would come back only after visibility_timeout (an hour).
    rs.beat.stop()
    try:
        wait_for("the unacked hash emptying", lambda: rs.unacked() == 0 and rs.queued() == 0, 90.0, rs.worker)
    except AssertionError:
        pytest.fail(f"left in {UNACKED_KEY!r}: {rs.describe_unacked()} (it held {held_at_kill} at the kills)")
    assert rs.worker.proc.poll() is None, rs.worker.log_tail()
    log = rs.worker.log_tail(10_000_000)
    assert log.count("Connection to broker lost") >= CYCLES, "the restarts did not all reach the worker"
    assert "Unrecoverable error" not in log


def test_messages_taken_off_a_lost_connection_go_back_to_their_queue_once(redis_url: str) -> None:
    """The recovery's two halves alone: what `take_unacked` took is not restored when its connection closes,
    `restore_unacked` requeues it once and leaves a message acked meanwhile alone, and a message of the closed
    connection can still be acked."""
    name = f"recovery-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    try:
        with Connection(redis_url) as lost:
            channel = lost.channel()
            queue = Queue(name, Exchange(name), routing_key=name)(channel)
            queue.declare()
            for n in range(4):
                Producer(channel).publish({"n": n}, exchange=name, routing_key=name)
            messages = [channel.basic_get(name) for _ in range(4)]
            messages[0].ack()
            tags = take_unacked(lost)
            assert sorted(tags) == sorted(message.delivery_tag for message in messages[1:])
        assert client.llen(name) == 0 and None not in client.hmget(UNACKED_KEY, tags)

        messages[1].ack()  # the task of a lost connection ends before the restore: it runs no second time
        with Connection(redis_url) as fresh:
            assert restore_unacked(fresh, tags) == []
            assert restore_unacked(fresh, tags) == []  # already back: nothing twice
        requeued = [json.loads(raw)["properties"]["delivery_tag"] for raw in client.lrange(name, 0, -1)]
        assert sorted(requeued) == sorted(message.delivery_tag for message in messages[2:])
        assert client.hmget(UNACKED_KEY, tags) == [None, None, None]
    finally:
        client.delete(name, f"_kombu.binding.{name}")
