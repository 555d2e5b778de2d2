"""`/ui` batches, webhook dead letters and quarantine in process, on fakeredis: tenant isolation, progress and ETA,
Retry failed through the API's retry path, the jobs list's batch, metadata and time filters, Redeliver, the
operator-only quarantine page, refusals and escaping."""

from __future__ import annotations

import functools
import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from producer.batch import BatchOptions, BatchProducer
from producer.batch_file import parse_batch_text
from producer.http_api.ui_batches import progress_of
from shared.batch import Batch
from shared.models import Budget, Job, JobError, JobStatus, WebhookAttempt, WebhookState, utcnow
from shared.webhooks.dead_letters import DeadLetters
from tests.unit.test_http_ui import OPERATOR_KEY, T0, Rig, csrf, job_ids, login, read_events


@pytest.fixture
def rig() -> Rig:
    return Rig(OPERATOR_KEY)


def make_batch(rig: Rig, name: str, tenant: str | None, lines: int = 3, **options: Any) -> Batch:
    text = "".join(
        f'{{"provider": "sandbox", "model": "sandbox-image", "prompt": "{name} {n}", "metadata": {{"n": {n}}}}}\n'
        for n in range(lines)
    )
    batches = BatchProducer(rig.producer)
    chosen = BatchOptions(name=name, tenant=tenant, **options)
    plan = batches.plan_lines(parse_batch_text(text, as_csv=False, source="test"), chosen)
    assert not plan.refused, plan.refused
    return batches.enqueue(plan, chosen).batch


def end_jobs(rig: Rig, batch: Batch, *statuses: JobStatus) -> list[str]:
    """End the batch's first jobs with `statuses`, in line order; their ids."""
    ids = [job_id for _, job_id in BatchProducer(rig.producer).batches.line_jobs(batch.id)]
    for job_id, status in zip(ids, statuses, strict=False):
        error = JobError(code="provider_error", message="vendor said no") if status is JobStatus.FAILED else None
        rig.store.update(job_id, functools.partial(ended, status=status, error=error))
    return ids


def ended(job: Job, status: JobStatus, error: JobError | None) -> Job:
    return job.model_copy(update={"status": status, "error": error})


def batch_links(page: str) -> list[str]:
    return re.findall(r'<a href="/ui/batches/(batch_[0-9a-f]+)">', page)


def test_a_tenant_sees_only_its_own_batches_and_the_operator_every_one(rig: Rig) -> None:
    acme = rig.app.state.keys.create("acme").key
    rig.app.state.keys.create("globex")
    mine = make_batch(rig, "night", "acme")
    theirs = make_batch(rig, "night", "globex")
    operators = make_batch(rig, "night", None)
    with TestClient(rig.app) as tenant:
        login(tenant, acme)
        assert batch_links(tenant.get("/ui/batches").text) == [mine.id]
        page = tenant.get("/ui/batches/night")
        assert page.status_code == 200 and mine.id in page.text and theirs.id not in page.text
        assert "API key</dt>" not in page.text  # a tenant is not shown whose a batch is
        token = csrf(page.text)
        for other in (theirs.id, operators.id, "nosuch"):
            assert tenant.get(f"/ui/batches/{other}").status_code == 404
            assert tenant.get(f"/ui/batches/{other}/live").status_code == 404
            assert tenant.get("/ui/jobs", params={"batch": other}).status_code == 404
            assert tenant.post(f"/ui/batches/{other}/retry", data={"csrf": token}).status_code == 404
        listed = job_ids(tenant.get("/ui/jobs", params={"batch": "night"}).text)
        assert len(listed) == 3 and all(rig.producer.get(job_id).batch_id == mine.id for job_id in listed)
    with TestClient(rig.app) as operator:
        login(operator, OPERATOR_KEY)
        assert sorted(batch_links(operator.get("/ui/batches").text)) == sorted([mine.id, theirs.id, operators.id])
        assert operators.id in operator.get("/ui/batches/night").text  # by name: the operator's own
        page = operator.get(f"/ui/batches/{theirs.id}")  # by id: any batch
        assert page.status_code == 200 and "<dd>globex</dd>" in page.text


def test_the_batch_page_shows_progress_counts_held_and_spend_against_budget(rig: Rig) -> None:
    batch = make_batch(rig, "spend", None, lines=4, budget=None)
    end_jobs(rig, batch, JobStatus.SUCCEEDED, JobStatus.SUCCEEDED, JobStatus.FAILED)
    BatchProducer(rig.producer).batches.add_spent(batch.id, 2.0, 0.0)
    with TestClient(rig.app) as client:
        login(client, OPERATOR_KEY)
        page = client.get(f"/ui/batches/{batch.id}").text
        assert '<progress id="batch-progress" max="4" value="3"' in page
        assert "3 of 4 ended (75 %)" in page
        counts = dict(re.findall(r'<tr id="count-(\w+)">.*?<td>(\d+)', page, re.S))
        assert counts == {"queued": "1", "succeeded": "2", "failed": "1", "held": "4"}
        assert '<dd id="batch-spent">2 credits</dd>' in page and "<dt>Budget</dt><dd>none</dd>" in page
        assert f'href="/ui/jobs?batch={batch.id}&amp;status=failed"' in page
        assert "ETA about" in page and f'data-events="/ui/batches/{batch.id}/events"' in page
        live = client.get(f"/ui/batches/{batch.id}/live")
        assert live.status_code == 200 and live.text.lstrip().startswith('<section class="live" data-completed="false"')
        assert "<html" not in live.text and live.headers["cache-control"] == "no-store"
        listing = client.get("/ui/batches").text
        assert re.search(rf'<tr id="batch-{batch.id}" data-completed="false">.*?3/4', listing, re.S)
        assert 'data-poll="/ui/batches-live?cursor=" data-poll-ms="5000"' in listing
        table = client.get("/ui/batches-live?cursor=").text
        assert table.lstrip().startswith('<div class="scroll">') and "<html" not in table
        assert re.search(rf'<tr id="batch-{batch.id}" data-completed="false">.*?3/4', table, re.S)


def test_a_budget_shows_what_is_committed_of_it(rig: Rig) -> None:
    batch = make_batch(rig, "bounded", None, lines=2, budget=Budget(currency="credits", amount=10))
    BatchProducer(rig.producer).batches.reserve(batch.id, "job_x", 4.0, 10.0)
    with TestClient(rig.app) as client:
        login(client, OPERATOR_KEY)
        page = client.get(f"/ui/batches/{batch.id}").text
        assert "<dt>Budget</dt><dd>10 credits</dd>" in page
        assert '<progress max="10.0" value="4.0" aria-label="budget committed">' in page
        assert "4 credits (40 %)" in page


def test_the_eta_is_the_pace_so_far_from_when_the_batch_could_start() -> None:
    now = utcnow()
    batch = Batch(id="batch_1", name="b", created_at=now - timedelta(minutes=10), total=10)
    summary = {"ended": 5, "total": 10, "completed_at": None}
    progress = progress_of(batch, summary, now)
    assert progress.percent == 50.0 and progress.per_minute == pytest.approx(0.5)
    assert progress.eta_seconds == pytest.approx(600) and progress.eta_text is not None
    later = batch.model_copy(update={"not_before": now - timedelta(minutes=5)})
    assert progress_of(later, summary, now).eta_seconds == pytest.approx(300)
    waiting = batch.model_copy(update={"not_before": now + timedelta(minutes=5)})
    assert progress_of(waiting, summary, now).eta_seconds is None  # it cannot have started
    assert progress_of(batch, {**summary, "ended": 0}, now).eta_seconds is None
    done = progress_of(batch, {"ended": 10, "total": 10, "completed_at": now.isoformat()}, now)
    assert done.eta_seconds is None and done.percent == 100.0
    assert progress_of(batch, {"ended": 0, "total": 0, "completed_at": None}, now).percent == 0.0


def test_a_batch_before_its_not_before_reads_waiting_with_no_eta(rig: Rig) -> None:
    batch = make_batch(rig, "later", None, lines=2, not_before=utcnow() + timedelta(hours=1))
    with TestClient(rig.app) as client:
        login(client, OPERATOR_KEY)
        page = client.get(f"/ui/batches/{batch.id}").text
        assert '<span id="batch-state" class="status">waiting</span>' in page
        assert "ETA not known yet" in page and "since its start at" in page


def test_retry_failed_takes_the_apis_path_and_retries_each_failure_once(rig: Rig) -> None:
    acme = rig.app.state.keys.create("acme").key
    batch = make_batch(rig, "night", "acme", lines=2)
    failed_id = end_jobs(rig, batch, JobStatus.FAILED, JobStatus.SUCCEEDED)[0]
    with TestClient(rig.app) as client:
        login(client, acme)
        page = client.get("/ui/batches/night").text
        assert "Retry failed</button>" in page
        assert client.post("/ui/batches/night/retry", data={"csrf": "stale"}).status_code == 403
        assert client.post("/ui/batches/night/retry", content=b"{}").status_code == 415
        assert len(BatchProducer(rig.producer).batches.line_jobs(batch.id)) == 2
        answer = client.post("/ui/batches/night/retry", data={"csrf": csrf(page)}, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == f"/ui/batches/{batch.id}?retried=1"
        lines = BatchProducer(rig.producer).batches.line_jobs(batch.id)
        assert len(lines) == 3
        retry = rig.producer.get(lines[-1][1])
        assert retry.metadata["genqueue_retry_of"] == failed_id and retry.tenant == "acme"
        shown = client.get(answer.headers["location"]).text
        assert "1 failed job enqueued again." in shown and "2 of 3 ended" in shown
        again = client.post("/ui/batches/night/retry", data={"csrf": csrf(page)})
        assert again.status_code == 200 and "No failed job left to retry." in again.text


def test_the_jobs_list_filters_by_batch_metadata_and_creation_time(rig: Rig) -> None:
    for n in range(6):
        rig.job(f"job_{n}", None, n * 60, metadata={"night": "a" if n % 2 else "b"})
    batch = make_batch(rig, "night", None, lines=2)
    with TestClient(rig.app) as client:
        login(client, OPERATOR_KEY)
        assert len(job_ids(client.get("/ui/jobs", params={"batch": batch.id}).text)) == 2
        assert job_ids(client.get("/ui/jobs", params={"metadata": "night=a"}).text) == ["job_5", "job_3", "job_1"]
        after = (T0 + timedelta(seconds=120)).strftime("%Y-%m-%dT%H:%M:%S")
        before = (T0 + timedelta(seconds=240)).strftime("%Y-%m-%dT%H:%M:%S")
        found = client.get("/ui/jobs", params={"created_after": after, "created_before": before}).text
        assert job_ids(found) == ["job_3", "job_2"]
        assert f'value="{after}"' in found
        for bad in ({"metadata": "novalue"}, {"metadata": "=x"}, {"created_after": "yesterday"}):
            assert client.get("/ui/jobs", params=bad).status_code == 422
        assert client.get("/ui/jobs", params={"batch": "nosuch"}).status_code == 404


def test_a_tenants_time_filter_walks_its_index_from_the_newest_admitted(rig: Rig) -> None:
    acme = rig.app.state.keys.create("acme").key
    for n in range(30):
        rig.job(f"job_{n:02d}", "acme", n * 60, metadata={"even": str(n % 2 == 0).lower()})
    after = (T0 + timedelta(minutes=3)).isoformat()
    before = (T0 + timedelta(minutes=8)).isoformat()
    with TestClient(rig.app) as client:
        login(client, acme)
        found = client.get("/ui/jobs", params={"created_after": after, "created_before": before}).text
        assert job_ids(found) == [f"job_{n:02d}" for n in range(7, 2, -1)] and "Older</a>" not in found
        evens = client.get("/ui/jobs", params={"metadata": "even=true", "created_before": before}).text
        assert job_ids(evens) == ["job_06", "job_04", "job_02", "job_00"]


def test_batch_names_and_filter_values_are_escaped(rig: Rig) -> None:
    evil = "<script>alert(1)</script>"
    batch = make_batch(rig, evil, None, lines=1)
    with TestClient(rig.app) as client:
        login(client, OPERATOR_KEY)
        for page in (client.get("/ui/batches").text, client.get(f"/ui/batches/{batch.id}").text):
            assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        listed = client.get("/ui/jobs", params={"metadata": f'x="><b>{evil}'}).text
        assert "<script>alert" not in listed and '"><b>' not in listed
        missing = client.get("/ui/batches/" + "%3Cb%3Enope")
        assert missing.status_code == 404 and "<b>nope" not in missing.text


def test_pages_of_this_slice_need_a_login(rig: Rig) -> None:
    with TestClient(rig.app) as client:
        pages = ("/ui/batches", "/ui/batches-live", "/ui/batches/night", "/ui/batches/night/live", "/ui/webhooks/dead")
        for path in pages:
            answer = client.get(path, follow_redirects=False)
            assert answer.status_code == 303 and answer.headers["location"] == "/ui/login", path
        assert client.get("/ui/quarantine", follow_redirects=False).status_code == 303


def dead_job(rig: Rig, job_id: str, tenant: str | None) -> None:
    webhook = WebhookState(
        event_id=f"msg_{job_id}",
        event_type="job.succeeded",
        timestamp=T0,
        attempts=[WebhookAttempt(at=T0, status_code=500, error="<b>server error</b>")],
        gave_up="retry schedule spent: last answer 500",
    )
    rig.job(job_id, tenant, webhook_url="https://hooks.example.com/h")
    rig.store.update(
        job_id, lambda job: job.model_copy(update={"status": JobStatus.SUCCEEDED, "webhook": webhook, "step": None})
    )
    DeadLetters(rig.redis).add(job_id)


def test_dead_letters_are_scoped_like_the_api_and_redeliver_takes_its_path(rig: Rig) -> None:
    acme = rig.app.state.keys.create("acme").key
    dead_job(rig, "job_acme", "acme")
    dead_job(rig, "job_globex", "globex")
    with TestClient(rig.app) as tenant:
        login(tenant, acme)
        page = tenant.get("/ui/webhooks/dead").text
        assert re.findall(r'<tr id="dead-(\w+)">', page) == ["job_acme"]
        assert "&lt;b&gt;server error&lt;/b&gt;" in page and "retry schedule spent" in page
        token = csrf(page)
        assert tenant.post("/ui/jobs/job_acme/webhook/redeliver", data={"csrf": "x"}).status_code == 403
        assert tenant.post("/ui/jobs/job_globex/webhook/redeliver", data={"csrf": token}).status_code == 404
        assert "job_globex" in DeadLetters(rig.redis).job_ids()
        answer = tenant.post("/ui/jobs/job_acme/webhook/redeliver", data={"csrf": token}, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/webhooks/dead?redelivered=job_acme"
        assert DeadLetters(rig.redis).job_ids() == ["job_globex"]
        job = rig.producer.get("job_acme")
        assert job.webhook is not None and job.webhook.gave_up is None and job.webhook.event_id == "msg_job_acme"
        assert job.step is not None and job.step.name == "deliver_webhook"
        shown = tenant.get(answer.headers["location"]).text
        assert "job_acme: its event is being sent again." in shown and "No dead letters." in shown
    with TestClient(rig.app) as operator:
        login(operator, OPERATOR_KEY)
        page = operator.get("/ui/webhooks/dead").text
        assert re.findall(r'<tr id="dead-(\w+)">', page) == ["job_globex"]
        job_page = operator.get("/ui/jobs/job_globex").text
        assert "Redeliver webhook</button>" in job_page and 'name="back" value="job"' in job_page
        back = operator.post(
            "/ui/jobs/job_globex/webhook/redeliver", data={"csrf": csrf(page), "back": "job"}, follow_redirects=False
        )
        assert back.headers["location"] == "/ui/jobs/job_globex"
        rig.job("job_no_hook", None)
        refused = operator.post("/ui/jobs/job_no_hook/webhook/redeliver", data={"csrf": csrf(page)})
        assert refused.status_code == 422 and "no webhook event to redeliver" in refused.text


def test_quarantined_records_are_for_the_operator_only(rig: Rig) -> None:
    acme = rig.app.state.keys.create("acme").key
    rig.store.quarantine.add("job", "job_bad", "data: <i>Invalid JSON</i>")
    rig.store.quarantine.add("batch", "batch_bad", "name: Field required")
    with TestClient(rig.app) as operator:
        login(operator, OPERATOR_KEY)
        page = operator.get("/ui/quarantine")
        assert page.status_code == 200 and '<a href="/ui/quarantine">Quarantine</a>' in page.text
        rows = re.findall(
            r"<tr><td>[^<]*</td><td>(\w+)</td><td><code>(\w+)</code></td><td>([^<]*)</td></tr>", page.text
        )
        assert rows == [
            ("job", "job_bad", "data: &lt;i&gt;Invalid JSON&lt;/i&gt;"),
            ("batch", "batch_bad", "name: Field required"),
        ]
    with TestClient(rig.app) as tenant:
        login(tenant, acme)
        assert 'href="/ui/quarantine"' not in tenant.get("/ui/jobs").text
        refused = tenant.get("/ui/quarantine")
        assert refused.status_code == 403 and "only the operator" in refused.text and "job_bad" not in refused.text


def test_the_batches_list_pages_newest_first(rig: Rig) -> None:
    made = [make_batch(rig, f"b{n:02d}", None, lines=1) for n in range(27)]
    with TestClient(rig.app) as client:
        login(client, OPERATOR_KEY)
        first = client.get("/ui/batches").text
        older = re.search(r'<a href="([^"]+)">Older</a>', first)
        assert older is not None
        second = client.get(older.group(1).replace("&amp;", "&")).text
        shown = batch_links(first) + batch_links(second)
        expected = [batch.id for batch in sorted(made, key=lambda b: (b.created_at, b.id), reverse=True)]
        assert len(batch_links(first)) == 25 and shown == expected and "Older</a>" not in second


def test_the_batch_page_stream_follows_its_jobs_and_ends_when_the_batch_completes(rig: Rig) -> None:
    batch = make_batch(rig, "streamed", None, lines=3)
    batches = BatchProducer(rig.producer).batches
    for client in rig.client():
        login(client, OPERATOR_KEY)
        with client.stream("GET", f"/ui/batches/{batch.id}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            [(name, first)] = read_events(lines, 1)
            assert name == "fragment" and "0 of 3 ended" in first and 'data-completed="false"' in first
            end_jobs(rig, batch, JobStatus.SUCCEEDED)  # a job's status change is told on the batch's channel
            [(_, second)] = read_events(lines, 1)
            assert "1 of 3 ended" in second
            end_jobs(rig, batch, JobStatus.SUCCEEDED, JobStatus.SUCCEEDED, JobStatus.FAILED)
            batches.update(batch.id, lambda current: current.model_copy(update={"completed_at": utcnow()}))
            rest = read_events(lines, 5)  # the batch record's write is told too; the stream ends after it
    assert rest and 'data-completed="true"' in rest[-1][1] and "3 of 3 ended" in rest[-1][1]
