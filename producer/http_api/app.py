"""The HTTP API (INTERFACE.md "HTTP API"): FastAPI over the Producer and the job store, one process per container.

`create_app(settings)` builds it; `genqueue api` serves it with uvicorn. `/livez` answers while the process runs,
`/readyz` while Redis answers too; neither needs a key. Everything else needs one (producer/http_api/auth.py) and
answers errors as problem+json (producer/http_api/problems.py), except the `/ui` pages, which log in with a form
(producer/http_api/ui.py). The OpenAPI document is generated from the same pydantic models the producer and the job
store use.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio.sentinel import Sentinel as AsyncSentinel

from producer.api import Producer
from producer.http_api import batches, events, jobs, problems, ui, ui_batches, ui_records
from producer.http_api.auth import Tenant
from shared import tracing
from shared.keys import KeyStore
from shared.settings import Settings
from shared.store import STORE_SETTING, master_options, refuse_cluster, sentinel_addresses


def subscriber_client(settings: Settings) -> aioredis.Redis:
    """An asyncio client on the job store's Redis (through Sentinel when configured), for the event streams."""
    options: dict[str, Any] = {"health_check_interval": 30}
    url = settings.store_redis_url
    if settings.redis_ca_file and url.startswith("rediss://"):
        options["ssl_ca_certs"] = settings.redis_ca_file
    if not settings.redis_sentinels:
        return aioredis.Redis.from_url(url, **options)
    finder = AsyncSentinel(sentinel_addresses(settings.redis_sentinels), socket_timeout=5)  # type: ignore[no-untyped-call]
    client = finder.master_for(settings.redis_sentinel_master, **master_options(url), **options)
    return cast(aioredis.Redis, client)


def create_app(settings: Settings, producer: Producer | None = None) -> FastAPI:
    """The API app for `settings`; `producer` replaces the one made from them (tests)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # the events streams' subscriptions, on an asyncio client: a waiting stream holds no thread
        app.state.subscriber = subscriber_client(settings)
        with contextlib.suppress(redis.RedisError):  # Redis down now: /readyz says so, and the API waits for it
            await asyncio.to_thread(refuse_cluster, app.state.producer.store.redis, STORE_SETTING)
        try:
            yield
        finally:
            await app.state.subscriber.aclose()

    app = FastAPI(
        title="genqueue",
        version="1",
        summary="AI image and video generation jobs: vendor APIs in, your bucket and a signed webhook out.",
        lifespan=lifespan,
    )
    tracing.configure("genqueue-api")
    tracing.instrument_app(app)
    app.state.producer = producer or Producer(settings)
    app.state.keys = KeyStore(app.state.producer.store.redis)
    problems.install(app)
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(batches.router)
    ui.install(app, settings, ui_batches.router, ui_records.router)

    @app.get("/v1/providers", tags=["providers"], responses=problems.PROBLEM_RESPONSES)
    def providers(key: Tenant, request: Request) -> list[dict[str, Any]]:
        """Each provider's limits as every worker sees them: what `genqueue provider status --json` shows."""
        rows = request.app.state.producer.provider_status()
        return [json.loads(json.dumps(dataclasses.asdict(row), default=str)) for row in rows]

    @app.get("/livez", tags=["health"])
    def livez() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": problems.Problem}})
    def readyz(request: Request) -> JSONResponse:
        """The process can serve: Redis answers."""
        client: redis.Redis = request.app.state.producer.store.redis
        try:
            client.ping()
        except redis.RedisError as exc:
            return problems.problem(503, "unavailable", f"Redis does not answer: {type(exc).__name__}")
        return JSONResponse({"status": "ok"})

    return app
