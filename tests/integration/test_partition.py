"""Workers on two hosts, one cut off mid-run: bench/partition.py with 30 jobs.

Two network namespaces (hosts A and B) reach redis-server, moto's S3 server, the sandbox and the webhook receiver
in the root namespace over their own veth links (tests/support/netns.py). Once every job is submitted and
rendering, host A's link goes down; host B finishes every job through the sweeper; then the link comes back and
host A's held tasks and late writes run. The rules: every job succeeded, none lost, 0 duplicate submits, exactly
one webhook event id per job, no job record written after host B finished it, every stored output intact, and
nothing of the rig left behind.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support import netns
from tests.support.bench import load_bench

pytestmark = pytest.mark.integration

JOBS = 30


@pytest.fixture
def partition_ready() -> None:
    """Skip (one line) where namespaces cannot be made; a missing redis-server fails in CI, as elsewhere."""
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed (make setup installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.usefixtures("partition_ready")
def test_a_host_cut_off_mid_run_loses_nothing_pays_nothing_twice_and_its_late_writes_change_nothing(
    tmp_path: Path, artifacts_dir: Path
) -> None:
    partition = load_bench("partition")
    report = partition.run_partition(JOBS, tmp_path, render_seconds=5.0, timeout=60.0)
    summary = report.summary()
    faults = report.lost + report.changed_after_heal + report.output_mismatch
    (artifacts_dir / "partition.txt").write_text(summary + "\n" + "\n".join(faults) + "\n")
    print(summary)
    assert netns.leftovers() == [], "the rig was not cleaned up"
    assert report.enqueued == JOBS, summary
    assert report.lost == [] and dict(report.statuses) == {"succeeded": JOBS}, summary
    assert report.duplicate_submits == 0 and report.submits == JOBS, summary
    assert report.event_ids_min == 1 and report.event_ids_max == 1 and report.unverified == 0, summary
    assert report.changed_after_heal == [], f"late writes were taken: {report.changed_after_heal}\n{summary}"
    assert report.output_mismatch == [], summary
    # host B finished host A's jobs through the sweeper, while host A was cut off
    assert report.taken_over >= 1, summary
    assert report.recovered_seconds is not None and report.told_seconds is not None, summary
    # host A came back and was still running at the end
    assert report.back_seconds is not None and report.host_a_alive, summary
