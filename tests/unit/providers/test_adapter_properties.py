"""Property tests: whatever a vendor sends, an adapter returns a sane result or raises a ProviderError."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import InvalidRequest, ProviderError
from shared.models import GenerationRequest
from shared.providers.base import HttpAnswer, PollResult, SubmitResult
from shared.providers.registry import ADAPTERS

from .helpers import FakeInputs, config

DIALECTS = sorted(ADAPTERS)

#: every field name the dialects read, so generated bodies reach deep into the parsers
KEYS = [
    *("success", "data", "id", "task_id", "generation_id", "status", "result", "url", "urls", "error", "code"),
    *("message", "detail", "details", "errors", "output", "outputs", "download_url", "video_url", "video_urls"),
    *("progress", "fail_reason", "creditsUsed", "credits_used", "credits_needed", "price_usd", "cost_credits"),
    *("estimated_time", "estimated_seconds", "type"),
]
#: every status word of every dialect, and some near misses
WORDS = [
    *("pending", "queued", "processing", "success", "completed", "failed", "running", "succeeded"),
    *("NOT_START", "IN_PROGRESS", "SUCCESS", "FAILURE", "Completed", " failed ", "cancelled"),
    *("https://cdn.example/out.mp4", "http://h/x.png", "45-60 seconds", "57%", "1e999", "-3", "NaN"),
    *("INSUFFICIENT_CREDITS", "RATE_LIMITED", "invalid_api_key", "rate_limit_exceeded", "Insufficient credits."),
]

leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**320)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(WORDS)
    | st.text(max_size=20)
)
json_values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=40,
)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8).map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
)
statuses = st.sampled_from(
    [200, 201, 202, 204, 301, 400, 401, 402, 403, 404, 408, 418, 422, 429, 500, 502, 503]
) | st.integers(100, 599)
headers = st.dictionaries(
    st.sampled_from(["retry-after", "content-type", "x-other"]),
    st.sampled_from(["7", "0", "9" * 400, "Wed, 21 Oct 2015 07:28:00 GMT", "Mon, 01 Jan 99999 00:00:00 GMT"])
    | st.text(max_size=30),
    max_size=2,
)
answers = st.builds(HttpAnswer, status_code=statuses, headers=headers, body=bodies)

URL = "https://cdn.example/out.mp4"
#: well-formed answers per dialect (submit and poll, waiting, done and failed) for `shaped` to break piece by piece
TEMPLATES: dict[str, list[dict[str, Any]]] = {
    "vicsee": [
        {"success": True, "data": {"id": "t", "status": "processing", "creditsUsed": 20}},
        {"success": True, "data": {"id": "t", "status": "completed", "result": {"url": URL, "urls": [URL]}}},
        {
            "success": True,
            "data": {"id": "t", "status": "failed", "error": {"code": "GENERATION_FAILED", "message": "m"}},
        },
        {"success": False, "error": {"code": "RATE_LIMITED", "message": "m"}},
    ],
    "veogen": [
        {"data": {"id": "t", "status": "pending"}, "price_usd": 0.3},
        {"data": {"id": "t", "status": "completed", "output": {"url": URL, "download_url": URL, "urls": [URL]}}},
        {"data": {"id": "t", "status": "failed", "error": {"message": "m"}}},
        {"error": "Insufficient balance.", "message": "m", "errors": {"model": ["m"]}},
    ],
    "gateway": [
        {"task_id": "t"},
        {"task_id": "t", "status": "SUCCESS", "progress": "100%", "data": {"output": URL, "outputs": [URL, ""]}},
        {"task_id": "t", "status": "FAILURE", "fail_reason": "m", "progress": "20%"},
        {"error": {"message": "m", "type": "rate_limit_exceeded", "code": "rate_limit_exceeded"}},
    ],
    "veo3api": [
        {"success": True, "data": {"generation_id": "t", "status": "processing", "estimated_time": "45-60 seconds"}},
        {"generation_id": "t", "status": "completed", "video_url": URL, "progress": 100},
        {"success": True, "data": {"generation_id": "t", "status": "failed", "error": "m"}},
        {"success": False, "error": "Insufficient credits.", "credits_needed": 240, "details": {"prompt": ["m"]}},
    ],
    "sandbox": [
        {"id": "t", "status": "queued", "estimated_seconds": 3, "cost_credits": 10},
        {"id": "t", "status": "succeeded", "progress": 100, "outputs": [URL]},
        {"id": "t", "status": "failed", "progress": 30, "error": "m"},
        {"error": {"code": "rate_limited", "message": "m"}},
    ],
}


@st.composite
def mutated(draw: st.DrawFn, value: Any) -> Any:
    """`value` with each part kept, mutated further, replaced by any JSON value, or (in an object) dropped."""
    action = draw(st.sampled_from(["keep", "keep", "keep", "recurse", "recurse", "replace", "drop"]))
    if action == "replace":
        return draw(json_values)
    if action == "recurse" and isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if draw(st.integers(0, 5)) > 0:
                out[key] = draw(mutated(item))
        return out
    if action == "recurse" and isinstance(value, list):
        return [draw(mutated(item)) for item in value]
    return value


def shaped(dialect: str) -> st.SearchStrategy[HttpAnswer]:
    """Answers close to the dialect's own, mostly 2xx."""
    body = st.sampled_from(TEMPLATES[dialect]).flatmap(mutated).map(lambda v: json.dumps(v).encode())
    status = st.sampled_from([200, 200, 200, 201, 400, 402, 429, 500])
    return st.builds(HttpAnswer, status_code=status, headers=headers, body=body)


PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_submit(result: SubmitResult) -> None:
    assert result.task_id and result.task_id == result.task_id.strip()
    for amount in (result.cost.credits, result.cost.usd, result.estimated_seconds):
        assert amount is None or (math.isfinite(amount) and amount >= 0)


def check_poll(result: PollResult) -> None:
    assert result.progress is None or 0.0 <= result.progress <= 1.0
    assert all(url.lower().startswith(("http://", "https://")) for url in result.output_urls)
    assert result.failure_reason is None or "\n" not in result.failure_reason


def check_error(error: ProviderError) -> None:
    assert error.message and "\n" not in error.message
    retry_after = getattr(error, "retry_after", None)
    assert retry_after is None or (math.isfinite(retry_after) and 0 <= retry_after <= 86_400)


@pytest.mark.parametrize("dialect", DIALECTS)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_parse_submit_returns_a_result_or_a_provider_error(dialect: str, data: st.DataObject) -> None:
    answer = data.draw(answers | shaped(dialect))
    try:
        result = ADAPTERS[dialect].parse_submit(answer)
    except ProviderError as exc:
        check_error(exc)
    else:
        check_submit(result)


@pytest.mark.parametrize("dialect", DIALECTS)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_parse_poll_returns_a_result_or_a_provider_error(dialect: str, data: st.DataObject) -> None:
    answer = data.draw(answers | shaped(dialect))
    try:
        result = ADAPTERS[dialect].parse_poll(answer)
    except ProviderError as exc:
        check_error(exc)
    else:
        check_poll(result)


urls = st.sampled_from(["https://a.example/1.png", "s3://bucket/inputs/x.png", "data:image/png;base64,AAAA"])
media = st.just("https://v.example/a.mp4")
requests = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["sora-2", "veo3", "seedance-2.0", "sandbox-video", "x"]),
        "prompt": st.text(max_size=30),
    },
    optional={
        "aspect_ratio": st.sampled_from(["16:9", "9:16"]),
        "resolution": st.sampled_from(["720p", "1K"]),
        "duration": st.integers(1, 600) | st.none(),
        "output_format": st.just("png"),
        "audio": st.booleans(),
        "mode": st.just("fun"),
        "style": st.just("anime"),
        "watermark": st.booleans(),
        "private": st.booleans(),
        "size": st.just("1024x1024"),
        "scope": st.sampled_from(["images", "videos", "audio"]),
        "image_urls": st.lists(urls, max_size=3),
        "reference_image_urls": st.lists(urls, max_size=2),
        "reference_video_urls": st.lists(media, max_size=2),
        "reference_audio_urls": st.lists(st.just("https://v.example/a.mp3"), max_size=2),
        "video_url": media,
        "audio_setting": st.sampled_from(["auto", "origin"]),
        "extra": st.dictionaries(st.sampled_from(["seed", "model", "options", "aspectRatio", "images"]), st.integers()),
    },
).map(GenerationRequest.model_validate)


@pytest.mark.parametrize("dialect", DIALECTS)
@PROPERTY_SETTINGS
@given(request=requests)
def test_build_submit_gives_a_json_request_or_refuses(dialect: str, request: GenerationRequest) -> None:
    try:
        built = ADAPTERS[dialect].build_submit(request, config(dialect), FakeInputs())
    except InvalidRequest as exc:
        assert exc.message and "\n" not in exc.message
        return
    body: Any = built.json_body
    assert json.loads(json.dumps(body)) == body
    assert "s3://" not in json.dumps(body)
