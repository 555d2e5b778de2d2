"""Bounds on what a caller may hand us, checked before anything is stored; pure functions, no I/O.

A job is stored as JSON and read back by every step, the sweeper, the dispatcher, reports and metrics. A request
nested deeper than the JSON reader goes (pydantic writes deeper than it reads), or metadata of megabytes, would be
accepted once and then cost, or break, every later reader. So free-form values (options, `extra`, metadata) have
a depth and a node-count bound, metadata has its own small shape, and inline inputs have a byte budget.

Every check raises ValueError with a one-line reason naming the field; the producer turns it into InvalidRequest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from shared.storage.media import decode_data_uri

#: nesting levels below a free-form value's top (`{"a": {"b": 1}}` is 2 deep)
MAX_DEPTH = 8
#: values (every dict, list and scalar) in one free-form value
MAX_NODES = 1000
MAX_METADATA_KEYS = 32
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 1024
#: data: URIs and uploaded input files of one request, together (decoded bytes)
MAX_INLINE_INPUT_BYTES = 20 * 1024 * 1024


def check_shape(value: object, what: str, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> None:
    """ValueError unless `value` nests at most `max_depth` levels, holds at most `max_nodes` values, and every
    number in it is finite (JSON has no Infinity or NaN: stored, they would come back as null).

    Walks iteratively, so a value nested thousands deep is refused rather than overflowing the stack.
    """
    nodes = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        current, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise ValueError(f"{what} holds more than {max_nodes} values")
        children: Iterable[object]
        if isinstance(current, Mapping):
            children = current.values()
        elif isinstance(current, list | tuple):
            children = current
        else:
            if isinstance(current, float) and not math.isfinite(current):
                raise ValueError(f"{what} holds {current}, which is not a finite number")
            continue
        if depth >= max_depth and children:
            raise ValueError(f"{what} nests deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)


def metadata_value(value: object, key: str) -> str:
    """A metadata value as the string stored: strings as given, numbers and booleans as JSON spells them.

    So `{"line": 3}` from Python, a batch file or the HTTP API and `--metadata line=3` all store "3", and `True`
    stores "true". Anything else (null, lists, objects) is refused.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"metadata {key!r}: {value} is not a finite number")
        return json.dumps(value)
    kind = "null" if value is None else type(value).__name__
    raise ValueError(f"metadata {key!r}: values must be strings, numbers or booleans, not {kind}")


def normalize_metadata(raw: Mapping[Any, Any] | None) -> dict[str, str]:
    """Metadata as stored (string keys and values); ValueError for more than MAX_METADATA_KEYS keys, a key that is
    empty or longer than MAX_METADATA_KEY_CHARS, or a value longer than MAX_METADATA_VALUE_CHARS."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError("metadata must be an object of KEY: VALUE")
    if len(raw) > MAX_METADATA_KEYS:
        raise ValueError(f"metadata has {len(raw)} keys; at most {MAX_METADATA_KEYS}")
    normalized: dict[str, str] = {}
    for raw_key, raw_value in raw.items():
        if not isinstance(raw_key, str):
            raise ValueError(f"metadata keys must be strings, not {type(raw_key).__name__}")
        key = raw_key.strip()
        if not key:
            raise ValueError("metadata keys must not be empty")
        if len(key) > MAX_METADATA_KEY_CHARS:
            raise ValueError(f"metadata key {key[:20]!r}… is longer than {MAX_METADATA_KEY_CHARS} characters")
        value = metadata_value(raw_value, key)
        if len(value) > MAX_METADATA_VALUE_CHARS:
            raise ValueError(f"metadata {key!r} is longer than {MAX_METADATA_VALUE_CHARS} characters")
        normalized[key] = value
    return normalized


def check_inline_inputs(data_uris: Iterable[str], file_sizes: Iterable[int]) -> None:
    """ValueError when data: URIs and uploaded files add up to more than MAX_INLINE_INPUT_BYTES."""
    total = sum(len(decode_data_uri(uri)[1]) for uri in data_uris) + sum(file_sizes)
    if total > MAX_INLINE_INPUT_BYTES:
        raise ValueError(
            f"inline inputs (data: URIs and uploaded files) add up to {total / 2**20:.1f} MiB; "
            f"at most {MAX_INLINE_INPUT_BYTES // 2**20} MiB per request: pass larger inputs as URLs"
        )
