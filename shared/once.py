"""`once_per_process`: a value made at most once per process, however many threads ask for it at the same moment
(`functools.lru_cache` does not lock: 32 threads starting at once each built a boto3 client of their own)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def once_per_process(make: Callable[[], T]) -> Callable[[], T]:
    """`make()` called at most once however many threads ask at the same moment; its result kept."""
    lock = threading.Lock()
    made: list[T] = []

    @functools.wraps(make)
    def get() -> T:
        if not made:
            with lock:
                if not made:
                    made.append(make())
        return made[0]

    return get
