"""Routing one model across providers as pure decisions (shared/decisions/route.py, shared/providers/routes.py).

What is checked: a request only one provider can honour goes only there; the cheapest policy follows the catalog,
the price settings and the credit price; a provider that would wait (breaker open, credits on hold, rate or
in-flight cap spent) is passed over with its reason while another can take the job; a refusal that charged nothing
moves the job on, an ambiguous submit never does.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared import lifecycle
from shared.decisions import route as rules
from shared.errors import (
    AuthFailed,
    InsufficientCredits,
    InvalidRequest,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    SubmitOutcomeUnknown,
)
from shared.models import Cost, GenerationRequest, Job, utcnow
from shared.protection import BreakerState, CreditPause, ProviderStatus
from shared.providers.base import HttpAnswer
from shared.providers.client import SendFailed
from shared.settings import Settings

NOW = utcnow()
KEYS = {"vicsee": {"api_key": "sk-v"}, "veogen": {"api_key": "sk-g"}}


def settings(**providers: dict[str, object]) -> Settings:
    merged = {name: {**KEYS.get(name, {}), **extra} for name, extra in {**KEYS, **providers}.items()}
    return Settings(providers=merged)


def sora(**options: object) -> GenerationRequest:
    return GenerationRequest(model="sora-2", prompt="a flower opening", **{"duration": 10, **options})


def status(provider: str, **fields: object) -> ProviderStatus:
    values: dict[str, object] = {
        "provider": provider,
        "tokens": 10.0,
        "burst": 10,
        "rate_per_second": 5.0,
        "in_flight": 0,
        "max_in_flight": 50,
        "breaker": BreakerState.CLOSED,
        "breaker_until": None,
        "consecutive_failures": 0,
        "credit_pause": None,
    }
    values.update(fields)
    return ProviderStatus(**values)  # type: ignore[arg-type]


def states(config: Settings, **statuses: ProviderStatus) -> dict[str, rules.ProviderState]:
    found = {}
    for name in ("vicsee", "veogen"):
        usable, why = rules.usable_config(config, name)
        found[name] = rules.ProviderState(usable, why, statuses.get(name, status(name)))
    return found


def test_cheapest_follows_the_credit_price_and_the_price_settings() -> None:
    """VicSee's sora-2 is 20 credits at 10 s; VeoGen's has no documented price until the settings give one."""
    unpriced = rules.plan("auto", sora(), "cheapest", settings(vicsee={"usd_per_credit": 0.01}))
    assert unpriced.chosen == "vicsee"  # the only known price
    assert [c.estimate_usd for c in unpriced.candidates] == [0.2, None]
    cheaper_elsewhere = settings(vicsee={"usd_per_credit": 0.01}, veogen={"prices": {"sora-2": {"usd_per_job": 0.15}}})
    assert rules.plan("auto", sora(), "cheapest", cheaper_elsewhere).chosen == "veogen"
    credits_cheaper = settings(vicsee={"usd_per_credit": 0.005}, veogen={"prices": {"sora-2": {"usd_per_job": 0.15}}})
    route = rules.plan("auto", sora(), "cheapest", credits_cheaper)
    assert route.chosen == "vicsee"
    assert {c.provider: c.estimate_usd for c in route.candidates} == {"vicsee": 0.1, "veogen": 0.15}
    assert {c.provider: c.estimate for c in route.candidates}["vicsee"] == Cost(credits=20)


def test_a_request_only_one_provider_can_honour_goes_only_there() -> None:
    """A style preset is VeoGen's alone: VicSee is recorded as unable to honour it, and never chosen."""
    route = rules.plan("auto", sora(style="anime"), "preferred", settings())
    assert route.chosen == "veogen"
    vicsee = next(c for c in route.candidates if c.provider == "vicsee")
    assert vicsee.skipped is not None and vicsee.skipped.startswith("cannot honour the request")
    assert "'style'" in vicsee.skipped


def test_a_request_no_provider_can_honour_is_refused_naming_each_reason() -> None:
    with pytest.raises(InvalidRequest, match=r"no provider of route sora-2 can take the job: vicsee: .*veogen: "):
        rules.plan("auto", sora(duration=25), "cheapest", settings())


@pytest.mark.parametrize(
    ("provider", "policy", "message"),
    [
        ("auto", "slowest", "route policy 'slowest' is not one of"),
        ("vicsee,gateway", "cheapest", "provider 'gateway' does not sell sora-2"),
        ("vicsee,vicsee", "cheapest", "names a provider twice"),
    ],
)
def test_bad_routes_are_refused_in_one_line(provider: str, policy: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        rules.plan(provider, sora(), policy, settings())


def test_a_model_without_a_route_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="model 'sandbox-image' has no route across providers; routed models:"):
        rules.plan("auto", GenerationRequest(model="sandbox-image", prompt="p"), "cheapest", settings())


def test_a_provider_without_a_key_is_not_configured() -> None:
    route = rules.plan("auto", sora(), "preferred", Settings(providers={"veogen": {"api_key": "sk-g"}}))
    assert route.chosen == "veogen"
    assert route.candidates[0].skipped == "not configured: no GENQUEUE_PROVIDERS__VICSEE__API_KEY"


@pytest.mark.parametrize(
    ("vicsee", "reason"),
    [
        (status("vicsee", breaker=BreakerState.OPEN, breaker_until=NOW.timestamp() + 30), "breaker open for 30 s"),
        (
            status("vicsee", credit_pause=CreditPause(since=NOW.timestamp(), message="no credits", next_probe_at=0)),
            "credits on hold since",
        ),
        (status("vicsee", tokens=0.2), "rate budget spent"),
        (status("vicsee", in_flight=50), "in-flight cap reached (50/50)"),
    ],
)
def test_a_provider_that_would_wait_is_passed_over_with_its_reason(vicsee: ProviderStatus, reason: str) -> None:
    config = settings()
    route = rules.plan("auto", sora(), "preferred", config)
    decided, order = rules.choose(route, sora(), states(config, vicsee=vicsee), NOW)
    assert decided.chosen == "veogen"
    assert [c.provider for c in order] == ["veogen"]
    skipped = decided.candidates[0].skipped
    assert skipped is not None and skipped.startswith(reason), skipped


def test_when_every_provider_would_wait_admission_decides_among_them() -> None:
    """Nothing stalls: with both held, both are tried in policy order and admission's own waiting applies."""
    config = settings()
    route = rules.plan("auto", sora(), "preferred", config)
    held = {name: status(name, tokens=0.0) for name in ("vicsee", "veogen")}
    decided, order = rules.choose(route, sora(), states(config, **held), NOW)
    assert decided.chosen == "vicsee"
    assert [c.provider for c in order] == ["vicsee", "veogen"]


def test_fastest_follows_observed_render_times() -> None:
    config = settings()
    route = rules.plan("auto", sora(), "fastest", config)
    seen = states(config)
    seen["veogen"] = rules.ProviderState(seen["veogen"].config, None, status("veogen"), render_seconds=40.0)
    seen["vicsee"] = rules.ProviderState(seen["vicsee"].config, None, status("vicsee"), render_seconds=90.0)
    decided, _ = rules.choose(route, sora(), seen, NOW)
    assert decided.chosen == "veogen"
    assert {c.provider: c.render_seconds for c in decided.candidates} == {"vicsee": 90.0, "veogen": 40.0}


def routed_job(provider: str = "vicsee") -> Job:
    route = rules.plan("auto", sora(), "preferred", settings())
    chosen = next(c for c in route.candidates if c.provider == provider)
    job = Job(
        id="job_r",
        provider="sandbox",
        request=sora(),
        deadline_at=NOW + timedelta(hours=1),
        step=lifecycle.new_step("submit", NOW),
    )
    return rules.switched(job, route, chosen)


@pytest.mark.parametrize(
    ("exc", "answer"),
    [
        (RateLimited("429"), HttpAnswer(status_code=429)),
        (ProviderUnavailable("503"), HttpAnswer(status_code=503)),
        (InsufficientCredits("no balance"), HttpAnswer(status_code=402)),
        (ProviderRejected("bad duration"), HttpAnswer(status_code=422)),
        (AuthFailed("bad key"), HttpAnswer(status_code=401)),
    ],
)
def test_a_refusal_that_charged_nothing_moves_the_job_on(exc: Exception, answer: HttpAnswer) -> None:
    assert rules.moves_on(exc, answer)  # type: ignore[arg-type]
    job = routed_job()
    assert job.step is not None and job.route is not None
    assert rules.next_candidate_left(job.route, "vicsee")
    moved = rules.failed_over(job.model_copy(update={"submit_started_at": NOW}), job.step.task_id, exc, NOW)  # type: ignore[arg-type]
    assert moved is not None and moved.route is not None and moved.step is not None
    assert moved.submit_started_at is None and moved.step.due_at == NOW
    assert [f.provider for f in moved.route.failovers] == ["vicsee"]
    decided, order = rules.choose(moved.route, moved.request, states(settings()), NOW)
    assert decided.chosen == "veogen" and [c.provider for c in order] == ["veogen"]
    assert decided.candidates[0].skipped == f"refused this job earlier: {exc.code}"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("exc", "answer"),
    [
        (SendFailed("timed out reading the answer", sent=True), None),
        (ProviderUnavailable("unreadable 200"), HttpAnswer(status_code=200)),
        (SubmitOutcomeUnknown("maybe taken"), None),
        (ProviderUnavailable("connection refused"), None),
    ],
)
def test_an_ambiguous_submit_never_moves_on(exc: Exception, answer: HttpAnswer | None) -> None:
    assert not rules.moves_on(exc, answer)  # type: ignore[arg-type]


def test_once_every_provider_refused_the_job_stays_where_it_is() -> None:
    job = routed_job()
    assert job.route is not None
    both = job.route.model_copy(
        update={
            "failovers": [
                *rules.failed_over(job, job.step.task_id, RateLimited("429"), NOW).route.failovers,  # type: ignore[union-attr]
            ]
        }
    )
    assert not rules.next_candidate_left(both, "veogen")


def test_switching_sends_the_providers_own_model_id_and_estimate() -> None:
    route = rules.plan(
        "auto",
        GenerationRequest(model="veo3", prompt="p"),
        "preferred",
        settings(veo3api={"api_key": "sk-3", "base_url": "http://veo3.test", "usd_per_credit": 0.001}),
    )
    chosen = route.candidates[0]
    assert (chosen.provider, chosen.model, chosen.estimate_usd) == ("veo3api", "veo3", 0.5)
    job = Job(
        id="job_s",
        provider="sandbox",
        request=GenerationRequest(model="veo3", prompt="p"),
        deadline_at=NOW + timedelta(hours=1),
    )
    sent = rules.switched(job, route, chosen)
    assert (sent.provider, sent.request.model, sent.cost) == ("veo3api", "veo3", Cost(credits=500))
    assert sent.route is not None and sent.route.chosen == "veo3api" and sent.route.model == "veo3"
