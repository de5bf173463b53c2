"""AuditReader: what ``GET /v1/audit`` asks of the audit log (services/governance).

Embedded mode reads the log file in process; distributed mode asks the governance
worker over HTTP (shared/clients/audit_http.py). Every query is for one tenant:
records of other tenants are never returned.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

MAX_AUDIT_PAGE = 1000


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic: str | None = Field(default=None, max_length=200, description="e.g. audit.decision")
    principal: str | None = Field(default=None, max_length=300)
    namespace: str | None = Field(default=None, max_length=200)
    outcome: str | None = Field(default=None, pattern="^(allow|deny|reject|error)$")
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    after: int = Field(default=0, ge=0, description="cursor: records with a larger seq")
    limit: int = Field(default=100, ge=1, le=MAX_AUDIT_PAGE)


class AuditRecord(BaseModel):
    seq: int
    hash: str
    prev_hash: str
    recorded_at: datetime
    topic: str
    event: dict[str, Any]


class AuditPage(BaseModel):
    records: list[AuditRecord]
    next_after: int | None = Field(description="pass as `after` for the next page; null: none")


class AuditReader(Protocol):
    def query(self, tenant: str, q: AuditQuery) -> AuditPage: ...
