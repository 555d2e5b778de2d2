"""Structured logs through a real worker: with GENQUEUE_LOG_FORMAT=json every log line is one JSON object, and one
job's story (each step run, its retries, its outcome) is the lines carrying its job_id, `jq 'select(.job_id==…)'`.
No prompt and no secret reaches the log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.local.stack import LocalStack
from producer.api import Producer
from tests.integration.conftest import settings_for

pytestmark = pytest.mark.integration

PROMPT = "a secret flower opening, never logged"


def test_a_jobs_story_is_the_json_lines_with_its_id(
    pipeline_env: dict[str, str], sandbox_url: str, tmp_path: Path
) -> None:
    stack = LocalStack(tmp_path, env={})
    try:
        # a Redis of its own, so that only this worker (and not the session's) runs the job
        env = {**pipeline_env, "GENQUEUE_REDIS_URL": stack.start_redis(), "GENQUEUE_LOG_FORMAT": "json"}
        stack.env = env
        worker = stack.start_workers(name="jsonlogs", concurrency=4)
        httpx.post(
            f"{sandbox_url}/_control/faults",
            json={"target": "submit", "dialect": "vicsee", "status": 429, "retry_after": 1, "count": 1},
        )
        producer = Producer(settings_for(env))
        job = producer.submit("vicsee", "sora-2", PROMPT, {"duration": 10})
        assert producer.wait(job.id, timeout=60).status.value == "succeeded"
        text = worker.log_tail(2_000_000)
    finally:
        stack.stop()
    records: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))  # every structured line parses
    assert records and all({"timestamp", "level", "logger", "event"} <= set(record) for record in records)
    story = [record for record in records if record.get("job_id") == job.id]
    events = [(record["step"], record["event"]) for record in story]
    assert any(step == "submit" and "429" in event and "retry rate_limited" in event for step, event in events), events
    assert {"submit", "poll", "finalize"} <= {step for step, _ in events}
    assert all(record["provider"] == "vicsee" and record["task_id"] for record in story)
    assert story[-1]["event"].endswith("succeeded")
    assert PROMPT not in text
    assert env["GENQUEUE_PROVIDERS__VICSEE__API_KEY"] not in text
