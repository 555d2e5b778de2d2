"""The task life cycle, the store's bookkeeping, SandboxConfig and parse_fault, without HTTP."""

from __future__ import annotations

import threading

import pytest

from sandbox import Fault, SandboxConfig, parse_fault
from sandbox.config import DEFAULT_BALANCE, FailNext
from sandbox.state import Shortfall, Store, Task


def _accept(store: Store, price: float = 10, prompt: str = "p") -> Task | Shortfall:
    return store.accept(
        task_id=f"t{prompt}", dialect="vicsee", model="m", prompt=prompt, kind="video", price=price,
        api_key="k", options={},
    )  # fmt: skip


def test_phases_and_progress_follow_the_delay() -> None:
    task = _accept(Store(SandboxConfig(delay_seconds=4)))
    assert isinstance(task, Task)
    at = task.created
    assert [task.phase(at + t) for t in (0, 0.9, 1.0, 3.9, 4.0, 100)] == [
        "queued", "queued", "running", "running", "succeeded", "succeeded",
    ]  # fmt: skip
    assert [task.progress(at + t) for t in (0, 1, 2, 3.99, 4)] == [0, 25, 50, 99, 100]


def test_zero_delay_is_done_at_once_and_fail_next_fails_it() -> None:
    store = Store(SandboxConfig(delay_seconds=0))
    store.add_fail_next(FailNext(count=1, reason="why"))
    failed, ok = _accept(store, prompt="a"), _accept(store, prompt="b")
    assert isinstance(failed, Task) and isinstance(ok, Task)
    assert (failed.phase(), failed.fail_reason) == ("failed", "why")
    assert (ok.phase(), ok.progress()) == ("succeeded", 100)


def test_balance_is_checked_and_charged_atomically() -> None:
    store = Store(SandboxConfig(balances={"vicsee": 100}))
    results: list[Task | Shortfall] = []

    def submit(n: int) -> None:
        results.append(_accept(store, 30, prompt=str(n)))

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(isinstance(r, Task) for r in results) == 3
    assert store.balance("vicsee") == 10
    assert store.stats()["submits"]["vicsee"] == 3


@pytest.mark.parametrize(("dialect", "refunded"), [("veogen", True), ("vicsee", False), ("veo3api", False)])
def test_a_failed_generation_is_refunded_once_it_ends_only_where_the_vendor_says_so(
    dialect: str, refunded: bool
) -> None:
    """VeoGen's document: a failed generation is not charged. The price is taken at submit, as for every dialect,
    and given back once the task has ended failed (not before: it may still be running); other dialects keep it."""
    store = Store(SandboxConfig(delay_seconds=0.3, balances={dialect: 10}))
    store.add_fail_next(FailNext(count=1, reason="why"))
    failed = store.accept(
        task_id="t1", dialect=dialect, model="m", prompt="a", kind="video", price=3, api_key="k", options={},
    )  # fmt: skip
    kept = store.accept(
        task_id="t2", dialect=dialect, model="m", prompt="b", kind="video", price=2, api_key="k", options={},
    )  # fmt: skip
    assert isinstance(failed, Task) and isinstance(kept, Task) and failed.fail_reason == "why"
    assert store.balance(dialect) == 5  # both charged while running
    while failed.phase() != "failed":
        threading.Event().wait(0.05)
    assert store.balance(dialect) == (8 if refunded else 5)
    assert store.balances()[dialect] == store.balance(dialect)  # the refund is given once, however often read
    [row_failed, row_kept] = store.charges()
    assert (row_failed["billed"], row_kept["billed"]) == ((0.0 if refunded else 3), 2)


def test_a_fault_is_used_exactly_count_times_across_threads() -> None:
    store = Store(SandboxConfig(faults=[Fault(target="poll", status=500, count=50)]))
    taken: list[Fault | None] = []

    def take() -> None:
        taken.append(store.take_fault("poll", "veogen"))

    threads = [threading.Thread(target=take) for _ in range(80)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(f is not None for f in taken) == 50
    assert store.pending_faults() == []


def test_config_fills_balances_and_takes_native_as_sandbox() -> None:
    config = SandboxConfig.model_validate({"balances": {"native": 5, "veogen": 1.5}})
    assert config.balances == {
        "vicsee": DEFAULT_BALANCE, "veogen": 1.5, "gateway": DEFAULT_BALANCE, "veo3api": DEFAULT_BALANCE,
        "sandbox": 5,
    }  # fmt: skip
    assert SandboxConfig().delay_seconds == 2.0 and SandboxConfig().output_bytes == 256 * 1024


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        ("submit:429:count=5:retry_after=2", Fault(target="submit", status=429, count=5, retry_after=2)),
        ("poll:500:count=3:dialect=veogen", Fault(target="poll", status=500, count=3, dialect="veogen")),
        ("download:403:count=1", Fault(target="download", status=403)),
        ("submit:slow:delay=3:count=2", Fault(target="submit", delay_seconds=3, count=2)),
        ("submit:503:delay=1", Fault(target="submit", status=503, delay_seconds=1)),
        ("submit:500:after_accept=true", Fault(target="submit", status=500, after_accept=True)),
    ],
)
def test_parse_fault(spec: str, fault: Fault) -> None:
    assert parse_fault(spec) == fault


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("submit", "TARGET:STATUS"),
        ("upload:500", "target must be"),
        ("submit:often", "status must be"),
        ("submit:slow", "delay="),
        ("submit:429:count", "KEY=VALUE"),
        ("submit:429:colour=red", "KEY=VALUE"),
        ("submit:429:count=zero", "count"),
        ("submit:200", "status"),
        ("poll:429:dialect=openai", "dialect"),
    ],
)
def test_parse_fault_refuses_bad_specs(spec: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as caught:
        parse_fault(spec)
    assert spec in str(caught.value)
