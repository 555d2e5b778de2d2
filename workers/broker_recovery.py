"""Keep a worker, and the messages it holds, through a restart of its Redis broker.

What goes wrong without this (celery 5.7.0, kombu 5.7.0: a plain Celery worker dies in nearly every kill -9 and
restart of redis-server). When the broker connection breaks, Celery's `Consumer.on_connection_error_after_connected`
calls `connection.collect()` and then, new in 5.7, `connection.close()`. With Redis down, `collect()` cannot close
the task channel: its pending BRPOP read raises ConnectionError, so `Channel.close()` stops before marking the
channel closed, and the error is swallowed. `collect()` then cuts the transport loose from its kombu Connection
(`transport.client = None`). The `close()` that follows closes that half-closed channel again; it now restores its
unacknowledged messages, for which it builds a new Redis pool from `transport.client.hostname`: AttributeError,
which is not a connection error, so it escapes Celery's `ignore_errors` and the worker exits ("Unrecoverable
error"). Celery 5.6 called only `collect()` and survived, but its restore could not succeed either (Redis down, or
the transport gone by the time the channel is collected). Either way the messages it covers, every task delivered
to this worker and not acked, including all countdown tasks held in memory (which `Consumer.on_close` drops), wait
in Redis's `unacked` hash until `visibility_timeout` (an hour) has passed.

The fix, in the consumer (`worker_consumer = "workers.broker_recovery:RecoveringConsumer"`, set in workers/app.py):

1. When the connection breaks, and before Celery tears it down, take the delivery tags of every unacked message
   off the connection's Redis channels. The channels then have nothing to restore on close, so the close that
   crashed never needs the missing transport. Each old channel keeps its connection parameters, so a task still
   running can ack its message through it once Redis is back (a Sentinel channel keeps a Sentinel-managed pool
   built then, so its ack reaches whichever server is master by then, the promoted replica after a failover).
2. As soon as the consumer has connected again (Redis answered a PING), move those messages from the `unacked`
   hash back to their queues with kombu's own `QoS.restore_by_tag`: one transaction per message, which requeues
   nothing for a message acked meanwhile, and nothing twice. If Redis goes away again halfway, the rest is tried
   after the next reconnect.

As on any broker with acks (AMQP requeues a lost connection's unacked messages the same way), a task still running
when its message is requeued can run twice: genqueue's tasks are idempotent (`task_acks_late`).

Only kombu's Redis transports are handled; other transports keep Celery's behaviour. The kombu internals this
relies on are checked when the worker starts (`recovery_supported`): if they are missing, the worker logs why and
runs Celery's consumer unchanged; versions other than those tested get a warning.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import celery
import kombu
from celery.worker.consumer import Consumer
from kombu.transport import redis as kombu_redis

log = logging.getLogger("genqueue.workers.broker_recovery")

#: the versions this was measured with (tests/integration/test_redis_restart.py); others still work if the
#: internals are there, with a warning, since a kombu release may fix or reshape them
TESTED_VERSIONS = {"celery": ("5.7",), "kombu": ("5.7",)}


def recovery_supported() -> str | None:
    """None when kombu's Redis transport has what the recovery uses; otherwise why it does not."""
    needed = {
        kombu_redis.Transport: ("channels",),
        kombu_redis.Channel: ("_connparams", "qos"),
        kombu_redis.SentinelChannel: ("_sentinel_managed_pool", "_get_pool"),
        kombu_redis.QoS: ("_delivered", "_flush", "restore_by_tag"),
    }
    for owner, names in needed.items():
        missing = [name for name in names if not hasattr(owner, name)]
        if missing:
            return f"kombu {kombu.__version__}: {owner.__module__}.{owner.__qualname__} has no {', '.join(missing)}"
    return None


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _redis_transport(connection: Any) -> Any | None:
    """The connection's kombu Redis transport, or None (not connected, or another broker)."""
    transport = getattr(connection, "_transport", None)  # `.transport` would create one
    return transport if isinstance(transport, kombu_redis.Transport) else None


def take_unacked(connection: Any) -> list[str]:
    """Take the delivery tags of the messages delivered on `connection` and not acked, off its channels.

    Call it while the connection still has its transport (before `collect()`). Afterwards the channels have
    nothing left to restore when they are closed, and each keeps the connection parameters it had, so an ack
    sent through it later reaches Redis without its transport. The messages themselves stay in Redis's
    `unacked` hash until `restore_unacked` moves them back to their queues.
    """
    transport = _redis_transport(connection)
    if transport is None:
        return []
    tags: list[str] = []
    for channel in list(transport.channels):
        qos = getattr(channel, "_qos", None)  # `.qos` would create one
        if qos is None:
            continue
        qos._flush()  # forget the messages acked since the last delivery
        tags.extend(qos._delivered)
        qos._delivered.clear()
        _pin_connparams(channel)
    return tags


def _pin_connparams(channel: Any) -> None:
    # `Channel._connparams` reads them from `channel.connection.client`, which collect() and close() set to None;
    # computed now, while both are there, they outlive them. Asynchronous pools serve BRPOP, which a channel
    # closing never issues again, so the synchronous parameters serve both.
    try:
        params = channel._connparams(asynchronous=False)
    except AttributeError:  # cut loose from its transport already: nothing left to pin from
        return
    pinned: Callable[..., dict[str, Any]] = lambda asynchronous=False: dict(params)  # noqa: E731
    channel._connparams = pinned
    if isinstance(channel, kombu_redis.SentinelChannel):
        # a Sentinel channel builds its pool from `channel.connection.client.alt` (the sentinels' URLs), gone too:
        # built now, the pool asks the sentinels for the master at each new connection, so a late ack reaches the
        # master there is then (the new one, after a failover)
        pool = channel._sentinel_managed_pool(asynchronous=False)  # type: ignore[no-untyped-call]
        channel._get_pool = lambda asynchronous=False: pool  # type: ignore[method-assign]


def restore_unacked(connection: Any, tags: list[str]) -> list[str]:
    """Move the messages with these delivery tags from the `unacked` hash back to their queues.

    Each move is one Redis transaction that requeues the message only if it is still unacked (a message acked
    meanwhile, or restored by someone else, is left alone). Returns the tags not done because the connection
    failed again; connection errors are not raised, since the consumer finds the broken connection by itself.
    """
    errors = (*connection.connection_errors, *connection.channel_errors)
    done = 0
    try:
        channel = connection.channel()
        try:
            for tag in tags:
                channel.qos.restore_by_tag(tag)
                done += 1
        finally:
            with contextlib.suppress(*errors):
                channel.close()
    except errors as exc:
        log.warning("requeued %d of %d unacked messages; the rest after the next reconnect (%r)", done, len(tags), exc)
        return tags[done:]
    log.info("requeued the messages still unacked of %d delivered before the broker connection was lost", len(tags))
    return []


class RecoveringConsumer(Consumer):  # type: ignore[misc]  # celery is untyped
    """Celery's consumer, keeping its unacked messages through a lost broker connection (see the module doc)."""

    #: delivery tags taken off broken connections, restored after the next reconnect
    orphaned_tags: list[str]
    _recovery_off: str | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.orphaned_tags = []
        self._recovery_off = recovery_supported()
        if self._recovery_off is not None:
            log.warning("broker recovery is off, a Redis restart may stop this worker: %s", self._recovery_off)
        else:
            versions = {"celery": celery.__version__, "kombu": kombu.__version__}
            untested = {name: v for name, v in versions.items() if _minor(v) not in TESTED_VERSIONS[name]}
            if untested:
                log.warning("broker recovery was tested with %s only; running with %s", TESTED_VERSIONS, untested)

    def on_connection_error_after_connected(self, exc: BaseException) -> None:
        if self._recovery_off is None and self.connection is not None:
            try:
                self.orphaned_tags.extend(take_unacked(self.connection))
            except Exception:  # the recovery must never be what stops a worker: Celery's own path follows
                log.exception("broker recovery: could not take the unacked messages off the lost connection")
        super().on_connection_error_after_connected(exc)

    def connect(self) -> Any:
        connection = super().connect()
        if self.orphaned_tags:
            try:
                self.orphaned_tags = restore_unacked(connection, self.orphaned_tags)
            except Exception:  # not a connection error, so trying again would not help: visibility_timeout will
                log.exception(
                    "broker recovery: %d unacked messages left to visibility_timeout", len(self.orphaned_tags)
                )
                self.orphaned_tags = []
        return connection
