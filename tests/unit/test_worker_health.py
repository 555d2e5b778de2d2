"""workers/health.py: the files, the probe, the bootstep's start, restart and shutdown, and a real worker: ready
once consuming, beating while its only pool thread is busy, stale when it hangs, no files once it has stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from infra.local.processes import ServerProcess
from infra.local.stack import worker_argv
from shared.constants import DISPATCH_LOCK_KEY, DISPATCH_TASK
from shared.queueing import make_celery
from shared.settings import Settings
from workers import health
from workers.health import HealthFiles, check_live, check_ready, file_age, health_step

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "workers" / "health.py"


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    """The probe as the manifests run it: the module as a script."""
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=20)


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout} s")
        time.sleep(0.05)


# --- files and the probe ------------------------------------------------------------------------------------


def test_heartbeat_age_and_checks(tmp_path: Path) -> None:
    files = HealthFiles(tmp_path / "health")
    assert check_live(files.heartbeat, 5) == (False, f"not alive: no heartbeat at {files.heartbeat}")
    assert not check_ready(files)[0]
    files.beat()
    files.mark_ready()
    assert check_live(files.heartbeat, 5)[0]
    assert check_ready(files)[0]
    past = time.time() - 30
    os.utime(files.heartbeat, (past, past))
    ok, reason = check_live(files.heartbeat, 5)
    assert not ok and reason.startswith("not alive: last heartbeat 30.")
    files.remove()
    assert not files.heartbeat.exists() and not files.ready.exists()
    files.remove()  # twice is fine


def test_file_age_takes_the_newest_of_a_dbm_s_files(tmp_path: Path) -> None:
    schedule = tmp_path / "celerybeat-schedule"
    assert file_age(schedule) is None
    (tmp_path / "celerybeat-schedule.dat").touch()
    old = time.time() - 100
    (tmp_path / "celerybeat-schedule.dir").touch()
    os.utime(tmp_path / "celerybeat-schedule.dir", (old, old))
    age = file_age(schedule)
    assert age is not None and age < 5


def test_probe_exit_status_and_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = HealthFiles(tmp_path)
    assert health.main(["live", "--dir", str(tmp_path), "--max-age", "5"]) == 1
    assert health.main(["ready", "--dir", str(tmp_path)]) == 1
    files.beat()
    files.mark_ready()
    assert health.main(["live", "--dir", str(tmp_path), "--max-age", "5"]) == 0
    assert health.main(["ready", "--dir", str(tmp_path)]) == 0
    assert health.main(["live", "--file", str(files.heartbeat), "--max-age", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and lines[0].startswith("not alive") and lines[3].startswith("ready")


def test_probe_without_a_health_dir_fails_and_says_why(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GENQUEUE_HEALTH_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setattr("shared.settings.get_settings", lambda: Settings(_env_file=None))
    assert health.main(["ready"]) == 1


def test_probe_script_is_cheap_and_reads_the_environment(tmp_path: Path) -> None:
    HealthFiles(tmp_path).beat()
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['health.py', 'live', '--max-age', '5']\n"
        f"try:\n    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
        "except SystemExit as exc:\n    status = exc.code\n"
        "print(status, sorted(m for m in ('celery', 'pydantic', 'redis', 'shared') if m in sys.modules))\n"
    )
    env = {**os.environ, "GENQUEUE_HEALTH_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=20)
    assert result.stdout.splitlines()[-1] == "0 []", result.stdout + result.stderr


# --- the bootstep, with a stand-in consumer and a real (threaded) Celery timer ---------------------------------


@pytest.fixture
def step_and_consumer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any, HealthFiles]]:
    from celery.utils.timer2 import Timer
    from celery.worker import state

    settings = Settings(_env_file=None, health_dir=str(tmp_path / "health"), health_interval_seconds=0.1)
    monkeypatch.setattr("shared.settings.get_settings", lambda: settings)
    monkeypatch.setattr(state, "should_stop", None)
    timer = Timer()
    consumer = type("Consumer", (), {"timer": timer, "steps": []})()
    step = health_step()(consumer)
    yield step, consumer, HealthFiles(tmp_path / "health")
    step.beater._draining.clear()  # end a drain thread before tmp_path goes
    timer.stop()


def test_step_is_left_out_without_a_health_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shared.settings.get_settings", lambda: Settings(_env_file=None))
    step = health_step()(object())
    assert not step.enabled and not step.include_if(object())


def test_step_clears_files_a_previous_container_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = HealthFiles(tmp_path)
    files.beat()
    files.mark_ready()
    monkeypatch.setattr("shared.settings.get_settings", lambda: Settings(_env_file=None, health_dir=str(tmp_path)))
    assert health_step()(object()).enabled
    assert not files.heartbeat.exists() and not files.ready.exists()


def test_step_beats_while_consuming_and_stops_on_a_consumer_restart(step_and_consumer: Any) -> None:
    step, consumer, files = step_and_consumer
    step.start(consumer)
    assert files.ready.exists()
    time.sleep(0.5)
    assert (file_age(files.heartbeat) or 99) < 0.3  # beats go on
    step.stop(consumer)  # the broker was lost: the consumer restarts its steps
    assert not files.ready.exists()
    time.sleep(0.4)
    assert (file_age(files.heartbeat) or 0) > 0.3  # no beat until it consumes again
    step.start(consumer)
    assert files.ready.exists() and (file_age(files.heartbeat) or 99) < 0.1


def test_step_keeps_beating_through_a_warm_shutdown(step_and_consumer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from celery.worker import state

    step, consumer, files = step_and_consumer
    step.start(consumer)
    monkeypatch.setattr(state, "should_stop", 0)  # what the SIGTERM handler sets (the exit code)
    step.stop(consumer)
    step.shutdown(consumer)
    assert not files.ready.exists()
    time.sleep(0.4)
    assert (file_age(files.heartbeat) or 99) < 0.3  # draining its running steps: alive


# --- a real worker --------------------------------------------------------------------------------------------


def test_real_worker_health(redis_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "health"
    # a Redis database of its own: a dispatcher lock another test's killed worker left behind (it expires within
    # 5 s) would make the dispatcher task below return at once
    redis_url = redis_url.rsplit("/", 1)[0] + "/12"
    redis.Redis.from_url(redis_url).flushdb()
    env = {
        "GENQUEUE_REDIS_URL": redis_url,
        "GENQUEUE_HEALTH_DIR": str(directory),
        "GENQUEUE_HEALTH_INTERVAL_SECONDS": "0.2",
        "GENQUEUE_DISPATCH_TASK_SECONDS": "2",
    }
    # one pool thread, so the dispatcher task below keeps the whole pool busy
    worker = ServerProcess(worker_argv("health", "poll", concurrency=1), tmp_path / "worker.log", env=env)
    try:
        files = HealthFiles(directory)
        worker.wait_until(files.ready.exists, timeout=30, what="the worker's ready file")
        assert probe("live", "--dir", str(directory), "--max-age", "1").returncode == 0
        result = probe("ready", "--dir", str(directory))
        assert result.returncode == 0 and result.stdout.startswith("ready"), result.stdout

        store = redis.Redis.from_url(redis_url)
        make_celery(Settings(_env_file=None, redis_url=redis_url)).send_task(DISPATCH_TASK, queue="poll")
        wait_for(lambda: store.exists(DISPATCH_LOCK_KEY), 10, "the dispatcher task running")
        ages = []
        while store.exists(DISPATCH_LOCK_KEY) and len(ages) < 30:
            ages.append(file_age(files.heartbeat) or 99.0)
            time.sleep(0.05)
        assert len(ages) > 10 and max(ages) < 0.6, f"heartbeat ages while the pool was busy: {ages}"

        worker.kill(signal.SIGSTOP)  # hung
        try:
            time.sleep(1.2)
            result = probe("live", "--dir", str(directory), "--max-age", "1")
            assert result.returncode == 1 and result.stdout.startswith("not alive: last heartbeat"), result.stdout
        finally:
            worker.kill(signal.SIGCONT)
        wait_for(lambda: probe("live", "--dir", str(directory), "--max-age", "1").returncode == 0, 5, "beats again")

        worker.kill(signal.SIGTERM)  # warm shutdown: nothing running, so it exits at once
        worker.proc.wait(15)
        assert worker.proc.returncode == 0, worker.log_tail()
        assert not files.heartbeat.exists() and not files.ready.exists()
    finally:
        worker.stop()
