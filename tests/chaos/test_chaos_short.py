"""The fault-injection suite, short form: bench/chaos.py with 60 jobs; nothing lost, nothing paid twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.bench import load_bench

pytestmark = pytest.mark.integration


def test_chaos_short_form(tmp_path: Path, artifacts_dir: Path) -> None:
    chaos = load_bench("chaos")
    report = chaos.run_chaos(jobs=60, short=True, workdir=tmp_path, timeout=240.0)
    table = report.table()
    (artifacts_dir / "chaos-short.txt").write_text(table + "\n" + "\n".join(report.lost + report.untold) + "\n")
    print(table)
    assert report.enqueued == 60
    assert report.lost == [] and report.untold == [], table
    assert report.duplicate_submits == 0, table
    assert report.webhook_ids_consistent and report.webhook_unverified == 0, table
    assert report.webhook_min_delivered >= 1, table
    assert report.redis_restarts == 1 and sum(report.kills.values()) >= 8, table
    # the poison records planted mid-run were set aside, and every other job still ended (lost == [] above)
    assert len(report.poisoned) == 3 and report.quarantined == 3, table
    # every injected fault shows up as its own error code (on a job, or on a job of the batch alongside)
    codes = report.codes + report.batch_codes
    for code in ("generation_failed", "download_failed", "insufficient_credits", "submit_outcome_unknown"):
        assert codes.get(code, 0) >= 1, f"{code} missing:\n{table}"
    assert report.statuses["succeeded"] >= 40, table
    # the batch run alongside completed, every job of it ended, and its batch.completed webhook arrived
    assert report.batch_completed and sum(report.batch_statuses.values()) == report.batch_total, table
    assert report.batch_webhooks >= 1, table
