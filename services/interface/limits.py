"""Request limits (413) and the checks pydantic cannot express (422).

``BodyLimitMiddleware`` refuses a body larger than ``limits.max_body_bytes``
before the app reads it: at once when Content-Length says so, otherwise while it
streams in. The ``check_*`` functions run in the routes after pydantic: sizes
from settings become 413 ``payload_too_large`` naming the field; values that
would break storage or JSON (non-finite floats, integers beyond 64 bits, deeply
nested metadata, dates that leave years 1-9999 in UTC) become 422.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import FieldError, NotFound, PayloadTooLarge, ValidationFailed
from shared.http_problems import problem_response
from shared.schemas.api import MemoryCreate, MemoryPatch, SearchRequest
from shared.settings import LimitSettings, SearchSettings

MAX_METADATA_DEPTH = 16
_INT64 = 2**63
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@~\-]{0,199}$")


class BodyLimitMiddleware:
    """Pure ASGI: buffers the body up to the limit, answers 413 beyond it."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max:
                    await self._refuse(scope, receive, send)
                    return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        err = PayloadTooLarge(
            f"request body exceeds {self.max} bytes",
            [FieldError("body", f"at most {self.max} bytes")],
        )
        await problem_response(err, scope.get("path"), {"Connection": "close"})(
            scope, receive, send
        )


# --- field checks ---------------------------------------------------------------


def check_id(value: str, what: str = "resource") -> str:
    """Ids memgrid never issues cannot exist: 404, like another tenant's ids."""
    if not _ID_RE.match(value):
        raise NotFound(f"{what} not found")
    return value


def _too_large(field: str, message: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"{field}: {message}", [FieldError(field, message)])


def _check_json_value(value: Any, field: str, depth: int = 0) -> None:
    """Rejects what JSON or the stores cannot hold; iterates, never recurses deeply."""
    stack: list[tuple[Any, str, int]] = [(value, field, depth)]
    while stack:
        v, path, d = stack.pop()
        if d > MAX_METADATA_DEPTH:
            raise ValidationFailed(
                f"{field} is nested too deeply",
                [FieldError(path, f"nesting deeper than {MAX_METADATA_DEPTH} levels")],
            )
        if isinstance(v, bool) or v is None or isinstance(v, str):
            continue
        if isinstance(v, int):
            if not -_INT64 <= v < _INT64:
                raise ValidationFailed(
                    f"{path}: integer out of range",
                    [FieldError(path, "integers must fit in 64 bits")],
                )
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise ValidationFailed(
                    f"{path}: number out of range",
                    [FieldError(path, "numbers must be finite")],
                )
        elif isinstance(v, dict):
            stack.extend((item, f"{path}.{k}", d + 1) for k, item in v.items())
        elif isinstance(v, list):
            stack.extend((item, f"{path}.{i}", d + 1) for i, item in enumerate(v))


def check_metadata(metadata: dict[str, Any] | None, field: str, limits: LimitSettings) -> None:
    if not metadata:
        return
    _check_json_value(metadata, field)
    size = len(json.dumps(metadata, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > limits.max_metadata_bytes:
        raise _too_large(field, f"at most {limits.max_metadata_bytes} bytes of JSON, got {size}")


def check_tags(tags: list[str] | None, field: str, limits: LimitSettings) -> None:
    if tags is None:
        return
    if len(tags) > limits.max_tags:
        raise _too_large(field, f"at most {limits.max_tags} tags, got {len(tags)}")
    for i, t in enumerate(tags):
        if not 1 <= len(t) <= 128:
            raise ValidationFailed(
                f"{field}.{i}: bad tag", [FieldError(f"{field}.{i}", "1-128 characters")]
            )


def check_text(text: str | None, field: str, limits: LimitSettings) -> None:
    if text is not None and len(text) > limits.max_text_chars:
        raise _too_large(field, f"at most {limits.max_text_chars} characters, got {len(text)}")


def check_datetime(value: datetime | None, field: str) -> None:
    if value is None:
        return
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValidationFailed(
            f"{field}: out of range", [FieldError(field, "must fall within years 1-9999 UTC")]
        ) from None


def check_memory_create(req: MemoryCreate, limits: LimitSettings) -> None:
    if (req.text is None) == (req.messages is None):
        raise ValidationFailed(
            "give either text or messages, not both",
            [FieldError("body.text", "give either text or messages (not both)")],
        )
    check_text(req.text, "body.text", limits)
    check_metadata(req.metadata, "body.metadata", limits)
    check_tags(req.tags, "body.tags", limits)
    check_datetime(req.event_time, "body.event_time")
    if req.messages is None:
        return
    if len(req.messages) > limits.max_messages:
        raise _too_large(
            "body.messages", f"at most {limits.max_messages} messages, got {len(req.messages)}"
        )
    for i, m in enumerate(req.messages):
        check_text(m.content, f"body.messages.{i}.content", limits)
        check_datetime(m.timestamp, f"body.messages.{i}.timestamp")


def check_memory_patch(patch: MemoryPatch, limits: LimitSettings) -> None:
    if patch.text is None and patch.metadata is None and patch.tags is None:
        raise ValidationFailed(
            "nothing to change", [FieldError("body", "give text, metadata or tags")]
        )
    check_text(patch.text, "body.text", limits)
    check_metadata(patch.metadata, "body.metadata", limits)
    check_tags(patch.tags, "body.tags", limits)


def check_search(req: SearchRequest, limits: LimitSettings, search: SearchSettings) -> None:
    if len(req.query) > limits.max_query_chars:
        raise _too_large(
            "body.query", f"at most {limits.max_query_chars} characters, got {len(req.query)}"
        )
    if len(req.namespaces) > limits.max_namespaces_per_search:
        raise _too_large(
            "body.namespaces",
            f"at most {limits.max_namespaces_per_search} namespaces, got {len(req.namespaces)}",
        )
    if req.top_k > search.max_top_k:
        raise ValidationFailed(
            f"top_k above {search.max_top_k}",
            [FieldError("body.top_k", f"must be at most {search.max_top_k}")],
        )
    for i, ns in enumerate(req.namespaces):
        check_id(ns, f"namespace {i}")
    f = req.filters
    if f is None:
        return
    for name in ("tags_any", "tags_all"):
        check_tags(getattr(f, name), f"body.filters.{name}", limits)
    check_metadata(f.metadata, "body.filters.metadata", limits)
    check_datetime(f.event_time_from, "body.filters.event_time_from")
    check_datetime(f.event_time_to, "body.filters.event_time_to")
