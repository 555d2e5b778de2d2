"""Issue 10 through real workers and the sandbox: inputs in the shape each vendor takes, VicSee's open model list."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlsplit

import httpx
import pytest

from infra.local.processes import ServerProcess
from shared.settings import Settings
from tests.integration.test_pipeline import run_cli

pytestmark = pytest.mark.integration

#: a 1x1 PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def submit(env: dict[str, str], *args: str) -> dict[str, object]:
    result = run_cli(env, "submit", *args, "--wait", "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    job: dict[str, object] = json.loads(result.stdout)
    return job


def test_a_data_uri_reaches_veogen_as_a_presigned_url_of_an_uploaded_object(
    workers: ServerProcess, pipeline_env: dict[str, str], settings: Settings
) -> None:
    data_uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    job = submit(
        pipeline_env, "--provider", "veogen", "--model", "gpt-4o-image", "--prompt", "a cat", "--image", data_uri
    )
    assert job["status"] == "succeeded"
    # what the sandbox's VeoGen received: its poll answer echoes the request's parameters
    config = settings.provider("veogen")
    answer = httpx.get(
        f"{config.base_url}/api/v1/generations/{job['provider_task_id']}",
        headers={"Authorization": f"Bearer {config.api_key}"},
    )
    [sent] = answer.json()["data"]["parameters"]["image_urls"]
    assert sent.startswith(("https://", "http://")) and "Signature=" in sent
    assert urlsplit(sent).path.endswith(f"/{settings.s3_prefix}inputs/{job['id']}/data-0.png")
    fetched = httpx.get(sent)
    assert fetched.status_code == 200 and fetched.content == PNG
    assert fetched.headers["content-type"] == "image/png"


def test_a_data_uri_still_reaches_vicsee_which_takes_them_inline(
    workers: ServerProcess, pipeline_env: dict[str, str]
) -> None:
    data_uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    job = submit(pipeline_env, "--provider", "vicsee", "--model", "sora-2", "--prompt", "a cat", "--image", data_uri)
    assert job["status"] == "succeeded"


def test_an_unknown_vicsee_model_is_accepted_and_run(workers: ServerProcess, pipeline_env: dict[str, str]) -> None:
    # sora-2-pro is served by the sandbox's VicSee (as vicsee_list_models would list it) but not in our catalog
    job = submit(
        pipeline_env,
        "--provider",
        "vicsee",
        "--model",
        "sora-2-pro",
        "--prompt",
        "a flower opening",
        "--option",
        "aspect_ratio=16:9",
    )
    assert job["status"] == "succeeded" and job["model"] == "sora-2-pro"
    cost = job["cost"]
    assert isinstance(cost, dict) and cost["credits"] == 60.0  # the sandbox's figure: the catalog had none
