"""What every `genqueue` subcommand shares: exit statuses, the one-line refusal, the Producer from settings."""

from __future__ import annotations

from typing import NoReturn

import redis
import typer
from pydantic import ValidationError

from producer.api import Producer
from shared import tracing
from shared.settings import get_settings
from shared.store import STORE_SETTING, RedisClusterRefused, refuse_cluster

EXIT_FAILED, EXIT_REFUSED, EXIT_WAIT_TIMEOUT = 1, 2, 3


def refuse(reason: str) -> NoReturn:
    """Print a one-line reason on stderr and exit 2."""
    typer.echo(f"genqueue: error: {reason}", err=True)
    raise typer.Exit(EXIT_REFUSED)


def producer() -> Producer:
    tracing.configure("genqueue-cli")
    try:
        made = Producer(get_settings())
    except ValueError as exc:  # settings that do not validate
        refuse(f"bad settings: {settings_problem(exc)}")
    try:
        refuse_cluster(made.store.redis, STORE_SETTING)
    except RedisClusterRefused as exc:
        refuse(str(exc))
    except redis.RedisError:
        pass  # not reachable now: a command that needs it says so (main); one that does not (--dry-run) goes on
    return made


def settings_problem(exc: ValueError) -> str:
    """A settings error as one line: the first problem, named by its environment variable where it has one
    (`GENQUEUE_LOG_FORMAT: Input should be 'text' or 'json'`), and how many more there are. The rejected value is
    not shown, since it may be a secret."""
    if not isinstance(exc, ValidationError) or not exc.errors():
        lines = str(exc).strip().splitlines()
        return lines[0] if lines else type(exc).__name__
    errors = exc.errors()
    # a whole-settings check (a model validator) has no location; its message names the settings it compares
    where = "__".join(str(part) for part in errors[0]["loc"]).upper()
    message = errors[0]["msg"].removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"GENQUEUE_{where}: {message}{more}" if where else f"{message}{more}"
