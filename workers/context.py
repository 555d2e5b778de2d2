"""What a task needs from its process: settings, the job store, storage and one HTTP client per thread.

PERFORMANCE.md: one httpx.Client shared by many threads slows down as they grow, so each worker thread has its
own client (and connection pool).
"""

from __future__ import annotations

import random
import threading
from functools import lru_cache

import httpx

from shared.netguard import guarded_client
from shared.protection import ProviderGuard
from shared.settings import Settings, get_settings
from shared.storage import Storage
from shared.store import JobStore

_local = threading.local()


def settings() -> Settings:
    return get_settings()


@lru_cache(maxsize=1)
def store() -> JobStore:
    return JobStore.from_url(settings().redis_url)


@lru_cache(maxsize=1)
def guard() -> ProviderGuard:
    """The provider limits (rate, in-flight cap, breaker, credit hold), shared through the job store's Redis."""
    return ProviderGuard(store().redis)


@lru_cache(maxsize=1)
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
