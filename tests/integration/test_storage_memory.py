"""A 100 MiB copy holds about one part in memory: measured in a child process (bench/storage_memory.py --measure).

The child's baseline is taken after its imports, client and first S3 call, so the growth is the copy's alone:
about one 8 MiB part plus buffers (~12 MiB RSS on the reference machine). A copy that held the file would grow by
more than 100 MiB; the bound sits well between the two.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import Settings
from shared.storage import Storage
from tests.support.byteserver import ByteServer, expected_sha256

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]
SIZE = 100 * MiB
MAX_RSS_GROWTH_MIB = 64
MAX_TRACED_PEAK_MIB = 40


@pytest.fixture(scope="module")
def byte_server() -> Iterator[ByteServer]:
    with ByteServer() as server:
        yield server


def test_100_mib_copy_holds_about_one_part(moto_endpoint: str, byte_server: ByteServer) -> None:
    bucket = f"mem-{uuid.uuid4().hex[:12]}"
    Storage(Settings(s3_endpoint_url=moto_endpoint, s3_bucket=bucket, s3_region="us-east-1")).ensure_bucket()
    argv = [sys.executable, str(REPO / "bench" / "storage_memory.py"), "--measure", moto_endpoint, bucket]
    argv += [byte_server.url(SIZE), "--part-mib", "8"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])

    assert result["bytes"] == SIZE
    assert result["sha256"] == expected_sha256(SIZE)
    assert result["rss_growth_mib"] < MAX_RSS_GROWTH_MIB, result
    assert result["tracemalloc_peak_mib"] < MAX_TRACED_PEAK_MIB, result
