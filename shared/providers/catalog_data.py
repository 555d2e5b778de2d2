"""The catalog as data: `Price`, `ModelSpec`, and the models of each built-in provider (see catalog.py for why)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared.models import GenerationRequest

Kind = Literal["image", "video", "audio"]

#: every unified option name: what the sandbox's models take
ALL_OPTIONS = frozenset(GenerationRequest.model_fields) - {"model", "prompt"}


class Price(BaseModel):
    """What one job costs: per job and/or per second, in credits and/or USD, at the base resolution.

    `resolution_multipliers` scales the base rate for a resolution; `with_reference_video` replaces the whole price
    when reference videos are given (VeoGen's Seedance discount). `only_durations` lists the durations the price is
    documented for (None: every duration the model allows); a job of any other length has no estimate.
    """

    model_config = ConfigDict(frozen=True)

    credits_per_job: float | None = None
    usd_per_job: float | None = None
    credits_per_second: float | None = None
    usd_per_second: float | None = None
    resolution_multipliers: dict[str, float] | None = None
    with_reference_video: Price | None = None
    only_durations: list[int] | None = None


class ModelSpec(BaseModel):
    """One model: what it makes, the values it allows (None = any) and the unified options it takes.

    `documented` is True when a vendor document names this id, False when it was assumed (guessed from a display
    name, or a model of an open list that the catalog does not know). `kind` is None when not known.
    `default_duration` is the duration the vendor documents for a request without one; None when undocumented
    (estimates then take the longest the model allows). `max_inputs` bounds the number of inputs per unified field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    kind: Kind | None
    documented: bool = True
    durations: list[int] | None = None
    duration_range: tuple[int, int] | None = None
    aspect_ratios: list[str] | None = None
    resolutions: list[str] | None = None
    modes: list[str] | None = None
    styles: list[str] | None = None
    max_prompt_chars: int | None = None
    prompt_required: bool = True
    options: frozenset[str] = frozenset()
    max_inputs: dict[str, int] = {}
    default_duration: int | None = None
    price: Price | None = None


def _models(*specs: ModelSpec) -> dict[str, ModelSpec]:
    return {spec.id: spec for spec in specs}


def _opts(*names: str) -> frozenset[str]:
    return frozenset(names) | {"extra"}


# --- vicsee (000 REST page, 001 tool page) ---
_VS_VIDEO = _opts("aspect_ratio", "duration", "resolution", "audio")
_VS_IMAGE = _opts("aspect_ratio", "output_format", "image_urls")
_VS_REFERENCES = frozenset({"reference_image_urls", "reference_video_urls", "reference_audio_urls"})
#: the tool page's counts: "up to 7 reference images", "up to 3 public https video URLs", "up to 3 ... audio URLs"
_VS_REFERENCE_LIMITS = {"reference_image_urls": 7, "reference_video_urls": 3, "reference_audio_urls": 3}
_NANO_PRO = ["1K", "2K", "4K"]
#: what a VicSee model the catalog does not list takes: the options both pages define for every model (the
#: REST page's aspectRatio, resolution and image; `extra` for the rest). duration, output_format and audio are
#: for one kind of model only, references and video_url for one family, so they are not assumed.
VICSEE_ANY_MODEL = _opts("aspect_ratio", "resolution", "image_urls")

VICSEE = _models(
    ModelSpec(
        id="sora-2",
        kind="video",
        durations=[10, 15],
        options=_VS_VIDEO | {"image_urls"},
        # the REST page's example: a 10 s job used 20 credits; what 15 s costs is not documented
        price=Price(credits_per_job=20, only_durations=[10]),
    ),
    # veo-3.1, flux-2 and nano-banana are guessed from the display names "Veo 3.1", "FLUX 2", "Nano Banana"
    ModelSpec(id="veo-3.1", kind="video", documented=False, options=_VS_VIDEO | {"image_urls"}),
    ModelSpec(id="flux-2", kind="image", documented=False, options=_VS_IMAGE),
    ModelSpec(id="nano-banana", kind="image", documented=False, options=_VS_IMAGE),
    ModelSpec(id="nano-banana-pro", kind="image", resolutions=_NANO_PRO, options=_VS_IMAGE | {"resolution"}),
    ModelSpec(
        id="nano-banana-pro-text-to-image",
        kind="image",
        resolutions=_NANO_PRO,
        options=_VS_IMAGE - {"image_urls"} | {"resolution"},
    ),
    ModelSpec(id="seedance-2-0-text-to-video", kind="video", options=_VS_VIDEO),
    ModelSpec(
        id="seedance-2-0-reference-to-video",
        kind="video",
        options=_VS_VIDEO | _VS_REFERENCES,
        max_inputs=_VS_REFERENCE_LIMITS,
    ),
    ModelSpec(id="happyhorse-video-edit", kind="video", options=_opts("video_url", "audio_setting")),
)

# --- veogen (002) ---
_VG_PROMPT = 2000
_VG_VIDEO = _opts("aspect_ratio", "resolution", "duration", "image_urls")
_VG_SORA = _VG_VIDEO | {"style", "watermark", "private"}
_VG_STYLES = ["none", "thanksgiving", "comic", "news", "selfie", "nostalgic", "anime"]
_VG_SEEDANCE = _VG_VIDEO | {"reference_video_urls", "reference_audio_urls"}
#: "video_urls ... Up to 3 URLs", "audio_urls ... Up to 3 URLs"
_VG_SEEDANCE_LIMITS = {"reference_video_urls": 3, "reference_audio_urls": 3}
_VG_IMAGE = _opts("aspect_ratio", "resolution", "image_urls")


def _seedance(model_id: str, base: float, hd: float, ref_base: float, ref_hd: float) -> ModelSpec:
    """A Seedance model billed per second at 480p (`base`) and 720p (`hd`), cheaper with a reference video."""
    return ModelSpec(
        id=model_id,
        kind="video",
        duration_range=(4, 15),
        resolutions=["480p", "720p"],
        max_prompt_chars=_VG_PROMPT,
        options=_VG_SEEDANCE,
        max_inputs=_VG_SEEDANCE_LIMITS,
        price=Price(
            usd_per_second=base,
            resolution_multipliers={"720p": hd / base},
            with_reference_video=Price(usd_per_second=ref_base, resolution_multipliers={"720p": ref_hd / ref_base}),
        ),
    )


def _veogen_image(model_id: str) -> ModelSpec:
    return ModelSpec(
        id=model_id, kind="image", max_prompt_chars=_VG_PROMPT, options=_VG_IMAGE, max_inputs={"image_urls": 14}
    )


VEOGEN = _models(
    ModelSpec(
        id="grok-video-1",
        kind="video",
        duration_range=(6, 30),
        modes=["custom", "normal", "fun", "spicy"],
        max_prompt_chars=_VG_PROMPT,
        options=_VG_VIDEO | {"mode"},
        price=Price(usd_per_second=0.03),
    ),
    ModelSpec(
        id="veo-3.1-fast",
        kind="video",
        modes=["frame", "ingredient"],
        max_prompt_chars=_VG_PROMPT,
        options=_VG_VIDEO | {"mode"},
    ),
    ModelSpec(
        id="sora-2", kind="video", durations=[10, 15], styles=_VG_STYLES, max_prompt_chars=_VG_PROMPT, options=_VG_SORA
    ),
    ModelSpec(
        id="sora-2-pro",
        kind="video",
        durations=[10, 15, 25],
        styles=_VG_STYLES,
        max_prompt_chars=_VG_PROMPT,
        options=_VG_SORA,
    ),
    _seedance("seedance-2.0", 0.132, 0.284, 0.08, 0.1712),
    _seedance("seedance-2.0-fast", 0.1056, 0.2288, 0.0632, 0.136),
    *(
        _veogen_image(name)
        for name in ("gpt-4o-image", "seedream-4.5", "seedream-5.0-lite", "nano-banana-pro", "nano-banana-2")
    ),
)

# --- veo3api (004) ---
_V3_OPTIONS = _opts("aspect_ratio", "image_urls")
_V3_RATIOS = ["16:9", "9:16"]

VEO3API = _models(
    ModelSpec(
        id="veo3_fast",
        kind="video",
        aspect_ratios=_V3_RATIOS,
        max_prompt_chars=1000,
        options=_V3_OPTIONS,
        price=Price(credits_per_job=240),
    ),
    ModelSpec(
        id="veo3",
        kind="video",
        aspect_ratios=_V3_RATIOS,
        max_prompt_chars=1000,
        options=_V3_OPTIONS,
        price=Price(credits_per_job=500),
    ),
)

# --- sandbox (ours, docs/dialects.md) ---
SANDBOX = _models(
    ModelSpec(id="sandbox-image", kind="image", options=ALL_OPTIONS, price=Price(credits_per_job=1)),
    ModelSpec(
        id="sandbox-video",
        kind="video",
        duration_range=(1, 60),
        default_duration=1,
        options=ALL_OPTIONS,
        price=Price(credits_per_second=1),
    ),
    ModelSpec(id="sandbox-audio", kind="audio", options=ALL_OPTIONS, price=Price(credits_per_job=0)),
)

#: built-in provider name -> its models; a name missing here accepts any model
CATALOGS: dict[str, dict[str, ModelSpec]] = {
    "vicsee": VICSEE,
    "veogen": VEOGEN,
    "veo3api": VEO3API,
    "sandbox": SANDBOX,
}

#: providers whose model list is open (the vendor lists its models at run time: VicSee's `vicsee_list_models`),
#: and the options a model missing from the catalog takes there
OPEN_LISTS: dict[str, frozenset[str]] = {"vicsee": VICSEE_ANY_MODEL}
