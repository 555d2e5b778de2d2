"""Claims: binding a name to the one record made for it, when the maker may die between claiming and storing.

An idempotency key and a line of a batch file are both such names: the first submit (or batch run) to claim the
name stores its job; a later one with the same request gets that job back, and one with another request is
refused. A claimant can die, or stall, between its claim and its job (a crash, Redis going away): its claim would
block the name forever, so a later claimant that waited `TAKE_OVER_AFTER_SECONDS` for the record and saw none
takes the claim over. The stalled claimant must then not store a second record: the store that creates records
under a claim checks, in the same script as the write, that the claim still names the record (`HELD_BY_LUA`),
and raises ClaimTakenOver otherwise.

A claim is kept as `"{owner} {fingerprint}"`, in a string key of its own (an idempotency key, which expires) or
in one field of a hash (a batch's lines, kept as long as the batch).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import redis

from shared.errors import InvalidRequest

#: how long a claimant waits for the record another claimant of the same name is storing, before taking over
TAKE_OVER_AFTER_SECONDS = 5.0
#: how often it looks meanwhile
_WAIT_STEP_SECONDS = 0.05
#: claim, wait, take over: tries before giving up when other claimants keep taking the claim over
_ATTEMPTS = 3

T = TypeVar("T")

# Lua functions for any script that works on a claim. A slot's field is '' for a claim kept in a key of its own.
HELD_BY_LUA = """
local function claim_value(key, field)
  if field == '' then return redis.call('GET', key) end
  return redis.call('HGET', key, field)
end
local function held_by(value, owner)
  return value and string.sub(value, 1, #owner + 1) == owner .. ' '
end
"""

# KEYS: the slot's key. ARGV: field, value, ttl seconds ('' = none). Returns nil when claimed now, else the value
# it already holds.
_CLAIM_SCRIPT = (
    HELD_BY_LUA
    + """
local existing = claim_value(KEYS[1], ARGV[1])
if existing then return existing end
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
elseif ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return false
"""
)

# KEYS: the slot's key. ARGV: field, expected value, new value. Sets the new value (a key keeps its TTL) only
# over the expected one.
_TAKE_OVER_SCRIPT = (
    HELD_BY_LUA
    + """
if claim_value(KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[1] == '' then
  redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return 1
"""
)

# KEYS: the slot's key. ARGV: field, owner. Drops the claim only while it is the owner's.
_ABANDON_SCRIPT = (
    HELD_BY_LUA
    + """
if not held_by(claim_value(KEYS[1], ARGV[1]), ARGV[2]) then return 0 end
if ARGV[1] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
"""
)


class ClaimTakenOver(RuntimeError):
    """Raised by a store asked to create a record under a claim that names another owner by now (taken over)."""


@dataclass(frozen=True)
class Slot:
    """Where one claim is kept, and what a refused claimant is told.

    `field` None: the claim is the string at `key`, expiring after `ttl_seconds` (None: never); else it is that
    field of the hash at `key`. `conflict`: the refusal when the name was claimed with another request; `busy`:
    when other claimants keep taking it over.
    """

    key: str
    field: str | None = None
    ttl_seconds: int | None = None
    conflict: str = "this name was claimed before with a different request"
    busy: str = "a request with this name is being enqueued; try again"

    @property
    def lua_field(self) -> str:
        """The field as the scripts take it ('' for a claim kept in a key of its own)."""
        return self.field or ""


class Claims:
    """Claim, take over and abandon names in Redis; `claim_and_create` is the whole protocol in one call."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._claim = client.register_script(_CLAIM_SCRIPT)
        self._take_over = client.register_script(_TAKE_OVER_SCRIPT)
        self._abandon = client.register_script(_ABANDON_SCRIPT)

    def claim(self, slot: Slot, owner: str, fingerprint: str) -> str | None:
        """Claim `slot` for `owner`; None when it is ours now, else the owner it already names.

        InvalidRequest (`slot.conflict`) when it was claimed with another request fingerprint.
        """
        ttl = "" if slot.ttl_seconds is None else str(slot.ttl_seconds)
        existing = self._claim(keys=[slot.key], args=[slot.lua_field, f"{owner} {fingerprint}", ttl])
        if existing is None:
            return None
        existing_owner, _, existing_fingerprint = _text(existing).partition(" ")
        if existing_fingerprint != fingerprint:
            raise InvalidRequest(slot.conflict)
        return existing_owner

    def take_over(self, slot: Slot, stalled_owner: str, new_owner: str, fingerprint: str) -> bool:
        """Rebind `slot` from `stalled_owner` (claimed, never stored: it died or stalls) to `new_owner`; False
        when the slot names something else by now."""
        args = [slot.lua_field, f"{stalled_owner} {fingerprint}", f"{new_owner} {fingerprint}"]
        return bool(self._take_over(keys=[slot.key], args=args))

    def abandon(self, slot: Slot, owner: str) -> bool:
        """Give up `owner`'s claim (its record could not be created); False when the slot is not `owner`'s."""
        return bool(self._abandon(keys=[slot.key], args=[slot.lua_field, owner]))

    def owners(self, key: str) -> dict[str, str]:
        """Field -> owner of every claim kept in the hash at `key`."""
        return {_text(field): owner_of(value) for field, value in self.redis.hgetall(key).items()}

    def claim_or_find(self, slot: Slot, owner: str, fingerprint: str, find: Callable[[str], T | None]) -> T | None:
        """Claim `slot` for `owner`: None when it is ours now, else the record its owner made (`find(owner)`).

        A claim whose record does not appear within TAKE_OVER_AFTER_SECONDS (its claimant died, or stalls) is
        taken over, so a caller retrying is never stuck; InvalidRequest (`slot.busy`) when others keep taking it.
        """
        for _ in range(_ATTEMPTS):
            existing = self.claim(slot, owner, fingerprint)
            if existing is None:
                return None
            record = _wait_for(existing, find)
            if record is not None:
                return record
            if self.take_over(slot, existing, owner, fingerprint):
                return None
        raise InvalidRequest(slot.busy)

    def claim_and_create(
        self,
        slot: Slot,
        owner: str,
        fingerprint: str,
        find: Callable[[str], T | None],
        create: Callable[[], T],
    ) -> tuple[T, bool]:
        """The record made for `slot`, and whether it was created now: by `create()` (which must store it under
        this claim, raising ClaimTakenOver when the claim is no longer `owner`'s) once `owner` holds the claim,
        else the one its claimant made (`find`).

        A claim taken over while `create` stalled gives back the taker's record; any other error abandons the
        claim and is raised.
        """
        found = self.claim_or_find(slot, owner, fingerprint, find)
        if found is not None:
            return found, False
        try:
            return create(), True
        except ClaimTakenOver:
            # this claimant stalled so long that another took the claim over: the other's record is the record
            taker = self.claim_or_find(slot, owner, fingerprint, find)
            if taker is None:
                self.abandon(slot, owner)
                raise InvalidRequest(slot.busy) from None
            return taker, False
        except BaseException:
            self.abandon(slot, owner)
            raise


def owner_of(value: object) -> str:
    """The owner a stored claim value names."""
    return _text(value).partition(" ")[0]


def _wait_for(owner: str, find: Callable[[str], T | None]) -> T | None:
    deadline = time.monotonic() + TAKE_OVER_AFTER_SECONDS
    while (record := find(owner)) is None:
        if time.monotonic() > deadline:
            return None
        time.sleep(_WAIT_STEP_SECONDS)
    return record


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
