"""The pipeline on real parts: redis-server, moto's S3 server, the sandbox over HTTP, celery worker processes
and a webhook receiver, all started here and stopped by pid."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from infra.local.processes import ServerProcess
from infra.local.stack import FAST_SETTINGS, LocalStack, stack_env
from infra.local.webhook_receiver import WebhookReceiver, start_receiver
from shared.settings import Settings
from shared.storage import Storage
from shared.webhooks.signing import generate_secret


@pytest.fixture(scope="session")
def sandbox_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    stack = LocalStack(tmp_path_factory.mktemp("sandbox"))
    url = stack.start_sandbox(delay=0.5)
    yield url
    stack.stop()


@pytest.fixture(scope="session")
def webhook_secret() -> str:
    return generate_secret()


@pytest.fixture(scope="session")
def receiver(webhook_secret: str) -> Iterator[WebhookReceiver]:
    server = start_receiver(webhook_secret)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pipeline_env(redis_url: str, moto_endpoint: str, sandbox_url: str, webhook_secret: str) -> dict[str, str]:
    env = stack_env(redis_url, moto_endpoint, sandbox_url, webhook_secret, bucket=f"genqueue-{uuid.uuid4().hex[:8]}")
    env.update(FAST_SETTINGS)
    # providers added by settings alone, with tight limits, for the vendor-protection tests
    for name, limits in {"capped": {"MAX_IN_FLIGHT": "1"}, "throttled": {"RATE_PER_SECOND": "2", "BURST": "1"}}.items():
        env[f"GENQUEUE_PROVIDERS__{name.upper()}__DIALECT"] = "sandbox"
        env[f"GENQUEUE_PROVIDERS__{name.upper()}__BASE_URL"] = f"{sandbox_url}/sandbox"
        env[f"GENQUEUE_PROVIDERS__{name.upper()}__API_KEY"] = "sk-sandbox-extra"
        env.update({f"GENQUEUE_PROVIDERS__{name.upper()}__{key}": value for key, value in limits.items()})
    # a vendor's 5th transient failure in a row opens its breaker for 30 s: test_transient_faults spends the gateway's
    # retry budget on 500s, so its job waits out the breaker before its last try; 1 s is enough to go through it
    env["GENQUEUE_PROVIDERS__GATEWAY__BREAKER_COOLDOWN_SECONDS"] = "1"
    # routes compare prices (test_routing): VicSee's 20-credit sora-2 at $0.01 a credit against a VeoGen contract
    env["GENQUEUE_PROVIDERS__VICSEE__USD_PER_CREDIT"] = "0.01"
    env["GENQUEUE_PROVIDERS__VEOGEN__PRICES"] = '{"sora-2": {"usd_per_job": 0.15}}'
    Storage(settings_for(env)).ensure_bucket()
    return env


def settings_for(env: dict[str, str]) -> Settings:
    """Settings read from `env` as the workers read them, leaving os.environ as it was."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        return Settings()


@pytest.fixture
def settings(pipeline_env: dict[str, str]) -> Settings:
    return settings_for(pipeline_env)


@pytest.fixture(scope="session")
def workers(pipeline_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One `celery -A workers worker` process consuming all four queues."""
    stack = LocalStack(tmp_path_factory.mktemp("workers"), env=pipeline_env)
    process = stack.start_workers(concurrency=8)
    stack.start_beat()
    yield process
    stack.stop()


@pytest.fixture(scope="session")
def api_url(pipeline_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One `genqueue api` process on a free port of 127.0.0.1."""
    stack = LocalStack(tmp_path_factory.mktemp("api"), env=pipeline_env)
    url = stack.start_api()
    yield url
    stack.stop()
