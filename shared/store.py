"""The job store: the source of truth for every job, in Redis.

Each job is one hash (`data`, `version`, `status`). Every write is a compare-and-set on `version` done by one Lua
script, so two workers that read the same job cannot both write: the loser re-reads and re-decides. Transitions
are computed by pure functions (`shared.lifecycle`) on the value read, so a task delivered twice, or a stale task
arriving late, sees the newer state and changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis
from pydantic_core import PydanticSerializationError
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from shared import counters
from shared.claims import HELD_BY_LUA, Claims, ClaimTakenOver, Slot
from shared.constants import (
    BATCH_COUNTS_KEY,
    BATCH_ENDED_KEY,
    BATCH_EVENTS_CHANNEL,
    CREATED_JOBS_KEY,
    CREATED_MINUTES_KEY,
    DUE_KEY,
    IDEMPOTENCY_KEY,
    IDEMPOTENCY_TTL_SECONDS,
    JOB_EVENTS_CHANNEL,
    JOB_KEY,
    QUEUE_DUE_KEYS,
    QUEUES,
    STEP_TASKS,
    TENANT_JOBS_KEY,
    TENANT_SPEND_KEY,
)
from shared.errors import InvalidRequest
from shared.models import TERMINAL_STATUSES, Budget, Cost, Job, utcnow
from shared.quarantine import Quarantine, UnreadableRecord, describe
from shared.settings import Settings

#: seconds a minute's list of created jobs is kept beyond the retention (a job may run, or wait in a batch, this long)
CREATED_LIST_MARGIN = 14 * 86400


def created_minute(job: Job) -> int:
    """The minute (unix ms // 60000) whose list of created jobs holds `job`."""
    return int(job.created_at.timestamp() * 1000) // 60000


# KEYS: job hash, due zset, batch counts hash, batch ended list (the last two unused for a job in no batch), the
# key of the claim the job is created under (shared/claims.py: its idempotency key or its batch line; any key when
# none), the tenant's job index and spend hash (any key for a job of no tenant), the due zset of each queue in
# QUEUES order, the counters hash (shared/counters.py), on creation the list of the jobs created in the job's
# minute and the sorted set of such minutes (any keys otherwise), and the hash of this minute's recent vendor
# answers (counters.RECENT_KEY).
# ARGV: expected version ("" = must not exist), data, status, job id, due score ("" = none), "1" when in a batch,
# "1" when the new status is terminal, retention in ms ("" = keep forever); on creation the job id the claim must
# still name ("" = no claim), the claim's field ("" = the claim is KEYS[5] itself) and the creation time in ms;
# the channel every committed write is published on; the change of the job's cost in
# credits and in USD (added to the tenant's spend); on creation the tenant's budget, its currency ("" = none) and
# amount: refused (-3) when the spend plus this job's cost would pass it; the position in QUEUES of the queue of
# the job's next step ("" = none); on creation "1" when the job has a tenant, its minute of creation, and how long
# that minute's list is kept in ms ("" = forever); the batch's channel (published on when a batch job's status
# changes); the number N of counter pairs that follow: N pairs of a counter
# field and the amount to add to it, then pairs for the minute's hash of recent vendor answers (KEYS[15]).
# The hash keeps that position (`queue`), so a write takes the job off only the queue index it was on (off all four
# for a job written before the field was kept).
# An ended job with nothing left to do expires after the retention; one given a step again (a webhook redelivery)
# is kept (only an ended job can have an expiry to take off).
_CAS_SCRIPT = (
    HELD_BY_LUA
    + "local TERMINAL = {"
    + ", ".join(f"['{status.value}'] = true" for status in sorted(TERMINAL_STATUSES))
    + "}"
    + f"\nlocal RECENT_KEEP_SECONDS = {counters.RECENT_KEEP_SECONDS}"
    + """
local head = redis.call('HMGET', KEYS[1], 'version', 'status', 'queue')
local current, old_status, old_queue = head[1], head[2], head[3]
if ARGV[1] == '' then
  if current then return -1 end
  if ARGV[9] ~= '' and not held_by(claim_value(KEYS[5], ARGV[10]), ARGV[9]) then return -2 end
  if ARGV[15] ~= '' then
    local spent = tonumber(redis.call('HGET', KEYS[7], ARGV[15]) or '0')
    local cost = tonumber(ARGV[15] == 'credits' and ARGV[13] or ARGV[14])
    if spent + cost > tonumber(ARGV[16]) + 1e-9 then return -3 end
  end
  if ARGV[18] == '1' then redis.call('ZADD', KEYS[6], ARGV[11], ARGV[4]) end
  redis.call('RPUSH', KEYS[13], ARGV[4])
  if ARGV[20] ~= '' then redis.call('PEXPIRE', KEYS[13], ARGV[20]) end
  redis.call('ZADD', KEYS[14], ARGV[19], ARGV[19])
  current, old_queue = '0', ''
elseif current ~= ARGV[1] then
  return -1
end
local version = tonumber(current) + 1
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'version', version, 'status', ARGV[3], 'queue', ARGV[17])
if ARGV[5] == '' then
  redis.call('ZREM', KEYS[2], ARGV[4])
else
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
end
if not old_queue then
  for i = 8, 11 do redis.call('ZREM', KEYS[i], ARGV[4]) end
elseif old_queue ~= '' and old_queue ~= ARGV[17] then
  redis.call('ZREM', KEYS[7 + tonumber(old_queue)], ARGV[4])
end
if ARGV[17] ~= '' then redis.call('ZADD', KEYS[7 + tonumber(ARGV[17])], ARGV[5], ARGV[4]) end
if ARGV[6] == '1' and old_status ~= ARGV[3] then
  if old_status then redis.call('HINCRBY', KEYS[3], old_status, -1) end
  redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
  if ARGV[7] == '1' then redis.call('RPUSH', KEYS[4], ARGV[4]) end
  redis.call('PUBLISH', ARGV[21], ARGV[4] .. ' ' .. ARGV[3])
end
if ARGV[7] == '1' and ARGV[5] == '' and ARGV[8] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
elseif old_status and TERMINAL[old_status] then
  redis.call('PERSIST', KEYS[1])
end
if ARGV[13] ~= '0' then redis.call('HINCRBYFLOAT', KEYS[7], 'credits', ARGV[13]) end
if ARGV[14] ~= '0' then redis.call('HINCRBYFLOAT', KEYS[7], 'usd', ARGV[14]) end
local lasting = 23 + 2 * tonumber(ARGV[22])
for i = 23, lasting - 1, 2 do redis.call('HINCRBYFLOAT', KEYS[12], ARGV[i], ARGV[i + 1]) end
for i = lasting, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[15], ARGV[i], ARGV[i + 1]) end
if lasting <= #ARGV then redis.call('EXPIRE', KEYS[15], RECENT_KEEP_SECONDS) end
redis.call('PUBLISH', ARGV[12], version .. ' ' .. ARGV[3])
return version
"""
)

MAX_CAS_ATTEMPTS = 50
#: how many jobs, written how recently, JobStore.update may start from without reading them (see JobStore): past a
#: few seconds the next step is a countdown's, and another process has more likely written the job meanwhile
REMEMBER_JOBS = 1024
REMEMBER_SECONDS = 5.0

log = logging.getLogger("genqueue.store")


def redis_client(
    url: str,
    ca_file: str | None = None,
    sentinels: Sequence[str] = (),
    master: str = "mymaster",
    failover_seconds: float = 30.0,
) -> redis.Redis:
    """The client every genqueue process reads the job store with: bounded timeouts, health checks; a rediss://
    URL verifies the server's certificate (against `ca_file` when given, else the system's CAs) unless the URL
    says ssl_cert_reqs=none.

    With `sentinels` (`host:port`s) the client asks them for `master`'s address, and again after a failover, so it
    follows the new master by itself; `url` then gives the password, user, database number and TLS only. A call
    whose connection is lost or refused is then retried for about `failover_seconds`, so it lands on the master
    the sentinels promote instead of failing while they decide.
    """
    tls = {"ssl_ca_certs": ca_file} if ca_file and url.startswith("rediss://") else {}
    options: dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 5, "health_check_interval": 30}
    if not sentinels:
        return redis.Redis.from_url(url, **options, **tls)
    finder = Sentinel(sentinel_addresses(sentinels), socket_timeout=5)  # type: ignore[no-untyped-call]
    options["retry"] = failover_retry(failover_seconds)
    client = finder.master_for(master, **master_options(url), **options, **tls)  # type: ignore[no-untyped-call]
    return cast(redis.Redis, client)


#: the longest pause between two tries of a call while the sentinels fail over
FAILOVER_BACKOFF_CAP_SECONDS = 1.0


def failover_retry(seconds: float) -> Retry:
    """Retries of a lost connection (with jitter, at most FAILOVER_BACKOFF_CAP_SECONDS apart) for about `seconds`;
    a refused connection fails at once, so each try costs about its pause."""
    tries = 3 + math.ceil(seconds / FAILOVER_BACKOFF_CAP_SECONDS)
    return Retry(ExponentialWithJitterBackoff(base=0.1, cap=FAILOVER_BACKOFF_CAP_SECONDS), retries=tries)


def sentinel_addresses(sentinels: Sequence[str]) -> list[tuple[str, int]]:
    """(host, port) of each `host:port` (checked by Settings)."""
    return [(host, int(port)) for host, _, port in (address.rpartition(":") for address in sentinels)]


def master_options(url: str) -> dict[str, Any]:
    """What a Redis URL says of its server besides where it is (Sentinel says that): database, user, password, TLS."""
    parts = urlsplit(url)
    return {
        "db": int(parts.path.strip("/") or 0),
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "ssl": parts.scheme == "rediss",
    }


def store_client(settings: Settings) -> redis.Redis:
    """The job store's Redis client for `settings` (GENQUEUE_STORE_URL, through Sentinel when configured)."""
    return redis_client(
        settings.store_redis_url,
        settings.redis_ca_file,
        settings.redis_sentinels,
        settings.redis_sentinel_master,
        settings.redis_failover_seconds,
    )


#: how a refusal names the settings that point at the store's Redis, and at the broker's
STORE_SETTING = "GENQUEUE_STORE_URL (or GENQUEUE_REDIS_URL)"
BROKER_SETTING = "GENQUEUE_BROKER_URL (or GENQUEUE_REDIS_URL)"


class RedisClusterRefused(ValueError):
    """Raised at start-up when a Redis genqueue is pointed at runs in cluster mode."""


def refuse_cluster(client: redis.Redis, setting: str) -> None:
    """RedisClusterRefused (one line, naming `setting`) when `client`'s server is a Redis Cluster node.

    Celery's Redis broker cannot use Redis Cluster (celery/celery#2852), and the job store's scripts touch keys of
    many slots: genqueue runs on one Redis, made highly available with Sentinel.
    """
    if client.info("cluster").get("cluster_enabled"):
        raise RedisClusterRefused(
            f"{setting} is a Redis Cluster node; genqueue needs one Redis (with Sentinel for high availability):"
            " Celery's broker cannot use Redis Cluster (celery/celery#2852)"
        )


class BudgetExceeded(InvalidRequest):
    """Raised when a tenant's job would take its API key past its budget; nothing was stored."""

    def __init__(self, budget: Budget, spent: float, cost: float | None) -> None:
        super().__init__(
            f"budget_exhausted: this job's estimated {cost or 0:g} {budget.currency} would take the key past its"
            f" budget of {budget.amount:g} {budget.currency} ({spent:g} committed)"
        )
        self.budget = budget


class NotReplicated(RuntimeError):
    """Raised when a durable write reached the master but not `min_replicas` replicas in time (never a job's
    error: the caller decides, e.g. a submit undoes its intent and tries again before sending anything)."""


class ConcurrentUpdate(RuntimeError):
    """Raised when a job kept changing under a writer for MAX_CAS_ATTEMPTS tries (should never happen in practice)."""


class JobStore:
    """Reads and atomically writes jobs. Only this class touches job keys in Redis.

    The store remembers the jobs this process wrote in the last REMEMBER_SECONDS, as written and with the version
    the write gave them (at most REMEMBER_JOBS): a step's outcome follows its claim, and the next step's claim
    follows that outcome, often in the same process, so `update` starts from that copy instead of reading the job
    again. The compare-and-set still checks the version, so a copy another write has overtaken is never written
    over (the write fails and the job is read: one round trip lost), and a change that declines on the copy is
    asked again with the job as stored. Job ids are never reused, so a version names one content.
    """

    def __init__(
        self,
        client: redis.Redis,
        retention_seconds: float | None = None,
        min_replicas: int = 0,
        replica_timeout_seconds: float = 2.0,
    ) -> None:
        """`retention_seconds`: how long an ended job with nothing left to do is kept (None: forever);
        `min_replicas`: how many replicas must have a durable write (0: none waited for)."""
        self.redis = client
        self.min_replicas = min_replicas
        self.replica_timeout_ms = int(replica_timeout_seconds * 1000)
        self.retention_ms = "" if not retention_seconds else str(int(retention_seconds * 1000))
        # a minute's list of created jobs outlives its jobs: a job ends within days, then is kept the retention
        self.created_list_ms = (
            "" if not retention_seconds else str(int((retention_seconds + CREATED_LIST_MARGIN) * 1000))
        )
        self._cas = client.register_script(_CAS_SCRIPT)
        self._written: OrderedDict[str, tuple[str, str, float]] = OrderedDict()
        self._written_lock = threading.Lock()
        self.quarantine = Quarantine(client)
        self.claims = Claims(client)

    @classmethod
    def from_url(cls, url: str, retention_seconds: float | None = None, ca_file: str | None = None) -> JobStore:
        """A store on the Redis at `url` (see `redis_client`)."""
        return cls(redis_client(url, ca_file), retention_seconds)

    @classmethod
    def from_settings(cls, settings: Settings) -> JobStore:
        """The store `settings` name (GENQUEUE_STORE_URL, through Sentinel when configured)."""
        return cls(store_client(settings), settings.job_retention_seconds, settings.redis_min_replicas)

    def create(self, job: Job, claim: Slot | None = None, budget: Budget | None = None) -> None:
        """Store a new job; ValueError if its id is taken, InvalidRequest if it would not read back.

        A job created under a claim (shared/claims.py: `claim`, by default its idempotency key's when it has one)
        is stored only while that claim still names it (a claim is taken over when its claimant seemed to have
        died); ClaimTakenOver otherwise. A tenant's job with `budget` (its API key's) is stored only while the
        tenant's spend (`tenant_spend`) plus the job's cost stays within it; BudgetExceeded otherwise.
        """
        if claim is None and job.idempotency_key:
            claim = idempotency_slot(job.idempotency_key)
        if job.status.value not in job.entered_at:
            job.entered_at = {**job.entered_at, job.status.value: job.created_at}
        result = self._write(job, _readable_json(job), expected_version="", before=None, claim=claim, budget=budget)
        if result == -3:
            assert budget is not None
            spent = self.tenant_spend(job.tenant or "")
            raise BudgetExceeded(budget, getattr(spent, budget.currency) or 0.0, getattr(job.cost, budget.currency))
        if result == -2:
            raise ClaimTakenOver(f"the claim job {job.id} was created under names another job by now")
        if result < 0:
            raise ValueError(f"job {job.id} already exists")

    def get(self, job_id: str) -> Job | None:
        """The job, or None when there is no such job; UnreadableRecord (quarantined) when it cannot be read."""
        data = self.redis.hget(JOB_KEY.format(job_id=job_id), "data")
        return self._parse(job_id, data) if data else None

    def get_many(self, job_ids: list[str]) -> list[Job | None]:
        """The jobs with these ids, in the same order, in one round trip.

        None where there is no such job, and where the job cannot be read (it is quarantined), so a loop over
        many jobs carries on past a bad one.
        """
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(JOB_KEY.format(job_id=job_id), "data")
        jobs: list[Job | None] = []
        for job_id, data in zip(job_ids, pipe.execute(), strict=True):
            try:
                jobs.append(self._parse(job_id, data) if data else None)
            except UnreadableRecord:
                jobs.append(None)
        return jobs

    def all_jobs(self, chunk: int = 500) -> Iterator[Job]:
        """Every job in the store, `chunk` per round trip (a SCAN of job keys, then pipelined reads): for figures
        over all jobs (shared/metrics.py), not for a step's path.

        A key the SCAN yields twice is read once; one deleted meanwhile is skipped, and so is one that is not a
        job's hash (with a warning); a job whose data cannot be read is quarantined and skipped.
        """
        prefix = JOB_KEY.format(job_id="")
        seen: set[str] = set()
        job_ids: list[str] = []
        for key in self.redis.scan_iter(match=JOB_KEY.format(job_id="*"), count=chunk):
            job_id = _text(key).removeprefix(prefix)
            if job_id in seen:
                continue
            seen.add(job_id)
            job_ids.append(job_id)
            if len(job_ids) >= chunk:
                yield from self._read_found(job_ids)
                job_ids = []
        if job_ids:
            yield from self._read_found(job_ids)

    def _read_found(self, job_ids: list[str]) -> Iterator[Job]:
        """The readable jobs among those whose keys a SCAN found (see `all_jobs`)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(JOB_KEY.format(job_id=job_id), "data")
        for job_id, data in zip(job_ids, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(data, Exception):  # not a hash: nothing genqueue wrote
                log.warning("cannot read the key of job %s: %s", job_id, data)
            elif data is not None:
                try:
                    yield self._parse(job_id, data)
                except UnreadableRecord:
                    continue

    def _parse(self, job_id: str, data: bytes | str) -> Job:
        try:
            return Job.model_validate_json(data)
        except ValueError as exc:  # pydantic's ValidationError is one
            raise self.quarantine.add("job", job_id, describe(exc)) from None

    def update(
        self,
        job_id: str,
        change: Callable[[Job], Job | None],
        durable: bool = False,
        counts: Mapping[str, float] | None = None,
    ) -> Job | None:
        """Apply `change` to the current job and write the result atomically.

        `change` receives a fresh copy each try and returns the new job, or None to leave the job as it is.
        Returns the job written, or None when `change` declined (or the job does not exist). UnreadableRecord
        (quarantined) when the stored job cannot be read. A `durable` write (what a failover must not forget: a
        submit's intent, the vendor's task id) is acknowledged only once `min_replicas` replicas have it;
        NotReplicated when they do not within `replica_timeout` (the write stands on the master). `counts` are
        added to the counters (shared/counters.py) by the write, with its own, and only if it commits.
        """
        key = JOB_KEY.format(job_id=job_id)
        remembered = self._recall(job_id)
        data: bytes | str | None
        version: bytes | str | None
        for _ in range(MAX_CAS_ATTEMPTS):
            if remembered is not None:
                (data, version), remembered, from_memory = remembered, None, True
            else:
                data, version = self.redis.hmget(key, ["data", "version"])
                from_memory = False
                if data is None:
                    return None
            current = self._parse(job_id, data)
            old_status, before, previous_cost = current.status, counters.Before.of(current), current.cost
            new = change(current)
            if new is None:
                if from_memory:  # a decline counts only on the job as stored
                    continue
                return None
            if new.status is not old_status and new.status.value not in new.entered_at:
                new.entered_at = {**new.entered_at, new.status.value: utcnow()}
            # no read-back check here: a job that was read back changes only in typed fields genqueue sets
            encoded = new.model_dump_json()
            written = self._write(new, encoded, _text(version), before, previous_cost, durable=durable, counts=counts)
            if written > 0:
                self._remember(job_id, encoded, str(written))
                return new
        raise ConcurrentUpdate(f"job {job_id} changed {MAX_CAS_ATTEMPTS} times while being updated")

    def _remember(self, job_id: str, data: str, version: str) -> None:
        with self._written_lock:
            self._written[job_id] = (data, version, time.monotonic())
            self._written.move_to_end(job_id)
            while len(self._written) > REMEMBER_JOBS:
                self._written.popitem(last=False)

    def _recall(self, job_id: str) -> tuple[str, str] | None:
        """(data, version) of job `job_id` as this process wrote it in the last REMEMBER_SECONDS, taken: the
        update that uses it writes its own, or reads the job."""
        with self._written_lock:
            entry = self._written.pop(job_id, None)
        if entry is None or time.monotonic() - entry[2] > REMEMBER_SECONDS:
            return None
        return entry[0], entry[1]

    def readmit(self, job_id: str) -> Job | None:
        """Take a repaired job out of quarantine and index its next step again; None when it no longer exists.

        UnreadableRecord (and quarantined again) when it still cannot be read.
        """
        self.quarantine.remove("job", job_id)
        if self.get(job_id) is None:
            return None
        return self.update(job_id, lambda job: job)  # the rewrite puts its step back on the due index

    def tenant_spend(self, tenant: str) -> Cost:
        """What the jobs of API key `tenant` count as costing together: each job's `cost` as it is now (estimate,
        then the vendor's figure, then what it was charged), kept by every write of them."""
        raw = self.redis.hmget(TENANT_SPEND_KEY.format(tenant=tenant), ["credits", "usd"])
        credits, usd = (None if value is None else round(float(value), 6) for value in raw)
        return Cost(credits=credits, usd=usd)

    def _write(
        self,
        job: Job,
        data: str,
        expected_version: str,
        before: counters.Before | None,
        previous_cost: Cost | None = None,
        claim: Slot | None = None,
        budget: Budget | None = None,
        durable: bool = False,
        counts: Mapping[str, float] | None = None,
    ) -> int:
        due = "" if job.step is None else str(job.step.due_at.timestamp())
        batch = job.batch_id or "-"
        creating = not expected_version
        earlier = previous_cost or Cost()
        deltas = ["0", "0"]
        if job.tenant:
            deltas = [
                repr((job.cost.credits or 0.0) - (earlier.credits or 0.0)),
                repr((job.cost.usd or 0.0) - (earlier.usd or 0.0)),
            ]
        deltas = ["0" if float(delta) == 0 else delta for delta in deltas]
        keys = [
            JOB_KEY.format(job_id=job.id),
            DUE_KEY,
            BATCH_COUNTS_KEY.format(batch_id=batch),
            BATCH_ENDED_KEY.format(batch_id=batch),
            claim.key if claim is not None else DUE_KEY,
            TENANT_JOBS_KEY.format(tenant=job.tenant) if job.tenant else DUE_KEY,
            TENANT_SPEND_KEY.format(tenant=job.tenant) if job.tenant else DUE_KEY,
            *QUEUE_DUE_KEYS,
            counters.COUNTERS_KEY,
            CREATED_JOBS_KEY.format(minute=created_minute(job)) if creating else DUE_KEY,
            CREATED_MINUTES_KEY if creating else DUE_KEY,
            counters.recent_key(time.time()),
        ]
        args = [
            expected_version,
            data,
            job.status.value,
            job.id,
            due,
            "1" if job.batch_id else "",
            "1" if job.status.terminal else "",
            self.retention_ms,
            job.id if claim is not None else "",
            claim.lua_field if claim is not None else "",
            str(int(job.created_at.timestamp() * 1000)) if creating else "",
            JOB_EVENTS_CHANNEL.format(job_id=job.id),
            *deltas,
            budget.currency if budget is not None and job.tenant else "",
            repr(budget.amount) if budget is not None else "",
            "" if job.step is None else str(QUEUES.index(STEP_TASKS[job.step.name][1]) + 1),
            "1" if creating and job.tenant else "",
            str(created_minute(job)) if creating else "",
            self.created_list_ms if creating else "",
        ]
        added = counters.of_write(before, job, utcnow())
        lasting, recent = counters.split_recent(counts or {})
        for key, amount in lasting.items():
            counters.add(added, key, amount)
        args.append(BATCH_EVENTS_CHANNEL.format(batch_id=batch))
        args.append(str(len(added)))
        for key, amount in [*added.items(), *recent.items()]:
            args += [key, repr(amount)]
        if not (durable and self.min_replicas):
            return int(self._cas(keys=keys, args=args))
        # WAIT counts the replicas that have this connection's writes: the write and the WAIT share a pipeline
        pipe = self.redis.pipeline(transaction=False)
        self._cas(keys=keys, args=args, client=pipe)
        pipe.execute_command("WAIT", self.min_replicas, self.replica_timeout_ms)  # type: ignore[no-untyped-call]
        result, replicas = pipe.execute()
        if int(result) > 0 and int(replicas) < self.min_replicas:
            raise NotReplicated(f"written, but {replicas} of {self.min_replicas} replicas have it")
        return int(result)

    def tenant_jobs(self, tenant: str, before: tuple[float, str] | None, count: int) -> list[tuple[float, str, Job]]:
        """Up to `count` jobs of `tenant` (API key) as (created ms, id, job), newest first, older than `before`
        (the (ms, id) of the last one a previous page gave).

        Jobs that expired are taken off the index here; an unreadable one (quarantined) is skipped; so a page
        may hold fewer than `count` while older jobs remain: page on until one comes back empty.
        """
        key = TENANT_JOBS_KEY.format(tenant=tenant)
        top = "+inf" if before is None else repr(before[0])
        # equal scores come back in descending id order: those at `before`'s score down to its id were given
        skip = 0 if before is None else self.redis.zcount(key, before[0], before[0])
        raw: list[tuple[bytes, float]] = self.redis.zrevrangebyscore(  # type: ignore[assignment]
            key, top, "-inf", start=0, num=count + int(skip), withscores=True
        )
        rows = [(_text(member), float(score)) for member, score in raw]
        if before is not None:
            rows = [(job_id, score) for job_id, score in rows if score < before[0] or job_id < before[1]]
        rows = rows[:count]
        page = []
        for (job_id, score), job in zip(rows, self.get_many([job_id for job_id, _ in rows]), strict=True):
            if job is None:
                if not self.redis.exists(JOB_KEY.format(job_id=job_id)):
                    self.redis.zrem(key, job_id)
                continue
            page.append((score, job_id, job))
        return page

    def created_jobs(self, before: tuple[int, int] | None, count: int) -> list[tuple[tuple[int, int], Job]]:
        """Up to `count` of every job in the store as ((minute, index), job), newest first, made before the
        position `before` (the last one a previous page gave; None: from the newest). Jobs that expired are
        skipped, as is an unreadable one (quarantined); so a page may hold fewer than `count` while older jobs
        remain: page on until one comes back empty. A few round trips per minute of creation looked at."""
        top = "+inf" if before is None else before[0]
        found: list[tuple[tuple[int, int], str]] = []
        while len(found) < count:
            minutes = self.redis.zrevrangebyscore(CREATED_MINUTES_KEY, top, "-inf", start=0, num=16)
            if not minutes:
                break
            for raw in minutes:
                minute = int(_text(raw))
                key = CREATED_JOBS_KEY.format(minute=minute)
                length = self.redis.llen(key)
                end = (min(before[1], length) if before is not None and minute == before[0] else length) - 1
                if end < 0:
                    if not self.redis.exists(key):  # the minute's list expired: so did its jobs
                        self.redis.zrem(CREATED_MINUTES_KEY, minute)
                    continue
                start = max(0, end - (count - len(found)) + 1)
                ids = [_text(job_id) for job_id in self.redis.lrange(key, start, end)]
                found += [((minute, start + offset), job_id) for offset, job_id in reversed(list(enumerate(ids)))]
                if len(found) >= count:
                    break
            top = f"({int(_text(minutes[-1]))}"
        found = found[:count]
        jobs = self.get_many([job_id for _, job_id in found])
        return [(position, job) for (position, _), job in zip(found, jobs, strict=True) if job is not None]

    def due_job_ids(self, before: float, limit: int = 500) -> list[str]:
        """Ids of jobs whose next step was due before unix time `before`, oldest first."""
        return [_text(raw) for raw in self.redis.zrangebyscore(DUE_KEY, "-inf", before, start=0, num=limit)]


def _readable_json(job: Job) -> str:
    """A new job as stored JSON; InvalidRequest when it would not read back (one bad record must not be written).

    Only creation needs it: that is where a caller's free-form values (options, `extra`, metadata) come in.
    """
    try:
        data = job.model_dump_json()
        Job.model_validate_json(data)
    except (ValueError, PydanticSerializationError) as exc:
        raise InvalidRequest(f"job {job.id} cannot be stored: it would not read back ({describe(exc)})") from None
    return data


def idempotency_slot(key: str) -> Slot:
    """Where the claim on idempotency key `key` is kept: a key of its own, for IDEMPOTENCY_TTL_SECONDS."""
    return Slot(
        IDEMPOTENCY_KEY.format(key=hashlib.sha256(key.encode()).hexdigest()),
        ttl_seconds=IDEMPOTENCY_TTL_SECONDS,
        conflict="idempotency key was already used with a different request",
        busy="a request with this idempotency key is being enqueued; try again",
    )


def _text(value: object) -> str:
    """A Redis reply (bytes, as this client is configured) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
