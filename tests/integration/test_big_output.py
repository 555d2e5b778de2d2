"""A 100 MiB output copied through the real finalize worker, with the worker's peak memory measured and bounded."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from infra.local.processes import ServerProcess
from producer.api import Producer
from sandbox.files import expected_sha256
from shared.settings import Settings

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def test_100_mib_output_streams_with_bounded_worker_memory(
    workers: ServerProcess, settings: Settings, sandbox_url: str, artifacts_dir: Path
) -> None:
    size = 100 * MIB
    httpx.post(f"{sandbox_url}/_control/config", json={"output_bytes": size})
    try:
        producer = Producer(settings)
        warm = producer.submit("sandbox", "sandbox-video", "warm-up")  # the worker's baseline after one full job
        assert producer.wait(warm.id, timeout=120).status.value == "succeeded"
        before = peak_rss_mib(workers.pid)
        job = producer.submit("sandbox", "sandbox-video", "a big one")
        final = producer.wait(job.id, timeout=180)
    finally:
        httpx.post(f"{sandbox_url}/_control/config", json={"output_bytes": 256 * 1024})
    after = peak_rss_mib(workers.pid)
    assert final.status.value == "succeeded", final.error
    [output] = final.outputs
    assert output.size == size
    assert output.sha256 == expected_sha256(final.provider_task_id or "", 0, size)
    growth = after - before
    (artifacts_dir / "finalize-memory.txt").write_text(
        f"100 MiB output: worker peak RSS before {before:.1f} MiB, after {after:.1f} MiB, growth {growth:.1f} MiB\n"
    )
    # One 8 MiB part in flight plus buffers; copying the whole file into memory would add 100 MiB or more.
    assert growth < 48, f"worker peak memory grew by {growth:.1f} MiB copying 100 MiB"
