"""Routes: one canonical model sold by several providers, and what each provider calls it.

A job sent to `--provider auto` names a route's canonical model (`sora-2`); a job sent to a list of providers
(`--provider vicsee,veogen`) names it too, and may go only to those. Each target is checked against its provider's
own catalog (shared/providers/catalog.py) with the provider's model id: a request a provider cannot honour exactly
(a duration, aspect ratio, resolution or option its model does not take) is never sent there (`honoured`).

The routes, from the vendors' documents (docs/dialects.md):
- `sora-2`: VicSee's `sora-2` (10 or 15 s; 20 credits at 10 s) and VeoGen's `sora-2` (10 or 15 s; styles,
  watermark and private only there; no documented price).
- `veo3`, `veo3-fast`: the Veo3 API's `veo3` (500 credits) and `veo3_fast` (240 credits), and the gateway, which
  routes `veo3` by name (its page's example) and takes any model id, so `veo3-fast` is sent to it as `veo3-fast`.
- `seedance-2.0`: VeoGen's `seedance-2.0` (per second, USD) and VicSee's `seedance-2-0-text-to-video`.
- `nano-banana-pro`: VicSee's and VeoGen's `nano-banana-pro` (the same id at both).
Where a price is not documented, `GENQUEUE_PROVIDERS__<NAME>__PRICES` can give one (shared/settings.py).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from shared.errors import InvalidRequest
from shared.models import GenerationRequest
from shared.providers.catalog import validate_request


class RouteTarget(BaseModel):
    """One provider of a route: its name and its own id of the route's model."""

    model_config = ConfigDict(frozen=True)

    provider: str
    model: str


def _targets(*pairs: tuple[str, str]) -> tuple[RouteTarget, ...]:
    return tuple(RouteTarget(provider=provider, model=model) for provider, model in pairs)


#: canonical model -> its providers, in the route's own order (the order `preferred` takes with `auto`)
ROUTES: dict[str, tuple[RouteTarget, ...]] = {
    "sora-2": _targets(("vicsee", "sora-2"), ("veogen", "sora-2")),
    "veo3": _targets(("veo3api", "veo3"), ("gateway", "veo3")),
    "veo3-fast": _targets(("veo3api", "veo3_fast"), ("gateway", "veo3-fast")),
    "seedance-2.0": _targets(("veogen", "seedance-2.0"), ("vicsee", "seedance-2-0-text-to-video")),
    "nano-banana-pro": _targets(("vicsee", "nano-banana-pro"), ("veogen", "nano-banana-pro")),
}

#: what `--provider` names to let a job go to any provider of its model's route
AUTO = "auto"


def is_routed(provider: str) -> bool:
    """Whether `provider` (as a job names it) asks for a route: `auto`, or a comma-separated list of providers."""
    return provider == AUTO or "," in provider


def route_targets(model: str, provider: str) -> tuple[RouteTarget, ...]:
    """The targets a job naming `provider` (`auto` or a list) and canonical `model` may go to, in the order the
    list gives (the route's own order for `auto`). InvalidRequest for a model with no route, a provider not on
    it, or a list naming one provider twice."""
    targets = ROUTES.get(model)
    if targets is None:
        raise InvalidRequest(
            f"model {model!r} has no route across providers; routed models: {', '.join(sorted(ROUTES))}"
        )
    if provider == AUTO:
        return targets
    names = [name.strip() for name in provider.split(",") if name.strip()]
    if len(set(names)) != len(names):
        raise InvalidRequest(f"provider list {provider!r} names a provider twice")
    by_name = {target.provider: target for target in targets}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise InvalidRequest(f"provider {unknown[0]!r} does not sell {model}; its route has: {', '.join(by_name)}")
    return tuple(by_name[name] for name in names)


def translated(request: GenerationRequest, target: RouteTarget) -> GenerationRequest:
    """The canonical request as `target`'s provider is sent it: the same options under the provider's model id."""
    return request.model_copy(update={"model": target.model})


def honoured(request: GenerationRequest, target: RouteTarget) -> str | None:
    """Why `target` cannot honour the canonical `request` exactly (its catalog's one-line refusal), or None."""
    try:
        validate_request(target.provider, translated(request, target))
    except InvalidRequest as exc:
        return exc.message
    return None
