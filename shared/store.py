"""The job store: the source of truth for every job, in Redis.

Each job is one hash (`data`, `version`, `status`). Every write is a compare-and-set on `version` done by one Lua
script, so two workers that read the same job cannot both write: the loser re-reads and re-decides. Transitions
are computed by pure functions (`shared.lifecycle`) on the value read, so a task delivered twice, or a stale task
arriving late, sees the newer state and changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import redis
from pydantic_core import PydanticSerializationError

from shared.constants import (
    BATCH_COUNTS_KEY,
    BATCH_ENDED_KEY,
    DUE_KEY,
    IDEMPOTENCY_KEY,
    IDEMPOTENCY_TTL_SECONDS,
    JOB_KEY,
    WEBHOOK_DEAD_LETTERS_KEY,
    WEBHOOK_GONE_KEY,
)
from shared.errors import InvalidRequest
from shared.models import Job, utcnow
from shared.quarantine import Quarantine, UnreadableRecord, describe

# KEYS: job hash, due zset, batch counts hash, batch ended list (the last two unused for a job in no batch).
# ARGV: expected version ("" = must not exist), data, status, job id, due score ("" = none), "1" when in a batch,
# "1" when the new status is terminal, retention in ms ("" = keep forever), and on creation the job id KEYS[5] (its
# idempotency key) must still name ("" = no idempotency key). An ended job with nothing left to do
# expires after the retention; one given a step again (a webhook redelivery) is kept.
_CAS_SCRIPT = """
local current = redis.call('HGET', KEYS[1], 'version')
if ARGV[1] == '' then
  if current then return -1 end
  if ARGV[9] ~= '' then
    local claim = redis.call('GET', KEYS[5])
    if not claim or string.sub(claim, 1, #ARGV[9] + 1) ~= ARGV[9] .. ' ' then return -2 end
  end
  current = '0'
elseif current ~= ARGV[1] then
  return -1
end
local old_status = redis.call('HGET', KEYS[1], 'status')
local version = tonumber(current) + 1
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'version', version, 'status', ARGV[3])
if ARGV[5] == '' then
  redis.call('ZREM', KEYS[2], ARGV[4])
else
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
end
if ARGV[6] == '1' and old_status ~= ARGV[3] then
  if old_status then redis.call('HINCRBY', KEYS[3], old_status, -1) end
  redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
  if ARGV[7] == '1' then redis.call('RPUSH', KEYS[4], ARGV[4]) end
end
if ARGV[7] == '1' and ARGV[5] == '' and ARGV[8] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
else
  redis.call('PERSIST', KEYS[1])
end
return version
"""

# KEYS: a key. ARGV: expected value, new value. Sets the new value (keeping the TTL) only over the expected one.
_SWAP_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
"""

MAX_CAS_ATTEMPTS = 50


def redis_client(url: str, ca_file: str | None = None) -> redis.Redis:
    """The client every genqueue process reads the job store with: bounded timeouts, health checks; a rediss://
    URL verifies the server's certificate (against `ca_file` when given, else the system's CAs) unless the URL
    says ssl_cert_reqs=none."""
    tls = {"ssl_ca_certs": ca_file} if ca_file and url.startswith("rediss://") else {}
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30, **tls)


class IdempotencyKeyTaken(RuntimeError):
    """Raised by `create` when the job's idempotency key names another job by now (its claim was taken over)."""


class ConcurrentUpdate(RuntimeError):
    """Raised when a job kept changing under a writer for MAX_CAS_ATTEMPTS tries (should never happen in practice)."""


class JobStore:
    """Reads and atomically writes jobs. Only this class touches job keys in Redis."""

    def __init__(self, client: redis.Redis, retention_seconds: float | None = None) -> None:
        """`retention_seconds`: how long an ended job with nothing left to do is kept (None: forever)."""
        self.redis = client
        self.retention_ms = "" if not retention_seconds else str(int(retention_seconds * 1000))
        self._cas = client.register_script(_CAS_SCRIPT)
        self._swap = client.register_script(_SWAP_SCRIPT)
        self.quarantine = Quarantine(client)

    @classmethod
    def from_url(cls, url: str, retention_seconds: float | None = None, ca_file: str | None = None) -> JobStore:
        """A store on the Redis at `url` (see `redis_client`)."""
        return cls(redis_client(url, ca_file), retention_seconds)

    def create(self, job: Job) -> None:
        """Store a new job; ValueError if its id is taken, InvalidRequest if it would not read back.

        A job with an idempotency key is stored only while that key still names it (the claim can be taken over
        when its first claimant seemed to have died: `take_over_idempotency_key`); IdempotencyKeyTaken otherwise.
        """
        if job.status.value not in job.entered_at:
            job.entered_at = {**job.entered_at, job.status.value: job.created_at}
        result = self._write(job, _readable_json(job), expected_version="")
        if result == -2:
            raise IdempotencyKeyTaken(f"the idempotency key of job {job.id} was taken over by another submit")
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

    def _parse(self, job_id: str, data: bytes | str) -> Job:
        try:
            return Job.model_validate_json(data)
        except ValueError as exc:  # pydantic's ValidationError is one
            raise self.quarantine.add("job", job_id, describe(exc)) from None

    def update(self, job_id: str, change: Callable[[Job], Job | None]) -> Job | None:
        """Apply `change` to the current job and write the result atomically.

        `change` receives a fresh copy each try and returns the new job, or None to leave the job as it is.
        Returns the job written, or None when `change` declined (or the job does not exist). UnreadableRecord
        (quarantined) when the stored job cannot be read.
        """
        key = JOB_KEY.format(job_id=job_id)
        for _ in range(MAX_CAS_ATTEMPTS):
            data, version = self.redis.hmget(key, ["data", "version"])
            if data is None:
                return None
            current = self._parse(job_id, data)
            old_status = current.status
            new = change(current)
            if new is None:
                return None
            if new.status is not old_status and new.status.value not in new.entered_at:
                new.entered_at = {**new.entered_at, new.status.value: utcnow()}
            # no read-back check here: a job that was read back changes only in typed fields genqueue sets
            if self._write(new, new.model_dump_json(), expected_version=_text(version)) > 0:
                return new
        raise ConcurrentUpdate(f"job {job_id} changed {MAX_CAS_ATTEMPTS} times while being updated")

    def readmit(self, job_id: str) -> Job | None:
        """Take a repaired job out of quarantine and index its next step again; None when it no longer exists.

        UnreadableRecord (and quarantined again) when it still cannot be read.
        """
        self.quarantine.remove("job", job_id)
        if self.get(job_id) is None:
            return None
        return self.update(job_id, lambda job: job)  # the rewrite puts its step back on the due index

    def _write(self, job: Job, data: str, expected_version: str) -> int:
        due = "" if job.step is None else str(job.step.due_at.timestamp())
        batch = job.batch_id or "-"
        result = self._cas(
            keys=[
                JOB_KEY.format(job_id=job.id),
                DUE_KEY,
                BATCH_COUNTS_KEY.format(batch_id=batch),
                BATCH_ENDED_KEY.format(batch_id=batch),
                _idempotency_redis_key(job.idempotency_key or ""),
            ],
            args=[
                expected_version,
                data,
                job.status.value,
                job.id,
                due,
                "1" if job.batch_id else "",
                "1" if job.status.terminal else "",
                self.retention_ms,
                job.id if job.idempotency_key and expected_version == "" else "",
            ],
        )
        return int(result)

    def due_job_ids(self, before: float, limit: int = 500) -> list[str]:
        """Ids of jobs whose next step was due before unix time `before`, oldest first."""
        return [_text(raw) for raw in self.redis.zrangebyscore(DUE_KEY, "-inf", before, start=0, num=limit)]

    def claim_idempotency_key(self, key: str, job_id: str, request_fingerprint: str) -> str | None:
        """Bind `key` to `job_id` for 24 hours; return the job id it was already bound to, if any.

        The same key with another request fingerprint raises InvalidRequest.
        """
        redis_key = _idempotency_redis_key(key)
        value = f"{job_id} {request_fingerprint}"
        if self.redis.set(redis_key, value, nx=True, ex=IDEMPOTENCY_TTL_SECONDS):
            return None
        existing = self.redis.get(redis_key)
        if existing is None:  # expired between the two calls: claim again
            return self.claim_idempotency_key(key, job_id, request_fingerprint)
        existing_job, _, existing_fingerprint = existing.decode().partition(" ")  # type: ignore[union-attr]
        if existing_fingerprint != request_fingerprint:
            raise InvalidRequest("idempotency key was already used with a different request")
        return existing_job

    def take_over_idempotency_key(self, key: str, stale_job_id: str, job_id: str, request_fingerprint: str) -> bool:
        """Rebind `key` from `stale_job_id` (claimed, never created: its submit died) to `job_id`; False when the
        key names something else by now."""
        redis_key = _idempotency_redis_key(key)
        swapped = self._swap(
            keys=[redis_key], args=[f"{stale_job_id} {request_fingerprint}", f"{job_id} {request_fingerprint}"]
        )
        return bool(swapped)

    def release_idempotency_key(self, key: str, job_id: str) -> None:
        """Undo `claim_idempotency_key` when the job it was claimed for could not be created."""
        redis_key = _idempotency_redis_key(key)
        existing = self.redis.get(redis_key)
        if existing is not None and existing.decode().startswith(job_id + " "):  # type: ignore[union-attr]
            self.redis.delete(redis_key)

    def add_dead_letter(self, job_id: str) -> None:
        """Record that job `job_id`'s webhook event was given up on (once, however often it is called)."""
        pipe = self.redis.pipeline()
        pipe.lrem(WEBHOOK_DEAD_LETTERS_KEY, 0, job_id)
        pipe.lpush(WEBHOOK_DEAD_LETTERS_KEY, job_id)
        pipe.execute()

    def remove_dead_letter(self, job_id: str) -> None:
        self.redis.lrem(WEBHOOK_DEAD_LETTERS_KEY, 0, job_id)

    def dead_letters(self, limit: int = 1000) -> list[str]:
        """Job ids whose webhook events were given up on, newest first."""
        return [_text(raw) for raw in self.redis.lrange(WEBHOOK_DEAD_LETTERS_KEY, 0, limit - 1)]

    def mark_endpoint_gone(self, url: str) -> None:
        """Stop delivering to `url`: it answered 410 Gone."""
        self.redis.sadd(WEBHOOK_GONE_KEY, _url_id(url))

    def endpoint_gone(self, url: str) -> bool:
        return bool(self.redis.sismember(WEBHOOK_GONE_KEY, _url_id(url)))

    def clear_endpoint_gone(self, url: str) -> None:
        self.redis.srem(WEBHOOK_GONE_KEY, _url_id(url))


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


def _idempotency_redis_key(key: str) -> str:
    return IDEMPOTENCY_KEY.format(key=hashlib.sha256(key.encode()).hexdigest())


def _url_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def _text(value: object) -> str:
    """A Redis reply (bytes, as this client is configured) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
