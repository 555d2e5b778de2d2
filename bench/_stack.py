"""What every bench script starts first: its own redis-server, moto's S3 server, the sandbox and a webhook
receiver, with the settings pointing at them exported to this process (and the processes it starts)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.local.stack import LocalStack, stack_env
from infra.local.webhook_receiver import WebhookReceiver, start_receiver


@dataclass(frozen=True)
class BenchStack:
    stack: LocalStack
    workdir: Path
    redis_url: str
    sandbox_url: str
    receiver: WebhookReceiver


@contextmanager
def bench_stack(sandbox_delay: float, output_bytes: int, settings: dict[str, str]) -> Iterator[BenchStack]:
    """Start the servers, export their settings (and `settings`) to os.environ, stop everything at the end."""
    from shared.webhooks.signing import generate_secret

    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(Path(tmp))
        receiver = None
        try:
            redis_url = stack.start_redis()
            s3 = stack.start_moto()
            sandbox = stack.start_sandbox(delay=sandbox_delay, output_bytes=output_bytes)
            secret = generate_secret()
            receiver = start_receiver(secret)
            env = stack_env(redis_url, s3, sandbox, secret, bucket="bench")
            env.update(settings)
            os.environ.update(env)
            stack.env = dict(os.environ)
            yield BenchStack(stack, Path(tmp), redis_url, sandbox, receiver)
        finally:
            if receiver is not None:
                receiver.stop()
            stack.stop()
