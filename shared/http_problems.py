"""RFC 9457 problem responses: the model, the OpenAPI declarations, the handlers.

Every error the API returns is ``application/problem+json`` with a stable
``code`` (see shared.errors). Handlers cover MemgridError, request validation
(422 ``validation_failed`` naming each field as ``body.messages.3.content``),
malformed JSON (400 ``invalid_json``), routing errors (404, 405) and, last, any
unexpected exception (500, logged with its stack, nothing internal in the body).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from shared.errors import (
    PROBLEM_MEDIA_TYPE,
    BadRequest,
    FieldError,
    MemgridError,
    NotFound,
    Unauthorized,
    ValidationFailed,
)

log = logging.getLogger("memgrid.http")


class ProblemFieldError(BaseModel):
    field: str = Field(description="dotted path into the request, e.g. body.messages.3.content")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, with memgrid's stable ``code``."""

    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="stable, machine-readable error code")
    instance: str | None = None
    errors: list[ProblemFieldError] | None = None


_DESCRIPTIONS = {
    400: "Malformed request (e.g. invalid JSON)",
    401: "Missing or invalid API key",
    403: "Not allowed",
    404: "Not found (or belongs to another tenant)",
    405: "Method not allowed",
    409: "Conflict (e.g. the name is taken)",
    413: "Payload too large",
    422: "Validation failed; `errors` names the fields",
    429: "Too many requests",
    503: "A dependency is unavailable; retry later",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given problem statuses.

    FastAPI files a response ``model`` under ``application/json``;
    services.interface.openapi moves it to ``application/problem+json``.
    """
    return {s: {"model": Problem, "description": _DESCRIPTIONS.get(s, "Error")} for s in statuses}


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem_response(
    err: MemgridError, instance: str | None = None, headers: dict[str, str] | None = None
) -> ProblemResponse:
    return ProblemResponse(err.to_problem(instance), status_code=err.status, headers=headers)


def field_path(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc)


# pydantic names the member of a union that failed as an extra loc element
# (``metadata.k.str``, ``metadata.k.int``...); clients want the field itself.
_UNION_TAG = re.compile(r"^(str|int|float|bool|bytes|none|[a-z][a-z_-]*\[.*\])$")


def _field_errors(errors: Iterable[Any]) -> list[FieldError]:
    merged: dict[str, list[str]] = {}
    for e in errors:
        if not isinstance(e, dict):
            continue
        loc = list(e.get("loc", ()))
        if len(loc) > 2 and isinstance(loc[-1], str) and _UNION_TAG.match(loc[-1]):
            loc.pop()
        messages = merged.setdefault(field_path(loc) or "body", [])
        msg = str(e.get("msg", "invalid value"))
        if msg not in messages:
            messages.append(msg)
    return [FieldError(path, "; ".join(msgs)) for path, msgs in merged.items()]


async def _memgrid_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, MemgridError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return problem_response(exc, request.url.path, headers)


async def _validation_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    bad_json = [e for e in errors if isinstance(e, dict) and e.get("type") == "json_invalid"]
    if bad_json:
        ctx = bad_json[0].get("ctx") or {}
        reason = str(ctx.get("error", "invalid JSON"))
        err: MemgridError = BadRequest(
            f"request body is not valid JSON: {reason}", [FieldError("body", reason)]
        )
        err.code = "invalid_json"
    else:
        fields = _field_errors(errors)
        names = ", ".join(f.field for f in fields[:5])
        err = ValidationFailed(f"invalid request: {names}" if names else "invalid request", fields)
    return problem_response(err, request.url.path)


async def _http_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else "error"
    if status == 404:
        err: MemgridError = NotFound("no such resource")
    else:
        code = {
            400: "bad_request",
            405: "method_not_allowed",
            413: "payload_too_large",
            415: "unsupported_media_type",
        }.get(status, f"http_{status}")
        err = MemgridError(detail, [], status, code, detail or "Error")
        if status == 405:
            err.title = "Method not allowed"
    headers = dict(exc.headers) if exc.headers else None
    return problem_response(err, request.url.path, headers)


async def _unexpected(request: Request, exc: Exception) -> ProblemResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    err = MemgridError("an unexpected error occurred; it has been logged")
    return problem_response(err, request.url.path)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MemgridError, _memgrid_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
