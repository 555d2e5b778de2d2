"""The broker transport (shared/broker_transport.py) on a real redis-server: every process's Celery app uses it,
its channel sends its own commands through one client made once per pool, and messages still arrive."""

from __future__ import annotations

import json

import pytest
import redis

from shared import broker_transport
from shared.queueing import make_celery
from shared.settings import Settings

pytestmark = pytest.mark.integration


def test_one_client_per_pool_and_every_message_arrives(redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/9"
    app = make_celery(Settings(redis_url=url), main="test-transport")
    queue = "transport-test"
    redis.Redis.from_url(url).delete(queue)
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, broker_transport.Transport)
        channel = connection.default_channel
        first = channel._create_client()
        for n in range(3):
            app.send_task("genqueue.test", args=[n], queue=queue, connection=connection)
        assert channel._create_client() is first
        channel._disconnect_pools()  # as kombu does after a failed connect: the next client is on the new pool
        renewed = channel._create_client()
        assert renewed is not first and renewed.connection_pool is channel.pool
        app.send_task("genqueue.test", args=[3], queue=queue, connection=connection)
    bodies = [json.loads(raw) for raw in redis.Redis.from_url(url).lrange(queue, 0, -1)]
    assert len(bodies) == 4


def test_through_sentinel_the_sentinel_transport_is_used() -> None:
    settings = Settings(redis_sentinels=["127.0.0.1:26379"], redis_sentinel_master="genqueue")
    app = make_celery(settings, main="test-transport-sentinel")
    assert app.conf.broker_transport == broker_transport.SENTINEL
    assert app.connection_for_write().transport_cls == broker_transport.SENTINEL
