"""Deterministic output files: the bytes of output `n` of task `task_id`, `size` bytes long.

The content is SHAKE-256 in counter mode: chunk `i` (1 MiB each, the last one shorter) is the first bytes of
`shake_256(seed || i as 8 big-endian bytes)`, with `seed = sha256(f"{task_id}/{n}")`. It is produced one chunk
at a time, so serving a file of any size holds about 1 MiB. The same (task_id, n, size) always gives the
same bytes, which lets tests compare a downloaded file with `expected_sha256` without storing it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Literal

#: bytes generated (and written to the socket) at a time
CHUNK_SIZE = 1 << 20

#: what a task produces
Kind = Literal["video", "image", "audio"]
#: output kind -> file extension
EXTENSIONS: dict[Kind, str] = {"video": "mp4", "image": "png", "audio": "mp3"}
#: file extension -> Content-Type
CONTENT_TYPES: dict[str, str] = {"mp4": "video/mp4", "png": "image/png", "mp3": "audio/mpeg"}


def _seed(task_id: str, n: int) -> bytes:
    return hashlib.sha256(f"{task_id}/{n}".encode()).digest()


def iter_content(task_id: str, n: int, size: int) -> Iterator[bytes]:
    """Yield the file's bytes in chunks of CHUNK_SIZE (the last one shorter); `size` bytes in all."""
    if size < 0:
        raise ValueError(f"size must be >= 0, not {size}")
    seed = _seed(task_id, n)
    index = 0
    remaining = size
    while remaining > 0:
        length = min(CHUNK_SIZE, remaining)
        yield hashlib.shake_256(seed + index.to_bytes(8, "big")).digest(length)
        remaining -= length
        index += 1


def expected_sha256(task_id: str, n: int, size: int) -> str:
    """The hex SHA-256 of the file `iter_content(task_id, n, size)` yields."""
    digest = hashlib.sha256()
    for chunk in iter_content(task_id, n, size):
        digest.update(chunk)
    return digest.hexdigest()
