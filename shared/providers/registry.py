"""Every dialect's adapter by name: the one place that knows which modules exist."""

from __future__ import annotations

from shared.errors import InvalidRequest
from shared.providers.base import ProviderAdapter
from shared.providers.gateway import GatewayAdapter
from shared.providers.sandbox import SandboxAdapter
from shared.providers.veo3api import Veo3ApiAdapter
from shared.providers.veogen import VeoGenAdapter
from shared.providers.vicsee import VicSeeAdapter

#: dialect name -> its adapter (adapters hold no state, so one instance serves every provider of that dialect)
ADAPTERS: dict[str, ProviderAdapter] = {
    adapter.dialect: adapter
    for adapter in (VicSeeAdapter(), VeoGenAdapter(), GatewayAdapter(), Veo3ApiAdapter(), SandboxAdapter())
}


def get_adapter(dialect: str) -> ProviderAdapter:
    """The adapter for `dialect`, or InvalidRequest naming the known dialects."""
    try:
        return ADAPTERS[dialect]
    except KeyError:
        raise InvalidRequest(f"unknown dialect {dialect!r}; known: {', '.join(sorted(ADAPTERS))}") from None
