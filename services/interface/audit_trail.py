"""The API's decisions as audit events: one ``audit.decision`` per /v1 request.

Pure ASGI middleware. It holds the response until the decision is published
or durably spooled (services/interface/decision_spool.py): the audit subscriber
(services/governance) appends it to the hash-chained log. If neither can be
done the request fails closed with 503 ``audit_unavailable``: an unaudited
answer, a denial above all, is what an auditor must be able to rule out. What
goes in: the route template, the ids in the path, the caller (principal, role,
key prefix: never the key), the status, the outcome and the problem code; never
the body or the query.

Outcome: 2xx/3xx ``allow``; 401, 403, 404 and 429 ``deny`` (a 404 is how the
vault refuses what the caller may not see); other 4xx ``reject``; 5xx ``error``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import Unavailable
from shared.http_problems import problem_response
from shared.schemas.api import Caller
from shared.schemas.events import ApiDecision, EventEnvelope, make_event
from shared.security import parse_api_key
from shared.telemetry import current_traceparent

log = logging.getLogger(__name__)
SOURCE = "/memgrid/interface"
DENY = frozenset({401, 403, 404, 429})
UNKNOWN_TENANT = "-"  # requests whose key named no tenant (bad or missing keys)
Publish = Callable[[EventEnvelope], None]
TenantOfKey = Callable[[str], str | None]


def outcome_of(status: int) -> str:
    if status >= 500:
        return "error"
    if status in DENY:
        return "deny"
    if status >= 400:
        return "reject"
    return "allow"


def _bearer_prefix(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            token = value.decode("latin-1")
            if token[:7].lower() == "bearer ":
                return parse_api_key(token[7:].strip())
    return None


class AuditTrailMiddleware:
    def __init__(self, app: ASGIApp, publish: Publish, tenant_of_key: TenantOfKey) -> None:
        self.app = app
        self.publish = publish
        self.tenant_of_key = tenant_of_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        decided = False
        refused = False  # the decision was not published: 503 went out instead

        async def audited_send(message: Message) -> None:
            nonlocal held, decided, refused
            if refused:
                return  # the app's own answer is dropped: the client has the 503
            if decided:
                await send(message)
                return
            if message["type"] == "http.response.start":
                if int(message["status"]) < 400:
                    decided = True
                    if await self._decide(scope, int(message["status"]), None, send):
                        await send(message)
                    else:
                        refused = True
                else:
                    held = message  # wait for the body: it names the problem code
                return
            if message["type"] == "http.response.body" and held is not None:
                code = _problem_code(message.get("body", b""))
                decided = True
                if await self._decide(scope, int(held["status"]), code, send):
                    await send(held)
                    await send(message)
                else:
                    refused = True
                return
            await send(message)

        await self.app(scope, receive, audited_send)

    async def _decide(self, scope: Scope, status: int, code: str | None, send: Send) -> bool:
        """Publishes the decision; on failure answers 503 instead and returns False."""
        try:
            self.publish(self._event(scope, status, code))
            return True
        except Exception as exc:  # any bus failure: fail closed
            log.error("audit decision not published: %s", type(exc).__name__)
            err = Unavailable("the audit trail is unavailable", code="audit_unavailable")
            response = problem_response(err, scope.get("path"))

            async def no_body() -> Message:
                return {"type": "http.request", "body": b"", "more_body": False}

            await response(scope, no_body, send)
            return False

    def _event(self, scope: Scope, status: int, code: str | None) -> EventEnvelope:
        state = scope.get("state") or {}
        caller = state.get("caller")
        route = getattr(scope.get("route"), "path", None) or "(unmatched)"
        path_ids = {k: str(v)[:200] for k, v in (scope.get("path_params") or {}).items()}
        if isinstance(caller, Caller):
            tenant, principal, role, prefix = (
                caller.tenant,
                caller.principal,
                caller.role,
                caller.key_prefix,
            )
        else:
            prefix = _bearer_prefix(scope)
            tenant = (self.tenant_of_key(prefix) if prefix else None) or UNKNOWN_TENANT
            principal, role = None, None
        data = ApiDecision(
            request_id=str(uuid.uuid4()),
            method=str(scope.get("method", "")),
            route=route,
            path_ids=path_ids,
            status=status,
            outcome=outcome_of(status),
            code=code,
            principal=principal,
            key_prefix=prefix,
            role=role,
        )
        namespace = path_ids.get("namespace_id")
        return make_event(
            data,
            source=SOURCE,
            tenant=tenant,
            namespace=namespace,
            traceparent=current_traceparent(),
        )


def _problem_code(body: bytes) -> str | None:
    try:
        doc = json.loads(body[:65536])
    except ValueError:
        return None
    code = doc.get("code") if isinstance(doc, dict) else None
    return str(code)[:100] if code is not None else None
