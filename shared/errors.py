"""Error types shared by every service, each mapping to an RFC 9457 problem.

Services raise these; the HTTP layer turns them into ``application/problem+json``
with a stable ``code`` that clients may switch on. Codes are part of the public
contract: add new ones, never rename.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROBLEM_BASE = "https://memgrid.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True)
class FieldError:
    """One field at fault, named as a dotted path into the request body."""

    field: str
    message: str


@dataclass
class MemgridError(Exception):
    """Base of every error a client can see. Subclasses fix status and code."""

    detail: str
    errors: list[FieldError] = field(default_factory=list)
    status: int = 500
    code: str = "internal"
    title: str = "Internal error"

    def __post_init__(self) -> None:
        Exception.__init__(self, self.detail)

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = [{"field": e.field, "message": e.message} for e in self.errors]
        return body


class ValidationFailed(MemgridError):
    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail, errors or [], 422, "validation_failed", "Validation failed")


class BadRequest(MemgridError):
    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail, errors or [], 400, "bad_request", "Bad request")


class Unauthorized(MemgridError):
    def __init__(self, detail: str = "missing or invalid API key") -> None:
        super().__init__(detail, [], 401, "unauthorized", "Unauthorized")


class Forbidden(MemgridError):
    def __init__(self, detail: str = "not allowed", code: str = "forbidden") -> None:
        super().__init__(detail, [], 403, code, "Forbidden")


class NotFound(MemgridError):
    def __init__(self, detail: str = "not found", code: str = "not_found") -> None:
        super().__init__(detail, [], 404, code, "Not found")


class Conflict(MemgridError):
    def __init__(self, detail: str, code: str = "conflict") -> None:
        super().__init__(detail, [], 409, code, "Conflict")


class IllegalTransition(Conflict):
    """A lifecycle change the state machine (shared.lifecycle) does not allow."""

    def __init__(self, from_state: str, to_state: str, detail: str | None = None) -> None:
        super().__init__(
            detail or f"a memory cannot go from lifecycle state {from_state!r} to {to_state!r}",
            code="illegal_transition",
        )
        self.from_state = from_state
        self.to_state = to_state

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        # Extension members (RFC 9457 §3.2), so a client need not parse the detail.
        return {**super().to_problem(instance), "from": self.from_state, "to": self.to_state}


class PiiRejected(MemgridError):
    """The namespace's policy rejects personal data or secrets and the input holds some."""

    def __init__(self, detail: str, errors: list[FieldError]) -> None:
        super().__init__(detail, errors, 422, "pii_rejected", "Personal data rejected")


class LegalHold(Conflict):
    """The namespace is on legal hold: nothing in it expires, is deleted or erased."""

    def __init__(self, namespace: str, action: str) -> None:
        super().__init__(
            f"namespace {namespace!r} is on legal hold: {action} is refused until it is lifted",
            code="legal_hold",
        )
        # Named in the detail only: extension members do not survive HttpVault, and
        # both modes must answer alike.
        self.namespace = namespace


class PayloadTooLarge(MemgridError):
    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail, errors or [], 413, "payload_too_large", "Payload too large")


class RateLimited(MemgridError):
    def __init__(self, detail: str = "rate limit exceeded") -> None:
        super().__init__(detail, [], 429, "rate_limited", "Too many requests")


class Unavailable(MemgridError):
    """A dependency (store, bus) is down; the client may retry later."""

    def __init__(self, detail: str, code: str = "dependency_unavailable") -> None:
        super().__init__(detail, [], 503, code, "Service unavailable")


class ConfigError(Exception):
    """Start-up configuration is wrong (unknown setting or backend). Never a client error."""
