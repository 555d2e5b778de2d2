"""Redis over TLS, verified by default: against a redis-server speaking only TLS with a certificate from a private
CA, the job store and a real worker's broker connection both refuse the server until GENQUEUE_REDIS_CA_FILE names
that CA; with it, a job runs end to end over TLS. `ssl_cert_reqs=none` in the URL is the one way to skip it."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from infra.local.processes import ServerProcess
from infra.local.stack import LocalStack
from producer.api import Producer
from shared.store import redis_client
from tests.integration.conftest import settings_for
from tests.support.tls import Certificates, make_certificates, start_tls_redis

pytestmark = pytest.mark.integration

PASSWORD = "tls-test-password"


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Certificates, int]]:
    directory = tmp_path_factory.mktemp("redis-tls")
    certificates = make_certificates(directory)
    server, port = start_tls_redis(directory, certificates, PASSWORD)
    yield certificates, port
    server.stop()


def tls_url(port: int, query: str = "") -> str:
    return f"rediss://:{PASSWORD}@127.0.0.1:{port}/0{query}"


def test_the_store_refuses_a_server_it_cannot_verify_and_trusts_the_named_ca(
    tls_redis: tuple[Certificates, int],
) -> None:
    certificates, port = tls_redis
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis_client(tls_url(port)).ping()
    assert redis_client(tls_url(port), ca_file=str(certificates.ca)).ping()
    # the explicit opt-out, for a server whose certificate cannot be checked
    assert redis_client(tls_url(port, "?ssl_cert_reqs=none")).ping()


def test_a_worker_without_the_ca_does_not_connect_and_with_it_a_job_runs_over_tls(
    tls_redis: tuple[Certificates, int], pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    certificates, port = tls_redis
    env = {**pipeline_env, "GENQUEUE_REDIS_URL": tls_url(port)}
    unverified = ServerProcess(
        [sys.executable, "-m", "celery", "-A", "workers", "worker", "--pool", "solo", "--without-mingle"],
        tmp_path / "unverified.log",
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while "CERTIFICATE_VERIFY_FAILED" not in unverified.log_tail(20000):
            assert time.monotonic() < deadline, f"the broker connection was not refused: {unverified.log_tail()}"
            time.sleep(0.2)
        assert "ready." not in unverified.log_tail(20000)
    finally:
        unverified.stop()

    env["GENQUEUE_REDIS_CA_FILE"] = str(certificates.ca)
    stack = LocalStack(tmp_path / "verified", env=env)
    (tmp_path / "verified").mkdir()
    try:
        stack.start_workers(name="tls", concurrency=4)
        producer = Producer(settings_for(env))
        job = producer.submit("sandbox", "sandbox-image", "a flower over TLS")
        ended = producer.wait(job.id, timeout=60)
    finally:
        stack.stop()
    assert ended.status.value == "succeeded", ended.error
    assert redis_client(tls_url(port), ca_file=str(certificates.ca)).hget(f"genqueue:job:{job.id}", "status") == (
        b"succeeded"
    )
