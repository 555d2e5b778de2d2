"""kombu's Redis transports (plain and Sentinel), with one Redis client per channel for its own commands.

kombu's Redis channel builds a new `redis.Redis` object on its connection pool for every publish, every ack and
every restore (`Channel.conn_or_acquire`); building one fills a table of response callbacks, which a profile of
the worker showed costing as much as the commands it then sends. A `redis.Redis` on a pool is safe to share
between threads (each command takes a connection from the pool), so the channel keeps one, and makes a new one
only when its pool is replaced (kombu disconnects and drops its pools after a failed connect, or after a fork).
Everything else is kombu's: the same keys, commands, acknowledgements and failover handling.

Used by shared/queueing.py's `broker_transport` for every process's Celery app.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis


class _OneClientPerPool:
    """The channel's synchronous client, made once per connection pool."""

    _genqueue_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer's BRPOP client: kombu keeps that one itself
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        client = self._genqueue_client
        if client is None or client.connection_pool is not self.pool:  # type: ignore[attr-defined]
            client = self._genqueue_client = super()._create_client(asynchronous=False)  # type: ignore[misc]
        return client


class Channel(_OneClientPerPool, kombu_redis.Channel):
    pass


class SentinelChannel(_OneClientPerPool, kombu_redis.SentinelChannel):
    pass


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


#: the `broker_transport` setting naming each (kombu's aliases, so that a worker's "Connected to" line reads
#: genqueue-redis://…)
PLAIN = "genqueue-redis"
SENTINEL = "genqueue-sentinel"
TRANSPORT_ALIASES[PLAIN] = f"{__name__}:Transport"
TRANSPORT_ALIASES[SENTINEL] = f"{__name__}:SentinelTransport"
