"""A hostile vendor and receiver against real celery workers run as a deployment would: private URLs refused,
the hostile server alone on the private allowlist, a canary on another loopback port that must never be reached.

Each case records what it cost in test-artifacts/hostile-cases.txt: the worker's threads (sampled every 20 ms
while the case runs), the time the hostile server held its connections open, the body bytes it managed to write
(an upper bound on what the worker read; the kernel's socket buffers take some the worker never reads).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra.local.processes import ServerProcess
from infra.local.stack import LocalStack
from producer.api import Producer
from shared.errors import InvalidRequest
from shared.models import Job
from shared.settings import Settings
from shared.storage import Storage
from tests.integration.conftest import settings_for
from tests.support.hostile import TRICKLE_PAUSE, Canary, HostileServer, Served

pytestmark = pytest.mark.integration

MAX_OUTPUT_BYTES = 3 * 1024 * 1024
MAX_COPY_SECONDS = 3.0
WEBHOOK_DEADLINE = 2.0
#: a vendor API call's overall deadline (GENQUEUE_PROVIDER_TIMEOUT_SECONDS)
VENDOR_DEADLINE = 2.0
WORKER_THREADS = 4
#: the Redis database these workers use, so the suite's other workers (database 0) never take their jobs
DATABASE = 7


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


@dataclass
class Case:
    """One hostile case: the requests it brought to the server, and the worker's threads while it ran."""

    name: str
    rig: Rig
    start: int
    peak_threads: int = 0
    _done: threading.Event = field(default_factory=threading.Event)

    def requests(self, prefix: str) -> list[Served]:
        return [s for s in self.rig.server.served[self.start :] if s.path.startswith(prefix)]

    def sample(self) -> None:
        while not self._done.wait(0.02):
            try:
                self.peak_threads = max(self.peak_threads, thread_count(self.rig.worker.pid))
            except OSError:  # the worker is gone: the module's workers were stopped
                return

    def report(self, job: Job, prefix: str, extra: str = "") -> None:
        self._done.set()
        served = self.requests(prefix)
        held = sum(s.seconds for s in served)
        error = f"{job.error.code}: {job.error.message}" if job.error else "no error"
        self.rig.figures.append(
            f"{self.name}\n    {job.status.value} ({error})\n"
            f"    job created->ended {(job.updated_at - job.created_at).total_seconds():.2f}s;"
            f" {len(served)} request(s) to {prefix}, held open {held:.2f}s in all;"
            f" body bytes written by the server {sum(s.body_bytes for s in served)};"
            f" canary connections {self.rig.canary.connections};"
            f" worker threads peak {self.peak_threads} (pool of {WORKER_THREADS}, {self.rig.idle_threads} idle){extra}"
        )


@dataclass
class Rig:
    server: HostileServer
    canary: Canary
    settings: Settings
    worker: ServerProcess
    producer: Producer
    idle_threads: int = 0
    figures: list[str] = field(default_factory=list)

    def case(self, name: str) -> Case:
        case = Case(name, self, len(self.server.served))
        threading.Thread(target=case.sample, daemon=True).start()
        return case

    def run(self, prompt: str, webhook_url: str | None = None) -> Job:
        job = self.producer.submit("hostile", "sandbox-video", prompt, webhook_url=webhook_url)
        return self.producer.wait(job.id, timeout=90)


@pytest.fixture(scope="module")
def rig(pipeline_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with Canary() as canary, HostileServer(canary) as server:
        base = pipeline_env["GENQUEUE_REDIS_URL"].rsplit("/", 1)[0]
        env = {
            **pipeline_env,
            "GENQUEUE_REDIS_URL": f"{base}/{DATABASE}",
            "GENQUEUE_BROKER_URL": f"{base}/{DATABASE}",
            "GENQUEUE_STORE_URL": f"{base}/{DATABASE}",
            "GENQUEUE_ALLOW_PRIVATE_URLS": "false",
            "GENQUEUE_PRIVATE_URL_ALLOWLIST": json.dumps([f"127.0.0.1:{server.port}"]),
            "GENQUEUE_MAX_OUTPUT_BYTES": str(MAX_OUTPUT_BYTES),
            "GENQUEUE_MAX_COPY_SECONDS": str(MAX_COPY_SECONDS),
            "GENQUEUE_WEBHOOK_TIMEOUT_SECONDS": str(WEBHOOK_DEADLINE),
            "GENQUEUE_PROVIDER_TIMEOUT_SECONDS": str(VENDOR_DEADLINE),
            "GENQUEUE_RETRY_BUDGETS": json.dumps({"provider_error": 1}),
            "GENQUEUE_WEBHOOK_RETRY_DELAYS": "[0.2]",
            "GENQUEUE_PROVIDERS__HOSTILE__DIALECT": "sandbox",
            "GENQUEUE_PROVIDERS__HOSTILE__BASE_URL": f"{server.base_url}/sandbox",
            "GENQUEUE_PROVIDERS__HOSTILE__API_KEY": "sk-hostile",
        }
        settings = settings_for(env)
        Storage(settings).ensure_bucket()
        stack = LocalStack(tmp_path_factory.mktemp("hostile-workers"), env=env)
        try:
            worker = stack.start_workers(name="hostile", concurrency=WORKER_THREADS)
            rig = Rig(server, canary, settings, worker, Producer(settings))
            for _ in range(WORKER_THREADS):  # a warm pool: its threads start on first use
                assert rig.run("plain").status.value == "succeeded"
            rig.idle_threads = thread_count(worker.pid)
            yield rig
        finally:
            stack.stop()
    report = "\n".join(rig.figures) + "\n"
    artifacts = Path(__file__).resolve().parents[2] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "hostile-cases.txt").write_text(report)
    print("\n" + report)


def failed_with(job: Job, code: str, *words: str) -> None:
    assert job.status.value == "failed", job
    assert job.error is not None and job.error.code == code, job.error
    for word in words:
        assert word in job.error.message, job.error.message


def test_an_output_redirected_to_another_loopback_port_is_refused_before_connecting(rig: Rig) -> None:
    case = rig.case("(a) output URL 302 -> canary on another loopback port")
    job = rig.run("redirect-to-canary")
    failed_with(job, "download_failed", "refused by the address guard", "blocked: host '127.0.0.1' is a loopback")
    assert rig.canary.connections == 0
    assert len(case.requests("/out/redirect/")) == 1  # the first hop only; a permanent refusal is not retried
    case.report(job, "/out/redirect/")


def test_at_most_five_redirects_are_followed(rig: Rig) -> None:
    case = rig.case("(a) output URL redirect chain of 6 hops")
    job = rig.run("redirect-chain-6")
    failed_with(job, "download_failed", "redirected more than 5 times")
    assert [s.path for s in case.requests("/out/chain/")] == [f"/out/chain/{n}/0.mp4" for n in range(6, 0, -1)]
    case.report(job, "/out/chain/")
    ok = rig.run("redirect-chain-5")
    assert ok.status.value == "succeeded", ok.error
    assert [output.size for output in ok.outputs] == [1000]


@pytest.mark.parametrize("where", ["submit", "poll"])
def test_a_vendor_api_redirect_is_a_provider_error_and_is_not_followed(rig: Rig, where: str) -> None:
    case = rig.case(f"(b) vendor API answers 302 (to the canary) on {where}")
    job = rig.run(f"{where}-redirect")
    failed_with(job, "provider_error", "HTTP 302: the provider redirected to 127.0.0.1")
    assert rig.canary.connections == 0
    calls = [s.method for s in case.requests("/sandbox/v1/jobs")]
    assert calls == (["POST"] if where == "submit" else ["POST", "GET"])  # one submit, never resent
    case.report(job, "/sandbox/v1/jobs")


def test_a_vendor_trickling_its_poll_answer_is_cut_at_the_call_deadline(rig: Rig) -> None:
    case = rig.case(f"(e) vendor poll answer trickled one byte every {TRICKLE_PAUSE}s")
    job = rig.run("poll-trickle")
    failed_with(job, "provider_error", "no answer from 127.0.0.1", "ReadTimeout", "gave up after 1 retries")
    polls = [s for s in case.requests("/sandbox/v1/jobs") if s.method == "GET"]
    assert len(polls) == 2  # the poll and its one retry
    assert all(s.hung_up and s.seconds < VENDOR_DEADLINE + 1.5 for s in polls), [s.seconds for s in polls]
    case.report(job, "/sandbox/v1/jobs")


def test_an_endless_output_is_cut_at_the_size_bound(rig: Rig) -> None:
    case = rig.case("(c) endless output (no Content-Length)")
    job = rig.run("endless")
    failed_with(job, "download_failed", f"larger than the {MAX_OUTPUT_BYTES}-byte bound", "GENQUEUE_MAX_OUTPUT_BYTES")
    [served] = case.requests("/out/endless/")
    assert served.hung_up and served.body_bytes >= MAX_OUTPUT_BYTES
    case.report(job, "/out/endless/")


def test_a_too_large_content_length_is_refused_before_reading(rig: Rig) -> None:
    case = rig.case("(c) Content-Length 10^12")
    job = rig.run("huge-length")
    failed_with(job, "download_failed", "announces 1000000000000 bytes", "not read")
    [served] = case.requests("/out/huge/")
    assert served.hung_up and served.body_bytes == 0  # the worker hung up before the server sent a body byte
    case.report(job, "/out/huge/")


@pytest.mark.parametrize("what", ["trickle", "trickle-head"])
def test_a_trickling_output_is_cut_at_the_wall_clock_bound(rig: Rig, what: str) -> None:
    part = "body" if what == "trickle" else "status line and headers"
    case = rig.case(f"(d) output trickling its {part}, one byte every {TRICKLE_PAUSE}s")
    job = rig.run(what)
    failed_with(job, "download_failed", f"took longer than the {MAX_COPY_SECONDS:g}s bound", "MAX_COPY_SECONDS")
    [served] = case.requests(f"/out/{what}/")
    assert served.hung_up
    assert rig.settings.provider_timeout_seconds > TRICKLE_PAUSE  # no read ever timed out: the bound ended it
    assert served.seconds < MAX_COPY_SECONDS + 3
    case.report(job, f"/out/{what}/")


def test_a_trickling_webhook_receiver_is_cut_at_the_attempt_deadline(rig: Rig) -> None:
    case = rig.case(f"(e) webhook receiver trickling its answer one byte every {TRICKLE_PAUSE}s")
    job = rig.run("plain", webhook_url=f"{rig.server.base_url}/hook/trickle")
    assert job.status.value == "succeeded", job.error
    deadline = time.monotonic() + 30
    while (current := rig.producer.get(job.id)).webhook is None or not current.webhook.gave_up:
        assert time.monotonic() < deadline, current.webhook
        time.sleep(0.2)
    assert current.webhook is not None
    attempts = current.webhook.attempts
    assert len(attempts) == 2 and all("deadline" in (a.error or "") for a in attempts), attempts
    served = case.requests("/hook/trickle")
    assert len(served) == 2 and all(s.hung_up for s in served)
    assert all(s.seconds < WEBHOOK_DEADLINE + 2 for s in served), [s.seconds for s in served]
    per_attempt = ", ".join(f"{s.seconds:.2f}s" for s in served)
    case.report(current, "/hook/trickle", f"\n    each attempt held open: {per_attempt}; recorded: {attempts[0].error}")


def test_more_outputs_than_the_cap_fail_the_job_before_any_copy(rig: Rig) -> None:
    case = rig.case("(f) 17 output URLs, cap 16")
    job = rig.run("too-many-outputs")
    failed_with(job, "download_failed", "gave 17 output URLs, over the 16-output bound", "MAX_OUTPUTS_PER_JOB")
    assert case.requests("/out/small/") == []
    case.report(job, "/out/small/")


def test_an_html_output_is_stored_as_octet_stream(rig: Rig) -> None:
    job = rig.run("html-page")
    assert job.status.value == "succeeded", job.error
    [output] = job.outputs
    assert output.content_type == "application/octet-stream" and output.key.endswith("/0.bin")


def test_the_producer_refuses_a_webhook_outside_the_allowlist(rig: Rig) -> None:
    with pytest.raises(InvalidRequest, match="is a loopback address; refused"):
        rig.producer.submit("hostile", "sandbox-video", "plain", webhook_url=rig.canary.url("/hook"))
    assert rig.canary.connections == 0
