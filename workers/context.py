"""What a task needs from its process: settings, the job store, storage and HTTP clients per thread.

Three clients, for three kinds of URL: vendor API calls (`http`) go to base URLs the operator configured, so they
need no address guard (the sandbox may be on 127.0.0.1) but never follow a redirect; output downloads
(`download_http`) and webhooks (`webhook_http`) go to URLs a vendor or a user handed us, every one of them
hostile: each connection is checked by the address guard (shared/netguard.py), redirects included.

PERFORMANCE.md: one httpx.Client shared by many threads slows down as they grow, so each worker thread has its
own clients (and connection pools). The job store, the guard and storage are one per process, made under a lock:
`functools.lru_cache` does not lock, and 32 threads starting at once each built a boto3 client of their own
(+400 MiB of worker memory, measured by bench/batch_scale.py).
"""

from __future__ import annotations

import random
import threading

import httpx

from shared.http_deadline import deadline_transport
from shared.netguard import guarded_client
from shared.once import once_per_process
from shared.protection import ProviderGuard
from shared.settings import Settings, get_settings
from shared.storage import Storage
from shared.storage.streaming import MAX_REDIRECTS
from shared.store import JobStore

_local = threading.local()
USER_AGENT = "genqueue/0.1"


def settings() -> Settings:
    return get_settings()


@once_per_process
def store() -> JobStore:
    return JobStore.from_settings(settings())


@once_per_process
def guard() -> ProviderGuard:
    """The provider limits (rate, in-flight cap, breaker, credit pause), shared through the job store's Redis."""
    return ProviderGuard(store().redis)


@once_per_process
def storage() -> Storage:
    return Storage(settings())


def http() -> httpx.Client:
    """This thread's HTTP client for vendor API calls (submit, poll): redirects never followed, no address guard.

    A 3xx answer is a provider error (shared/providers/client.py); each call keeps to provider_timeout_seconds
    overall (its transport honours shared/http_deadline.py). Not for URLs a vendor hands us: see `download_http`.
    """
    client: httpx.Client | None = getattr(_local, "http", None)
    if client is None:
        timeout = httpx.Timeout(settings().provider_timeout_seconds, connect=10.0)
        client = httpx.Client(
            transport=deadline_transport(),
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
        _local.http = client
    return client


def download_http() -> httpx.Client:
    """This thread's HTTP client for output downloads: guarded, at most MAX_REDIRECTS redirects, each hop checked.

    Connects only to public addresses and GENQUEUE_PRIVATE_URL_ALLOWLIST's host:port pairs (everything, with
    GENQUEUE_ALLOW_PRIVATE_URLS), http and https only; a refused hop raises BlockedAddress before connecting.
    Reads wait provider_timeout_seconds each; Storage.copy_from_url sets the copy's overall deadline.
    """
    client: httpx.Client | None = getattr(_local, "download_http", None)
    if client is None:
        client = guarded_client(
            settings().allow_private_urls,
            httpx.Timeout(settings().provider_timeout_seconds, connect=10.0),
            follow_redirects=True,
            allowlist=settings().private_url_allowlist,
            max_redirects=MAX_REDIRECTS,
            # outputs are media files, stored as sent; asking for no compression keeps a small gzip from being
            # inflated into a large chunk in memory (the size bound counts decoded bytes all the same)
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        )
        _local.download_http = client
    return client


def webhook_http() -> httpx.Client:
    """This thread's HTTP client for webhooks: redirects are never followed (a 3xx is a failed delivery).

    It connects only to public addresses and GENQUEUE_PRIVATE_URL_ALLOWLIST's host:port pairs, checked at connect
    time (shared/netguard.py), unless GENQUEUE_ALLOW_PRIVATE_URLS is set; a refused address is a failed delivery
    attempt (BlockedAddress). Each attempt keeps to webhook_timeout_seconds overall (shared/webhooks/delivery.py).
    """
    client: httpx.Client | None = getattr(_local, "webhook_http", None)
    if client is None:
        client = guarded_client(
            settings().allow_private_urls,
            settings().webhook_timeout_seconds,
            follow_redirects=False,
            allowlist=settings().private_url_allowlist,
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
