"""`/ui` in process, on fakeredis: login and its refusals, sessions, tenant isolation, escaping, CSRF, filters and
paging, cancel and resume through the API's code paths, and the job page's event stream."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import fakeredis
import fakeredis.aioredis
import pytest
from fastapi.testclient import TestClient

from producer.api import Producer
from producer.http_api.app import create_app
from producer.http_api.ui_session import COOKIE, LOGIN_WINDOW_SECONDS, MAX_FAILED_LOGINS
from shared import counters, lifecycle
from shared.models import GenerationRequest, Job, JobError, JobStatus, Output, utcnow
from shared.protection.guard import ProviderGuard
from shared.settings import Settings
from shared.store import JobStore

OPERATOR_KEY = "op-secret-key-for-tests"
T0 = utcnow().replace(microsecond=0)


class Published:
    def __init__(self) -> None:
        self.tasks: list[str] = []

    def send_task(self, name: str, **kwargs: Any) -> None:
        self.tasks.append(name)


class Rig:
    def __init__(self, operator_key: str | None) -> None:
        self.server = fakeredis.FakeServer()
        self.redis = fakeredis.FakeRedis(server=self.server)
        self.settings = Settings(ui_operator_key=operator_key, allow_private_urls=True)
        self.store = JobStore(self.redis)
        self.producer = Producer(self.settings, store=self.store, celery=Published())  # type: ignore[arg-type]
        self.app = create_app(self.settings, self.producer)

    def job(self, job_id: str, tenant: str | None, seconds: float = 0, **fields: Any) -> Job:
        request = fields.pop("request", GenerationRequest(model="sandbox-image", prompt=f"prompt of {job_id}"))
        job = Job(
            id=job_id,
            provider=fields.pop("provider", "sandbox"),
            request=request,
            tenant=tenant,
            created_at=T0 + timedelta(seconds=seconds),
            deadline_at=T0 + timedelta(hours=1),
            **fields,
        )
        self.store.create(job)
        return job

    def client(self) -> Iterator[TestClient]:
        with TestClient(self.app, base_url="http://testserver") as client:
            self.app.state.subscriber = fakeredis.aioredis.FakeRedis(server=self.server)
            yield client


@pytest.fixture
def rig() -> Rig:
    return Rig(OPERATOR_KEY)


@pytest.fixture
def client(rig: Rig) -> Iterator[TestClient]:
    yield from rig.client()


def login(client: TestClient, key: str) -> Any:
    return client.post("/ui/login", data={"key": key}, follow_redirects=False)


def csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


def job_ids(page: str) -> list[str]:
    return re.findall(r'<a href="/ui/jobs/(job_[^"]+)">', page)


def test_pages_need_a_login_and_a_wrong_key_is_refused_in_one_line(client: TestClient) -> None:
    assert client.get("/ui", follow_redirects=False).headers["location"] == "/ui/jobs"
    for path in ("/ui/jobs", "/ui/jobs/job_x", "/ui/providers"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
    assert client.get("/ui/jobs/job_x/events", headers={"Accept": "text/event-stream"}).status_code == 401
    form = client.get("/ui/login")
    assert form.status_code == 200 and '<label for="key">' in form.text
    assert 'name="viewport"' in form.text
    refused = login(client, "not-the-key")
    assert refused.status_code == 401 and COOKIE not in refused.headers.get("set-cookie", "")
    assert re.findall(r'<p class="refused" role="alert">([^<]*)</p>', refused.text) == [
        "That key is wrong or was revoked."
    ]


def test_an_address_sending_too_many_wrong_keys_is_refused_until_its_window_ends(client: TestClient, rig: Rig) -> None:
    for _ in range(MAX_FAILED_LOGINS):
        assert login(client, "guess").status_code == 401
    refused = login(client, OPERATOR_KEY)  # even the right key waits: the guesser may be the operator's neighbour
    assert refused.status_code == 429 and 0 < int(refused.headers["retry-after"]) <= LOGIN_WINDOW_SECONDS
    assert "Too many wrong keys from this address; try again in" in refused.text
    rig.redis.delete(*rig.redis.keys("*ui:login-failures*"))  # as the window ended
    assert login(client, OPERATOR_KEY).status_code == 303


def test_the_operator_cookie_is_httponly_strict_and_holds_no_key(client: TestClient, rig: Rig) -> None:
    answer = login(client, OPERATOR_KEY)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/jobs"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert OPERATOR_KEY not in cookie
    assert all(OPERATOR_KEY.encode() not in (rig.redis.get(key) or b"") for key in rig.redis.keys("*ui:session*"))
    jobs = client.get("/ui/jobs")
    assert jobs.status_code == 200 and jobs.headers["content-security-policy"].startswith("default-src 'self'")


def test_the_operator_sees_every_job_and_a_tenant_only_its_own(rig: Rig) -> None:
    acme = rig.app.state.keys.create("acme").key
    rig.app.state.keys.create("globex")
    rig.job("job_acme", "acme", 1)
    rig.job("job_globex", "globex", 2)
    rig.job("job_operator", None, 3)
    with TestClient(rig.app) as operator:
        login(operator, OPERATOR_KEY)
        assert job_ids(operator.get("/ui/jobs").text) == ["job_operator", "job_globex", "job_acme"]
        assert operator.get("/ui/jobs/job_globex").status_code == 200
    with TestClient(rig.app) as tenant:
        assert login(tenant, acme).status_code == 303
        assert job_ids(tenant.get("/ui/jobs").text) == ["job_acme"]
        assert tenant.get("/ui/jobs/job_acme").status_code == 200
        for other in ("job_globex", "job_operator", "job_none"):
            page = tenant.get(f"/ui/jobs/{other}")
            assert page.status_code == 404 and f"no job &#39;{other}&#39;" in page.text
        assert tenant.get("/ui/jobs/job_globex/events").status_code == 404
        token = csrf(tenant.get("/ui/jobs").text)
        assert tenant.post("/ui/jobs/job_globex/cancel", data={"csrf": token}).status_code == 404
        assert rig.producer.get("job_globex").status is JobStatus.QUEUED


@pytest.mark.parametrize("operator_key", [None, ""])
def test_without_an_operator_key_only_api_keys_log_in(operator_key: str | None) -> None:
    rig = Rig(operator_key)
    acme = rig.app.state.keys.create("acme").key
    with TestClient(rig.app) as client:
        assert "API key</label>" in client.get("/ui/login").text
        assert login(client, OPERATOR_KEY).status_code == 401
        assert login(client, "").status_code == 401
        assert login(client, acme).status_code == 303
        assert "acme" in client.get("/ui/jobs").text


def test_a_revoked_key_and_a_changed_operator_key_end_their_sessions(rig: Rig) -> None:
    acme = rig.app.state.keys.create("acme").key
    with TestClient(rig.app) as tenant, TestClient(rig.app) as operator:
        login(tenant, acme)
        login(operator, OPERATOR_KEY)
        assert tenant.get("/ui/jobs").status_code == 200
        rig.app.state.keys.revoke("acme")
        assert tenant.get("/ui/jobs", follow_redirects=False).status_code == 303
        assert login(tenant, acme).status_code == 401
        assert operator.get("/ui/jobs").status_code == 200
        rig.settings.ui_operator_key = None
        assert operator.get("/ui/jobs", follow_redirects=False).status_code == 303


def test_logout_ends_the_session_everywhere(client: TestClient) -> None:
    login(client, OPERATOR_KEY)
    stolen = client.cookies.get(COOKIE)
    page = client.get("/ui/jobs").text
    assert client.post("/ui/logout", data={"csrf": "wrong"}).status_code == 403
    answer = client.post("/ui/logout", data={"csrf": csrf(page)}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
    client.cookies.set(COOKIE, stolen or "", path="/ui")
    assert client.get("/ui/jobs", follow_redirects=False).status_code == 303


def test_every_user_and_vendor_string_is_escaped(client: TestClient, rig: Rig) -> None:
    evil = "<script>alert(1)</script>"
    job = rig.job(
        "job_evil",
        None,
        request=GenerationRequest(model="sandbox-image", prompt=evil, extra={"x": evil}),
        metadata={"note": evil},
    )
    rig.store.update(
        job.id,
        lambda current: current.model_copy(
            update={
                "status": JobStatus.FAILED,
                "error": JobError(code="provider_error", message=evil),
                "outputs": [
                    Output(
                        bucket="b", key=evil, size=1, sha256="0", content_type="image/png", url='x" onerror="alert(1)'
                    )
                ],
            }
        ),
    )
    login(client, OPERATOR_KEY)
    for page in (client.get("/ui/jobs/job_evil").text, client.get("/ui/jobs").text):
        assert "<script>alert" not in page
    page = client.get("/ui/jobs/job_evil").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and 'onerror="alert' not in page
    assert client.get("/ui/jobs?status=<b>").text.count("<b>") == 0


def test_filters_by_status_and_provider_and_pages_newest_first(client: TestClient, rig: Rig) -> None:
    for n in range(30):
        rig.job(f"job_{n:02d}", None, n, provider="sandbox" if n % 3 else "vicsee")
    rig.store.update("job_29", lambda job: job.model_copy(update={"status": JobStatus.RUNNING}))
    login(client, OPERATOR_KEY)
    first = client.get("/ui/jobs").text
    assert job_ids(first) == [f"job_{n:02d}" for n in range(29, 4, -1)]
    older = re.search(r'<a href="([^"]+)">Older</a>', first)
    assert older is not None
    second = client.get(older.group(1).replace("&amp;", "&")).text
    assert job_ids(second) == [f"job_{n:02d}" for n in range(4, -1, -1)] and "Older</a>" not in second
    assert job_ids(client.get("/ui/jobs?status=running").text) == ["job_29"]
    assert job_ids(client.get("/ui/jobs?provider=vicsee").text) == [f"job_{n:02d}" for n in range(27, -1, -3)]
    assert job_ids(client.get("/ui/jobs?provider=vicsee&status=running").text) == []
    assert client.get("/ui/jobs?status=nosuch").status_code == 422


def test_a_tenants_list_pages_through_its_index(rig: Rig) -> None:
    acme = rig.app.state.keys.create("acme").key
    for n in range(27):
        rig.job(f"job_{n:02d}", "acme", n)
    with TestClient(rig.app) as client:
        login(client, acme)
        first = client.get("/ui/jobs").text
        older = re.search(r'<a href="([^"]+)">Older</a>', first)
        assert older is not None
        second = client.get(older.group(1).replace("&amp;", "&")).text
        assert job_ids(first) + job_ids(second) == [f"job_{n:02d}" for n in range(26, -1, -1)]


def test_cancel_goes_through_the_apis_cancel_with_a_csrf_token(client: TestClient, rig: Rig) -> None:
    rig.job("job_live", None)
    login(client, OPERATOR_KEY)
    page = client.get("/ui/jobs/job_live").text
    assert "Cancel job</button>" in page
    assert client.post("/ui/jobs/job_live/cancel", data={"csrf": ""}).status_code == 403
    assert client.post("/ui/jobs/job_live/cancel", content=b"{}").status_code == 415
    assert rig.producer.get("job_live").status is JobStatus.QUEUED
    answer = client.post("/ui/jobs/job_live/cancel", data={"csrf": csrf(page)}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/jobs/job_live"
    assert rig.producer.get("job_live").status is JobStatus.CANCELED
    after = client.get("/ui/jobs/job_live").text
    assert 'data-status="canceled"' in after and "Cancel job</button>" not in after
    again = client.post("/ui/jobs/job_live/cancel", data={"csrf": csrf(page)})
    assert again.status_code == 409 and "had already ended (canceled)" in again.text


def test_providers_show_a_credit_hold_and_the_operator_resumes_it(client: TestClient, rig: Rig) -> None:
    guard = ProviderGuard(rig.redis)
    guard.pause_for_credits("sandbox", time.time(), "insufficient credits <b>now</b>")
    login(client, OPERATOR_KEY)
    page = client.get("/ui/providers").text
    row = re.search(r'<tr id="provider-sandbox" data-held="true">.*?</tr>', page, re.S)
    assert row is not None and "insufficient credits &lt;b&gt;now&lt;/b&gt;" in row.group(0)
    assert 'action="/ui/providers/sandbox/resume"' in row.group(0)
    assert client.post("/ui/providers/sandbox/resume", data={"csrf": "no"}).status_code == 403
    unknown = client.post("/ui/providers/nosuch/resume", data={"csrf": csrf(page)})
    assert unknown.status_code == 422 and "unknown provider" in unknown.text
    answer = client.post("/ui/providers/sandbox/resume", data={"csrf": csrf(page)})
    assert answer.status_code == 200 and "sandbox resumed." in answer.text
    assert '<tr id="provider-sandbox" data-held="false">' in answer.text
    status = {row.provider: row for row in rig.producer.provider_status()}["sandbox"]
    assert status.credit_pause is None


def test_providers_show_the_share_of_recent_vendor_answers_that_were_errors(client: TestClient, rig: Rig) -> None:
    now = time.time()
    # sandbox: 3 answers a minute ago (one a 503), 1 transport failure now; vicsee: one answer 20 minutes ago
    counters.count(
        rig.redis, {counters.recent_answer("sandbox", 200): 2, counters.recent_answer("sandbox", 503): 1}, now - 60
    )
    counters.count(rig.redis, {counters.recent_answer("sandbox", None): 1}, now)
    counters.count(rig.redis, {counters.recent_answer("vicsee", 200): 1}, now - 20 * 60)
    login(client, OPERATOR_KEY)
    page = client.get("/ui/providers").text
    row = re.search(r'<tr id="provider-sandbox".*?</tr>', page, re.S)
    assert row is not None and '50 % <span class="note">2 of 4 answers</span>' in row.group(0)
    vicsee = re.search(r'<tr id="provider-vicsee".*?</tr>', page, re.S)
    assert vicsee is not None and "no calls" in vicsee.group(0)  # outside the 15 minutes


def test_only_the_operator_may_resume_a_provider(rig: Rig) -> None:
    acme = rig.app.state.keys.create("acme").key
    ProviderGuard(rig.redis).pause_for_credits("sandbox", time.time(), "insufficient credits")
    with TestClient(rig.app) as client:
        login(client, acme)
        page = client.get("/ui/providers").text
        assert "the operator may resume it" in page and "/resume" not in page
        refused = client.post("/ui/providers/sandbox/resume", data={"csrf": csrf(page)})
        assert refused.status_code == 403 and "only the operator" in refused.text
    assert {row.provider: row for row in rig.producer.provider_status()}["sandbox"].credit_pause is not None


def test_a_tenants_pages_count_against_its_request_rate(rig: Rig) -> None:
    limited = rig.app.state.keys.create("slow", rate_per_minute=3).key
    with TestClient(rig.app) as client:
        login(client, limited)
        answers = [client.get("/ui/jobs").status_code for _ in range(4)]
        assert answers[:2] == [200, 200] and answers[-1] == 429


def test_the_job_page_stream_sends_its_live_part_and_ends_with_the_job(client: TestClient, rig: Rig) -> None:
    rig.job("job_done", None)
    rig.store.update(
        "job_done", lambda job: lifecycle.cancel(job, utcnow())
    )  # ended: the stream sends it once and closes
    login(client, OPERATOR_KEY)
    with client.stream("GET", "/ui/jobs/job_done/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        body = "".join(stream.iter_text())
    events = [block for block in body.split("\n\n") if block.strip()]
    assert len(events) == 1 and events[0].startswith("event: fragment\n")
    assert all(line.startswith(("event: ", "data: ")) for line in events[0].splitlines())
    assert 'data: <section class="live" data-status="canceled" data-terminal="true">' in events[0]


def test_static_files_are_served_and_pages_stay_out_of_the_openapi_document(client: TestClient) -> None:
    assert client.get("/ui/static/ui.css").headers["content-type"].startswith("text/css")
    assert "EventSource" in client.get("/ui/static/ui.js").text
    assert not [path for path in client.get("/openapi.json").json()["paths"] if path.startswith("/ui")]


def read_events(lines: Iterator[str], count: int, within: float = 10.0) -> list[tuple[str, str]]:
    """The next `count` events of a stream as (name, data), comments skipped; AssertionError at the first line
    read after `within` seconds (a stream's keepalive comes every 15 s, so a stream that never sends fails)."""
    events: list[tuple[str, str]] = []
    name, data = "", []
    deadline = time.monotonic() + within
    for line in lines:
        assert time.monotonic() < deadline, f"{len(events)} of {count} events within {within} s"
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data.append(line.removeprefix("data: "))
        elif line == "" and name:
            events.append((name, "\n".join(data)))
            name, data = "", []
            if len(events) == count:
                break
    return events


def test_the_job_page_stream_follows_a_change_as_it_is_written(client: TestClient, rig: Rig) -> None:
    rig.job("job_moving", None)
    login(client, OPERATOR_KEY)
    with client.stream("GET", "/ui/jobs/job_moving/events") as stream:
        lines = stream.iter_lines()
        [(name, first)] = read_events(lines, 1)
        assert name == "fragment" and 'data-status="queued"' in first and "Cancel job</button>" in first
        rig.producer.cancel("job_moving")
        [(name, second)] = read_events(lines, 1)
        assert name == "fragment" and 'data-status="canceled" data-terminal="true"' in second
        assert "Cancel job</button>" not in second


def test_the_jobs_list_stream_replaces_rows_of_jobs_that_have_not_ended(rig: Rig) -> None:
    acme = rig.app.state.keys.create("acme").key
    rig.job("job_a", "acme", 1)
    rig.job("job_b", "acme", 2)
    rig.job("job_ended", "acme", 3)
    rig.job("job_other", None, 4)
    rig.producer.cancel("job_ended")
    for client in rig.client():
        login(client, acme)
        page = client.get("/ui/jobs").text
        found = re.search(r'data-row-events="([^"]+)"', page)
        assert found is not None
        url = found.group(1).replace("&amp;", "&")
        assert url == "/ui/jobs-events?ids=job_b%2Cjob_a"
        with client.stream("GET", "/ui/jobs-events?ids=job_a,job_other,job_ended,job_b") as stream:
            lines = stream.iter_lines()
            first = read_events(lines, 2)
            assert [name for name, _ in first] == ["row", "row"]
            assert sorted(re.findall(r'<tr id="row-(\w+)" data-status="queued">', "".join(d for _, d in first))) == [
                "job_a",
                "job_b",
            ]
            rig.producer.cancel("job_a")
            [(name, row)] = read_events(lines, 1)
            assert name == "row" and '<tr id="row-job_a" data-status="canceled">' in row
            rig.producer.cancel("job_b")
            rest = read_events(lines, 2)
            assert rest[0][0] == "row" and 'id="row-job_b" data-status="canceled"' in rest[0][1]
            assert rest[1][0] == "end"
