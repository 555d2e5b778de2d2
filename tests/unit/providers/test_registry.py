"""The dialect registry."""

from __future__ import annotations

import pytest

from shared.errors import InvalidRequest
from shared.providers.registry import ADAPTERS, get_adapter


def test_every_dialect_has_one_adapter_under_its_own_name() -> None:
    assert sorted(ADAPTERS) == ["gateway", "sandbox", "veo3api", "veogen", "vicsee"]
    for name, adapter in ADAPTERS.items():
        assert adapter.dialect == name
        assert get_adapter(name) is adapter


def test_an_unknown_dialect_names_the_known_ones() -> None:
    with pytest.raises(InvalidRequest) as caught:
        get_adapter("openai")
    assert caught.value.message == "unknown dialect 'openai'; known: gateway, sandbox, veo3api, veogen, vicsee"
    assert caught.value.code == "invalid_request"
