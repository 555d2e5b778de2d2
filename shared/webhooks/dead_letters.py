"""What webhook delivery gave up on: events whose retry schedule was spent (dead letters), and endpoints that
answered 410 Gone (nothing more is sent to them). Both are kept in Redis for `genqueue webhooks dead` and
`genqueue webhooks redeliver`, which takes a job off the list and lifts its endpoint's block.
"""

from __future__ import annotations

import hashlib

import redis

from shared.constants import WEBHOOK_DEAD_LETTERS_KEY, WEBHOOK_GONE_KEY


class DeadLetters:
    """The list of jobs whose webhook event was given up on, newest first, and the set of gone endpoints."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def add(self, job_id: str) -> None:
        """Record that job `job_id`'s webhook event was given up on (once, however often it is called)."""
        pipe = self.redis.pipeline()
        pipe.lrem(WEBHOOK_DEAD_LETTERS_KEY, 0, job_id)
        pipe.lpush(WEBHOOK_DEAD_LETTERS_KEY, job_id)
        pipe.execute()

    def remove(self, job_id: str) -> None:
        """Take job `job_id` off the list (its event is being redelivered)."""
        self.redis.lrem(WEBHOOK_DEAD_LETTERS_KEY, 0, job_id)

    def job_ids(self, limit: int = 1000) -> list[str]:
        """Up to `limit` job ids whose webhook events were given up on, newest first."""
        if limit <= 0:
            return []
        return [_text(raw) for raw in self.redis.lrange(WEBHOOK_DEAD_LETTERS_KEY, 0, limit - 1)]

    def count(self) -> int:
        return int(self.redis.llen(WEBHOOK_DEAD_LETTERS_KEY))

    def mark_gone(self, url: str) -> None:
        """Stop delivering to `url`: it answered 410 Gone."""
        self.redis.sadd(WEBHOOK_GONE_KEY, _url_id(url))

    def is_gone(self, url: str) -> bool:
        return bool(self.redis.sismember(WEBHOOK_GONE_KEY, _url_id(url)))

    def clear_gone(self, url: str) -> None:
        """Deliver to `url` again (an operator asked for a redelivery)."""
        self.redis.srem(WEBHOOK_GONE_KEY, _url_id(url))


def _url_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
