"""The model catalog: documented limits refused with one-line reasons, cost estimates, and its fit with the adapters."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import InvalidRequest
from shared.models import Cost
from shared.providers import catalog_data, gateway, veo3api, veogen, vicsee
from shared.providers.catalog import ModelSpec, catalog_for, estimate_cost, model_kind, validate_request
from shared.providers.registry import ADAPTERS

from .helpers import FakeInputs, config, req


def refused(provider: str, model: str, prompt: str = "p", **options: Any) -> str:
    with pytest.raises(InvalidRequest) as caught:
        validate_request(provider, req(model, prompt, **options))
    assert "\n" not in caught.value.message
    return caught.value.message


def test_sora_2_on_veogen_refuses_duration_12() -> None:
    message = refused("veogen", "sora-2", duration=12)
    assert message == "duration 12 is not allowed for veogen model sora-2; allowed: 10, 15"


def test_a_duration_range_is_named_as_a_range() -> None:
    assert refused("veogen", "grok-video-1", duration=31).endswith("allowed: 6 to 30 seconds")
    assert validate_request("veogen", req("grok-video-1", duration=30)) is not None


def test_a_1500_character_prompt_on_veo3api() -> None:
    assert refused("veo3api", "veo3", "x" * 1500) == "prompt is 1500 characters; veo3api takes at most 1000"
    assert validate_request("veo3api", req("veo3", "x" * 1000)) is not None


def test_veogen_prompts_stop_at_2000() -> None:
    assert refused("veogen", "seedance-2.0", "x" * 2001) == "prompt is 2001 characters; veogen takes at most 2000"


def test_an_unknown_model_lists_the_valid_ones() -> None:
    message = refused("veo3api", "veo4")
    assert message == "unknown model 'veo4' for veo3api; valid: veo3, veo3_fast"


@pytest.mark.parametrize(
    ("provider", "model", "options", "named"),
    [
        ("veogen", "seedance-2.0", {"style": "anime"}, "'style'"),
        ("veogen", "sora-2", {"reference_video_urls": ["https://v.example/a.mp4"]}, "'reference_video_urls'"),
        ("veogen", "gpt-4o-image", {"duration": 10}, "'duration'"),
        ("veogen", "sora-2", {"mode": "fun"}, "'mode'"),
        ("vicsee", "sora-2", {"video_url": "https://v.example/a.mp4"}, "'video_url'"),
        ("vicsee", "flux-2", {"duration": 10}, "'duration'"),
        ("vicsee", "seedance-2-0-text-to-video", {"reference_image_urls": ["https://a.example/r.png"]}, "reference"),
        ("veo3api", "veo3_fast", {"duration": 8, "resolution": "1080p"}, "options 'duration', 'resolution'"),
    ],
)
def test_options_a_model_does_not_take(provider: str, model: str, options: dict[str, Any], named: str) -> None:
    message = refused(provider, model, **options)
    assert message.startswith(f"{provider} model {model} does not take the option")
    assert named in message


@pytest.mark.parametrize(
    ("provider", "model", "options", "expected"),
    [
        (
            "veo3api",
            "veo3",
            {"aspect_ratio": "1:1"},
            "aspect ratio '1:1' is not allowed for veo3api model veo3; allowed: 16:9, 9:16",
        ),
        (
            "vicsee",
            "nano-banana-pro",
            {"resolution": "8K"},
            "resolution '8K' is not allowed for vicsee model nano-banana-pro; allowed: 1K, 2K, 4K",
        ),
        (
            "veogen",
            "grok-video-1",
            {"mode": "frame"},
            "mode 'frame' is not allowed for veogen model grok-video-1; allowed: custom, normal, fun, spicy",
        ),
        ("veogen", "sora-2-pro", {"style": "noir"}, "style 'noir' is not allowed"),
        ("veogen", "seedance-2.0-fast", {"resolution": "1080p"}, "allowed: 480p, 720p"),
        ("vicsee", "sora-2", {"duration": 5}, "allowed: 10, 15"),
    ],
)
def test_values_a_model_does_not_allow(provider: str, model: str, options: dict[str, Any], expected: str) -> None:
    assert expected in refused(provider, model, **options)


def test_a_prompt_is_required_where_documented() -> None:
    assert refused("vicsee", "sora-2", "   ") == "vicsee model sora-2 needs a prompt"


def test_too_many_image_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ModelSpec(id="one-image", kind="video", options=frozenset({"image_urls"}), max_inputs={"image_urls": 1})
    monkeypatch.setitem(catalog_data.CATALOGS, "tiny", {"one-image": spec})
    images = ["https://a.example/1.png", "https://a.example/2.png"]
    assert refused("tiny", "one-image", image_urls=images) == "tiny model one-image takes at most 1 image inputs; got 2"


def test_documented_requests_pass() -> None:
    assert validate_request("vicsee", req("sora-2", duration=15, aspect_ratio="16:9")) is not None
    assert validate_request("veogen", req("sora-2-pro", duration=25, style="anime", watermark=True)) is not None
    assert validate_request("veo3api", req("veo3_fast", image_urls=["https://e.com/c.jpg"], aspect_ratio="9:16"))
    assert validate_request("veogen", req("seedance-2.0", reference_audio_urls=["https://a.example/a.mp3"]))
    refs = {
        "reference_image_urls": ["https://a.example/r.png"] * 7,
        "reference_video_urls": ["https://v.example/a.mp4"] * 3,
    }
    assert validate_request("vicsee", req("seedance-2-0-reference-to-video", **refs)) is not None
    edit = req("happyhorse-video-edit", video_url="https://v.example/a.mp4", audio_setting="auto")
    assert validate_request("vicsee", edit) is not None


@pytest.mark.parametrize("provider", ["gateway", "my-own-vendor"])
def test_a_provider_without_a_catalog_accepts_any_model(provider: str) -> None:
    assert catalog_for(provider) is None
    assert validate_request(provider, req("anything-at-all", "x" * 5000, duration=600, style="whatever")) is None
    assert estimate_cost(provider, req("anything-at-all")) == Cost()


@pytest.mark.parametrize(
    ("provider", "model", "options", "cost"),
    [
        ("vicsee", "sora-2", {"duration": 10}, Cost(credits=20)),
        # only the 10 s price is documented; no duration is priced as the longest allowed, 15 s: unknown
        ("vicsee", "sora-2", {"duration": 15}, Cost()),
        ("vicsee", "sora-2", {}, Cost()),
        ("veo3api", "veo3_fast", {}, Cost(credits=240)),
        ("veo3api", "veo3", {"image_urls": ["https://e.com/c.jpg"]}, Cost(credits=500)),
        ("veogen", "grok-video-1", {"duration": 10}, Cost(usd=0.3)),
        ("veogen", "seedance-2.0", {"duration": 10, "resolution": "480p"}, Cost(usd=1.32)),
        ("veogen", "seedance-2.0", {"duration": 10}, Cost(usd=2.84)),  # no resolution: the dearest, 720p
        ("veogen", "seedance-2.0", {"duration": 10, "resolution": "720p"}, Cost(usd=2.84)),
        (
            "veogen",
            "seedance-2.0",
            {"duration": 5, "reference_video_urls": ["https://v.example/a.mp4"], "resolution": "480p"},
            Cost(usd=0.4),
        ),
        (
            "veogen",
            "seedance-2.0-fast",
            {"duration": 10, "resolution": "720p", "reference_video_urls": ["https://v.example/a.mp4"]},
            Cost(usd=1.36),
        ),
        # no duration and no resolution, neither default documented: the longest (15 s) at the dearest (720p)
        ("veogen", "seedance-2.0", {}, Cost(usd=4.26)),
        ("veogen", "seedance-2.0", {"resolution": "480p"}, Cost(usd=1.98)),
        ("veogen", "seedance-2.0-fast", {"duration": 4}, Cost(usd=0.9152)),
        ("veogen", "grok-video-1", {}, Cost(usd=0.9)),
        ("sandbox", "sandbox-video", {}, Cost(credits=1)),
        ("vicsee", "sora-2-pro", {}, Cost()),
        ("veogen", "sora-2", {"duration": 10}, Cost()),
        ("vicsee", "flux-2", {}, Cost()),
        ("sandbox", "sandbox-video", {"duration": 30}, Cost(credits=30)),
        ("sandbox", "sandbox-image", {}, Cost(credits=1)),
        ("sandbox", "sandbox-audio", {}, Cost(credits=0)),
        ("veo3api", "not-a-model", {}, Cost()),
    ],
)
def test_cost_estimates(provider: str, model: str, options: dict[str, Any], cost: Cost) -> None:
    assert estimate_cost(provider, req(model, **options)) == cost


def test_model_kind_looks_past_the_providers_own_catalog() -> None:
    assert model_kind("veogen", "gpt-4o-image") == "image"
    assert model_kind("gateway", "veo3") == "video"
    assert model_kind("gateway", "sandbox-audio") == "audio"
    assert model_kind("gateway", "unheard-of") is None


@pytest.mark.parametrize(
    ("provider", "takes"),
    [
        ("vicsee", vicsee.TAKES),
        ("veogen", veogen.TAKES),
        ("veo3api", veo3api.TAKES),
        ("sandbox", catalog_data.ALL_OPTIONS),
    ],
)
def test_every_option_a_model_takes_is_one_its_adapter_can_send(provider: str, takes: frozenset[str]) -> None:
    models = catalog_for(provider)
    assert models is not None
    for spec in models.values():
        assert spec.options <= takes, (spec.id, spec.options - takes)
        assert spec.options <= catalog_data.ALL_OPTIONS


def test_gateway_takes_only_unified_options() -> None:
    assert gateway.TAKES <= catalog_data.ALL_OPTIONS


@pytest.mark.parametrize("provider", ["vicsee", "veogen", "veo3api", "sandbox"])
def test_every_catalog_model_builds_a_request(provider: str) -> None:
    models = catalog_for(provider)
    assert models is not None
    for model in models:
        assert ADAPTERS[provider].build_submit(req(model), config(provider), FakeInputs()).json_body is not None


# --- issue 10: vendor rules per vendor, open lists


@pytest.mark.parametrize(
    ("provider", "model", "options", "expected"),
    [
        (
            "vicsee",
            "seedance-2-0-reference-to-video",
            {"reference_image_urls": ["https://a.example/r.png"] * 8},
            "takes at most 7 reference images; got 8",
        ),
        (
            "vicsee",
            "seedance-2-0-reference-to-video",
            {"reference_audio_urls": ["https://a.example/r.mp3"] * 4},
            "takes at most 3 reference audios; got 4",
        ),
        ("veogen", "seedance-2.0", {"reference_video_urls": ["https://v.example/a.mp4"] * 4}, "at most 3 reference"),
        ("veogen", "gpt-4o-image", {"image_urls": ["https://a.example/1.png"] * 15}, "at most 14 image inputs"),
    ],
)
def test_input_counts_are_each_vendors_own(provider: str, model: str, options: dict[str, Any], expected: str) -> None:
    assert expected in refused(provider, model, **options)


def test_input_counts_do_not_bind_other_vendors() -> None:
    many = {"reference_video_urls": [f"https://v.example/{n}.mp4" for n in range(5)]}
    assert req("anything", **many).reference_video_urls == many["reference_video_urls"]
    assert validate_request("gateway", req("anything", **many)) is None
    assert validate_request("sandbox", req("sandbox-video", image_urls=["https://a.example/1.png"] * 20))


def test_vicsee_marks_documented_and_assumed_ids() -> None:
    models = catalog_for("vicsee")
    assert models is not None
    assumed = {spec.id for spec in models.values() if not spec.documented}
    assert assumed == {"veo-3.1", "flux-2", "nano-banana"}
    assert len(models) == 9


def test_an_unknown_vicsee_model_takes_the_options_every_model_has() -> None:
    spec = validate_request("vicsee", req("sora-2-pro", aspect_ratio="16:9", resolution="1080P", extra={"x": 1}))
    assert spec is not None and spec.id == "sora-2-pro" and not spec.documented and spec.kind is None
    assert spec.price is None
    assert refused("vicsee", "sora-2-pro", duration=10) == "vicsee model sora-2-pro does not take the option 'duration'"
    assert refused("vicsee", "sora-2-pro", "  ") == "vicsee model sora-2-pro needs a prompt"
    body = ADAPTERS["vicsee"].build_submit(req("sora-2-pro", aspect_ratio="16:9"), config("vicsee"), FakeInputs())
    assert body.json_body == {
        "model": "sora-2-pro",
        "prompt": "A cat surfing in sunset, cinematic",
        "options": {"aspectRatio": "16:9"},
    }


def test_a_closed_catalog_still_refuses_unknown_models() -> None:
    assert refused("veogen", "sora-3").startswith("unknown model 'sora-3' for veogen; valid: ")
