"""The batch store: batches, what each line of a batch file became, held-back jobs, counts and the budget ledger.

Jobs themselves live in the job store (shared/store.py), whose write script keeps each batch's counts by status
and the list of its jobs that ended; everything else about a batch is kept here.

A batch record is written as a job is: a hash (`data`, `version`) changed only by a compare-and-set on `version`
in one Lua script, which also keeps the batch's next step in the due index the sweeper reads (BATCH_DUE_KEY). Its
writers (the producer, the dispatcher, the delivery of its completion event, the sweeper) each apply a pure change
(shared/batch/lifecycle.py) through `update`, so none of them can overwrite another's change unseen.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

import redis

from shared.batch.models import Batch
from shared.claims import Claims, Slot
from shared.constants import (
    ACTIVE_BATCHES_KEY,
    BATCH_COUNTS_KEY,
    BATCH_DUE_KEY,
    BATCH_ENDED_KEY,
    BATCH_EVENTS_CHANNEL,
    BATCH_KEY,
    BATCH_LEDGER_KEY,
    BATCH_LINES_KEY,
    BATCH_NAME_KEY,
    BATCH_PENDING_KEY,
    BATCH_RESERVED_KEY,
    BATCH_UNSETTLED_KEY,
    BATCHES_CREATED_KEY,
    DISPATCH_LAST_RUN_KEY,
    RELEASED_KEY,
    TENANT_BATCH_NAME_KEY,
)
from shared.models import Job
from shared.quarantine import Quarantine, UnreadableRecord, describe
from shared.store import MAX_CAS_ATTEMPTS, ConcurrentUpdate, JobStore

# KEYS: batch hash, batch due zset, index of batches by creation. ARGV: expected version ("" = must not exist),
# data, batch id, due score ("" = no step), creation time in ms (indexed when the batch is created), the batch's
# channel (told of every write: BATCH_EVENTS_CHANNEL). A record
# written before batches had versions counts as version 0. Returns the new version, or -1 when the record is not
# at the expected version (another writer got there first, or it expired).
_CAS_SCRIPT = """
local current = redis.call('HGET', KEYS[1], 'version')
if ARGV[1] == '' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[3])
  current = '0'
else
  if not current and redis.call('HEXISTS', KEYS[1], 'data') == 1 then current = '0' end
  if current ~= ARGV[1] then return -1 end
end
local version = tonumber(current) + 1
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'version', version)
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[2], ARGV[3])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
end
redis.call('PUBLISH', ARGV[6], 'batch')
return version
"""

# KEYS: batch hash, batch due zset. ARGV: batch id. Drops the batch from the due index once its record is gone.
_UNINDEX_GONE_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
return redis.call('ZREM', KEYS[2], ARGV[1])
"""

# KEYS: reserved hash, ledger hash. ARGV: job id, actual amount. Replaces the job's reservation by what it cost, once.
_SETTLE_SCRIPT = """
local reserved = redis.call('HGET', KEYS[1], ARGV[1])
if not reserved then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HINCRBYFLOAT', KEYS[2], 'committed', tonumber(ARGV[2]) - tonumber(reserved))
return 1
"""

# KEYS: reserved hash, ledger hash. ARGV: job id, amount, budget. Reserves the amount unless that passes the budget.
_RESERVE_SCRIPT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
local committed = tonumber(redis.call('HGET', KEYS[2], 'committed') or '0')
if committed + tonumber(ARGV[2]) > tonumber(ARGV[3]) + 1e-9 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBYFLOAT', KEYS[2], 'committed', ARGV[2])
return 1
"""


def batch_name_key(name: str, tenant: str | None) -> str:
    """Where the id of the batch called `name` is kept: an API key's names are its own, apart from the operator's."""
    return (
        BATCH_NAME_KEY.format(name=name) if tenant is None else TENANT_BATCH_NAME_KEY.format(tenant=tenant, name=name)
    )


class BatchStore:
    """Reads and writes batches and their bookkeeping. Only this class touches batch keys in Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._cas = client.register_script(_CAS_SCRIPT)
        self._unindex_gone = client.register_script(_UNINDEX_GONE_SCRIPT)
        self._settle = client.register_script(_SETTLE_SCRIPT)
        self._reserve = client.register_script(_RESERVE_SCRIPT)
        self.quarantine = Quarantine(client)
        self.claims = Claims(client)

    # the batch itself

    def open(self, name: str, make: Callable[[str], Batch], tenant: str | None = None) -> tuple[Batch, bool]:
        """The batch called `name` (among `tenant`'s: each API key has names of its own), made with `make(new_id)`
        when there is none yet; and whether it is new."""
        new_id = f"batch_{uuid.uuid4().hex[:16]}"
        name_key = batch_name_key(name, tenant)
        if not self.redis.set(name_key, new_id, nx=True):
            existing = self.get_by_name(name, tenant)
            if existing is not None:
                return existing, False
            # the name was claimed by a submit that died before creating its batch: create it under that id
            new_id = _text(self.redis.get(name_key))
        batch = make(new_id)
        if self.create(batch):
            return batch, True
        existing = self.get(new_id)  # a concurrent submit of the same name created it first
        if existing is None:
            raise ConcurrentUpdate(f"batch {new_id} was created and is gone again")
        return existing, False

    def create(self, batch: Batch) -> bool:
        """Store a new batch; False (and nothing written) when one with its id exists."""
        return self._write(batch, expected_version="") > 0

    def get(self, batch_id: str) -> Batch | None:
        """The batch, or None; UnreadableRecord (quarantined) when its record cannot be read."""
        data = self.redis.hget(BATCH_KEY.format(batch_id=batch_id), "data")
        return self._parse(batch_id, data) if data else None

    def _parse(self, batch_id: str, data: bytes | str) -> Batch:
        try:
            return Batch.model_validate_json(data)
        except ValueError as exc:  # pydantic's ValidationError is one
            raise self.quarantine.add("batch", batch_id, describe(exc)) from None

    def update(self, batch_id: str, change: Callable[[Batch], Batch | None]) -> Batch | None:
        """Apply `change` to the current batch and write the result atomically, as JobStore.update does for jobs.

        `change` receives a fresh copy each try (another writer's change in between makes it decide again on the
        newer batch) and returns the new batch, or None to leave it as it is. Returns the batch written, or None
        when `change` declined or the batch does not exist.
        """
        key = BATCH_KEY.format(batch_id=batch_id)
        for _ in range(MAX_CAS_ATTEMPTS):
            data, version = self.redis.hmget(key, ["data", "version"])
            if data is None:
                return None
            new = change(self._parse(batch_id, data))
            if new is None:
                return None
            if self._write(new, expected_version="0" if version is None else _text(version)) > 0:
                return new
        raise ConcurrentUpdate(f"batch {batch_id} changed {MAX_CAS_ATTEMPTS} times while being updated")

    def _write(self, batch: Batch, expected_version: str) -> int:
        due = "" if batch.step is None else str(batch.step.due_at.timestamp())
        keys = [BATCH_KEY.format(batch_id=batch.id), BATCH_DUE_KEY, BATCHES_CREATED_KEY]
        created = str(int(batch.created_at.timestamp() * 1000))
        channel = BATCH_EVENTS_CHANNEL.format(batch_id=batch.id)
        args = [expected_version, batch.model_dump_json(), batch.id, due, created, channel]
        return int(self._cas(keys=keys, args=args))

    def created(self, before: tuple[float, str] | None, count: int) -> list[tuple[tuple[float, str], Batch]]:
        """Up to `count` batches as ((created ms, id), batch), newest first, made before the position `before` (the
        last one a previous page gave; None: from the newest). A batch that expired is taken off the index here,
        an unreadable one (quarantined) skipped: a page may hold fewer than `count` while older ones remain."""
        top = "+inf" if before is None else repr(before[0])
        skip = 0 if before is None else int(self.redis.zcount(BATCHES_CREATED_KEY, before[0], before[0]))
        raw: list[tuple[bytes, float]] = self.redis.zrevrangebyscore(  # type: ignore[assignment]
            BATCHES_CREATED_KEY, top, "-inf", start=0, num=count + skip, withscores=True
        )
        rows = [(float(score), _text(member)) for member, score in raw]
        if before is not None:
            rows = [row for row in rows if row < before]
        page = []
        for position in rows[:count]:
            try:
                batch = self.get(position[1])
            except UnreadableRecord:
                continue
            if batch is None:
                self.redis.zrem(BATCHES_CREATED_KEY, position[1])
                continue
            page.append((position, batch))
        return page

    def due_batch_ids(self, before: float, limit: int = 500) -> list[str]:
        """Ids of batches whose next step was due before unix time `before`, oldest first."""
        return [_text(raw) for raw in self.redis.zrangebyscore(BATCH_DUE_KEY, "-inf", before, start=0, num=limit)]

    def unindex_if_gone(self, batch_id: str) -> bool:
        """Drop `batch_id` from the due index when its record no longer exists (it expired); whether it was."""
        return bool(self._unindex_gone(keys=[BATCH_KEY.format(batch_id=batch_id), BATCH_DUE_KEY], args=[batch_id]))

    def get_by_name(self, name: str, tenant: str | None = None) -> Batch | None:
        """The batch of `tenant` (None: the operator's) called `name`, or with that id; None when there is none.

        By id, the operator's command line finds any batch, an API key only its own."""
        batch_id = self.redis.get(batch_name_key(name, tenant))
        if batch_id is None:
            found = self.get(name) if name.startswith("batch_") else None
            return found if found is not None and (tenant is None or found.tenant == tenant) else None
        return self.get(_text(batch_id))

    def _keys(self, batch: Batch) -> list[str]:
        ids = {"batch_id": batch.id}
        keys = [
            template.format(**ids)
            for template in (
                BATCH_KEY,
                BATCH_LINES_KEY,
                BATCH_COUNTS_KEY,
                BATCH_ENDED_KEY,
                BATCH_LEDGER_KEY,
                BATCH_RESERVED_KEY,
                BATCH_UNSETTLED_KEY,
            )
        ]
        keys += [BATCH_PENDING_KEY.format(provider=hold, **ids) for hold in batch.holds]
        return [*keys, batch_name_key(batch.name, batch.tenant)]

    def expire(self, batch: Batch, seconds: float | None) -> None:
        """Let every key of the completed `batch` expire after `seconds`, as its jobs do (None: keep them)."""
        if seconds is None:
            return
        pipe = self.redis.pipeline()
        for key in self._keys(batch):
            pipe.expire(key, int(seconds))
        pipe.execute()

    def keep(self, batch: Batch) -> None:
        """Undo `expire`: the batch is running again (resumed, or its failed jobs retried)."""
        pipe = self.redis.pipeline()
        for key in self._keys(batch):
            pipe.persist(key)
        pipe.execute()

    # lines and held-back jobs

    def line_slot(self, batch_id: str, line: int) -> Slot:
        """Where the claim binding line `line` of the batch to its job is kept (shared/claims.py): a field of the
        batch's lines hash, so a resumed batch finds the job each line made."""
        return Slot(
            BATCH_LINES_KEY.format(batch_id=batch_id),
            field=str(line),
            conflict=f"line {line}: this line was enqueued before with a different request; the file has changed",
            busy=f"line {line} is being enqueued by another run of this batch",
        )

    def line_jobs(self, batch_id: str) -> list[tuple[int, str]]:
        """(line number, job id) of every enqueued line, in line order."""
        owners = self.claims.owners(BATCH_LINES_KEY.format(batch_id=batch_id))
        return sorted((int(line), job_id) for line, job_id in owners.items())

    def hold(self, batch_id: str, hold: str, job_id: str, line: int) -> None:
        """Keep job `job_id` back under `hold` (models.hold_of) until the dispatcher releases it; marks the batch
        active."""
        pipe = self.redis.pipeline()
        pipe.zadd(BATCH_PENDING_KEY.format(batch_id=batch_id, provider=hold), {job_id: line})
        pipe.sadd(ACTIVE_BATCHES_KEY, batch_id)
        pipe.execute()

    def held(self, batch_id: str, hold: str, limit: int) -> list[str]:
        """Up to `limit` ids of the jobs held under `hold` (a provider's name or a route_hold), in line order."""
        if limit <= 0:
            return []
        key = BATCH_PENDING_KEY.format(batch_id=batch_id, provider=hold)
        return [_text(raw) for raw in self.redis.zrange(key, 0, limit - 1)]

    def unhold(self, batch_id: str, hold: str, job_id: str) -> None:
        self.redis.zrem(BATCH_PENDING_KEY.format(batch_id=batch_id, provider=hold), job_id)

    def held_by(self, batch_ids: Sequence[str]) -> int:
        """Jobs the batches `batch_ids` hold back, over each batch's holds, in two round trips whatever their
        number (none for none): one reads every batch record, one counts what each readable one holds. A batch
        that is gone counts none; so does one whose record cannot be read (quarantined, as `get` does)."""
        if not batch_ids:
            return 0
        records = self.redis.pipeline(transaction=False)
        for batch_id in batch_ids:
            records.hget(BATCH_KEY.format(batch_id=batch_id), "data")
        counts = self.redis.pipeline(transaction=False)
        for batch_id, data in zip(batch_ids, records.execute(), strict=True):
            if not data:
                continue
            try:
                batch = self._parse(batch_id, data)
            except UnreadableRecord:
                continue
            for hold in batch.holds:
                counts.zcard(BATCH_PENDING_KEY.format(batch_id=batch_id, provider=hold))
        return sum(int(count) for count in counts.execute()) if len(counts) else 0

    def held_count(self, batch_id: str, holds: list[str]) -> int:
        pipe = self.redis.pipeline()
        for hold in holds:
            pipe.zcard(BATCH_PENDING_KEY.format(batch_id=batch_id, provider=hold))
        return sum(int(count) for count in pipe.execute())

    def orphan_check_due(self, batch_id: str, every_seconds: float) -> bool:
        """True at most once every `every_seconds` per batch, across all dispatcher passes."""
        key = BATCH_KEY.format(batch_id=batch_id) + ":orphan-check"
        return bool(self.redis.set(key, "1", nx=True, ex=max(1, int(every_seconds))))

    def record_dispatcher_run(self, at: datetime) -> None:
        """Note that a dispatcher pass, begun at `at`, finished."""
        self.redis.set(DISPATCH_LAST_RUN_KEY, repr(at.timestamp()))

    def dispatcher_last_run(self) -> datetime | None:
        """When the last dispatcher pass finished; None when none ever did (as far as this Redis knows)."""
        raw = self.redis.get(DISPATCH_LAST_RUN_KEY)
        return None if raw is None else datetime.fromtimestamp(float(_text(raw)), UTC)

    def active(self) -> list[str]:
        return sorted(_text(raw) for raw in self.redis.smembers(ACTIVE_BATCHES_KEY))

    def activate(self, batch_id: str) -> None:
        self.redis.sadd(ACTIVE_BATCHES_KEY, batch_id)

    def deactivate(self, batch_id: str) -> None:
        self.redis.srem(ACTIVE_BATCHES_KEY, batch_id)

    # counts (kept by the job store's write script) and jobs that ended

    def counts(self, batch_id: str) -> dict[str, int]:
        raw = self.redis.hgetall(BATCH_COUNTS_KEY.format(batch_id=batch_id))
        return {_text(status): int(count) for status, count in raw.items() if int(count)}

    def take_ended(self, batch_id: str, limit: int = 1000) -> list[str]:
        """Up to `limit` ids of the batch's jobs that ended since the last call."""
        raw = self.redis.lpop(BATCH_ENDED_KEY.format(batch_id=batch_id), limit)
        return [_text(value) for value in raw or []]

    # the budget ledger

    def reserve(self, batch_id: str, job_id: str, amount: float, budget: float) -> bool:
        """Reserve `amount` for job `job_id` unless that takes the batch past `budget`; whether it is reserved."""
        keys = [BATCH_RESERVED_KEY.format(batch_id=batch_id), BATCH_LEDGER_KEY.format(batch_id=batch_id)]
        return bool(self._reserve(keys=keys, args=[job_id, repr(amount), repr(budget)]))

    def settle(self, batch_id: str, job_id: str, actual: float) -> None:
        """Replace job `job_id`'s reservation by what it really cost (0 when the vendor never took it)."""
        keys = [BATCH_RESERVED_KEY.format(batch_id=batch_id), BATCH_LEDGER_KEY.format(batch_id=batch_id)]
        self._settle(keys=keys, args=[job_id, repr(actual)])

    def settle_as_reserved(self, batch_id: str, job_id: str) -> None:
        """Count job `job_id`'s reservation as spent: what it cost cannot be known (its record is unreadable)."""
        reserved = self.redis.hget(BATCH_RESERVED_KEY.format(batch_id=batch_id), job_id)
        if reserved is not None:
            self.settle(batch_id, job_id, float(_text(reserved)))

    def defer_settle(self, batch_id: str, job_id: str) -> None:
        """Note that job `job_id` ended before its charge was known (canceled while the vendor renders it)."""
        self.redis.sadd(BATCH_UNSETTLED_KEY.format(batch_id=batch_id), job_id)

    def unsettled(self, batch_id: str) -> list[str]:
        """The jobs `defer_settle` noted and `settled` has not yet taken off, sorted."""
        return sorted(_text(raw) for raw in self.redis.smembers(BATCH_UNSETTLED_KEY.format(batch_id=batch_id)))

    def settled(self, batch_id: str, job_id: str) -> None:
        self.redis.srem(BATCH_UNSETTLED_KEY.format(batch_id=batch_id), job_id)

    def outstanding(self, batch_id: str) -> int:
        """Jobs holding a reservation not yet settled (released, or running)."""
        return int(self.redis.hlen(BATCH_RESERVED_KEY.format(batch_id=batch_id)))

    def add_spent(self, batch_id: str, credits: float, usd: float) -> None:
        """Add what vendors charged for a job of the batch that ended."""
        key = BATCH_LEDGER_KEY.format(batch_id=batch_id)
        pipe = self.redis.pipeline()
        if credits:
            pipe.hincrbyfloat(key, "spent_credits", credits)
        if usd:
            pipe.hincrbyfloat(key, "spent_usd", usd)
        pipe.execute()

    def ledger(self, batch_id: str) -> dict[str, float]:
        """`committed` (budget currency), `spent_credits`, `spent_usd`; zero where nothing was recorded."""
        raw = self.redis.hgetall(BATCH_LEDGER_KEY.format(batch_id=batch_id))
        values = {_text(name): float(value) for name, value in raw.items()}
        return {name: values.get(name, 0.0) for name in ("committed", "spent_credits", "spent_usd")}

    def committed(self, batch_id: str) -> float:
        """Reserved and spent so far, in the budget's currency."""
        return self.ledger(batch_id)["committed"]

    # batch jobs released to the submit queue and not yet started, per hold (a provider's name or a route_hold)

    def mark_released(self, hold: str, job_ids: list[str], now: float) -> None:
        if job_ids:
            self.redis.zadd(RELEASED_KEY.format(name=hold), dict.fromkeys(job_ids, now))

    def mark_started(self, hold: str, job_id: str) -> None:
        self.redis.zrem(RELEASED_KEY.format(name=hold), job_id)

    def released_count(self, hold: str, now: float, max_age: float) -> int:
        """Released and not started; entries older than `max_age` (a lost task, resumed by the sweeper) drop out."""
        key = RELEASED_KEY.format(name=hold)
        pipe = self.redis.pipeline()
        pipe.zremrangebyscore(key, "-inf", now - max_age)
        pipe.zcard(key)
        return int(pipe.execute()[1])


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def jobs_by_line(
    batches: BatchStore,
    jobs: JobStore,
    batch_id: str,
    chunk: int = 500,
    on_unreadable: Callable[[int, str], None] | None = None,
) -> Iterator[tuple[int, Job]]:
    """(line number, job) for every enqueued line of the batch, in line order, read `chunk` jobs per round trip.

    A line whose job cannot be read is quarantined and skipped; `on_unreadable(line, job_id)` hears of it.
    """
    lines = batches.line_jobs(batch_id)
    for start in range(0, len(lines), chunk):
        part = lines[start : start + chunk]
        for (line, job_id), job in zip(part, jobs.get_many([job_id for _, job_id in part]), strict=True):
            if job is not None:
                yield line, job
            elif on_unreadable is not None and jobs.quarantine.contains("job", job_id):
                on_unreadable(line, job_id)
