"""The one reader of `{"error": {"code", "message"}}` bodies (shared/providers/_common.py), as three dialects use it."""

from __future__ import annotations

import json

import pytest

from shared.errors import InsufficientCredits, ProviderRejected, ProviderUnavailable, RateLimited
from shared.providers import _common as common
from shared.providers import gateway, sandbox, vicsee
from shared.providers.base import HttpAnswer

CODES = {"no_money": InsufficientCredits, "slow_down": RateLimited}
read = common.error_object_reader(CODES, code_also_in="type")


def answer(status: int, body: object, headers: dict[str, str] | None = None) -> HttpAnswer:
    return HttpAnswer(status_code=status, headers=headers or {}, body=json.dumps(body).encode())


def test_an_error_object_is_read_by_its_code_with_its_message() -> None:
    error = read(
        answer(400, {"error": {"code": "no_money", "message": "top up"}}),
        {"error": {"code": "no_money", "message": "top up"}},
    )
    assert isinstance(error, InsufficientCredits) and str(error) == "HTTP 400: top up (no_money)"


def test_a_transient_code_carries_retry_after() -> None:
    body = {"error": {"code": "slow_down"}}
    error = read(answer(400, body, {"retry-after": "7"}), body)
    assert isinstance(error, RateLimited) and error.retry_after == 7


def test_the_second_code_field_is_read_when_the_first_is_unknown_and_status_decides_otherwise() -> None:
    body = {"error": {"code": "odd", "type": "no_money", "message": "m"}}
    assert isinstance(read(answer(400, body), body), InsufficientCredits)
    for body in ({"error": {"code": "odd", "message": "m"}}, {"error": "just text"}, {"message": "top-level"}):
        assert isinstance(read(answer(400, body), body), ProviderRejected)
        assert isinstance(read(answer(503, body), body), ProviderUnavailable)
    assert "just text" in str(read(answer(400, {"error": "just text"}), {"error": "just text"}))


@pytest.mark.parametrize("module", [vicsee, gateway, sandbox])
def test_the_object_shaped_dialects_read_errors_with_it(module: object) -> None:
    reader = module.read_error  # type: ignore[attr-defined]
    assert reader.__qualname__ == common.error_object_reader(CODES).__qualname__
