"""What every adapter promises alike: unreadable answers are ProviderUnavailable, HTTP errors classify by status
without a JSON body, Retry-After is honoured in both forms, the request is sendable as built, no secret leaks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from shared.errors import (
    AuthFailed,
    InvalidRequest,
    ProviderError,
    ProviderRedirected,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)
from shared.models import GenerationRequest
from shared.providers.base import MAX_ANSWER_BYTES, HttpAnswer, ProviderAdapter
from shared.providers.registry import ADAPTERS

from .helpers import SECRET, FakeInputs, answer, config, req, send_mock

#: a model each dialect's catalog (or lack of one) takes
MODELS = {"vicsee": "sora-2", "veogen": "sora-2", "gateway": "veo3", "veo3api": "veo3", "sandbox": "sandbox-video"}
#: a well-formed waiting poll answer per dialect, to break piece by piece
POLL_OK: dict[str, dict[str, Any]] = {
    "vicsee": {"success": True, "data": {"id": "t", "status": "processing", "result": None, "error": None}},
    "veogen": {"data": {"id": "t", "status": "processing"}},
    "gateway": {"task_id": "t", "status": "IN_PROGRESS", "progress": "10%"},
    "veo3api": {"generation_id": "t", "status": "processing"},
    "sandbox": {"id": "t", "status": "running", "progress": 10, "outputs": [], "error": None},
}
DIALECTS = sorted(ADAPTERS)

Parse = Callable[[HttpAnswer], object]


def parsers(adapter: ProviderAdapter) -> list[Parse]:
    return [adapter.parse_submit, adapter.parse_poll]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "bad",
    [
        answer(200, raw=b"<html>502 Bad Gateway</html>"),
        answer(200, raw=b""),
        answer(204, raw=b""),
        answer(200, raw=b"\xff\xfe\x00garbage"),
        answer(200, ["a", "list"]),
        answer(200, "a string"),
        answer(200, None),
        answer(200, {}),
        answer(200, {"data": "not an object", "success": True}),
        answer(200, raw=b"{" + b" " * MAX_ANSWER_BYTES + b"}"),
    ],
    ids=["html", "empty", "204", "binary", "list", "string", "null", "empty-object", "data-string", "oversized"],
)
def test_unreadable_2xx_answers_are_unavailable(dialect: str, bad: HttpAnswer) -> None:
    for parse in parsers(ADAPTERS[dialect]):
        with pytest.raises(ProviderUnavailable):
            parse(bad)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("field_value", [None, "", 3.5, True, [], {}, "x" * 600])
def test_a_missing_or_unusable_task_id_is_unavailable(dialect: str, field_value: object) -> None:
    adapter = ADAPTERS[dialect]
    bodies = {
        "vicsee": {"success": True, "data": {"id": field_value, "status": "pending"}},
        "veogen": {"data": {"id": field_value, "status": "pending"}},
        "gateway": {"task_id": field_value},
        "veo3api": {"success": True, "data": {"generation_id": field_value, "status": "processing"}},
        "sandbox": {"id": field_value, "status": "queued"},
    }
    with pytest.raises(ProviderUnavailable, match="task id"):
        adapter.parse_submit(answer(200, bodies[dialect]))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_integer_task_id_is_read_as_text(dialect: str) -> None:
    bodies = {
        "vicsee": {"success": True, "data": {"id": 42}},
        "veogen": {"data": {"id": 42}},
        "gateway": {"task_id": 42},
        "veo3api": {"success": True, "data": {"generation_id": 42}},
        "sandbox": {"id": 42},
    }
    assert ADAPTERS[dialect].parse_submit(answer(200, bodies[dialect])).task_id == "42"


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("status", [None, 7, "", "SOMETHING_ELSE"])
def test_an_unusable_poll_status_is_unavailable(dialect: str, status: object) -> None:
    body = POLL_OK[dialect]
    broken = (
        {**body, "data": {**body["data"], "status": status}}
        if dialect in ("vicsee", "veogen")
        else body | {"status": status}
    )
    with pytest.raises(ProviderUnavailable, match="status"):
        ADAPTERS[dialect].parse_poll(answer(200, broken))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_odd_status_on_submit_keeps_the_task(dialect: str) -> None:
    """The vendor accepted the job: losing its id over a status word would invite a second, paid submit."""
    bodies = {
        "vicsee": {"success": True, "data": {"id": "t", "status": "brewing"}},
        "veogen": {"data": {"id": "t", "status": "brewing"}},
        "gateway": {"task_id": "t", "status": "brewing"},
        "veo3api": {"success": True, "data": {"generation_id": "t", "status": "brewing"}},
        "sandbox": {"id": "t", "status": "brewing"},
    }
    assert ADAPTERS[dialect].parse_submit(answer(200, bodies[dialect])).task_id == "t"


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("status", "cls"),
    [(401, AuthFailed), (403, AuthFailed), (400, ProviderRejected), (429, RateLimited), (502, ProviderUnavailable)],
)
def test_error_statuses_classify_without_a_json_body(dialect: str, status: int, cls: type[ProviderError]) -> None:
    for parse in parsers(ADAPTERS[dialect]):
        with pytest.raises(cls, match=f"^HTTP {status}: <html>nginx</html>$"):
            parse(answer(status, raw=b"<html>nginx</html>"))


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("body", [{"error": "moved"}, {"success": True}, None])
def test_a_redirect_is_a_permanent_provider_error(dialect: str, body: Any) -> None:
    """By status; a vendor error code in a 3xx body never reaches an adapter: `send` raises first (its own test)."""
    for parse in parsers(ADAPTERS[dialect]):
        with pytest.raises(ProviderRedirected, match=r"^HTTP 302: the provider redirected to cdn\.test;"):
            parse(answer(302, body, {"location": "https://cdn.test/elsewhere?token=T"}))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_retry_after_as_an_http_date(dialect: str) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    with pytest.raises(RateLimited) as caught:
        ADAPTERS[dialect].parse_submit(answer(429, raw=b"slow down", headers={"retry-after": when}))
    assert caught.value.retry_after is not None and 100 < caught.value.retry_after <= 120


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("header", "seconds"), [("9" * 400, 3600.0), ("999999", 3600.0), ("soon", None)])
def test_absurd_retry_after_is_dropped_or_capped(dialect: str, header: str, seconds: float | None) -> None:
    with pytest.raises(RateLimited) as caught:
        ADAPTERS[dialect].parse_poll(answer(429, raw=b"", headers={"retry-after": header}))
    assert caught.value.retry_after == seconds


@pytest.mark.parametrize("dialect", DIALECTS)
def test_requests_are_sendable_as_built_and_carry_no_key_without_one(dialect: str) -> None:
    adapter = ADAPTERS[dialect]
    request = req(MODELS[dialect], "p")
    for key in (SECRET, None):
        for built in (
            adapter.build_submit(request, config(dialect, api_key=key), FakeInputs()),
            adapter.build_poll("task-1", request, config(dialect, api_key=key)),
        ):
            outgoing, _ = send_mock(built)
            assert outgoing.url.scheme in ("http", "https")
            assert ("authorization" in outgoing.headers) is (key is not None)


@pytest.mark.parametrize("dialect", [d for d in DIALECTS if d != "sandbox"])
def test_a_refusal_never_shows_the_key(dialect: str) -> None:
    request = GenerationRequest(model=MODELS[dialect], prompt="p", audio_setting="auto", private=True, mode="m")
    with pytest.raises(InvalidRequest) as caught:
        ADAPTERS[dialect].build_submit(request, config(dialect), FakeInputs())
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_explicit_none_options_are_not_set_options(dialect: str) -> None:
    request = req(MODELS[dialect], "p", duration=None, style=None, mode=None, audio_setting=None)
    assert ADAPTERS[dialect].build_submit(request, config(dialect), FakeInputs()).json_body is not None
