"""What a task needs from its process: settings, the job store, storage and one HTTP client per thread.

PERFORMANCE.md: one httpx.Client shared by many threads slows down as they grow, so each worker thread has its
own client (and connection pool). The job store, the guard and storage are one per process, made under a lock:
`functools.lru_cache` does not lock, and 32 threads starting at once each built a boto3 client of their own
(+400 MiB of worker memory, measured by bench/batch_scale.py).
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable
from typing import TypeVar

import httpx

from shared.netguard import guarded_client
from shared.protection import ProviderGuard
from shared.settings import Settings, get_settings
from shared.storage import Storage
from shared.store import JobStore

_local = threading.local()


def settings() -> Settings:
    return get_settings()


T = TypeVar("T")


def once_per_process(make: Callable[[], T]) -> Callable[[], T]:
    """`make()` called at most once however many threads ask at the same moment; its result kept."""
    lock = threading.Lock()
    made: list[T] = []

    @functools.wraps(make)
    def get() -> T:
        if not made:
            with lock:
                if not made:
                    made.append(make())
        return made[0]

    return get


@once_per_process
def store() -> JobStore:
    return JobStore.from_url(settings().redis_url, settings().job_retention_seconds)


@once_per_process
def guard() -> ProviderGuard:
    """The provider limits (rate, in-flight cap, breaker, credit hold), shared through the job store's Redis."""
    return ProviderGuard(store().redis)


@once_per_process
def storage() -> Storage:
    return Storage(settings())


def http() -> httpx.Client:
    """This thread's HTTP client for vendor calls and downloads; redirects followed (output links redirect)."""
    client: httpx.Client | None = getattr(_local, "http", None)
    if client is None:
        timeout = httpx.Timeout(settings().provider_timeout_seconds, connect=10.0)
        client = httpx.Client(timeout=timeout, follow_redirects=True, headers={"User-Agent": "genqueue/0.1"})
        _local.http = client
    return client


def webhook_http() -> httpx.Client:
    """This thread's HTTP client for webhooks: redirects are never followed (a 3xx is a failed delivery).

    It connects only to public addresses, checked at connect time (shared/netguard.py), unless
    GENQUEUE_ALLOW_PRIVATE_URLS is set; a refused address is a failed delivery attempt (BlockedAddress).
    """
    client: httpx.Client | None = getattr(_local, "webhook_http", None)
    if client is None:
        client = guarded_client(
            settings().allow_private_urls, settings().webhook_timeout_seconds, follow_redirects=False
        )
        _local.webhook_http = client
    return client


def rng() -> random.Random:
    """This thread's random source for jitter."""
    generator: random.Random | None = getattr(_local, "rng", None)
    if generator is None:
        generator = random.Random()
        _local.rng = generator
    return generator
