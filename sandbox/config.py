"""The sandbox's settings (`SandboxConfig`), its injected faults (`Fault`) and the /_control request bodies.

A `Fault` makes the next `count` requests of one kind (`target`: submit, poll or download), optionally of one
dialect only, answer with HTTP `status` in that dialect's own error shape, after sleeping `delay_seconds`
when given. `status=None` with a delay is a slow but otherwise normal answer. With `after_accept=True` a
submit fault lets the submit go through (the task exists and is charged) and replaces only its answer: the
"accepted, but the answer was lost" case.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

DialectName = Literal["vicsee", "veogen", "gateway", "veo3api", "sandbox"]
Target = Literal["submit", "poll", "download"]

#: every dialect the sandbox speaks; `sandbox` is our native one (module sandbox/dialects/native.py)
DIALECTS: tuple[DialectName, ...] = ("vicsee", "veogen", "gateway", "veo3api", "sandbox")
#: large enough that nothing runs out unless a test or an operator says so
DEFAULT_BALANCE = 1e9


def normalize_dialect(value: object) -> object:
    """`native` is accepted as another name for the `sandbox` dialect."""
    return "sandbox" if value == "native" else value


def _default_balances() -> dict[DialectName, float]:
    return dict.fromkeys(DIALECTS, DEFAULT_BALANCE)


#: a dialect name as given in configuration and /_control bodies
AnyDialect = Annotated[DialectName, BeforeValidator(normalize_dialect)]


class Fault(BaseModel):
    """One injected failure, used up by the first `count` matching requests."""

    model_config = ConfigDict(extra="forbid")

    target: Target
    dialect: AnyDialect | None = None
    status: int | None = Field(default=None, ge=400, le=599)
    retry_after: float | None = Field(default=None, ge=0)
    count: int = Field(default=1, ge=1)
    delay_seconds: float | None = Field(default=None, ge=0)
    after_accept: bool = False

    @model_validator(mode="after")
    def _has_effect(self) -> Self:
        if self.status is None and not self.delay_seconds:
            raise ValueError("a fault needs a status, a delay_seconds, or both")
        if self.after_accept and (self.target != "submit" or self.status is None):
            raise ValueError("after_accept applies to submit faults with a status only")
        return self


class SandboxConfig(BaseModel):
    """How the sandbox runs.

    `api_keys=None` accepts any non-empty key; `balances` fills in the dialects it does not name with
    DEFAULT_BALANCE; `faults` are armed at start.
    """

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8900, ge=0, le=65535)
    delay_seconds: float = Field(default=2.0, ge=0)
    output_bytes: int = Field(default=256 * 1024, ge=0)
    outputs_per_task: int = Field(default=1, ge=1, le=16)
    api_keys: frozenset[str] | None = None
    balances: dict[AnyDialect, float] = Field(default_factory=_default_balances)
    faults: list[Fault] = Field(default_factory=list)

    @field_validator("balances", mode="before")
    @classmethod
    def _fill_balances(cls, value: object) -> object:
        if value is None:
            return _default_balances()
        if not isinstance(value, dict):
            return value
        given = {normalize_dialect(k): v for k, v in value.items()}
        return _default_balances() | given


class ConfigUpdate(BaseModel):
    """Body of POST /_control/config: the settings that may change while the sandbox runs."""

    model_config = ConfigDict(extra="forbid")

    delay_seconds: float | None = Field(default=None, ge=0)
    output_bytes: int | None = Field(default=None, ge=0)
    outputs_per_task: int | None = Field(default=None, ge=1, le=16)
    api_keys: frozenset[str] | None = None


class FailNext(BaseModel):
    """Body of POST /_control/fail_next: the next `count` created tasks (of `dialect`, or any; whose prompt is
    `prompt`, or any) end failed. A prompt picks the test's own task on a sandbox other tests' jobs also reach."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(default=1, ge=1)
    reason: str = "generation failed"
    dialect: AnyDialect | None = None
    prompt: str | None = None


class BalanceUpdate(BaseModel):
    """Body of POST /_control/balance (credits, or USD for veogen)."""

    model_config = ConfigDict(extra="forbid")

    dialect: AnyDialect
    balance: float


_FAULT_KEYS = {
    "count": "count",
    "retry_after": "retry_after",
    "dialect": "dialect",
    "delay": "delay_seconds",
    "delay_seconds": "delay_seconds",
    "after_accept": "after_accept",
}


def parse_fault(spec: str) -> Fault:
    """Read the command-line form `TARGET:STATUS[:KEY=VALUE]...` into a Fault.

    STATUS is an HTTP code or `slow`; keys are count, retry_after, dialect, delay (or delay_seconds) and
    after_accept. Examples: `submit:429:count=5:retry_after=2`, `poll:500:count=3:dialect=veogen`,
    `download:403:count=1`, `submit:slow:delay=3:count=2`. Raises ValueError naming what is wrong.
    """
    parts = [p.strip() for p in spec.strip().split(":")]
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"fault spec {spec!r}: expected TARGET:STATUS[:KEY=VALUE]..., e.g. submit:429")
    target, status, *options = parts
    if target not in ("submit", "poll", "download"):
        raise ValueError(f"fault spec {spec!r}: target must be submit, poll or download, not {target!r}")
    fields: dict[str, object] = {"target": target}
    if status.lower() != "slow":
        if not status.isdigit():
            raise ValueError(f"fault spec {spec!r}: status must be an HTTP code or 'slow', not {status!r}")
        fields["status"] = int(status)
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key.strip() not in _FAULT_KEYS:
            known = ", ".join(sorted(_FAULT_KEYS))
            raise ValueError(f"fault spec {spec!r}: {option!r} is not KEY=VALUE with KEY one of {known}")
        fields[_FAULT_KEYS[key.strip()]] = value.strip()
    if status.lower() == "slow" and "delay_seconds" not in fields:
        raise ValueError(f"fault spec {spec!r}: a slow fault needs delay=SECONDS")
    try:
        return Fault.model_validate(fields)
    except ValidationError as exc:
        where = [".".join(str(part) for part in err["loc"]) or "fault" for err in exc.errors()]
        problems = "; ".join(f"{name}: {err['msg']}" for name, err in zip(where, exc.errors(), strict=True))
        raise ValueError(f"fault spec {spec!r}: {problems}") from None
