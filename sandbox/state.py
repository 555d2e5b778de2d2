"""The sandbox's shared, thread-safe state: tasks, balances, counters, pending faults and fail-next rules.

Every method takes the store's one lock for the whole of its work, so a balance check and the deduction and
task creation that follow it are one step, and a fault's `count` is used up exactly once per request.

A task's life is a pure function of the time since it was created and the delay in force then: `queued` for
the first quarter of the delay, `running` until the delay has passed, then `succeeded` (or `failed`, when a
fail-next rule picked it at creation). A delay of 0 means done at the first look.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from sandbox.config import DIALECTS, ConfigUpdate, DialectName, FailNext, Fault, SandboxConfig, Target
from sandbox.files import EXTENSIONS, Kind

Phase = Literal["queued", "running", "succeeded", "failed"]
#: the share of the delay a task spends queued before it runs
QUEUED_FRACTION = 0.25


@dataclass(frozen=True)
class Task:
    """One accepted generation. `seq` counts this dialect's tasks from 1; `created` is time.monotonic().

    `delay`, `output_bytes` and `outputs` are the settings in force when it was created; `balance_after` is
    the dialect's balance right after this task was charged `price`.
    """

    id: str
    dialect: DialectName
    model: str
    prompt: str
    kind: Kind
    seq: int
    api_key: str
    created: float
    created_at: float
    delay: float
    output_bytes: int
    outputs: int
    price: float
    balance_after: float
    fail_reason: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def ext(self) -> str:
        """The output files' extension: mp4, png or mp3."""
        return EXTENSIONS[self.kind]

    @property
    def started_at(self) -> float:
        """Wall-clock time (unix seconds) the task leaves the queue."""
        return self.created_at + self.delay * QUEUED_FRACTION

    @property
    def finished_at(self) -> float:
        """Wall-clock time (unix seconds) the task ends."""
        return self.created_at + self.delay

    def phase(self, now: float | None = None) -> Phase:
        """Where the task is at monotonic time `now` (default: this moment)."""
        elapsed = (time.monotonic() if now is None else now) - self.created
        if elapsed >= self.delay:
            return "failed" if self.fail_reason is not None else "succeeded"
        return "queued" if elapsed < self.delay * QUEUED_FRACTION else "running"

    def progress(self, now: float | None = None) -> int:
        """Percent done, proportional to elapsed time; 100 only once the task has ended."""
        elapsed = (time.monotonic() if now is None else now) - self.created
        if elapsed >= self.delay:
            return 100
        return min(99, max(0, int(100 * elapsed / self.delay)))


@dataclass(frozen=True)
class Shortfall:
    """A submit refused for lack of balance: what it would have cost and what there is."""

    price: float
    balance: float


_T = TypeVar("_T", Fault, FailNext)


@dataclass
class _Armed(Generic[_T]):
    """A fault or fail-next rule and how many more requests or tasks it applies to."""

    rule: _T
    left: int


def _counter() -> dict[DialectName, int]:
    return dict.fromkeys(DIALECTS, 0)


class Store:
    """All mutable sandbox state behind one lock; `reset()` returns it to how `initial` describes it."""

    def __init__(self, initial: SandboxConfig) -> None:
        self._lock = threading.Lock()
        self._initial = initial
        self._config = initial
        self._tasks: dict[str, Task] = {}
        self._balances: dict[DialectName, float] = dict(initial.balances)
        self._faults: list[_Armed[Fault]] = [_Armed(f, f.count) for f in initial.faults]
        self._fail_rules: list[_Armed[FailNext]] = []
        self._submits = _counter()
        self._attempts = _counter()
        self._polls = _counter()
        self._seqs = _counter()
        self._downloads = 0
        self._seen: set[str] = set()
        self._duplicates = 0
        # veogen tasks picked to fail whose price is not yet back in the balance (VeoGen: "you were not charged")
        self._refunds_due: list[Task] = []

    @property
    def config(self) -> SandboxConfig:
        """The configuration in force now (as changed by /_control/config)."""
        with self._lock:
            return self._config

    def update_config(self, update: ConfigUpdate) -> SandboxConfig:
        """Apply the fields `update` sets; returns the new configuration."""
        changes = update.model_dump(exclude_unset=True)
        # null means "no change" for every field but api_keys, where it means "take any key"
        changes = {k: v for k, v in changes.items() if v is not None or k == "api_keys"}
        with self._lock:
            self._config = self._config.model_copy(update=changes)
            return self._config

    def reset(self) -> None:
        """Forget tasks, faults, fail-next rules and counters; restore the starting balances and settings.

        Faults given in the starting configuration are not re-armed: after a reset none are pending.
        """
        with self._lock:
            self._config = self._initial
            self._tasks.clear()
            self._balances = dict(self._initial.balances)
            self._faults.clear()
            self._fail_rules.clear()
            for counter in (self._submits, self._attempts, self._polls, self._seqs):
                counter.update(_counter())
            self._downloads = 0
            self._seen.clear()
            self._duplicates = 0
            self._refunds_due.clear()

    def add_fault(self, fault: Fault) -> None:
        """Arm `fault` after those already pending."""
        with self._lock:
            self._faults.append(_Armed(fault, fault.count))

    def pending_faults(self) -> list[dict[str, Any]]:
        """The armed faults, each with `count` set to the uses left."""
        with self._lock:
            return [armed.rule.model_dump() | {"count": armed.left} for armed in self._faults]

    def take_fault(self, target: Target, dialect: DialectName | None) -> Fault | None:
        """Use up one count of the first pending fault that matches this request, and return it."""
        with self._lock:
            for armed in self._faults:
                if armed.rule.target == target and armed.rule.dialect in (None, dialect):
                    armed.left -= 1
                    if armed.left <= 0:
                        self._faults.remove(armed)
                    return armed.rule
            return None

    def add_fail_next(self, rule: FailNext) -> None:
        """Make the next `rule.count` tasks created (of `rule.dialect`, or any; of `rule.prompt`, or any) end failed
        with its reason."""
        with self._lock:
            self._fail_rules.append(_Armed(rule, rule.count))

    def balance(self, dialect: DialectName) -> float:
        with self._lock:
            self._refund_ended_failures()
            return self._balances[dialect]

    def balances(self) -> dict[DialectName, float]:
        with self._lock:
            self._refund_ended_failures()
            return dict(self._balances)

    def _refund_ended_failures(self) -> None:
        """Give back the price of each veogen task that has ended failed (the lock is held)."""
        now = time.monotonic()
        ended = [task for task in self._refunds_due if task.phase(now) == "failed"]
        for task in ended:
            self._balances[task.dialect] = round(self._balances[task.dialect] + task.price, 6)
            self._refunds_due.remove(task)

    def set_balance(self, dialect: DialectName, balance: float) -> None:
        with self._lock:
            self._balances[dialect] = balance

    def count_attempt(self, dialect: DialectName) -> None:
        """Count a submit request, whatever its answer."""
        with self._lock:
            self._attempts[dialect] += 1

    def count_poll(self, dialect: DialectName) -> None:
        """Count a poll request, whatever its answer."""
        with self._lock:
            self._polls[dialect] += 1

    def count_download(self) -> None:
        """Count a file served."""
        with self._lock:
            self._downloads += 1

    def accept(
        self,
        *,
        task_id: str,
        dialect: DialectName,
        model: str,
        prompt: str,
        kind: Kind,
        price: float,
        api_key: str,
        options: Any,
        params: dict[str, Any] | None = None,
    ) -> Task | Shortfall:
        """Charge `price` and create the task, or refuse with a Shortfall when the balance cannot pay.

        A balance at or below zero refuses even a free submit (a way to exhaust the gateway's quota).
        `options` (JSON-able) together with dialect, model and prompt identify duplicate submits.
        """
        with self._lock:
            self._refund_ended_failures()
            balance = self._balances[dialect]
            if balance <= 0 or price > balance:
                return Shortfall(price=price, balance=balance)
            balance_after = self._balances[dialect] = round(balance - price, 6)
            self._seqs[dialect] += 1
            self._submits[dialect] += 1
            key = json.dumps([dialect, model, prompt, options], sort_keys=True, default=str)
            if key in self._seen:
                self._duplicates += 1
            self._seen.add(key)
            task = Task(
                id=task_id,
                dialect=dialect,
                model=model,
                prompt=prompt,
                kind=kind,
                seq=self._seqs[dialect],
                api_key=api_key,
                created=time.monotonic(),
                created_at=time.time(),
                delay=self._config.delay_seconds,
                output_bytes=self._config.output_bytes,
                outputs=self._config.outputs_per_task,
                price=price,
                balance_after=balance_after,
                fail_reason=self._pick_failure(dialect, prompt),
                params=dict(params or {}),
            )
            self._tasks[task_id] = task
            if dialect == "veogen" and task.fail_reason is not None:
                self._refunds_due.append(task)
            return task

    def _pick_failure(self, dialect: DialectName, prompt: str | None) -> str | None:
        for armed in self._fail_rules:
            if armed.rule.dialect in (None, dialect) and armed.rule.prompt in (None, prompt):
                armed.left -= 1
                if armed.left <= 0:
                    self._fail_rules.remove(armed)
                return armed.rule.reason
        return None

    def task(self, task_id: str) -> Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    def charges(self) -> list[dict[str, Any]]:
        """What each accepted task bills under its dialect's documented rule, in creation order.

        The balance is taken when a task is accepted (every dialect); VeoGen's document adds that a failed
        generation is not charged, so a veogen task that ended failed bills 0 and its price is back in the balance.
        `unit` is what the price counts: usd for veogen, credits for the rest. `phase` is the task's phase now;
        `fail_reason` is set for a task a fail-next rule picked (it ends failed), so a test can tell how a task will
        end before it does.
        """
        with self._lock:
            tasks = sorted(self._tasks.values(), key=lambda task: (task.created, task.seq))
        now = time.monotonic()
        rows = []
        for task in tasks:
            phase = task.phase(now)
            billed = 0.0 if task.dialect == "veogen" and phase == "failed" else task.price
            rows.append(
                {
                    "task_id": task.id,
                    "dialect": task.dialect,
                    "phase": phase,
                    "price": task.price,
                    "billed": billed,
                    "unit": "usd" if task.dialect == "veogen" else "credits",
                    "fail_reason": task.fail_reason,
                }
            )
        return rows

    def stats(self) -> dict[str, Any]:
        """The counters /_control/stats reports."""
        with self._lock:
            return {
                "submits": dict(self._submits),
                "submit_attempts": dict(self._attempts),
                "duplicate_submits": self._duplicates,
                "polls": dict(self._polls),
                "downloads": self._downloads,
                "tasks": len(self._tasks),
            }
