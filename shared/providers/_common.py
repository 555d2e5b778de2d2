"""Helpers every dialect shares: mapping request fields, reading answers safely, classifying error answers.

Every reader here is total over arbitrary JSON: it returns a value or raises a `shared.errors.ProviderError`
(`ProviderUnavailable` for an answer it cannot read), never KeyError, TypeError or OverflowError.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

from shared.errors import InvalidRequest, ProviderError, ProviderUnavailable, Transient
from shared.models import GenerationRequest
from shared.providers.base import (
    HttpAnswer,
    TaskState,
    error_for_status,
    is_success,
    number_or_none,
    read_json,
    redirect_error,
    retry_after_seconds,
)

#: longer task ids are refused: they end up in Redis keys and URLs
MAX_TASK_ID_CHARS = 512
#: vendor messages are cut to this many characters to keep error messages one short line
MAX_MESSAGE_CHARS = 300
#: output URLs longer than this are ignored (presigned URLs run to a few KB)
MAX_URL_CHARS = 8_192

#: reads an error answer (its JSON object, or None when the body is not one) into the error to raise
ErrorReader = Callable[[HttpAnswer, dict[str, Any] | None], ProviderError]


# --- building requests ---------------------------------------------------------------------------------------


def set_options(request: GenerationRequest) -> set[str]:
    """The unified options `request` really sets: named in the request, not None and not an empty list."""
    return {name for name in request.option_names() if getattr(request, name) is not None}


def refuse_untaken(request: GenerationRequest, taken: frozenset[str], provider: str) -> None:
    """Raise InvalidRequest naming every option `request` sets that is not in `taken`."""
    refused = sorted(set_options(request) - taken)
    if refused:
        noun = "option" if len(refused) == 1 else "options"
        raise InvalidRequest(f"{provider} does not take the {noun} " + ", ".join(f"'{name}'" for name in refused))


def mapped_options(request: GenerationRequest, keys: Mapping[str, str]) -> dict[str, Any]:
    """`{vendor_key: value}` for each unified option in `keys` (unified name -> vendor spelling) the request sets."""
    chosen = set_options(request)
    return {vendor: _plain(getattr(request, unified)) for unified, vendor in keys.items() if unified in chosen}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def merge_extra(target: dict[str, Any], extra: Mapping[str, Any], provider: str) -> None:
    """Add `extra` to `target` as given; a key the request already fills is refused rather than silently replaced."""
    clash = sorted(set(target) & set(extra))
    if clash:
        raise InvalidRequest(f"{provider}: extra key '{clash[0]}' clashes with a field set from the request")
    target.update(extra)


def url_only(
    values: Iterable[str], what: str, provider: str, schemes: tuple[str, ...] = ("https://", "http://")
) -> list[str]:
    """`values` as given when each is a URL of one of `schemes`; else InvalidRequest naming the first that is not.

    For input fields a vendor documents as URLs only, checked after the resolver turned uploaded files into
    presigned URLs: what is left is a local path or a scheme the vendor cannot fetch.
    """
    checked = list(values)
    for value in checked:
        if not value.lower().startswith(schemes):
            shown = " or ".join(scheme.removesuffix("://") for scheme in schemes)
            raise InvalidRequest(f"{provider} takes {what}s as {shown} URLs only, got {value[:60]!r}")
    return checked


def path_segment(task_id: str) -> str:
    """`task_id` quoted for use as one URL path segment (a `/` or `?` in a vendor's id cannot reshape the URL)."""
    return quote(task_id, safe="-._~!$&'()*+,;=:@")


# --- reading answers -----------------------------------------------------------------------------------------


def answer_body(answer: HttpAnswer, read_error: ErrorReader) -> dict[str, Any]:
    """The JSON object of a 2xx answer; any other status raises what `read_error` makes of it."""
    if not is_success(answer):
        raise read_error(answer, try_json(answer))
    return read_json(answer)


def try_json(answer: HttpAnswer) -> dict[str, Any] | None:
    """The answer's JSON object, or None when it is too large, not JSON or not an object."""
    try:
        return read_json(answer)
    except ProviderUnavailable:
        return None


def dig(value: Any, *path: str) -> Any:
    """`value[path[0]][path[1]]...`, or None where a step is missing or not an object."""
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def object_at(body: dict[str, Any], *path: str) -> dict[str, Any]:
    """The JSON object at `path`, or ProviderUnavailable naming the field."""
    value = dig(body, *path)
    if not isinstance(value, dict):
        raise ProviderUnavailable(f"provider answer lacks the object {'.'.join(path)}")
    return value


def text(value: Any, limit: int = MAX_MESSAGE_CHARS) -> str | None:
    """A string or number as one trimmed line of at most `limit` characters; None for anything else or blank."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    line = " ".join(str(value).split())
    if not line:
        return None
    return line if len(line) <= limit else line[: limit - 1] + "…"


def amount(value: Any) -> float | None:
    """A finite, non-negative number from a JSON number or numeric string; None for anything else."""
    try:
        number = number_or_none(value)
    except OverflowError:
        return None
    if number is None or not math.isfinite(number) or number < 0:
        return None
    return number


def fraction(value: Any, scale: float = 100.0) -> float | None:
    """A progress value on a 0..`scale` scale (a number or "NN%") as a fraction from 0 to 1."""
    number = amount(value)
    return None if number is None else min(number / scale, 1.0)


def task_id(value: Any, field: str) -> str:
    """The vendor's task id from a string or integer, or ProviderUnavailable."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TASK_ID_CHARS:
        raise ProviderUnavailable(f"provider answer has no usable task id in {field}")
    return value.strip()


def urls(*candidates: Any) -> list[str]:
    """The http(s) URLs among the candidates (strings or lists of strings), in order, without repeats."""
    found: list[str] = []
    for candidate in candidates:
        for item in candidate if isinstance(candidate, list) else [candidate]:
            if (
                isinstance(item, str)
                and item.lower().startswith(("https://", "http://"))
                and len(item) <= MAX_URL_CHARS
                and item not in found
            ):
                found.append(item)
    return found


def poll_state(word: Any, states: Mapping[str, TaskState], field: str) -> TaskState:
    """The normalized state for a status word (matched case-insensitively); an unknown word is ProviderUnavailable.

    An unknown word is an error rather than "still running" so that it is retried and shows up in the job's error
    (`provider_error` once retries are spent) instead of polling silently until the deadline.
    """
    if isinstance(word, str) and word.strip().lower() in states:
        return states[word.strip().lower()]
    shown = text(word, 60) if isinstance(word, str) else type(word).__name__
    raise ProviderUnavailable(f"provider answered an unknown status {shown!r} in {field}")


def submit_state(word: Any, states: Mapping[str, TaskState]) -> TaskState:
    """The state a submit answer reports; PENDING when missing or unknown.

    A submit answer with a task id means the vendor accepted (and may have charged for) the job: raising over an
    odd status word would lose the task id and invite a second, paid submit. The first poll judges the word.
    """
    if isinstance(word, str):
        return states.get(word.strip().lower(), TaskState.PENDING)
    return TaskState.PENDING


def reason(value: Any, default: str = "no reason given") -> str:
    """A failure reason from a string, or an object's message (with its code in parentheses)."""
    if isinstance(value, dict):
        message = first_text(value.get("message"), value.get("error"), value.get("detail"), value.get("reason"))
        code = text(value.get("code"), 60)
        if message and code:
            return f"{message} ({code})"
        return message or code or default
    return text(value) or default


def first_text(*values: Any) -> str | None:
    """The first of `values` that `text` reads as a line."""
    for value in values:
        line = text(value)
        if line:
            return line
    return None


# --- classifying error answers -------------------------------------------------------------------------------


def classify(
    answer: HttpAnswer,
    message: str | None,
    code: str | None = None,
    codes: Mapping[str, type[ProviderError]] | None = None,
    insufficient: bool = False,
) -> ProviderError:
    """The error an error answer means: by the vendor's own `code` where `codes` maps it, else by HTTP status.

    The message reads `HTTP <status>: <vendor message> (<vendor code>)`; with no message, the start of the body.
    A RateLimited or other transient error carries Retry-After (shared/retry_after.py caps it). A 3xx is always
    `redirect_error`, whatever code its body names: a redirect is never retried.
    """
    if 300 <= answer.status_code < 400:
        return redirect_error(answer)
    detail = message or text(answer.body[:120].decode("utf-8", "replace"), 120) or ""
    if code:
        detail = f"{detail} ({code})" if detail else code
    cls = (codes or {}).get(code) if code else None
    return error_for_status(answer, detail, insufficient) if cls is None else _make(cls, answer, detail)


def error_object_reader(codes: Mapping[str, type[ProviderError]], code_also_in: str | None = None) -> ErrorReader:
    """The reader of error bodies shaped `{"error": {"code", "message"}}` (VicSee, gateway, the sandbox).

    An error object is classified by its `code` where `codes` maps it (else by HTTP status), with its `message`;
    `code_also_in` names a second field read as the code when `code` is not one of `codes` (gateway's `type`).
    A body whose `error` is a string, or that has only a top-level `message`, is classified by status with it.
    """

    def read(answer: HttpAnswer, body: dict[str, Any] | None) -> ProviderError:
        error = dig(body, "error")
        if not isinstance(error, dict):
            return classify(answer, first_text(error, dig(body, "message")))
        code = text(error.get("code"), 60)
        if code not in codes and code_also_in is not None:
            other = text(error.get(code_also_in), 60)
            code = other if other in codes else code
        return classify(answer, text(error.get("message")), code, codes)

    return read


def _make(cls: type[ProviderError], answer: HttpAnswer, detail: str) -> ProviderError:
    message = f"HTTP {answer.status_code}: {detail}"
    if issubclass(cls, Transient):
        return cls(message, retry_after_seconds(answer.headers))
    return cls(message)


def joined(parts: Iterable[Any]) -> str | None:
    """The readable parts joined by spaces (e.g. VeoGen's `error` and `message`), or None."""
    lines = [line for line in (text(part) for part in parts) if line]
    return text(" ".join(lines)) if lines else None
