"""API keys: each one a tenant of the HTTP API, stored hashed in Redis.

A key is `gq_` and 43 URL-safe characters (32 random bytes); only its SHA-256 is stored, so a copy of Redis gives
no one a working key. Plain SHA-256 is enough for that: the key is random and long, so there is nothing to guess
that a slow hash would protect. Each key has its own webhook secret (`whsec_…`, Standard Webhooks), kept as is:
the workers need it to sign the webhooks of the key's jobs.

Records: the hash KEYS_KEY maps a key's name to its record (JSON); KEY_HASHES_KEY maps the SHA-256 of each live
key to its name; KEYS_LAST_USED_KEY maps a name to when it was last used (written at most once a minute per
key, so authenticating stays one or two reads); KEY_RATE_KEY holds each key's request bucket (the providers' token
bucket, shared/protection/scripts.py). Revoking deletes the hash entry in the same atomic step that
marks the record, so every API process refuses the key from its next request: nothing is cached.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from pydantic import BaseModel, Field, ValidationError

from shared.constants import KEY_HASHES_KEY, KEY_RATE_KEY, KEYS_KEY, KEYS_LAST_USED_KEY
from shared.errors import InvalidRequest
from shared.models import Budget, utcnow
from shared.protection import scripts
from shared.webhooks.signing import generate_secret

log = logging.getLogger("genqueue.keys")

KEY_PREFIX = "gq_"
#: a key's name: what `keys list` and the job record show, so it is short and plain
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
#: last-used times are written at most this often per key
LAST_USED_RESOLUTION_SECONDS = 60.0

# KEYS: records hash, hashes hash. ARGV: name, record JSON, key hash. 1 when created, 0 when the name is taken.
_CREATE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

# KEYS: records hash, hashes hash. ARGV: name, record JSON (revoked), key hash. 1 when revoked, 0 otherwise.
_REVOKE = """
if redis.call('HGET', KEYS[2], ARGV[3]) ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class ApiKey(BaseModel):
    """One key's record: never the key itself, only its SHA-256."""

    name: str
    key_sha256: str
    webhook_secret: str
    created_at: datetime
    revoked_at: datetime | None = None
    #: requests a minute the key may make (None: no limit of its own)
    rate_per_minute: int | None = Field(default=None, gt=0)
    #: at most this much may be committed to the key's jobs (None: no budget)
    budget: Budget | None = None


@dataclass(frozen=True)
class CreatedKey:
    """What `create` hands back once: the key and its webhook secret are shown to the operator, then only hashed."""

    record: ApiKey
    key: str


@dataclass(frozen=True)
class KeyListing:
    """A row of `keys list`: the record (None when it cannot be read) and when the key was last used."""

    name: str
    record: ApiKey | None
    last_used_at: datetime | None
    problem: str | None = None


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _token(prefix: str) -> str:
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


class KeyStore:
    """Create, authenticate, list and revoke API keys in Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._create = client.register_script(_CREATE)
        self._revoke = client.register_script(_REVOKE)
        self._take_token = client.register_script(scripts.TAKE_TOKEN)

    def create(self, name: str, rate_per_minute: int | None = None, budget: Budget | None = None) -> CreatedKey:
        """A new key named `name`; InvalidRequest for a malformed name or one already used (revoked names too)."""
        if not NAME_PATTERN.match(name):
            raise InvalidRequest(
                f"key name {name!r}: use 1-63 lower-case letters, digits, '.', '_' or '-', from a letter or digit"
            )
        key = _token(KEY_PREFIX)
        record = ApiKey(
            name=name,
            key_sha256=key_sha256(key),
            webhook_secret=generate_secret(),
            created_at=utcnow(),
            rate_per_minute=rate_per_minute,
            budget=budget,
        )
        created = self._create(
            keys=[KEYS_KEY, KEY_HASHES_KEY], args=[name, record.model_dump_json(), record.key_sha256]
        )
        if not created:
            raise InvalidRequest(f"a key named {name!r} exists already (names are never reused, revoked or not)")
        return CreatedKey(record=record, key=key)

    def authenticate(self, key: str, now: datetime | None = None) -> ApiKey | None:
        """The live key `key` is, or None (unknown, revoked, or its record unreadable: refused, and logged)."""
        if not key.startswith(KEY_PREFIX):
            return None
        name = self.redis.hget(KEY_HASHES_KEY, key_sha256(key))
        if name is None:
            return None
        # the record and when it was last used, in one round trip: this runs on every request
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(KEYS_KEY, _text(name))
        pipe.hget(KEYS_LAST_USED_KEY, _text(name))
        raw, last_used = pipe.execute()
        record = self._parse(_text(name), raw)
        if record is None or record.revoked_at is not None:
            return None
        now = now or utcnow()
        previous = _time(last_used)
        if previous is None or (now - previous).total_seconds() >= LAST_USED_RESOLUTION_SECONDS:
            self.redis.hset(KEYS_LAST_USED_KEY, record.name, now.isoformat())
        return record

    def admit_request(self, record: ApiKey, now: float) -> float:
        """Take one of the key's requests from its rate (`rate_per_minute`, in bursts of at most that many): 0 when
        the request may go on, else how many seconds until it may (the Retry-After of a 429)."""
        if record.rate_per_minute is None:
            return 0.0
        rate = record.rate_per_minute / 60.0
        args: list[str | int] = [repr(now), repr(rate), record.rate_per_minute, 2 * 60]
        return float(self._take_token(keys=[KEY_RATE_KEY.format(name=record.name)], args=args))

    def get(self, name: str) -> ApiKey | None:
        """The record of key `name`; None when there is none or it cannot be read."""
        return self._read(name)

    def webhook_secret(self, name: str) -> str | None:
        """The secret the webhooks of key `name`'s jobs are signed with (revoked or not: its jobs still end);
        None when the record cannot be read."""
        record = self._read(name)
        return None if record is None else record.webhook_secret

    def listing(self) -> list[KeyListing]:
        """Every key, oldest first; a record that cannot be read is listed with the reason, and the rest go on."""
        last_used = {_text(k): _time(v) for k, v in self.redis.hgetall(KEYS_LAST_USED_KEY).items()}
        rows = []
        for raw_name, raw in self.redis.hgetall(KEYS_KEY).items():
            name = _text(raw_name)
            try:
                rows.append(KeyListing(name, ApiKey.model_validate_json(raw), last_used.get(name)))
            except ValidationError as exc:
                rows.append(KeyListing(name, None, last_used.get(name), f"unreadable: {exc.errors()[0]['msg']}"))
        far_future = datetime.max.replace(tzinfo=UTC)
        return sorted(rows, key=lambda row: (row.record.created_at if row.record else far_future, row.name))

    def revoke(self, name: str, now: datetime | None = None) -> ApiKey:
        """Revoke key `name` at once for every API process; InvalidRequest when there is no live key by that name."""
        record = self._read(name)
        if record is None:
            raise InvalidRequest(f"no key named {name!r}")
        if record.revoked_at is not None:
            raise InvalidRequest(f"key {name!r} was revoked already, at {record.revoked_at.isoformat()}")
        revoked = record.model_copy(update={"revoked_at": now or utcnow()})
        args = [name, revoked.model_dump_json(), record.key_sha256]
        if not self._revoke(keys=[KEYS_KEY, KEY_HASHES_KEY], args=args):
            raise InvalidRequest(f"key {name!r} changed while being revoked; try again")
        return revoked

    def _read(self, name: str) -> ApiKey | None:
        return self._parse(name, self.redis.hget(KEYS_KEY, name))

    def _parse(self, name: str, raw: bytes | str | None) -> ApiKey | None:
        if raw is None:
            return None
        try:
            return ApiKey.model_validate_json(raw)
        except ValidationError as exc:
            log.error("key %s: its record is unreadable (%s); the key is refused", name, exc.errors()[0]["msg"])
            return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _time(value: bytes | str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(_text(value))
    except ValueError:
        return None
