"""A job's changes as they are committed, for the event stream and `Prefer: wait`, without polling the store.

The job store publishes `"{version} {status}"` on the job's channel after every committed write (shared/store.py).
`job_changes` subscribes first and then reads the job, so no write falls between the read and the subscription;
after that each notice is a cue to read the job again; `jobs_changes` does the same for several jobs at once (the
`/ui` jobs list), and `batch_changes` follows a batch's channel (its jobs' status changes, its own record's writes:
the `/ui` batch page). It waits on an asyncio client: a waiting request holds no thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import redis.asyncio as aioredis

from producer.api import Producer
from shared.constants import BATCH_EVENTS_CHANNEL, JOB_EVENTS_CHANNEL
from shared.models import Job


async def job_changes(
    producer: Producer,
    subscriber: aioredis.Redis,
    job_id: str,
    quiet_seconds: float,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[Job | None]:
    """The job now, then the job after each committed write of it, and None after each `quiet_seconds` without
    one; it ends once `gone()` says the caller has left. The caller stops iterating when it has what it waits for.
    """
    channel = subscriber.pubsub(ignore_subscribe_messages=True)
    await channel.subscribe(JOB_EVENTS_CHANNEL.format(job_id=job_id))
    try:
        yield await asyncio.to_thread(producer.get, job_id)
        loop = asyncio.get_running_loop()
        while True:
            until = loop.time() + quiet_seconds
            written = False
            while not written and loop.time() < until:
                if gone is not None and await gone():
                    return
                written = await channel.get_message(timeout=min(1.0, until - loop.time())) is not None
            yield (await asyncio.to_thread(producer.get, job_id)) if written else None
    finally:
        await channel.aclose()  # type: ignore[no-untyped-call]


async def wait_ended(producer: Producer, subscriber: aioredis.Redis, job: Job, seconds: float) -> Job:
    """The job once it has ended, or as it is after `seconds`, whichever comes first."""
    latest = job
    try:
        async with asyncio.timeout(seconds):
            async for changed in job_changes(producer, subscriber, job.id, quiet_seconds=seconds):
                if changed is not None:
                    latest = changed
                    if changed.status.terminal:
                        break
    except TimeoutError:
        pass
    return latest


async def jobs_changes(
    producer: Producer,
    subscriber: aioredis.Redis,
    job_ids: list[str],
    quiet_seconds: float,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[Job | None]:
    """`job_changes` for several jobs on one subscription: each job now (one that does not exist is left out), then
    each job again after each committed write of it, and None after each `quiet_seconds` without any; it ends once
    `gone()` says the caller has left."""
    channels = {JOB_EVENTS_CHANNEL.format(job_id=job_id): job_id for job_id in job_ids}
    channel = subscriber.pubsub(ignore_subscribe_messages=True)
    await channel.subscribe(*channels)
    try:
        for job in await asyncio.to_thread(producer.store.get_many, list(job_ids)):
            if job is not None:
                yield job
        loop = asyncio.get_running_loop()
        while True:
            until = loop.time() + quiet_seconds
            written: set[str] = set()
            while not written and loop.time() < until:
                if gone is not None and await gone():
                    return
                message = await channel.get_message(timeout=min(1.0, until - loop.time()))
                while message is not None:
                    written.add(channels[_text(message["channel"])])
                    message = await channel.get_message(timeout=0)
            if not written:
                yield None
                continue
            for job in await asyncio.to_thread(producer.store.get_many, sorted(written)):
                if job is not None:
                    yield job
    finally:
        await channel.aclose()  # type: ignore[no-untyped-call]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def batch_changes(
    subscriber: aioredis.Redis,
    batch_id: str,
    quiet_seconds: float,
    settle_seconds: float,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[bool]:
    """True at once, then True after each change of the batch (the notices of `settle_seconds` after the first
    taken together, so a batch whose jobs end hundreds a second is read a few times a second, not once a job), and
    False after each `quiet_seconds` without one; it ends once `gone()` says the caller has left."""
    channel = subscriber.pubsub(ignore_subscribe_messages=True)
    await channel.subscribe(BATCH_EVENTS_CHANNEL.format(batch_id=batch_id))
    try:
        yield True
        loop = asyncio.get_running_loop()
        while True:
            until = loop.time() + quiet_seconds
            changed = False
            while not changed and loop.time() < until:
                if gone is not None and await gone():
                    return
                changed = await channel.get_message(timeout=min(1.0, until - loop.time())) is not None
            if changed:
                settled = loop.time() + settle_seconds
                while loop.time() < settled:  # the rest of this burst
                    await channel.get_message(timeout=max(0.0, settled - loop.time()))
            yield changed
    finally:
        await channel.aclose()  # type: ignore[no-untyped-call]
