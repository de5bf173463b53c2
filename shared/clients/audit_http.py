"""AuditReader over the governance service's internal route (distributed mode).

The interface checks the caller's role; the governance worker, which owns the
audit log file, answers with the caller's tenant's records only.
"""

from __future__ import annotations

import httpx

from shared.errors import Unavailable
from shared.ports.audit import AuditPage, AuditQuery
from shared.settings import GovernanceSettings


class HttpAuditReader:
    def __init__(self, cfg: GovernanceSettings, client: httpx.Client | None = None) -> None:
        headers = {}
        if cfg.service_token is not None:
            headers["X-Memgrid-Service-Token"] = cfg.service_token.get_secret_value()
        self._http = client or httpx.Client(
            base_url=cfg.base_url(), timeout=cfg.timeout_s, headers=headers
        )

    def close(self) -> None:
        self._http.close()

    def query(self, tenant: str, q: AuditQuery) -> AuditPage:
        params = {"tenant": tenant, **q.model_dump(mode="json", exclude_none=True)}
        try:
            r = self._http.get("/internal/audit", params=params)
        except httpx.TransportError as exc:
            raise Unavailable(f"audit log unreachable: {type(exc).__name__}") from exc
        if r.status_code != 200:
            raise Unavailable(f"audit log answered {r.status_code}")
        return AuditPage.model_validate(r.json())
