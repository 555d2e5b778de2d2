"""Errors as `application/problem+json` (RFC 9457): `{"type", "title", "status", "detail", "code"}`.

`code` is an INTERFACE.md error code: a refused request is `invalid_request` with the one-line reason the command
line gives; the HTTP-only codes are `unauthorized` (401), `not_found` (404), `conflict` (409), `rate_limited`
(429, with Retry-After) and `internal_error` (500: a fault of genqueue's, logged with its traceback, which the answer
never shows). Every error the API answers goes through `problem`.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import GenqueueError, InvalidRequest

log = logging.getLogger("genqueue.api")

PROBLEM_TYPE = "application/problem+json"
#: HTTP status -> the code a problem with that status carries when nothing more specific applies
STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "invalid_request",
    409: "conflict",
    413: "invalid_request",
    415: "invalid_request",
    422: "invalid_request",
    429: "rate_limited",
}


class Problem(BaseModel):
    """An error answer; `type` is about:blank (the `code` says which error it is)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str


class ApiProblem(Exception):
    """Raised by a route to answer with a problem: `status`, `code`, a one-line `detail`, extra headers."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def not_found(what: str) -> ApiProblem:
    return ApiProblem(404, "not_found", f"no {what}")


def problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The problem+json answer."""
    body = Problem(title=HTTPStatus(status).phrase, status=status, detail=detail, code=code)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers, media_type=PROBLEM_TYPE)


#: the answers every route may give besides its own, for the OpenAPI document
PROBLEM_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": Problem, "description": HTTPStatus(status).phrase, "content": {PROBLEM_TYPE: {}}}
    for status in (401, 404, 422, 429)
}


def install(app: FastAPI) -> None:
    """Answer every error with a problem: ours, FastAPI's validation errors, Starlette's HTTP errors, the rest."""

    @app.exception_handler(ApiProblem)
    async def _ours(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(InvalidRequest)
    async def _refused(request: Request, exc: InvalidRequest) -> JSONResponse:
        return problem(422, exc.code, exc.message)

    @app.exception_handler(GenqueueError)
    async def _genqueue(request: Request, exc: GenqueueError) -> JSONResponse:
        return problem(422, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, "invalid_request", _validation_line(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code, "invalid_request" if exc.status_code < 500 else "internal_error")
        return problem(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s: unexpected %s", request.method, request.url.path, type(exc).__name__)
        return problem(500, "internal_error", f"internal error: {type(exc).__name__}")


def _validation_line(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    if tuple(first.get("loc", ())) == ("body",):
        return "the body must be a JSON object, sent with Content-Type: application/json"
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    if first.get("type") == "extra_forbidden":
        return f"unknown field {where!r}"
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{where}: {message}{more}"
