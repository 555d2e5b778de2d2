"""What webhook delivery gave up on (shared/webhooks/dead_letters.py), under the Redis keys earlier versions used."""

from __future__ import annotations

import hashlib

import fakeredis

from shared.webhooks.dead_letters import DeadLetters


def test_a_job_is_listed_once_newest_first_and_taken_off() -> None:
    client = fakeredis.FakeRedis()
    letters = DeadLetters(client)
    for job_id in ("job_a", "job_b", "job_a"):
        letters.add(job_id)
    assert letters.job_ids() == ["job_a", "job_b"] and letters.count() == 2
    assert client.lrange("genqueue:webhooks:dead", 0, -1) == [b"job_a", b"job_b"]
    letters.remove("job_a")
    assert letters.job_ids() == ["job_b"] and letters.job_ids(limit=0) == []


def test_a_gone_endpoint_is_marked_by_its_hash_and_cleared() -> None:
    client = fakeredis.FakeRedis()
    letters = DeadLetters(client)
    url = "https://example.com/hooks"
    assert not letters.is_gone(url)
    letters.mark_gone(url)
    assert letters.is_gone(url) and not letters.is_gone(url + "/other")
    assert client.smembers("genqueue:webhooks:gone") == {hashlib.sha256(url.encode()).hexdigest().encode()}
    letters.clear_gone(url)
    assert not letters.is_gone(url)
