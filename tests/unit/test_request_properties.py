"""Property-based tests of the unified request: any input is either a valid request or one clear InvalidRequest."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from producer.validate import build_request
from shared.errors import InvalidRequest
from shared.models import GenerationRequest
from shared.providers.base import PassThroughInputs
from shared.providers.vicsee import VicSeeAdapter
from shared.settings import ProviderConfig

FIELDS = list(GenerationRequest.model_fields)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
option_keys = st.sampled_from([*FIELDS, "colour", "aspectRatio", ""]) | st.text(max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    model=st.text(max_size=30),
    prompt=st.text(max_size=200),
    options=st.dictionaries(option_keys, json_values, max_size=5),
    images=st.lists(st.text(max_size=30), max_size=3),
)
def test_any_input_is_a_request_or_one_line_refusal(
    model: str, prompt: str, options: dict[str, Any], images: list[str]
) -> None:
    options.pop("model", None)
    options.pop("prompt", None)
    try:
        request = build_request(model, prompt, options, images)
    except InvalidRequest as exc:
        assert exc.message and "\n" not in exc.message
        return
    assert request.model == model
    assert GenerationRequest.model_validate_json(request.model_dump_json()) == request
    assert request.option_names() <= set(FIELDS)


@settings(max_examples=100, deadline=None)
@given(urls=st.lists(st.text(max_size=40), min_size=1, max_size=3))
def test_video_and_audio_inputs_are_https_only_for_vicsee_alone(urls: list[str]) -> None:
    request = build_request("m", "p", {"reference_video_urls": urls}, [])  # the unified request takes any string
    assert request.reference_video_urls == urls
    vicsee = VicSeeAdapter()
    try:
        vicsee.build_submit(
            request, ProviderConfig(name="vicsee", dialect="vicsee", base_url="https://v.example"), PassThroughInputs()
        )
    except InvalidRequest as exc:
        assert any(not url.startswith("https://") for url in urls)
        assert exc.message.startswith("vicsee takes video and audio inputs as https URLs only")
        return
    assert all(url.startswith("https://") for url in urls)
