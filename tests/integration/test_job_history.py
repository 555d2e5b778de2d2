"""A job's history through real workers: every run of every step, with its try, the answer its call got and its
outcome, from `genqueue status --history` and the HTTP API alike."""

from __future__ import annotations

import json

import httpx
import pytest

from infra.local.processes import ServerProcess
from producer.api import Producer
from shared.settings import Settings
from tests.integration.test_pipeline import run_cli

pytestmark = pytest.mark.integration


def test_status_history_shows_each_run_with_its_try_answer_and_outcome(
    workers: ServerProcess, settings: Settings, pipeline_env: dict[str, str], sandbox_url: str
) -> None:
    httpx.post(
        f"{sandbox_url}/_control/faults",
        json={"target": "submit", "dialect": "vicsee", "status": 429, "retry_after": 1, "count": 1},
    )
    producer = Producer(settings)
    job = producer.submit("vicsee", "sora-2", "a flower opening, in history", {"duration": 10})
    assert producer.wait(job.id, timeout=60).status.value == "succeeded"

    result = run_cli(pipeline_env, "status", job.id, "--history", "--json")
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)["history"]
    steps = [(run["step"], run["attempt"], run["answer"]) for run in runs]
    assert steps[:2] == [("submit", 0, 429), ("submit", 1, 200)], steps
    assert runs[0]["outcome"] == "queued, retry rate_limited #1"
    assert {"poll", "finalize"} <= {run["step"] for run in runs}
    assert runs[-1]["outcome"].startswith("succeeded")
    assert all(run["seconds"] >= 0 for run in runs)

    text = run_cli(pipeline_env, "status", job.id, "--history")
    assert text.returncode == 0 and "rate_limited" in text.stdout and "finalize" in text.stdout
