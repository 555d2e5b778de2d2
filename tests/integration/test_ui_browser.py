"""`/ui` in a real browser: Playwright driving Debian's chromium against a real `genqueue api`, real workers and
the sandbox. A job is followed to succeeded on its page without a reload (the time from the store's write to the
page showing it is printed), a running job is canceled from its page, a held provider is resumed from the
providers page, a batch's bar advances to complete without a reload and its failure is retried from its page, a
dead-lettered webhook is redelivered, and a quarantined record is listed. Screenshots of each page go to
test-artifacts/ui/."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.local.processes import ServerProcess
from infra.local.stack import LocalStack
from infra.local.webhook_receiver import WebhookReceiver
from producer.api import Producer
from producer.batch import BatchOptions, BatchProducer
from producer.batch_file import parse_batch_text
from shared.constants import JOB_EVENTS_CHANNEL, JOB_KEY, UI_LOGIN_FAILURES_KEY
from shared.models import JobStatus, utcnow
from shared.settings import Settings
from shared.store import store_client

pytestmark = pytest.mark.integration

OPERATOR_KEY = "operator-key-for-the-browser-tests"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
#: the sandbox's delay the other tests expect (tests/integration/conftest.py starts it so)
USUAL_DELAY = 0.5


def chromium_path() -> str:
    """Debian's chromium (Playwright cannot download a browser here); a failure in CI, a skip elsewhere."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    message = "chromium is not installed (infra/local/ensure-system-deps.sh --test installs it with apt)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def ui_url(pipeline_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `genqueue api` process with an operator key for `/ui`."""
    stack = LocalStack(
        tmp_path_factory.mktemp("ui-api"), env={**pipeline_env, "GENQUEUE_UI_OPERATOR_KEY": OPERATOR_KEY}
    )
    url = stack.start_api()
    yield url
    stack.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, ui_url: str, settings: Settings) -> Iterator[Any]:
    """A fresh browser context, logged in as the operator from the keyboard (after one wrong key, whose count
    against this address's failed logins is then wiped, so that the tests do not add up to the limit)."""
    context = browser.new_context(base_url=ui_url, viewport={"width": 1100, "height": 900})
    opened = context.new_page()
    opened.goto("/ui/jobs")
    assert opened.url.endswith("/ui/login")
    opened.keyboard.type("not the key")
    opened.keyboard.press("Enter")
    assert opened.get_by_role("alert").inner_text() == "That key is wrong or was revoked."
    store_client(settings).delete(UI_LOGIN_FAILURES_KEY.format(address="127.0.0.1"))
    opened.get_by_label("Operator key or API key").fill(OPERATOR_KEY)
    opened.screenshot(path=str(ARTIFACTS / "login.png"))
    opened.keyboard.press("Enter")
    opened.wait_for_url("**/ui/jobs")
    yield opened
    context.close()


class StoreWrites:
    """When each status of one job was committed to the store, as its channel told a subscriber (unix seconds)."""

    def __init__(self, settings: Settings, job_id: str) -> None:
        self.seen: dict[str, float] = {}
        self._pubsub = store_client(settings).pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._pubsub.subscribe(JOB_EVENTS_CHANNEL.format(job_id=job_id))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if message is not None:
                status = message["data"].decode().split(" ")[1]
                self.seen.setdefault(status, time.time())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()


def set_delay(sandbox_url: str, seconds: float) -> None:
    httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": seconds}).raise_for_status()


#: records in the page when its status first reads `succeeded` (the page's clock: the same machine's)
WATCH_STATUS = """() => {
  window.__loadedOnce = true;
  const live = document.getElementById("live");
  const check = () => {
    const state = live.querySelector("[data-status]");
    if (state && state.dataset.status === "succeeded" && !window.__succeededAt) window.__succeededAt = Date.now();
  };
  new MutationObserver(check).observe(live, {childList: true, subtree: true});
  check();
}"""


def test_a_job_reaches_succeeded_on_its_page_without_a_reload(
    page: Any, workers: ServerProcess, settings: Settings, sandbox_url: str
) -> None:
    set_delay(sandbox_url, 3.0)
    try:
        job = Producer(settings).submit("sandbox", "sandbox-image", "a <b>flower</b> opening", metadata={"night": 1})
        writes = StoreWrites(settings, job.id)
        try:
            page.goto(f"/ui/jobs/{job.id}")
            page.evaluate(WATCH_STATUS)
            shown = page.locator("#job-status").inner_text()
            assert shown in ("queued", "submitted", "running", "finalizing"), shown
            assert page.locator("p.prompt").inner_text() == "a <b>flower</b> opening"
            page.screenshot(path=str(ARTIFACTS / "job-running.png"), full_page=True)
            page.wait_for_selector('#live [data-status="succeeded"]', timeout=60_000)
            shown_at = page.evaluate("window.__succeededAt") / 1000.0
            assert page.evaluate("window.__loadedOnce === true")  # the same document: no reload
        finally:
            writes.close()
    finally:
        set_delay(sandbox_url, USUAL_DELAY)
    written_at = writes.seen["succeeded"]
    latency = shown_at - written_at
    line = f"/ui: succeeded written to the store -> shown on the job page: {latency * 1000:.0f} ms"
    print(f"\n{line}")
    (ARTIFACTS / "change-to-page.txt").write_text(line + "\n")
    assert -0.05 < latency < 2.0
    assert Producer(settings).get(job.id).status is JobStatus.SUCCEEDED
    output = Producer(settings).get(job.id).outputs[0]
    preview = page.locator("ul.outputs img")
    assert preview.count() == 1 and preview.get_attribute("src") == output.url
    page.wait_for_function("() => document.querySelector('ul.outputs img').complete")
    fetched = page.request.get(page.get_by_role("link", name=output.key).get_attribute("href"))
    assert fetched.status == 200 and fetched.headers["content-type"] == "image/png"
    assert page.get_by_role("button", name="Cancel job").count() == 0
    page.screenshot(path=str(ARTIFACTS / "job-succeeded.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(ARTIFACTS / "job-succeeded-phone.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
    page.set_viewport_size({"width": 1100, "height": 900})

    page.goto("/ui/jobs")
    page.get_by_label("Status").select_option("succeeded")
    page.get_by_label("Provider").select_option("sandbox")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**/ui/jobs?status=succeeded&provider=sandbox")
    assert page.get_by_role("link", name=job.id).count() == 1
    assert set(page.locator("table.jobs .status").all_inner_texts()) == {"succeeded"}
    page.screenshot(path=str(ARTIFACTS / "jobs.png"), full_page=True)


def test_a_running_job_is_canceled_from_its_page(
    page: Any, workers: ServerProcess, settings: Settings, sandbox_url: str
) -> None:
    set_delay(sandbox_url, 30.0)
    try:
        producer = Producer(settings)
        job = producer.submit("sandbox", "sandbox-video", "a slow clip")
        page.goto(f"/ui/jobs/{job.id}")
        page.wait_for_selector('#live [data-status="submitted"], #live [data-status="running"]', timeout=30_000)
        assert producer.get(job.id).status in (JobStatus.SUBMITTED, JobStatus.RUNNING)
        listing = page.context.new_page()
        listing.goto("/ui/jobs")
        row = listing.locator(f"#row-{job.id}")
        assert row.get_attribute("data-status") in ("submitted", "running")
        listing.evaluate("window.__loadedOnce = true")
        cancel = page.get_by_role("button", name="Cancel job")
        cancel.focus()
        page.keyboard.press("Enter")
        page.wait_for_selector('#live [data-status="canceled"]', timeout=10_000)
        listing.wait_for_selector(f'#row-{job.id}[data-status="canceled"]', timeout=10_000)
        assert listing.evaluate("window.__loadedOnce === true")  # the list's row moved without a reload
        listing.close()
    finally:
        set_delay(sandbox_url, USUAL_DELAY)
    assert producer.get(job.id).status is JobStatus.CANCELED
    assert page.get_by_role("button", name="Cancel job").count() == 0
    page.screenshot(path=str(ARTIFACTS / "job-canceled.png"), full_page=True)


def test_a_held_provider_is_resumed_from_the_providers_page(
    page: Any, workers: ServerProcess, settings: Settings, sandbox_url: str
) -> None:
    producer = Producer(settings)
    httpx.post(f"{sandbox_url}/_control/balance", json={"dialect": "veo3api", "balance": 100})
    try:
        refused = producer.wait(producer.submit("veo3api", "veo3_fast", "out of credits").id, timeout=60)
        assert refused.error is not None and refused.error.code == "insufficient_credits"
        page.goto("/ui/providers")
        row = page.locator("#provider-veo3api")
        assert row.get_attribute("data-held") == "true"
        assert "held" in row.inner_text()
        page.screenshot(path=str(ARTIFACTS / "providers-held.png"), full_page=True)
    finally:
        httpx.post(f"{sandbox_url}/_control/balance", json={"dialect": "veo3api", "balance": 1_000_000_000})
    page.get_by_role("button", name="Resume veo3api").click()
    page.wait_for_url("**/ui/providers?resumed=veo3api")
    assert page.get_by_role("status").inner_text() == "veo3api resumed."
    assert page.locator("#provider-veo3api").get_attribute("data-held") == "false"
    status = {row.provider: row for row in producer.provider_status()}["veo3api"]
    assert status.credit_pause is None
    resumed = producer.wait(producer.submit("veo3api", "veo3_fast", "after the resume").id, timeout=60)
    assert resumed.status is JobStatus.SUCCEEDED
    page.screenshot(path=str(ARTIFACTS / "providers-resumed.png"), full_page=True)
    page.goto("/ui/jobs")
    assert page.get_by_role("link", name=resumed.id).count() == 1
    page.screenshot(path=str(ARTIFACTS / "jobs-all.png"), full_page=True)


#: records each value the batch page's bar shows, and notes that the document was never reloaded
WATCH_BAR = """() => {
  window.__loadedOnce = true;
  window.__barValues = [];
  const live = document.getElementById("live");
  const note = () => {
    const bar = document.getElementById("batch-progress");
    const value = bar ? Number(bar.getAttribute("value")) : -1;
    const seen = window.__barValues;
    if (!seen.length || seen[seen.length - 1] !== value) seen.push(value);
  };
  new MutationObserver(note).observe(live, {childList: true, subtree: true});
  note();
}"""
#: jobs of the batch the browser follows: `throttled` submits 2 a second, so the bar takes a few seconds
BATCH_JOBS = 8


def test_a_batchs_bar_advances_to_complete_and_its_failure_is_retried_from_its_page(
    page: Any, workers: ServerProcess, settings: Settings, sandbox_url: str
) -> None:
    name = f"ui-night-{uuid.uuid4().hex[:6]}"
    prompts = [f"{name} picture {n}" for n in range(BATCH_JOBS)]
    failure = {"count": 1, "dialect": "sandbox", "prompt": prompts[-1]}  # by prompt: only this batch's last line
    httpx.post(f"{sandbox_url}/_control/fail_next", json=failure).raise_for_status()
    line = {"provider": "throttled", "model": "sandbox-image", "metadata": {"night": name}}
    text = "".join(json.dumps({**line, "prompt": prompt}) + "\n" for prompt in prompts)
    batches = BatchProducer(Producer(settings))
    options = BatchOptions(name=name)  # no budget: `throttled` has no estimate to bound (the unit tests show one)
    plan = batches.plan_lines(parse_batch_text(text, as_csv=False, source="the test"), options)
    assert not plan.refused, plan.refused
    batch = batches.enqueue(plan, options).batch

    page.goto(f"/ui/batches/{batch.id}")
    page.evaluate(WATCH_BAR)
    assert page.locator("h1").inner_text() == name
    page.wait_for_function("() => window.__barValues.some(value => value >= 2)", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "batch-running.png"), full_page=True)
    page.wait_for_selector('#live [data-completed="true"]', timeout=90_000)
    assert page.evaluate("window.__loadedOnce === true")  # the same document: no reload
    values = page.evaluate("window.__barValues")
    assert values == sorted(values) and values[-1] == BATCH_JOBS, values
    assert len(set(values)) >= 3, f"the bar jumped rather than advanced: {values}"
    assert page.locator("#batch-progress-text").inner_text() == f"{BATCH_JOBS} of {BATCH_JOBS} ended (100 %)"
    assert page.locator("#count-succeeded td").inner_text() == str(BATCH_JOBS - 1)
    assert page.locator("#count-failed td").inner_text() == "1"
    spent = batches.summary(batch)["cost"]["credits"]  # what the sandbox charged, the failed job's too
    assert spent >= BATCH_JOBS - 1 and page.locator("#batch-spent").inner_text() == f"{spent:g} credits"
    page.screenshot(path=str(ARTIFACTS / "batch-completed.png"), full_page=True)

    page.get_by_role("button", name="Retry failed").click()
    page.wait_for_url(f"**/ui/batches/{batch.id}?retried=1")
    assert page.get_by_role("status").inner_text() == "1 failed job enqueued again."
    page.evaluate("window.__loadedOnce = true")
    page.wait_for_selector('#live [data-completed="true"]', timeout=90_000)
    assert page.evaluate("window.__loadedOnce === true")
    assert page.locator("#batch-progress-text").inner_text() == f"{BATCH_JOBS + 1} of {BATCH_JOBS + 1} ended (100 %)"
    assert page.locator("#count-succeeded td").inner_text() == str(BATCH_JOBS)
    page.screenshot(path=str(ARTIFACTS / "batch-retried.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(ARTIFACTS / "batch-phone.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.set_viewport_size({"width": 1100, "height": 900})

    page.get_by_role("link", name="The batch's jobs").click()
    page.wait_for_url(f"**/ui/jobs?batch={batch.id}")
    assert page.locator("table.jobs tbody tr").count() == BATCH_JOBS + 1
    page.screenshot(path=str(ARTIFACTS / "jobs-of-batch.png"), full_page=True)
    page.get_by_label("Metadata").fill(f"night={name}")
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(lambda url: "metadata=" in url and "provider=" not in url)  # empty filters left out
    assert page.locator("table.jobs tbody tr").count() == 1
    assert page.locator("table.jobs .status").all_inner_texts() == ["failed"]

    later = BatchOptions(name=f"{name}-later", not_before=utcnow() + timedelta(seconds=3))
    waiting = batches.enqueue(
        batches.plan_lines(parse_batch_text(text, as_csv=False, source="the test")[:2], later), later
    ).batch
    page.goto("/ui/batches")
    row = page.locator(f"#batch-{batch.id}")
    assert row.get_attribute("data-completed") == "true" and f"{BATCH_JOBS + 1}/{BATCH_JOBS + 1}" in row.inner_text()
    assert page.locator(f"#batch-{waiting.id}").get_attribute("data-completed") == "false"
    page.screenshot(path=str(ARTIFACTS / "batches-running.png"), full_page=True)
    page.evaluate("window.__loadedOnce = true")
    page.wait_for_selector(f'#batch-{waiting.id}[data-completed="true"]', timeout=60_000)
    assert page.evaluate("window.__loadedOnce === true")  # the list's row moved without a reload
    assert "2/2" in page.locator(f"#batch-{waiting.id}").inner_text()
    page.screenshot(path=str(ARTIFACTS / "batches.png"), full_page=True)


def test_a_dead_lettered_webhook_is_redelivered_and_quarantine_is_listed(
    page: Any, workers: ServerProcess, settings: Settings, receiver: WebhookReceiver
) -> None:
    producer = Producer(settings)
    attempts = 1 + len(settings.webhook_retry_delays)
    receiver.answer_next(500, count=attempts)  # every attempt of the schedule fails: the event is dead-lettered
    job = producer.submit("sandbox", "sandbox-image", "a hook that fails", webhook_url=receiver.url)
    deadline = time.monotonic() + 60
    while job.id not in {dead.id for dead in producer.dead_letters()}:
        assert time.monotonic() < deadline, "the webhook was never given up on"
        time.sleep(0.2)
    page.goto("/ui/webhooks/dead")
    row = page.locator(f"#dead-{job.id}")
    assert "500" in row.inner_text()
    page.screenshot(path=str(ARTIFACTS / "dead-letters.png"), full_page=True)
    page.get_by_role("button", name=f"Redeliver {job.id}").click()
    page.wait_for_url(f"**/ui/webhooks/dead?redelivered={job.id}")
    assert page.get_by_role("status").inner_text() == f"{job.id}: its event is being sent again."
    event = receiver.wait_for(job.id, timeout=30)
    assert event.verified and event.body["type"] == "job.succeeded"
    page.goto(f"/ui/jobs/{job.id}")
    page.wait_for_function("() => document.querySelector('#live').innerText.includes('delivered')", timeout=10_000)
    assert page.get_by_role("button", name="Redeliver webhook").count() == 0

    bad_id = f"job_unreadable_{uuid.uuid4().hex[:8]}"
    client = producer.store.redis
    client.hset(JOB_KEY.format(job_id=bad_id), mapping={"data": "{not json", "version": "1"})
    try:
        assert producer.store.get_many([bad_id]) == [None]  # the read sets it aside
        page.goto("/ui/quarantine")
        assert bad_id in page.locator("table.quarantine").inner_text()
        page.screenshot(path=str(ARTIFACTS / "quarantine.png"), full_page=True)
    finally:
        client.delete(JOB_KEY.format(job_id=bad_id))
        producer.store.quarantine.remove("job", bad_id)
