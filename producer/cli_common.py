"""What every `genqueue` subcommand shares: exit statuses, the one-line refusal, the Producer from settings."""

from __future__ import annotations

from typing import NoReturn

import redis
import typer

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
        refuse(f"bad settings: {str(exc).splitlines()[0]}")
    try:
        refuse_cluster(made.store.redis, STORE_SETTING)
    except RedisClusterRefused as exc:
        refuse(str(exc))
    except redis.RedisError:
        pass  # not reachable now: a command that needs it says so (main); one that does not (--dry-run) goes on
    return made
