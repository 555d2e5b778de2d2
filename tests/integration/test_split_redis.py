"""The broker and the job store on two Redis servers (GENQUEUE_BROKER_URL, GENQUEUE_STORE_URL): a job runs end to
end, its record lives only in the store's Redis and Celery's queues only in the broker's."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from infra.local.stack import LocalStack
from tests.integration.test_pipeline import run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def split_env(pipeline_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The pipeline's settings with a broker of its own (a second redis-server) and the usual Redis as the store;
    one worker and beat on them."""
    stack = LocalStack(tmp_path_factory.mktemp("split"))
    broker = stack.start_redis()
    env = {**pipeline_env, "GENQUEUE_BROKER_URL": broker, "GENQUEUE_STORE_URL": pipeline_env["GENQUEUE_REDIS_URL"]}
    env["GENQUEUE_REDIS_URL"] = "redis://127.0.0.1:1/0"  # neither may fall back to it: nothing listens there
    stack.env = env
    stack.start_workers(name="split", concurrency=4)
    stack.start_beat()
    yield env
    stack.stop()


def test_a_job_runs_with_its_broker_and_its_store_apart(split_env: dict[str, str]) -> None:
    result = run_cli(split_env, "submit", "--provider", "sandbox", "--model", "sandbox-image", "--prompt", "apart",
                     "--wait", "--json", "--timeout", "60")  # fmt: skip
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["status"] == "succeeded"
    broker = redis.Redis.from_url(split_env["GENQUEUE_BROKER_URL"])
    store = redis.Redis.from_url(split_env["GENQUEUE_STORE_URL"])
    assert store.exists(f"genqueue:job:{job['id']}") and not broker.exists(f"genqueue:job:{job['id']}")
    assert not list(broker.scan_iter("genqueue:*"))  # limits, keys and indexes are the store's too
    assert broker.exists("_kombu.binding.submit")  # the submit task went through the broker
    assert run_cli(split_env, "status", job["id"], "--json").returncode == 0
