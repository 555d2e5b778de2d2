"""A worker's liveness and readiness as two files an orchestrator's probe reads (infra/k8s), and that probe.

With `GENQUEUE_HEALTH_DIR` set, the consumer bootstep of `health_step()` (registered in workers/app.py):

- writes `ready` once the consumer has started its task consumers, and removes it when they stop (a consumer
  restarting after a lost broker is not ready until it consumes again; a worker shutting down is never ready again);
- touches `heartbeat` every `GENQUEUE_HEALTH_INTERVAL_SECONDS` from the consumer's own timer. With Redis that
  timer runs in the consumer's event loop in the main thread, not in the pool: it keeps ticking while every pool
  thread is busy with a long step, and stops when the consumer's loop is dead or hung. From the start of a warm
  shutdown (SIGTERM) until the process ends, a plain thread keeps the heartbeat fresh: the worker is draining its
  running steps, which is not a reason to kill it;
- removes both files when the worker's consumer shuts down, or, for a worker draining at shutdown, when the
  process exits; and any left in the directory by a previous container when the worker starts.

Unset (the default, as on a laptop), the step is not included and no file is written.

The probe, exit status 0 or 1 with one line saying why:

    python -m workers.health live --max-age SECONDS [--file PATH]   # the heartbeat (or PATH) is at most SECONDS old
    python -m workers.health ready                                  # the ready file exists

The directory is `--dir`, else `GENQUEUE_HEALTH_DIR` from the environment, else from the settings (a .env file).
The module imports nothing but the standard library until it needs to (the step's factory, the settings): run as
a script (`python workers/health.py live ...`) a probe costs a bare interpreter start, not genqueue's imports.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

HEARTBEAT_FILE = "heartbeat"
READY_FILE = "ready"
DIR_VARIABLE = "GENQUEUE_HEALTH_DIR"


class HealthFiles:
    """The two files in `directory`: the heartbeat (its mtime is the last beat) and the ready marker."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.heartbeat = directory / HEARTBEAT_FILE
        self.ready = directory / READY_FILE

    def beat(self) -> None:
        """Touch the heartbeat (creating the directory and the file if needed)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.heartbeat.touch()

    def mark_ready(self) -> None:
        """Write the ready marker (its content, the pid, is for people)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ready.write_text(f"{os.getpid()}\n")

    def unready(self) -> None:
        """Remove the ready marker; no error when it is not there."""
        self.ready.unlink(missing_ok=True)

    def remove(self) -> None:
        """Remove both files; no error when they are not there."""
        self.unready()
        self.heartbeat.unlink(missing_ok=True)


def file_age(path: Path, now: float | None = None) -> float | None:
    """Seconds since `path`, or the newest of `path.*` (a dbm such as beat's schedule may name its files so), was
    last modified; None when there is no such file."""
    mtimes = []
    for candidate in (path, *path.parent.glob(f"{path.name}.*")):
        with contextlib.suppress(FileNotFoundError):
            mtimes.append(candidate.stat().st_mtime)
    if not mtimes:
        return None
    return max(0.0, (time.time() if now is None else now) - max(mtimes))


def check_live(path: Path, max_age: float) -> tuple[bool, str]:
    """Alive when `path` (the heartbeat) was modified at most `max_age` seconds ago; the reason either way."""
    age = file_age(path)
    if age is None:
        return False, f"not alive: no heartbeat at {path}"
    if age > max_age:
        return False, f"not alive: last heartbeat {age:.1f} s ago (more than {max_age:g} s)"
    return True, f"alive: last heartbeat {age:.1f} s ago"


def check_ready(files: HealthFiles) -> tuple[bool, str]:
    """Ready when the ready marker exists (the consumer consumes); the reason either way."""
    if files.ready.exists():
        return True, "ready: the consumer is consuming"
    return False, f"not ready: no {files.ready} (the consumer has not started, or it stopped)"


class _Beater:
    """What the bootstep does, apart from Celery: `start` and `stop` as the consumer starts and stops its steps."""

    def __init__(self, files: HealthFiles, interval: float) -> None:
        self.files = files
        self.interval = interval
        self._entry: Any = None
        self._draining = threading.Event()
        self._drain_lock = threading.Lock()  # so that no drain beat comes after the files are removed
        self._cleanup_registered = False

    def start(self, timer: Any) -> None:
        """The consumer consumes: beat now and every interval on `timer` (a kombu/Celery timer), and be ready."""
        self.files.beat()
        self.files.mark_ready()
        self._entry = timer.call_repeatedly(self.interval, self._beat)

    def _beat(self) -> None:
        # never raise into the consumer's loop: a heartbeat that cannot be written goes stale, which says enough
        with contextlib.suppress(OSError):
            self.files.beat()

    def stop(self, shutting_down: bool) -> None:
        """The consumer stopped consuming: not ready. When the worker is shutting down, keep beating from a thread
        until the process ends (it drains its running steps); on a consumer restart, beat again only once it
        consumes again."""
        self.files.unready()
        if self._entry is not None:
            self._entry.cancel()
            self._entry = None
        if shutting_down and not self._draining.is_set():
            self._draining.set()
            threading.Thread(target=self._drain_beats, name="genqueue-health-drain", daemon=True).start()

    def shutdown(self, shutting_down: bool) -> None:
        """The worker's consumer is gone: no file left behind. Celery shuts the consumer down before its pool has
        drained, so a worker shutting down keeps beating and removes the files when the process exits."""
        self.stop(shutting_down)
        if self._draining.is_set():
            if not self._cleanup_registered:
                self._cleanup_registered = True
                atexit.register(self._finish_drain)
            return
        self.files.remove()

    def _drain_beats(self) -> None:
        while True:
            with self._drain_lock:
                if not self._draining.is_set():
                    return
                with contextlib.suppress(OSError):
                    self.files.beat()
            time.sleep(self.interval)

    def _finish_drain(self) -> None:
        with self._drain_lock:
            self._draining.clear()
            self.files.remove()


def health_step() -> type:
    """The consumer bootstep (`app.steps["consumer"].add(health_step())`). A factory, so that the probe, which
    imports this module, does not import Celery."""
    from celery import bootsteps
    from celery.worker import state

    from shared.settings import get_settings

    def _shutting_down() -> bool:
        # set (to the exit code, 0 for a warm shutdown) by the worker's SIGTERM and SIGQUIT handlers before the
        # consumer is stopped; None until then
        return state.should_stop is not None or state.should_terminate is not None

    class HealthStep(bootsteps.StartStopStep):  # type: ignore[misc]  # celery is untyped
        """Heartbeat and readiness files for the orchestrator's probes (workers/health.py)."""

        # after Tasks has started the task consumers: ready means consuming
        requires = ("celery.worker.consumer.tasks:Tasks",)

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            settings = get_settings()
            self.beater = (
                _Beater(HealthFiles(Path(settings.health_dir)), settings.health_interval_seconds)
                if settings.health_dir
                else None
            )
            self.enabled = self.beater is not None
            if self.beater is not None:
                # a restarted container keeps its pod's emptyDir: not ready, and no heartbeat, until it consumes
                self.beater.files.remove()

        def start(self, c: Any) -> None:
            if self.beater is not None:
                self.beater.start(c.timer)

        def stop(self, c: Any) -> None:
            if self.beater is not None:
                self.beater.stop(shutting_down=_shutting_down())

        def shutdown(self, c: Any) -> None:
            if self.beater is not None:
                self.beater.shutdown(shutting_down=_shutting_down())

    return HealthStep


def _directory(given: str | None) -> Path | None:
    if given:
        return Path(given)
    if os.environ.get(DIR_VARIABLE):
        return Path(os.environ[DIR_VARIABLE])
    from shared.settings import get_settings

    configured = get_settings().health_dir
    return Path(configured) if configured else None


def main(argv: list[str] | None = None) -> int:
    """The probe: 0 when the check passes, 1 when it does not (or health files are not configured)."""
    parser = argparse.ArgumentParser(prog="python -m workers.health", description="probe a worker's health files")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", help=f"the health directory (default: {DIR_VARIABLE})")
    checks = parser.add_subparsers(dest="check", required=True)
    live = checks.add_parser("live", parents=[common], help="the heartbeat is recent")
    live.add_argument("--max-age", type=float, required=True, metavar="SECONDS")
    live.add_argument("--file", type=Path, help="check this file's age instead of the heartbeat (beat's schedule)")
    checks.add_parser("ready", parents=[common], help="the consumer is consuming")
    args = parser.parse_args(argv)

    if args.check == "live" and args.file is not None:
        ok, reason = check_live(args.file, args.max_age)
        print(reason)
        return 0 if ok else 1
    directory = _directory(args.dir)
    if directory is None:
        print(f"unknown: {DIR_VARIABLE} is not set, so the worker writes no health files")
        return 1
    files = HealthFiles(directory)
    ok, reason = check_live(files.heartbeat, args.max_age) if args.check == "live" else check_ready(files)
    print(reason)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
