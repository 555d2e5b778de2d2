"""The one Settings object, read from GENQUEUE_* environment variables (and a .env file) with pydantic-settings.

The variables of INTERFACE.md are the contract; the rest are tuning knobs with defaults that work on a laptop.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import InvalidRequest
from shared.netguard import parse_allowlist
from shared.providers.catalog_data import Price

#: where each built-in provider is reached by default, and the dialect it speaks
BUILTIN_PROVIDERS: dict[str, tuple[str, str]] = {
    "vicsee": ("vicsee", "https://vicsee.com"),
    "veogen": ("veogen", "https://veogen.studio"),
    "gateway": ("gateway", ""),
    "veo3api": ("veo3api", ""),
    "sandbox": ("sandbox", "http://127.0.0.1:8900/sandbox"),
}
KNOWN_DIALECTS = frozenset(dialect for dialect, _ in BUILTIN_PROVIDERS.values())


class ProviderConfig(BaseModel):
    """Where one provider is reached and how: its name, dialect, base URL (the documented paths go after it) and key."""

    name: str
    dialect: str
    base_url: str
    api_key: str | None = None
    allow_resubmit: bool = False
    limits: ProviderLimits = Field(default_factory=lambda: ProviderLimits())
    #: what one credit of this provider costs in USD, so routes compare credit-billed and USD-billed providers
    usd_per_credit: float | None = None
    #: model id -> its price here, where the catalog has none or the account's contract differs
    prices: dict[str, Price] = Field(default_factory=dict)


class ProviderLimits(BaseModel):
    """How hard genqueue may push one provider, shared by every worker on every machine (shared/protection.py)."""

    #: submits per second (token bucket refill rate) and the bucket's size
    rate_per_second: float = 5.0
    burst: int = 10
    #: jobs accepted by the vendor and not yet done rendering (vendors cap concurrent generations)
    max_in_flight: int = 50
    #: consecutive transient failures (5xx, transport) that open the circuit breaker, and how long it stays open
    breaker_threshold: int = 5
    breaker_cooldown_seconds: float = 30.0
    #: after an insufficient-credits answer, how often one submit is let through to probe the balance
    credit_probe_interval_seconds: float = 60.0


class ProviderOverride(BaseModel):
    """What GENQUEUE_PROVIDERS__<NAME>__* set for one provider; unset fields keep the built-in values."""

    base_url: str | None = None
    api_key: str | None = None
    dialect: str | None = None
    allow_resubmit: bool | None = None
    rate_per_second: float | None = None
    burst: int | None = None
    max_in_flight: int | None = None
    breaker_threshold: int | None = None
    breaker_cooldown_seconds: float | None = None
    credit_probe_interval_seconds: float | None = None
    usd_per_credit: float | None = Field(default=None, ge=0)
    prices: dict[str, Price] | None = None


class Settings(BaseSettings):
    """Every setting of genqueue. Read once per process with `get_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix="GENQUEUE_", env_nested_delimiter="__", env_file=".env", extra="ignore", case_sensitive=False
    )

    redis_url: str = "redis://localhost:6379/0"
    #: the Celery broker and the job store (with the limits, keys, batches and metrics), each on its own Redis;
    #: unset, both are `redis_url`
    broker_url: str | None = None
    store_url: str | None = None
    #: Sentinel `host:port`s (JSON list): when set, the broker and the store find their master through them and
    #: follow a failover by themselves; the URLs then give only the password, user and database number
    redis_sentinels: list[str] = Field(default_factory=list)
    redis_sentinel_master: str = "mymaster"
    #: through Sentinel, how long a job-store call that lost its connection keeps retrying (asking the sentinels
    #: for the master again each time) before it fails: above the sentinels' down-after-milliseconds plus the
    #: failover's own time, so a step rides through a failover instead of failing
    redis_failover_seconds: float = Field(default=30.0, ge=0)
    #: replicas that must have a submit's intent (and the vendor's task id) before genqueue goes on (Redis WAIT),
    #: so a failover cannot forget that a submit was sent; 0 on a Redis without replicas
    redis_min_replicas: int = Field(default=0, ge=0)
    #: CA bundle for rediss:// (the broker and the store); unset: the system's. Certificates are always verified
    #: unless a URL says ssl_cert_reqs=none
    redis_ca_file: str | None = None
    s3_endpoint_url: str | None = None
    s3_bucket: str = "genqueue-outputs"
    s3_prefix: str = "outputs/"
    s3_region: str | None = None
    webhook_secret: str | None = None
    webhook_retry_delays: list[float] = Field(default=[5, 300, 1800, 7200, 18000, 36000, 36000])
    #: each webhook attempt's overall deadline: connect, send and the receiver's answer, however it trickles
    webhook_timeout_seconds: float = 15.0
    allow_private_urls: bool = False
    #: `host:port` pairs that user- and vendor-given URLs may reach though not public (shared/netguard.py)
    private_url_allowlist: list[str] = Field(default_factory=list)
    #: bounds on a finalize (shared/storage/s3.py): bytes per output, outputs per job, seconds per output's copy
    max_output_bytes: int = 4 * 1024**3
    max_outputs_per_job: int = 16
    max_copy_seconds: float = 1800.0
    #: without a webhook secret, a job with a webhook is refused unless this is set (development only)
    allow_unsigned_webhooks: bool = False
    providers: dict[str, ProviderOverride] = Field(default_factory=dict)

    #: Redis redelivers an unacked message after this many seconds; every countdown stays below half of it
    visibility_timeout: int = 3600
    #: a job with no terminal status from the vendor this long after it was created fails with `timeout`
    job_timeout_seconds: float = 3600.0
    #: first poll delay when the vendor gives no estimate
    poll_initial_seconds: float = 2.0
    poll_backoff_factor: float = 1.5
    poll_max_interval_seconds: float = 30.0
    #: ± this fraction of random jitter on every poll delay
    poll_jitter: float = 0.1
    #: a submit, poll or download call to a vendor gives up after this many seconds
    provider_timeout_seconds: float = 60.0
    #: transient failures of one step are retried this many times per error code, then the job fails with it
    retry_budgets: dict[str, int] = Field(
        default={"rate_limited": 8, "provider_error": 5, "download_failed": 5, "storage_error": 5}
    )
    #: a job whose next step is overdue by this long (its task lost, or its worker dead) is resumed by the sweeper
    sweep_grace_seconds: float = 120.0
    sweep_interval_seconds: float = 30.0
    #: the lease a step holds while it runs (a submit's POST holds the vendor call's instead:
    #: lifecycle.vendor_call_lease_seconds), renewed every third of it: a step whose worker died, or whose outcome a
    #: Redis failover lost, is taken over by the sweeper this long after its last renewal
    step_lease_seconds: float = 120.0
    #: how often the dispatcher releases held batch jobs (workers/dispatcher.py), and how long one dispatcher task
    #: keeps doing so (beat starts one that often)
    dispatch_interval_seconds: float = 1.0
    dispatch_task_seconds: float = 10.0
    #: a job waiting for provider capacity (rate, in-flight cap, breaker, credit pause) checks again at least this
    #: often, so `genqueue provider resume` or a freed slot takes effect within that time
    capacity_recheck_seconds: float = 5.0
    retry_base_seconds: float = 2.0
    #: outputs are uploaded in parts of this size; the worker holds about one part in memory
    upload_part_bytes: int = 8 * 1024 * 1024
    download_url_expiry_seconds: int = 7 * 24 * 3600
    #: an ended job (its webhook delivered or given up) is kept this long in Redis, then expires; 0 keeps it forever
    job_retention_days: float = 30.0
    #: log lines as text for a person at a terminal, or one JSON object a line for a log system (shared/logs.py)
    log_format: Literal["text", "json"] = "text"
    #: the producer's `wait` is woken by the store's notice of each write to the job; it reads the job at least
    #: this often all the same (a notice lost with a connection costs at most this long)
    wait_interval_seconds: float = 5.0
    #: a worker's heartbeat and ready files for an orchestrator's probes (workers/health.py); unset, none are written
    health_dir: str | None = None
    health_interval_seconds: float = Field(default=10.0, gt=0)
    #: the key an operator logs in to `/ui` with, seeing every job and resuming providers; unset, `/ui` admits API
    #: keys only, each seeing only its own jobs
    ui_operator_key: SecretStr | None = None
    #: how long a `/ui` login lasts
    ui_session_seconds: float = Field(default=12 * 3600.0, gt=0)

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_addresses(cls, sentinels: list[str]) -> list[str]:
        for address in sentinels:
            host, sep, port = address.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"redis_sentinels: {address!r} is not host:port")
        return sentinels

    @field_validator("s3_prefix")
    @classmethod
    def _prefix_slash(cls, prefix: str) -> str:
        return prefix if not prefix or prefix.endswith("/") else prefix + "/"

    @field_validator("providers", mode="before")
    @classmethod
    def _lower_names(cls, value: object) -> object:
        if isinstance(value, dict):
            return {str(name).lower(): override for name, override in value.items()}
        return value

    @field_validator("private_url_allowlist")
    @classmethod
    def _allowlist_entries(cls, entries: list[str]) -> list[str]:
        parse_allowlist(entries)
        return entries

    @model_validator(mode="after")
    def _countdowns_fit(self) -> Settings:
        if self.poll_max_interval_seconds >= self.max_countdown_seconds:
            raise ValueError("poll_max_interval_seconds must stay below half of visibility_timeout")
        if self.upload_part_bytes < 5 * 1024 * 1024:
            raise ValueError("upload_part_bytes must be at least 5 MiB (the S3 minimum part size)")
        return self

    @property
    def broker_redis_url(self) -> str:
        """The Celery broker's Redis: `broker_url`, else `redis_url`."""
        return self.broker_url or self.redis_url

    @property
    def store_redis_url(self) -> str:
        """The job store's Redis (limits, keys, batches, metrics too): `store_url`, else `redis_url`."""
        return self.store_url or self.redis_url

    @property
    def max_countdown_seconds(self) -> float:
        """The longest countdown any task may be given: below half the visibility timeout (celery/celery#2599)."""
        return self.visibility_timeout / 2 - min(60.0, self.visibility_timeout / 10)

    @property
    def job_retention_seconds(self) -> float | None:
        """`job_retention_days` in seconds; None when jobs are kept forever."""
        return self.job_retention_days * 86400 if self.job_retention_days > 0 else None

    def retry_budget(self, code: str) -> int:
        """How many retries a step gets for transient failures with error code `code`."""
        return self.retry_budgets.get(code, 5)

    def secrets(self) -> list[str]:
        """Every secret these settings hold (provider keys, the webhook secret, the UI operator key): what a job's
        error and a log line never show."""
        keys = [override.api_key for override in self.providers.values() if override.api_key]
        operator = [self.ui_operator_key.get_secret_value()] if self.ui_operator_key else []
        return [*keys, *([self.webhook_secret] if self.webhook_secret else []), *operator]

    def provider_names(self) -> list[str]:
        """Built-in providers and those added by settings, sorted."""
        return sorted(set(BUILTIN_PROVIDERS) | set(self.providers))

    def usable_providers(self) -> list[ProviderConfig]:
        """The configuration of every provider jobs can be sent to (a built-in one with no base URL is not)."""
        configs = []
        for name in self.provider_names():
            try:
                configs.append(self.provider(name))
            except InvalidRequest:
                continue
        return configs

    def provider(self, name: str) -> ProviderConfig:
        """The merged configuration of provider `name`; InvalidRequest for an unknown or unusable one."""
        override = self.providers.get(name.lower(), ProviderOverride())
        dialect, base_url = BUILTIN_PROVIDERS.get(name, (None, None))
        if dialect is None and name.lower() not in self.providers:
            raise InvalidRequest(f"unknown provider {name!r}; known: {', '.join(self.provider_names())}")
        dialect = override.dialect or dialect or name
        if dialect not in KNOWN_DIALECTS:
            raise InvalidRequest(
                f"provider {name!r} has unknown dialect {dialect!r}; known: {', '.join(sorted(KNOWN_DIALECTS))}"
            )
        base_url = override.base_url or base_url
        if not base_url:
            raise InvalidRequest(f"provider {name!r} has no base URL: set GENQUEUE_PROVIDERS__{name.upper()}__BASE_URL")
        return ProviderConfig(
            name=name,
            dialect=dialect,
            base_url=base_url,
            api_key=override.api_key,
            allow_resubmit=bool(override.allow_resubmit),
            usd_per_credit=override.usd_per_credit,
            prices=override.prices or {},
            limits=ProviderLimits.model_validate(
                {
                    field: value
                    for field in ProviderLimits.model_fields
                    if (value := getattr(override, field)) is not None
                }
            ),
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read on first use."""
    return Settings()
