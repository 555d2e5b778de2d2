"""`genqueue keys`: the API keys of the HTTP API (INTERFACE.md), each a tenant with its own webhook secret."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer

from producer.cli_common import refuse
from shared.errors import InvalidRequest
from shared.keys import KeyListing, KeyStore
from shared.models import Budget, Cost
from shared.settings import get_settings
from shared.store import JobStore, store_client

keys_app = typer.Typer(no_args_is_help=True, help="API keys of the HTTP API: each key is a tenant.")


def _store() -> KeyStore:
    settings = get_settings()
    return KeyStore(store_client(settings))


def _spend(keys: KeyStore, name: str) -> Cost:
    """What the key's jobs count as costing together (the job store keeps it with every write of them)."""
    return JobStore(keys.redis).tenant_spend(name)


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="the key's name, shown in `keys list` and on its jobs")],
    rate_per_minute: Annotated[int | None, typer.Option("--rate-per-minute", min=1, help="requests a minute")] = None,
    budget_usd: Annotated[float | None, typer.Option("--budget-usd", help="at most this much USD committed")] = None,
    budget_credits: Annotated[
        float | None, typer.Option("--budget-credits", help="at most this many credits committed")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print {name, key, webhook_secret} as JSON")] = False,
) -> None:
    """Make a key and print it once, with its webhook secret: only its hash is kept."""
    if budget_usd is not None and budget_credits is not None:
        refuse("give one budget: --budget-usd or --budget-credits")
    budget = None
    if budget_usd is not None:
        budget = Budget(currency="usd", amount=_positive(budget_usd, "--budget-usd"))
    if budget_credits is not None:
        budget = Budget(currency="credits", amount=_positive(budget_credits, "--budget-credits"))
    try:
        created = _store().create(name, rate_per_minute, budget)
    except InvalidRequest as exc:
        refuse(exc.message)
    secret = created.record.webhook_secret
    if as_json:
        typer.echo(json.dumps({"name": name, "key": created.key, "webhook_secret": secret}))
        return
    typer.echo(f"key {name}: {created.key}")
    typer.echo(f"webhook secret: {secret}")
    typer.echo("Both are shown only now: store them where your service reads its secrets.", err=True)


@keys_app.command("list")
def list_keys(as_json: Annotated[bool, typer.Option("--json", help="print the keys as JSON")] = False) -> None:
    """Every key: name, created, last used, limits, spend, revoked; never the key or its secret."""
    keys = _store()
    rows = keys.listing()
    spends = {row.name: _spend(keys, row.name) for row in rows}
    if as_json:
        typer.echo(json.dumps([_row_json(row, spends[row.name]) for row in rows], indent=2))
        return
    if not rows:
        typer.echo("no keys (genqueue keys create NAME)")
        return
    typer.echo(f"{'name':<24} {'created':<20} {'last used':<20} {'rate/min':>8} {'budget':>14} {'spend':>18}  state")
    for row in rows:
        record = row.record
        if record is None:
            typer.echo(f"{row.name:<24} {'-':<20} {'-':<20} {'-':>8} {'-':>14} {'-':>18}  {row.problem}")
            continue
        budget = f"{record.budget.amount:g} {record.budget.currency}" if record.budget else "-"
        state = f"revoked {_minute(record.revoked_at)}" if record.revoked_at else "live"
        rate = str(record.rate_per_minute) if record.rate_per_minute else "-"
        spend = _spend_text(spends[row.name])
        typer.echo(
            f"{row.name:<24} {_minute(record.created_at):<20} {_minute(row.last_used_at):<20} {rate:>8} {budget:>14}"
            f" {spend:>18}  {state}"
        )


@keys_app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="the key to revoke")]) -> None:
    """Revoke a key: every API process refuses it from its next request."""
    try:
        record = _store().revoke(name)
    except InvalidRequest as exc:
        refuse(exc.message)
    assert record.revoked_at is not None
    typer.echo(f"key {name} revoked at {record.revoked_at.isoformat()}")


def _positive(amount: float, option: str) -> float:
    if amount <= 0:
        refuse(f"{option} must be more than 0")
    return amount


def _spend_text(spend: Cost) -> str:
    parts = [f"{spend.credits:g} credits" if spend.credits else "", f"${spend.usd:.2f}" if spend.usd else ""]
    return " ".join(part for part in parts if part) or "0"


def _row_json(row: KeyListing, spend: Cost) -> dict[str, object]:
    if row.record is None:
        return {"name": row.name, "problem": row.problem}
    shown = row.record.model_dump(mode="json", exclude={"key_sha256", "webhook_secret"})
    last_used = row.last_used_at.isoformat() if row.last_used_at else None
    return shown | {"last_used_at": last_used, "spend": spend.model_dump()}


def _minute(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"
