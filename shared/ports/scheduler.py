"""SchedulerAPI: what the interface asks of the scheduler (explain), in process or over HTTP.

The interface depends only on this Protocol. Embedded mode hands it an adapter
over the scheduler running in the same process
(shared.clients.scheduler_inproc); distributed mode an HTTP client of the
scheduler's web server (shared.clients.scheduler_http).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class SchedulerAPI(Protocol):
    def explain(self, tenant: str | None, cube_id: str) -> dict[str, Any] | None:
        """The scheduler's JSON view of one cube's usage (shared.schemas.usage reads it):
        counters, and where the scheduler has them scores, caches, adapters and its
        last decisions. None when the scheduler has no record of the cube, or the
        record belongs to a tenant other than ``tenant`` (None: any tenant, for
        operators). Raises shared.errors.Unavailable when the scheduler cannot be
        asked."""
        ...
