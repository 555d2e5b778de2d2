"""The vendor dialects the sandbox speaks, one module each, keyed by name and found by path prefix."""

from __future__ import annotations

from sandbox.dialects import gateway, native, veo3api, veogen, vicsee
from sandbox.dialects.base import Dialect

#: every dialect, by its name (`sandbox` is the native one)
DIALECTS: dict[str, Dialect] = {
    d.name: d for d in (vicsee.DIALECT, veogen.DIALECT, gateway.DIALECT, veo3api.DIALECT, native.DIALECT)
}


def for_path(path: str) -> Dialect | None:
    """The dialect whose prefix `path` starts with (a whole path segment), or None."""
    head = "/" + path.lstrip("/").split("/", 1)[0]
    return next((d for d in DIALECTS.values() if d.prefix == head), None)


__all__ = ["DIALECTS", "Dialect", "for_path"]
