"""rediss:// verifies the server's certificate in the broker (Celery/kombu) as in the job store (redis-py), against
GENQUEUE_REDIS_CA_FILE when set, unless the URL says ssl_cert_reqs=none; redis:// has no TLS at all."""

from __future__ import annotations

import ssl

import pytest

from shared.queueing import broker_tls, celery_config, make_celery
from shared.settings import Settings
from shared.store import FAILOVER_BACKOFF_CAP_SECONDS, JobStore, store_client

CA = "/etc/genqueue/redis-ca.pem"


def broker_ssl(url: str, ca_file: str | None = None) -> object:
    """What kombu's connection will use for TLS, from the settings as every process builds its app."""
    app = make_celery(Settings(redis_url=url, redis_ca_file=ca_file))
    return app.connection_for_write().ssl


def test_rediss_verifies_the_broker_certificate_against_the_ca_file() -> None:
    config = celery_config(Settings(redis_url="rediss://:secret@redis.internal:6380/0", redis_ca_file=CA))
    assert config["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": CA}
    assert broker_ssl("rediss://:secret@redis.internal:6380/0", CA) == config["broker_use_ssl"]


def test_rediss_without_a_ca_file_verifies_against_the_system_cas() -> None:
    assert broker_ssl("rediss://redis.internal:6380/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}


@pytest.mark.parametrize("value", ["none", "CERT_NONE"])
def test_a_url_saying_ssl_cert_reqs_none_is_not_verified(value: str) -> None:
    url = f"rediss://redis.internal:6380/0?ssl_cert_reqs={value}"
    broker_url, options = broker_tls(url, None)
    assert options == {"ssl_cert_reqs": ssl.CERT_NONE}
    assert broker_url == "rediss://redis.internal:6380/0"
    assert broker_ssl(url) == {"ssl_cert_reqs": ssl.CERT_NONE}


def test_the_urls_ssl_parameters_join_the_options_and_keep_the_ca_file() -> None:
    # left in the URL, kombu would use them instead of broker_use_ssl, without the CA file
    url = "rediss://redis.internal:6380/0?ssl_cert_reqs=required&ssl_check_hostname=false"
    broker_url, options = broker_tls(url + "&other=1", CA)
    assert broker_url == "rediss://redis.internal:6380/0?other=1"
    assert options == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": CA, "ssl_check_hostname": False}
    assert broker_ssl(url, CA) == options


def test_an_unknown_ssl_cert_reqs_is_refused() -> None:
    with pytest.raises(ValueError, match="ssl_cert_reqs=nnone"):
        broker_tls("rediss://redis.internal:6380/0?ssl_cert_reqs=nnone", None)


def test_redis_without_tls_has_no_ssl_options() -> None:
    config = celery_config(Settings(redis_url="redis://localhost:6379/0", redis_ca_file=CA))
    assert config["broker_url"] == "redis://localhost:6379/0"
    assert config["broker_use_ssl"] is None
    assert not broker_ssl("redis://localhost:6379/0", CA)


def test_the_job_store_verifies_rediss_against_the_ca_file() -> None:
    pool = JobStore.from_url("rediss://redis.internal:6380/0", ca_file=CA).redis.connection_pool
    connection = pool.make_connection()
    assert (connection.cert_reqs, connection.ca_certs, connection.check_hostname) == (ssl.CERT_REQUIRED, CA, True)
    unverified = JobStore.from_url("rediss://redis.internal:6380/0?ssl_cert_reqs=none", ca_file=CA)
    assert unverified.redis.connection_pool.make_connection().cert_reqs == ssl.CERT_NONE
    # no TLS options on a plain connection, which would refuse them
    plain = JobStore.from_url("redis://localhost:6379/0", ca_file=CA).redis.connection_pool
    assert "ssl_ca_certs" not in plain.connection_kwargs
    plain.make_connection()


def test_the_broker_and_the_store_default_to_the_one_redis_url_and_split_when_set() -> None:
    one = Settings(redis_url="redis://one:6379/0")
    assert (one.broker_redis_url, one.store_redis_url) == ("redis://one:6379/0", "redis://one:6379/0")
    split = Settings(
        redis_url="redis://one:6379/0", broker_url="redis://broker:6379/1", store_url="redis://store:6379/2"
    )
    assert (split.broker_redis_url, split.store_redis_url) == ("redis://broker:6379/1", "redis://store:6379/2")
    assert celery_config(split)["broker_url"] == "redis://broker:6379/1"


def test_a_sentinel_broker_is_one_url_per_sentinel_with_the_masters_password_and_database() -> None:
    import pytest
    from pydantic import ValidationError

    settings = Settings(
        redis_url="redis://:s3cret@ignored:6379/2",
        redis_sentinels=["10.0.0.1:26379", "10.0.0.2:26379"],
        redis_sentinel_master="genqueue",
    )
    config = celery_config(settings)
    assert config["broker_url"] == "sentinel://:s3cret@10.0.0.1:26379/2;sentinel://:s3cret@10.0.0.2:26379/2"
    assert config["broker_transport_options"]["master_name"] == "genqueue"
    with pytest.raises(ValidationError, match="is not host:port"):
        Settings(redis_sentinels=["10.0.0.1"])


def test_through_sentinel_the_store_retries_a_lost_connection_for_the_failover_window() -> None:
    settings = Settings(redis_sentinels=["127.0.0.1:1"], redis_failover_seconds=20)
    retry = store_client(settings).connection_pool.connection_kwargs["retry"]
    backoff = retry._backoff
    assert retry._retries == 3 + 20  # one try a second at most, and the first quick ones
    assert backoff.compute(100) <= FAILOVER_BACKOFF_CAP_SECONDS
    assert "retry" not in store_client(Settings()).connection_pool.connection_kwargs
