"""The model catalog of each built-in provider, from the vendors' documents, and the checks made before sending.

`catalog_for(name)` is None for `gateway` and for every provider added by settings: any model is accepted there
and only the adapter's own refusals apply. The gateway's page is a generic router that names one model (`veo3`)
by way of example; a catalog of that one model would refuse every image and audio model it routes.

A provider whose model list is open (`catalog_data.OPEN_LISTS`: VicSee, whose models come from
`vicsee_list_models`) keeps a catalog of the models it knows, for their documented rules and prices, and accepts
any other id with the options the documents define for every model, and no price (`spec_for`). Each spec says
whether its id is documented or assumed (`ModelSpec.documented`).

Documented facts (the vendors' documents, see docs/dialects.md) and what was assumed where they are silent:
- vicsee: the models its pages name (veo-3.1, flux-2 and nano-banana are assumed ids, from display names; the
  rest are named as ids). Reference inputs: at most 7 images, 3 videos, 3 audios (tool page). Durations 10|15
  only for sora-2 (the REST page's "10 or 15 seconds"; the tool page gives 5/6/10/15 as examples for other
  models, so those are left open). Resolution 1K|2K|4K for the nano-banana-pro models. Price: only sora-2 at
  10 s, 20 credits (the REST example); 15 s is not documented, so a 15 s job, or one with no duration (the
  longest allowed, 15 s, as below), has no estimate.
  Reference inputs only on seedance-2-0-reference-to-video; video_url and audio_setting only on
  happyhorse-video-edit; output_format only on image models and `audio` only on video models ("Image output
  format", "Enable native audio (supported video models)"). No prompt limit is documented.
- veogen: models, durations, modes, styles, per-second prices (480p base; 720p and the reference-video discount
  from the page) as documented; prompt <= 2,000; up to 14 image inputs on image models, up to 3 reference
  videos and 3 reference audios on Seedance. Prices of sora-2, sora-2-pro, veo-3.1-fast and the image models
  are not documented (veo-3.1-fast's 4k x3 has no base): None.
- veo3api: veo3_fast 240 and veo3 500 credits per job; prompt <= 1,000; aspect ratios 16:9 and 9:16.
- sandbox (ours): every model takes every unified option and needs a prompt (the sandbox refuses an empty one);
  sandbox-image 1 credit per job, sandbox-video 1 credit per second (1-60 s), sandbox-audio 0 credits (the
  sandbox server charges nothing for audio).
Estimates never undershoot: with no duration in the request, a per-second price is taken at the vendor's
documented default duration (`ModelSpec.default_duration`: only the sandbox documents one), else at the longest
duration the model allows; with no resolution, at the dearest resolution multiplier (VeoGen documents no default
resolution). A model with no price, or a per-second price and no bound on its durations, has no estimate.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.errors import InvalidRequest
from shared.models import Cost, GenerationRequest
from shared.providers._common import set_options
from shared.providers.catalog_data import CATALOGS, OPEN_LISTS, Kind, ModelSpec, Price

__all__ = ["Kind", "ModelSpec", "Price", "catalog_for", "estimate_cost", "model_kind", "spec_for", "validate_request"]

#: how a refusal names each counted input field
INPUT_NOUNS = {
    "image_urls": "image inputs",
    "reference_image_urls": "reference images",
    "reference_video_urls": "reference videos",
    "reference_audio_urls": "reference audios",
}


def catalog_for(provider_name: str) -> dict[str, ModelSpec] | None:
    """The models of a built-in provider by id; None when any model is accepted (gateway, providers from settings)."""
    return CATALOGS.get(provider_name)


def spec_for(provider_name: str, model: str) -> ModelSpec | None:
    """The spec of `model` at a provider with a catalog: the listed one, else (open list only) an assumed spec.

    The assumed spec of an unlisted model on an open list takes the options the vendor defines for every model,
    needs a prompt, has no kind and no price (`documented=False`). None when the catalog is closed and does not
    list `model`, or the provider has no catalog.
    """
    spec = (catalog_for(provider_name) or {}).get(model)
    if spec is None and provider_name in OPEN_LISTS:
        spec = ModelSpec(id=model, kind=None, documented=False, options=OPEN_LISTS[provider_name])
    return spec


def model_kind(provider_name: str, model: str) -> Kind | None:
    """What `model` makes: from the provider's own catalog, else from any built-in catalog listing that id."""
    spec = (catalog_for(provider_name) or {}).get(model)
    if spec is None:
        spec = next((models[model] for models in CATALOGS.values() if model in models), None)
    return None if spec is None else spec.kind


def validate_request(provider_name: str, request: GenerationRequest) -> ModelSpec | None:
    """The model's spec when `request` fits it (None for a provider without a catalog); else InvalidRequest.

    On an open list an unlisted model is checked against its assumed spec (`spec_for`). The one-line reason names
    what is wrong and, where there is a list, what is allowed.
    """
    models = catalog_for(provider_name)
    if models is None:
        return None
    spec = spec_for(provider_name, request.model)
    if spec is None:
        raise InvalidRequest(f"unknown model {request.model!r} for {provider_name}; valid: {', '.join(sorted(models))}")
    where = f"{provider_name} model {spec.id}"
    refused = sorted(set_options(request) - spec.options)
    if refused:
        noun = "option" if len(refused) == 1 else "options"
        raise InvalidRequest(f"{where} does not take the {noun} " + ", ".join(f"'{name}'" for name in refused))
    if spec.prompt_required and not request.prompt.strip():
        raise InvalidRequest(f"{where} needs a prompt")
    if spec.max_prompt_chars is not None and len(request.prompt) > spec.max_prompt_chars:
        raise InvalidRequest(
            f"prompt is {len(request.prompt)} characters; {provider_name} takes at most {spec.max_prompt_chars}"
        )
    _check_duration(where, spec, request.duration)
    _check_choice(where, "aspect ratio", request.aspect_ratio, spec.aspect_ratios)
    _check_choice(where, "resolution", request.resolution, spec.resolutions)
    _check_choice(where, "mode", request.mode, spec.modes)
    _check_choice(where, "style", request.style, spec.styles)
    for field, limit in spec.max_inputs.items():
        count = len(getattr(request, field))
        if count > limit:
            raise InvalidRequest(f"{where} takes at most {limit} {INPUT_NOUNS.get(field, field)}; got {count}")
    return spec


def _check_duration(where: str, spec: ModelSpec, duration: int | None) -> None:
    if duration is None:
        return
    if spec.durations is not None and duration not in spec.durations:
        allowed = ", ".join(str(value) for value in spec.durations)
        raise InvalidRequest(f"duration {duration} is not allowed for {where}; allowed: {allowed}")
    if spec.duration_range is not None and not spec.duration_range[0] <= duration <= spec.duration_range[1]:
        low, high = spec.duration_range
        raise InvalidRequest(f"duration {duration} is not allowed for {where}; allowed: {low} to {high} seconds")


def _check_choice(where: str, what: str, value: str | None, allowed: list[str] | None) -> None:
    if value is not None and allowed is not None and value not in allowed:
        raise InvalidRequest(f"{what} {value!r} is not allowed for {where}; allowed: {', '.join(allowed)}")


def estimate_cost(provider_name: str, request: GenerationRequest, prices: Mapping[str, Price] | None = None) -> Cost:
    """What the documents say `request` costs at most, in credits and/or USD; `Cost()` where they say nothing.

    `prices` (model id -> price: the provider's GENQUEUE_PROVIDERS__<NAME>__PRICES) come before the documents'.
    Never below what the vendor will charge where the documents give prices: what the request leaves out is taken
    at the vendor's documented default, else at the dearest value the model allows (module docstring).
    """
    spec = spec_for(provider_name, request.model)
    price = (prices or {}).get(request.model) or (spec.price if spec is not None else None)
    if price is None:
        return Cost()
    if request.reference_video_urls and price.with_reference_video is not None:
        price = price.with_reference_video
    multipliers = price.resolution_multipliers or {}
    if request.resolution is not None:
        factor = multipliers.get(request.resolution, 1.0)
    else:
        factor = max([1.0, *multipliers.values()])
    seconds = request.duration
    if seconds is None and spec is not None:
        seconds = _default_or_longest(spec)
    if price.only_durations is not None and seconds not in price.only_durations:
        return Cost()
    return Cost(
        credits=_total(price.credits_per_job, price.credits_per_second, seconds, factor),
        usd=_total(price.usd_per_job, price.usd_per_second, seconds, factor),
    )


def _default_or_longest(spec: ModelSpec) -> int | None:
    if spec.default_duration is not None:
        return spec.default_duration
    if spec.durations:
        return max(spec.durations)
    return spec.duration_range[1] if spec.duration_range else None


def _total(per_job: float | None, per_second: float | None, seconds: int | None, factor: float) -> float | None:
    parts = [per_job] if per_job is not None else []
    if per_second is not None and seconds is not None:
        parts.append(per_second * seconds)
    # rounding keeps 0.132 * (0.284 / 0.132) * 10 at 2.84 rather than 2.8400000000000003
    return round(sum(parts) * factor, 6) if parts else None
