"""HttpScheduler: the SchedulerAPI over the scheduler's web server (distributed mode).

The scheduler (a faust app) serves ``GET /usage/{cube_id}?tenant=T`` on
``scheduler.web_port``, routed to the worker that owns the cube; 404 (problem
``usage_not_found``) means no record, or another tenant's. Anything else that
is not a usage view (refused, timed out, a 5xx, a body that is not a JSON
object) raises Unavailable with code ``scheduler_unavailable``: the public API
answers 503 and never a 500.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from opentelemetry.propagate import inject

from shared.errors import Unavailable
from shared.settings import SchedulerSettings

UNAVAILABLE = "scheduler_unavailable"
NOT_FOUND = "usage_not_found"  # the scheduler's problem code for "no record"


class HttpScheduler:
    def __init__(self, cfg: SchedulerSettings, client: httpx.Client | None = None) -> None:
        """``client`` lets tests pass their own (a mock transport, a TestClient)."""
        self.url = cfg.web_url().rstrip("/")
        self._http = client or httpx.Client(base_url=self.url, timeout=cfg.timeout_s)

    def close(self) -> None:
        self._http.close()

    def explain(self, tenant: str | None, cube_id: str) -> dict[str, Any] | None:
        params = {} if tenant is None else {"tenant": tenant}
        headers: dict[str, str] = {}
        inject(headers)  # traceparent: the scheduler's side joins the caller's trace
        try:
            r = self._http.get(f"/usage/{quote(cube_id, safe='')}", params=params, headers=headers)
        except httpx.TransportError as exc:
            raise Unavailable(f"scheduler unreachable: {type(exc).__name__}", UNAVAILABLE) from exc
        if r.status_code == 404:
            if _code(r) == NOT_FOUND:
                return None
            # Some other server's 404 (a wrong URL): not "no usage" for every memory.
            raise Unavailable(f"no scheduler usage view at {self.url}", UNAVAILABLE)
        if r.status_code != 200:
            raise Unavailable(f"scheduler answered {r.status_code}", UNAVAILABLE)
        try:
            body = r.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise Unavailable("scheduler answered something that is not a usage view", UNAVAILABLE)
        return body


def _code(r: httpx.Response) -> str | None:
    try:
        body = r.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None
