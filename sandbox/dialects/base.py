"""What every dialect module provides and the helpers they share.

A dialect module builds one `Dialect`: its name, path prefix, auth scheme, its routes (each a submit or a
poll, which is what faults and counters key on) and `error(status, message)`, its own error body for any
HTTP status. The server strips the prefix, counts the request, applies faults, checks the key and only then
calls the route's handler with the parsed `Request` and the shared `Store`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from sandbox.config import DialectName
from sandbox.state import Store, Task

RouteTarget = Literal["submit", "poll"]


@dataclass(frozen=True)
class Request:
    """An authenticated dialect request; `path` is below the prefix, `params` the route's groups."""

    method: str
    path: str
    params: dict[str, str]
    body: bytes
    host: str
    api_key: str

    def json_object(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None when it is empty, not JSON, or not an object."""
        try:
            data = json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None


@dataclass
class Response:
    """A JSON answer."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class ErrorFactory(Protocol):
    def __call__(self, status: int, message: str | None = None) -> Response: ...


Handler = Callable[[Request, Store], Response]


@dataclass(frozen=True)
class Route:
    """`method` plus a regex matched against the whole path below the prefix."""

    method: str
    pattern: re.Pattern[str]
    target: RouteTarget
    handler: Handler


@dataclass(frozen=True)
class Dialect:
    """One vendor's API as the sandbox serves it under `prefix`."""

    name: DialectName
    prefix: str
    scheme: str
    routes: tuple[Route, ...]
    error: ErrorFactory

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """The route for (method, path) and its groups; the flag says the path exists for another method."""
        path_known = False
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            if found is None:
                continue
            if route.method == method:
                return route, found.groupdict(), True
            path_known = True
        return None, {}, path_known


def route(method: str, pattern: str, target: RouteTarget, handler: Handler) -> Route:
    return Route(method, re.compile(pattern), target, handler)


def authorize(header: str | None, scheme: str, accepted: frozenset[str] | None) -> str | None:
    """The API key from an `Authorization: <scheme> <key>` header, or None when it is missing or refused.

    The scheme compares case-insensitively (RFC 9110); `accepted=None` takes any non-empty key.
    """
    if not header:
        return None
    given_scheme, _, key = header.strip().partition(" ")
    key = key.strip()
    if given_scheme.lower() != scheme.lower() or not key:
        return None
    if accepted is not None and key not in accepted:
        return None
    return key


def file_urls(task: Task, host: str) -> list[str]:
    """Absolute URLs of the task's outputs, on the host the client reached us by."""
    return [f"http://{host}/files/{task.id}/{n}.{task.ext}" for n in range(task.outputs)]


def iso(timestamp: float) -> str:
    """Unix seconds as ISO 8601 UTC with milliseconds and a `Z`, as in `2024-12-27T10:30:00.000Z`."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def number(value: float) -> int | float:
    """A whole number as int (credits read `20`, not `20.0`), anything else as it is."""
    return int(value) if float(value).is_integer() else value


def is_url(value: object) -> bool:
    """True for an http(s) URL: not a local path or a data URI."""
    return isinstance(value, str) and value.startswith(("https://", "http://")) and len(value) > 8


def positive_number(value: object) -> bool:
    """True for an int or float above zero (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def string_list(value: object) -> list[str] | None:
    """`value` when it is a list of non-empty strings, else None."""
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return value
    return None
