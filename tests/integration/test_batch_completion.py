"""A batch's completion under faults, through real workers, beat and the sandbox: the `batch.completed` delivery is
a step the sweeper resumes, a duplicate task cannot fork it, and one event id reaches the receiver whatever dies.
Also `batch status` telling held jobs that wait for no dispatcher.

Each fault test runs its own workers and beat on a Redis database of its own (the session's workers would take
the tasks otherwise), and its own receiver, which can hang or fail the batch's POSTs.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from standardwebhooks.webhooks import Webhook

from infra.local.processes import ServerProcess
from infra.local.stack import LocalStack
from producer.api import Producer
from shared import lifecycle
from shared.batch import Batch, BatchStore
from shared.batch.models import dispatcher_stale_after
from shared.constants import BATCH_WEBHOOK_TASK
from shared.queueing import make_celery
from tests.integration.conftest import settings_for
from tests.integration.test_batch import image_line, write_jsonl
from tests.integration.test_pipeline import run_cli

pytestmark = pytest.mark.integration

#: Redis databases for the tests' own stacks (the session's workers use 0)
_DATABASES = itertools.count(1)
T = TypeVar("T")


@dataclass
class Post:
    """One POST of a `batch.completed` event: its webhook-id, body, whether it verified, and what it was answered
    (None: never answered, its sender died waiting)."""

    webhook_id: str
    body: dict[str, Any]
    verified: bool
    answered: int | None = None


@dataclass
class BatchHooks:
    """A receiver that records `batch.completed` POSTs and can hang or fail the next ones; job events get 200."""

    secret: str
    server: ThreadingHTTPServer
    posts: list[Post] = field(default_factory=list)
    hang: int = 0
    fail: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/batch-hooks"

    def snapshot(self) -> list[Post]:
        with self.lock:
            return list(self.posts)


@pytest.fixture
def hooks(webhook_secret: str) -> Iterator[BatchHooks]:
    receiver: BatchHooks

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            body = json.loads(raw)
            status: int | None = 200
            if body.get("type") == "batch.completed":
                try:
                    Webhook(receiver.secret).verify(raw, headers)
                    verified = True
                except Exception:
                    verified = False
                post = Post(headers["webhook-id"], body, verified)
                with receiver.lock:
                    receiver.posts.append(post)
                    hang, fail = receiver.hang > 0, receiver.hang == 0 and receiver.fail > 0
                    receiver.hang -= int(hang)
                    receiver.fail -= int(fail)
                if hang:
                    receiver.released.wait(300)
                    return  # the sender is gone by now: nothing to answer
                status = post.answered = 500 if fail else 200
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = BatchHooks(secret=webhook_secret, server=server)
    threading.Thread(target=server.serve_forever, daemon=True, name="batch-hooks").start()
    yield receiver
    receiver.released.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def own_env(pipeline_env: dict[str, str]) -> dict[str, str]:
    """The pipeline's settings on a Redis database of this test's own, emptied first."""
    database = next(_DATABASES)
    url = pipeline_env["GENQUEUE_REDIS_URL"].rsplit("/", 1)[0] + f"/{database}"
    redis.Redis.from_url(url).flushdb()
    return {**pipeline_env, "GENQUEUE_REDIS_URL": url}


@pytest.fixture
def stack(own_env: dict[str, str], tmp_path: Path) -> Iterator[LocalStack]:
    """Workers and beat this test starts (and may kill), all stopped by pid at the end; each process starts with
    `own_env` as it is then (a test may add settings first)."""
    local = LocalStack(tmp_path / "stack", env=own_env)
    local.workdir.mkdir()
    yield local
    local.stop()


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 120.0) -> T:
    """The first truthy value of `probe()`, polled; TimeoutError naming `what` when none comes in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"{what} did not happen within {timeout:g}s")


def submit(env: dict[str, str], tmp_path: Path, hooks_url: str, jobs: int = 2, *extra: str) -> str:
    name = f"complete-{uuid.uuid4().hex[:6]}"
    path = write_jsonl(tmp_path / f"{name}.jsonl", [image_line(n) for n in range(jobs)])
    result = run_cli(env, "batch", "submit", str(path), "--name", name, "--webhook", hooks_url, *extra)
    assert result.returncode == 0, result.stderr
    return name


def batch_store(env: dict[str, str]) -> BatchStore:
    return BatchStore(redis.Redis.from_url(env["GENQUEUE_REDIS_URL"]))


def read_batch(env: dict[str, str], name: str) -> Batch:
    batch = batch_store(env).get_by_name(name)
    assert batch is not None
    return batch


def delivered(hooks: BatchHooks) -> list[Post] | None:
    posts = hooks.snapshot()
    return posts if any(post.answered == 200 for post in posts) else None


def assert_one_event_delivered(env: dict[str, str], name: str, posts: list[Post]) -> Batch:
    """Every POST carried the batch's one event id, verified; exactly one was answered 200; the batch says so."""
    batch = read_batch(env, name)
    assert batch.webhook is not None and batch.webhook.delivered and batch.step is None
    assert {post.webhook_id for post in posts} == {batch.webhook.event_id}
    assert all(post.verified and post.body["data"]["id"] == batch.id for post in posts)
    assert [post.answered for post in posts].count(200) == 1
    return batch


def test_a_worker_killed_mid_delivery_still_delivers_exactly_one_event_id(
    stack: LocalStack, own_env: dict[str, str], hooks: BatchHooks, tmp_path: Path
) -> None:
    own_env["GENQUEUE_WEBHOOK_TIMEOUT_SECONDS"] = "3"  # the POST outlasts the kill; the lease is 2 × 3 + 30 s
    hooks.hang = 1
    first = stack.start_workers("first", concurrency=4)
    stack.start_beat()
    name = submit(own_env, tmp_path, hooks.url)
    wait_for("the first batch.completed POST", hooks.snapshot)
    first.kill()  # SIGKILL, while its thread waits for the receiver's answer
    first.proc.wait(10)
    held = read_batch(own_env, name)
    assert held.webhook is not None and held.webhook.attempts == []  # the attempt was never recorded
    assert held.step is not None and held.step.lease_until is not None  # the dead worker's lease
    stack.start_workers("second", concurrency=4)
    posts = wait_for("a delivered batch.completed", lambda: delivered(hooks), timeout=180)
    assert len(posts) == 2 and posts[0].answered is None  # the hung attempt, then the resumed one
    batch = assert_one_event_delivered(own_env, name, posts)
    assert batch.webhook is not None and [a.status_code for a in batch.webhook.attempts] == [200]


def test_a_lost_delivery_message_is_resumed_by_the_sweeper(
    stack: LocalStack, own_env: dict[str, str], hooks: BatchHooks, tmp_path: Path
) -> None:
    stack.start_workers("jobs", queues="submit,poll,finalize", concurrency=4)  # nobody takes the webhooks queue yet
    stack.start_beat()
    name = submit(own_env, tmp_path, hooks.url)
    client = redis.Redis.from_url(own_env["GENQUEUE_REDIS_URL"])

    def completion_message() -> bytes | None:
        step = read_batch(own_env, name).step
        if step is None:
            return None
        for raw in client.lrange("webhooks", 0, -1):
            if json.loads(raw)["headers"]["id"] == step.task_id:
                return bytes(raw)
        return None

    raw = wait_for("the delivery's message in the webhooks queue", completion_message)
    assert client.lrem("webhooks", 0, raw) == 1  # lost, as in a Redis crash before its AOF reached disk
    stack.start_workers("hooks", queues="webhooks", concurrency=4)
    posts = wait_for("a delivered batch.completed", lambda: delivered(hooks))
    assert len(posts) == 1
    assert_one_event_delivered(own_env, name, posts)


def test_a_duplicate_delivery_task_does_nothing(
    stack: LocalStack, own_env: dict[str, str], hooks: BatchHooks, tmp_path: Path
) -> None:
    own_env["GENQUEUE_WEBHOOK_RETRY_DELAYS"] = "[3, 3, 3]"
    hooks.fail = 1
    worker = stack.start_workers("worker", concurrency=4)
    stack.start_beat()
    name = submit(own_env, tmp_path, hooks.url)
    celery = make_celery(settings_for(own_env), main="test-duplicates")

    def retry_step() -> Batch | None:
        batch = read_batch(own_env, name)
        return batch if batch.webhook is not None and batch.webhook.attempts else None

    waiting = wait_for("the first attempt recorded", retry_step)
    assert waiting.step is not None and waiting.webhook is not None
    first_task = wait_for("the first delivery attempt in the log", lambda: attempting_task_ids(worker)[:1])[0]
    assert first_task != waiting.step.task_id
    # the first task delivered again (acks_late after a lost ack) and a stray copy, while the retry waits
    for task_id in (first_task, uuid.uuid4().hex):
        celery.send_task(BATCH_WEBHOOK_TASK, args=[waiting.id], task_id=task_id, queue="webhooks")
        wait_for(f"task {task_id} dropping itself", functools.partial(dropped, worker, task_id))
    posts = wait_for("a delivered batch.completed", lambda: delivered(hooks))
    assert [post.answered for post in posts] == [500, 200]  # one chain: the failed attempt and its one retry
    batch = assert_one_event_delivered(own_env, name, posts)
    assert batch.webhook is not None and [a.status_code for a in batch.webhook.attempts] == [500, 200]
    version = batch_store(own_env).redis.hget(f"genqueue:batch:{batch.id}", "version")
    # the retry's own task once more, after it delivered: nothing left for it
    celery.send_task(BATCH_WEBHOOK_TASK, args=[batch.id], task_id=waiting.step.task_id, queue="webhooks")
    wait_for("the delivered step's task dropping itself", functools.partial(dropped, worker, waiting.step.task_id))
    assert len(hooks.snapshot()) == 2
    assert batch_store(own_env).redis.hget(f"genqueue:batch:{batch.id}", "version") == version


def attempting_task_ids(worker: ServerProcess) -> list[str]:
    """Ids of the delivery tasks that made an attempt, in order (from the worker's line for each attempt)."""
    marker = re.compile(r"batch webhook of \S+: attempt \d+ by task (\w+) answered")
    return [found.group(1) for found in marker.finditer(worker.log_tail(500_000))]


def dropped(worker: ServerProcess, task_id: str) -> bool:
    return f"dropping duplicate or stale task {task_id}" in worker.log_tail(500_000)


def test_a_batch_with_no_dispatcher_running_says_why_it_does_not_start(own_env: dict[str, str], tmp_path: Path) -> None:
    name = f"no-beat-{uuid.uuid4().hex[:6]}"
    path = write_jsonl(tmp_path / "held.jsonl", [image_line(n) for n in range(3)])
    assert run_cli(own_env, "batch", "submit", str(path), "--name", name).returncode == 0
    fresh = run_cli(own_env, "batch", "status", name)
    assert fresh.returncode == 0 and fresh.stderr == ""  # just submitted: nothing has waited yet
    settings = settings_for(own_env)
    time.sleep(dispatcher_stale_after(settings.dispatch_interval_seconds, settings.dispatch_task_seconds) + 1)
    result = run_cli(own_env, "batch", "status", name)
    assert result.returncode == 0 and result.stdout.startswith(f"{name}: 0/3 ended")
    assert result.stderr.strip() == (
        "genqueue: warning: jobs are held but no dispatcher has run yet: start `celery -A workers beat`"
    )
    as_json = run_cli(own_env, "batch", "status", name, "--json")
    assert as_json.returncode == 0
    summary = json.loads(as_json.stdout)
    assert summary["held"] == 3 and summary["dispatcher"] == {"last_run": None, "stale": True}


def test_with_beat_running_held_jobs_do_not_warn(
    workers: ServerProcess, pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    name = f"beat-{uuid.uuid4().hex[:6]}"
    path = write_jsonl(tmp_path / "later.jsonl", [image_line(n) for n in range(2)])
    assert run_cli(pipeline_env, "batch", "submit", str(path), "--name", name, "--not-before", "+1h").returncode == 0
    submitted = time.time()

    def summary_after_a_pass() -> dict[str, Any] | None:
        result = run_cli(pipeline_env, "batch", "status", name, "--json")
        summary: dict[str, Any] = json.loads(result.stdout)
        last_run = summary["dispatcher"]["last_run"]
        return summary if last_run and datetime.fromisoformat(last_run).timestamp() > submitted else None

    try:
        summary = wait_for("a dispatcher pass after the submit", summary_after_a_pass, timeout=60)
        assert summary["held"] == 2 and summary["dispatcher"]["stale"] is False
        result = run_cli(pipeline_env, "batch", "status", name)
        assert result.returncode == 0 and result.stderr == ""
    finally:
        cancel_held(pipeline_env, name)


def cancel_held(env: dict[str, str], name: str) -> None:
    """Cancel the batch's held jobs, so that the dispatcher completes it and the session's Redis is left tidy."""
    producer = Producer(settings_for(env))
    batches = BatchStore(producer.store.redis)
    batch = batches.get_by_name(name)
    assert batch is not None
    for _, job_id in batches.line_jobs(batch.id):
        producer.store.update(job_id, lifecycle.cancel)
        batches.unhold(batch.id, "sandbox", job_id)
