"""The local stack: every process genqueue needs on one machine, started and stopped by pid.

Used by `make demo` (infra/local/demo.py) and by the integration tests' fixtures, so both run the same things:
redis-server, moto's S3 server (unless an endpoint is given), the sandbox provider, celery workers, Flower.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from infra.local.processes import ServerProcess, free_port, port_open

BIN = Path(sys.executable).parent
SANDBOX_PROVIDERS = ("vicsee", "veogen", "gateway", "veo3api", "sandbox")


def stack_env(
    redis_url: str, s3_endpoint: str | None, sandbox_url: str, webhook_secret: str, bucket: str
) -> dict[str, str]:
    """Settings (as environment variables) pointing every built-in provider at the sandbox."""
    env = {
        "GENQUEUE_REDIS_URL": redis_url,
        "GENQUEUE_S3_BUCKET": bucket,
        "GENQUEUE_WEBHOOK_SECRET": webhook_secret,
        "GENQUEUE_ALLOW_PRIVATE_URLS": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    if s3_endpoint:
        env["GENQUEUE_S3_ENDPOINT_URL"] = s3_endpoint
    for name in SANDBOX_PROVIDERS:
        env[f"GENQUEUE_PROVIDERS__{name.upper()}__BASE_URL"] = f"{sandbox_url}/{name}"
        env[f"GENQUEUE_PROVIDERS__{name.upper()}__API_KEY"] = f"sk-sandbox-{name}"
    return env


#: fast schedules for tests and benches, so a run takes seconds: polls every 0.2-1 s, retries after 0.2 s,
#: webhooks 0.2-1 s, the sweeper every second with a 3 s grace, a job held back by a provider's limits checking
#: again every second
FAST_SETTINGS = {
    "GENQUEUE_POLL_INITIAL_SECONDS": "0.2",
    "GENQUEUE_POLL_MAX_INTERVAL_SECONDS": "1",
    "GENQUEUE_RETRY_BASE_SECONDS": "0.2",
    "GENQUEUE_WEBHOOK_RETRY_DELAYS": "[0.2, 0.5, 1]",
    "GENQUEUE_JOB_TIMEOUT_SECONDS": "120",
    "GENQUEUE_WAIT_INTERVAL_SECONDS": "0.1",
    "GENQUEUE_SWEEP_GRACE_SECONDS": "3",
    "GENQUEUE_SWEEP_INTERVAL_SECONDS": "1",
    "GENQUEUE_DISPATCH_INTERVAL_SECONDS": "0.5",
    "GENQUEUE_DISPATCH_TASK_SECONDS": "3",
    "GENQUEUE_CAPACITY_RECHECK_SECONDS": "1",
}


def worker_argv(name: str, queues: str = "submit,poll,finalize,webhooks", concurrency: int = 16) -> list[str]:
    """`celery -A workers worker` on `queues` with a threads pool, named `name@host`, INFO logging."""
    return [
        sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", queues, "--pool", "threads",
        "-c", str(concurrency), "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
    ]  # fmt: skip


def beat_argv(schedule: Path) -> list[str]:
    """`celery -A workers beat` keeping its schedule in `schedule`, INFO logging."""
    return [sys.executable, "-m", "celery", "-A", "workers", "beat", "--schedule", str(schedule), "--loglevel", "INFO"]


@dataclass
class LocalStack:
    """Processes started for one run; `stop()` ends each of them, newest first."""

    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: list[ServerProcess] = field(default_factory=list)

    def _start(
        self, name: str, argv: list[str], port: int | None = None, ready_text: str | None = None, timeout: float = 30.0
    ) -> ServerProcess:
        process = ServerProcess(argv, self.workdir / f"{name}.log", env=self.env)
        self.processes.append(process)
        if port is not None:
            process.wait_until(lambda: port_open(port), timeout, what=name)
        if ready_text is not None:
            process.wait_until(lambda: ready_text in process.log_tail(20000), timeout, what=name)
        return process

    def start_redis(self, port: int | None = None) -> str:
        port = port or free_port()
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run infra/local/ensure-system-deps.sh")
        data = self.workdir / "redis-data"
        data.mkdir(exist_ok=True)
        self._start(
            "redis",
            [
                binary,
                str(Path(__file__).resolve().parents[1] / "redis" / "redis.conf"),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(data),
                "--daemonize",
                "no",
            ],
            port=port,
        )
        return f"redis://127.0.0.1:{port}/0"

    def start_moto(self, port: int | None = None) -> str:
        port = port or free_port()
        self._start("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port=port)
        return f"http://127.0.0.1:{port}"

    def start_sandbox(self, port: int | None = None, delay: float = 2.0, output_bytes: int = 256 * 1024) -> str:
        port = port or free_port()
        self._start(
            "sandbox",
            [
                str(BIN / "genqueue"),
                "sandbox",
                "--port",
                str(port),
                "--delay",
                str(delay),
                "--output-bytes",
                str(output_bytes),
            ],
            port=port,
        )
        return f"http://127.0.0.1:{port}"

    def start_workers(
        self, name: str = "worker", queues: str = "submit,poll,finalize,webhooks", concurrency: int = 16
    ) -> ServerProcess:
        return self._start(name, worker_argv(name, queues, concurrency), ready_text="ready.", timeout=60.0)

    def start_beat(self) -> ServerProcess:
        """`celery -A workers beat`: runs the sweeper every Settings.sweep_interval_seconds."""
        argv = beat_argv(self.workdir / "celerybeat-schedule")
        return self._start("beat", argv, ready_text="beat: Starting", timeout=60.0)

    def start_flower(self, port: int | None = None, basic_auth: str = "admin:genqueue") -> str:
        port = port or free_port()
        self._start(
            "flower",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers",
                "flower",
                f"--port={port}",
                "--address=127.0.0.1",
                f"--basic-auth={basic_auth}",
            ],
            port=port,
            timeout=60.0,
        )
        return f"http://127.0.0.1:{port}"

    def start_api(self, port: int | None = None) -> str:
        """`genqueue api` on 127.0.0.1; its base URL once it listens."""
        port = port or free_port()
        self._start("api", [str(BIN / "genqueue"), "api", "--host", "127.0.0.1", "--port", str(port)], port=port)
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
