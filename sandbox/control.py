"""The `/_control/` endpoints (no auth): how tests and operators steer and inspect a running sandbox.

| request | body | effect and answer |
|---|---|---|
| GET health | | 200 `{"ok": true}` |
| GET stats | | the counters (see `Store.stats`) |
| GET charges | | what each accepted task bills under its dialect's rule (see `Store.charges`) |
| POST faults | a Fault, or a list of them | arms them after those pending; `{"ok", "pending"}` |
| GET faults | | the pending faults, `count` = uses left |
| POST fail_next | `{"count", "reason", "dialect", "prompt"}` | the next `count` created tasks (of those) end failed |
| POST balance | `{"dialect", "balance"}` | sets it; answers `{"dialect", "balance"}` |
| GET balance | | every dialect's balance |
| POST config | some of delay_seconds, output_bytes, outputs_per_task, api_keys | answers the new settings |
| GET config | | the settings in force |
| POST reset | | clears tasks, faults, fail-next rules, counters; restores balances and settings |

A body that does not validate is 400 `{"error", "details"}`; an unknown endpoint 404, a wrong method 405.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from sandbox.config import BalanceUpdate, ConfigUpdate, FailNext, Fault
from sandbox.dialects.base import Response
from sandbox.state import Store

PREFIX = "/_control/"

_FAULTS: TypeAdapter[Fault | list[Fault]] = TypeAdapter(Fault | list[Fault])


def _ok(body: Any) -> Response:
    return Response(200, body)


def _parse(model: type[BaseModel] | TypeAdapter[Any], body: bytes) -> Any:
    raw = body.strip() or b"{}"
    if isinstance(model, TypeAdapter):
        return model.validate_json(raw)
    return model.model_validate_json(raw)


def _add_faults(store: Store, body: bytes) -> Response:
    parsed: Fault | list[Fault] = _parse(_FAULTS, body)
    for fault in parsed if isinstance(parsed, list) else [parsed]:
        store.add_fault(fault)
    return _ok({"ok": True, "pending": len(store.pending_faults())})


def _fail_next(store: Store, body: bytes) -> Response:
    rule: FailNext = _parse(FailNext, body)
    store.add_fail_next(rule)
    return _ok({"ok": True} | rule.model_dump())


def _set_balance(store: Store, body: bytes) -> Response:
    update: BalanceUpdate = _parse(BalanceUpdate, body)
    store.set_balance(update.dialect, update.balance)
    return _ok({"dialect": update.dialect, "balance": update.balance})


def _set_config(store: Store, body: bytes) -> Response:
    update: ConfigUpdate = _parse(ConfigUpdate, body)
    return _ok(store.update_config(update).model_dump(mode="json", exclude={"faults"}))


def _reset(store: Store, body: bytes) -> Response:
    store.reset()
    return _ok({"ok": True})


_ROUTES: dict[tuple[str, str], Callable[[Store, bytes], Response]] = {
    ("GET", "health"): lambda store, body: _ok({"ok": True}),
    ("GET", "stats"): lambda store, body: _ok(store.stats()),
    ("GET", "charges"): lambda store, body: _ok(store.charges()),
    ("POST", "faults"): _add_faults,
    ("GET", "faults"): lambda store, body: _ok(store.pending_faults()),
    ("POST", "fail_next"): _fail_next,
    ("POST", "balance"): _set_balance,
    ("GET", "balance"): lambda store, body: _ok(store.balances()),
    ("POST", "config"): _set_config,
    ("GET", "config"): lambda store, body: _ok(store.config.model_dump(mode="json", exclude={"faults"})),
    ("POST", "reset"): _reset,
}


def handle(method: str, path: str, body: bytes, store: Store) -> Response:
    """Answer a request whose path starts with PREFIX."""
    name = path[len(PREFIX) :].strip("/")
    handler = _ROUTES.get(("GET" if method == "HEAD" else method, name))
    if handler is None:
        known = any(key[1] == name for key in _ROUTES)
        return Response(405 if known else 404, {"error": f"no control endpoint {method} {path}"})
    try:
        return handler(store, body)
    except ValidationError as exc:
        details = json.loads(exc.json(include_url=False))
        return Response(400, {"error": f"invalid body for {path}", "details": details})
