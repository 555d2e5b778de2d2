"""Who is looking at `/ui`: a login with a key (the operator's, or a tenant's API key), kept as a server-side session.

The cookie holds only a random token (HttpOnly, SameSite=Strict, path `/ui`); Redis keeps the session under the
token's SHA-256 for `ui_session_seconds`, so a logout or an expiry ends it for every API process at once. Every
request checks the session again: a tenant's ends once its API key is revoked, the operator's once the operator key
changes. Each session has its own CSRF token, which every form sends back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

import redis

from shared.constants import UI_LOGIN_FAILURES_KEY, UI_SESSION_KEY
from shared.keys import ApiKey, KeyStore, key_sha256
from shared.settings import Settings

#: the session cookie's name
COOKIE = "genqueue_ui"
#: wrong keys one client address may send per window before its logins are refused until the window ends
MAX_FAILED_LOGINS = 10
LOGIN_WINDOW_SECONDS = 300


@dataclass(frozen=True)
class Viewer:
    """A logged-in viewer: the operator (`key` None: every job, every action), or a tenant (only `key`'s jobs)."""

    key: ApiKey | None
    csrf: str

    @property
    def operator(self) -> bool:
        return self.key is None

    @property
    def label(self) -> str:
        return "operator" if self.key is None else self.key.name


class LoginRequired(Exception):
    """Raised when a `/ui` request carries no live session: pages send the browser to the login form."""


class Sessions:
    """Open, read and close `/ui` sessions in Redis."""

    def __init__(self, client: redis.Redis, keys: KeyStore, settings: Settings) -> None:
        self.redis = client
        self.keys = keys
        self.settings = settings

    def login(self, key: str) -> str | None:
        """A new session's token for `key`, the operator key or a live API key; None for anything else."""
        operator = self._operator_sha256()
        record: dict[str, str | None]
        if operator is not None and hmac.compare_digest(key_sha256(key), operator):
            record = {"tenant": None, "operator_key": operator}
        else:
            found = self.keys.authenticate(key)
            if found is None:
                return None
            record = {"tenant": found.name, "operator_key": None}
        token = secrets.token_urlsafe(32)
        record["csrf"] = secrets.token_urlsafe(24)
        record["opened_at"] = str(time.time())
        self.redis.set(_key(token), json.dumps(record), ex=int(self.settings.ui_session_seconds))
        return token

    def login_wait(self, address: str) -> int:
        """Seconds `address` must wait before it may try a key again: 0 until it has failed MAX_FAILED_LOGINS
        times within LOGIN_WINDOW_SECONDS, then what is left of that window."""
        key = UI_LOGIN_FAILURES_KEY.format(address=address)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(key)
        pipe.ttl(key)
        failures, ttl = pipe.execute()
        return max(1, int(ttl)) if failures is not None and int(failures) >= MAX_FAILED_LOGINS else 0

    def note_failed_login(self, address: str) -> None:
        """Count a wrong key from `address` in its window (which starts with its first failure)."""
        key = UI_LOGIN_FAILURES_KEY.format(address=address)
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, LOGIN_WINDOW_SECONDS, nx=True)
        pipe.execute()

    def viewer(self, token: str | None) -> Viewer | None:
        """Who the session of `token` is; None when there is none, it expired, or its key no longer admits it."""
        if not token:
            return None
        raw = self.redis.get(_key(token))
        if raw is None:
            return None
        try:
            record = json.loads(raw)
            tenant, operator_key, csrf = record["tenant"], record["operator_key"], str(record["csrf"])
        except (ValueError, KeyError, TypeError):
            return None
        if tenant is None:
            current = self._operator_sha256()
            if current is None or not isinstance(operator_key, str) or not hmac.compare_digest(operator_key, current):
                return None
            return Viewer(key=None, csrf=csrf)
        found = self.keys.get(str(tenant))
        if found is None or found.revoked_at is not None:
            return None
        return Viewer(key=found, csrf=csrf)

    @property
    def admits_operator(self) -> bool:
        """Whether an operator key is set (an empty one is none)."""
        return self._operator_sha256() is not None

    def logout(self, token: str | None) -> None:
        """End the session of `token` (nothing when there is none)."""
        if token:
            self.redis.delete(_key(token))

    def _operator_sha256(self) -> str | None:
        configured = self.settings.ui_operator_key
        if configured is None or not configured.get_secret_value():
            return None
        return key_sha256(configured.get_secret_value())


def _key(token: str) -> str:
    return UI_SESSION_KEY.format(token_sha256=hashlib.sha256(token.encode()).hexdigest())


def csrf_matches(viewer: Viewer, sent: str | None) -> bool:
    """Whether a form's `csrf` field is the session's token."""
    return sent is not None and hmac.compare_digest(sent.encode(), viewer.csrf.encode())
