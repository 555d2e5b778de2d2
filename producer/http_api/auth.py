"""Who is asking: `Authorization: Bearer <key>`, looked up on every request (a revoked key is refused at once)."""

from __future__ import annotations

import math
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from producer.http_api.problems import ApiProblem
from shared.keys import ApiKey, KeyStore

_bearer = HTTPBearer(auto_error=False, description="an API key from `genqueue keys create`")


def key_store(request: Request) -> KeyStore:
    store: KeyStore = request.app.state.keys
    return store


def tenant(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    keys: Annotated[KeyStore, Depends(key_store)],
) -> ApiKey:
    """The live key the request carries; 401 `unauthorized` for none, a wrong one or a revoked one, 429
    `rate_limited` (with Retry-After) past the key's request rate."""
    if credentials is None:
        raise ApiProblem(401, "unauthorized", "no API key: send Authorization: Bearer <key>", _challenge())
    found = keys.authenticate(credentials.credentials)
    if found is None:
        raise ApiProblem(401, "unauthorized", "the API key is wrong or was revoked", _challenge())
    wait = keys.admit_request(found, time.time())
    if wait > 0:
        retry_after = str(max(1, math.ceil(wait)))
        detail = f"key {found.name} is limited to {found.rate_per_minute} requests a minute; retry in {retry_after} s"
        raise ApiProblem(429, "rate_limited", detail, {"Retry-After": retry_after})
    return found


def _challenge() -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer realm="genqueue"'}


Tenant = Annotated[ApiKey, Depends(tenant)]
