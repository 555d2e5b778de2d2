"""`genqueue submit --provider P --wait` end to end for each vendor dialect, against the sandbox over HTTP."""

from __future__ import annotations

import json

import httpx
import pytest

from infra.local.processes import ServerProcess
from infra.local.webhook_receiver import WebhookReceiver
from sandbox.files import expected_sha256
from tests.integration.test_pipeline import run_cli

pytestmark = pytest.mark.integration

CASES = [
    ("vicsee", "sora-2", ["--option", "duration=10", "--option", "aspect_ratio=16:9"], {"credits": 20.0}),
    ("veogen", "sora-2", ["--option", "duration=10"], None),
    ("veogen", "gpt-4o-image", ["--option", "aspect_ratio=16:9"], None),
    ("gateway", "veo3", ["--option", "aspect_ratio=16:9"], None),
    ("veo3api", "veo3_fast", ["--option", "aspect_ratio=9:16"], {"credits": 240.0}),
]


@pytest.mark.parametrize(("provider", "model", "options", "cost"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_each_dialect_end_to_end(
    workers: ServerProcess,
    pipeline_env: dict[str, str],
    sandbox_url: str,
    receiver: WebhookReceiver,
    provider: str,
    model: str,
    options: list[str],
    cost: dict[str, float] | None,
) -> None:
    before = httpx.get(f"{sandbox_url}/_control/stats").json()["submits"].get(provider, 0)
    result = run_cli(
        pipeline_env,
        "submit",
        "--provider",
        provider,
        "--model",
        model,
        "--prompt",
        f"a flower opening, by {provider}",
        *options,
        "--webhook",
        receiver.url,
        "--wait",
        "--json",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    job = json.loads(result.stdout)
    assert job["status"] == "succeeded" and job["provider"] == provider
    [output] = job["outputs"]
    assert output["sha256"] == expected_sha256(job["provider_task_id"], 0, output["size"])
    if cost is not None:
        assert {k: v for k, v in job["cost"].items() if v is not None} == cost
    assert httpx.get(f"{sandbox_url}/_control/stats").json()["submits"][provider] == before + 1
    event = receiver.wait_for(job["id"])
    assert event.verified and event.body["data"]["status"] == "succeeded"
