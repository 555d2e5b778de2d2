"""Deterministic output bytes, and serving a large file without holding it in memory."""

from __future__ import annotations

import hashlib
import tracemalloc

import httpx
import pytest

from sandbox.files import CHUNK_SIZE, expected_sha256, iter_content
from tests.unit.sandbox.helpers import BEARER, download_sha256


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 5])
def test_chunks_add_up_to_size_and_hash(size: int) -> None:
    chunks = list(iter_content("task_1", 0, size))
    assert sum(len(c) for c in chunks) == size
    assert all(len(c) == CHUNK_SIZE for c in chunks[:-1])
    assert hashlib.sha256(b"".join(chunks)).hexdigest() == expected_sha256("task_1", 0, size)


def test_content_is_deterministic_and_distinct() -> None:
    first = b"".join(iter_content("task_a", 0, 5000))
    assert first == b"".join(iter_content("task_a", 0, 5000))
    assert first != b"".join(iter_content("task_a", 1, 5000))
    assert first != b"".join(iter_content("task_b", 0, 5000))
    longer = b"".join(iter_content("task_a", 0, CHUNK_SIZE + 10))
    assert longer.startswith(first)


def test_negative_size_is_refused() -> None:
    with pytest.raises(ValueError, match="size"):
        next(iter_content("t", 0, -1))


def test_a_100_mib_file_is_streamed_in_small_memory(client: httpx.Client) -> None:
    size = 100 * 1024 * 1024
    client.post("/_control/config", json={"output_bytes": size}).raise_for_status()
    job = client.post("/sandbox/v1/jobs", json={"model": "m", "prompt": "x"}, headers=BEARER).json()["id"]
    url = client.get(f"/sandbox/v1/jobs/{job}", headers=BEARER).json()["outputs"][0]
    tracemalloc.start()
    try:
        response, sha, received = download_sha256(client, url)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 200 and int(response.headers["content-length"]) == size == received
    # server and client run in this process: both sides together stay within a few MiB
    assert peak < 8 * 1024 * 1024, f"peak traced memory {peak / 2**20:.1f} MiB"
    assert sha == expected_sha256(job, 0, size)


def test_head_gives_the_headers_only(client: httpx.Client) -> None:
    job = client.post("/sandbox/v1/jobs", json={"model": "a-tts", "prompt": "x"}, headers=BEARER).json()["id"]
    url = client.get(f"/sandbox/v1/jobs/{job}", headers=BEARER).json()["outputs"][0]
    head = client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == "audio/mpeg" and head.headers["content-length"] == str(256 * 1024)
