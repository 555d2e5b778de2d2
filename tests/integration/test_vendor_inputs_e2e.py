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


def test_video_and_audio_data_uris_reach_veogen_as_presigned_urls_of_uploaded_objects(
    workers: ServerProcess, pipeline_env: dict[str, str], settings: Settings
) -> None:
    clip, sound = b"\x00\x00\x00\x18ftypmp42 a tiny clip", b"ID3 a tiny sound"
    video = "data:video/mp4;base64," + base64.b64encode(clip).decode()
    audio = "data:audio/mpeg;base64," + base64.b64encode(sound).decode()
    job = submit(
        pipeline_env,
        "--provider",
        "veogen",
        "--model",
        "seedance-2.0",
        "--prompt",
        "a dancer to this beat",
        "--option",
        f"reference_video_urls={json.dumps([video])}",
        "--option",
        f"reference_audio_urls={json.dumps([audio])}",
    )
    assert job["status"] == "succeeded"
    config = settings.provider("veogen")
    answer = httpx.get(
        f"{config.base_url}/api/v1/generations/{job['provider_task_id']}",
        headers={"Authorization": f"Bearer {config.api_key}"},
    )
    parameters = answer.json()["data"]["parameters"]
    [sent_video], [sent_audio] = parameters["video_urls"], parameters["audio_urls"]
    for sent, body, name, content_type in (
        (sent_video, clip, "data-0.mp4", "video/mp4"),
        (sent_audio, sound, "data-1.mp3", "audio/mpeg"),
    ):
        assert "Signature=" in sent and urlsplit(sent).path.endswith(f"/inputs/{job['id']}/{name}")
        fetched = httpx.get(sent)
        assert fetched.content == body and fetched.headers["content-type"] == content_type


def test_a_video_data_uri_for_vicsee_needs_an_https_bucket_and_is_refused_up_front(
    pipeline_env: dict[str, str], settings: Settings
) -> None:
    """VicSee takes video inputs as https URLs only: with the local (http) S3 endpoint, the upload's presigned URL
    could not be taken, so the request is refused up front with exit 2, as any other bad input."""
    assert (settings.s3_endpoint_url or "").startswith("http://")
    video = "data:video/mp4;base64," + base64.b64encode(b"clip").decode()
    result = run_cli(
        pipeline_env,
        "submit",
        "--provider",
        "vicsee",
        "--model",
        "happyhorse-video-edit",
        "--prompt",
        "make it night",
        "--option",
        f"video_url={video}",
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("genqueue: error: vicsee takes video and audio inputs as https URLs only")
    assert len(result.stderr.splitlines()) == 1
