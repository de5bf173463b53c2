"""Web views of the scheduler's faust app (its web server on ``scheduler.web_port``).

* ``GET /usage/{cube_id}`` (``?tenant=`` must match when given): the explain
  view of embedded mode (engine.explain: counters, scores as of now, caches and
  adapters holding the cube, last decisions with their reasons). Routed to the
  worker that owns the cube's usage and journal partitions; the caches and
  adapters come from the namespace record, which that worker asks the
  namespace's owner for (``/spaces/...``) when it is another worker.
* ``GET /spaces/{namespace}`` (``?tenant=``): a namespace record's view
  (members, caches, adapters, pending commands), routed to its owner.
* ``GET /stats/usage``: counters and latency p50/p99 (``?latency=0`` leaves out
  the percentiles, ``?reset=latency`` starts a new latency window).
* ``GET /healthz``; ``GET /readyz``: 503 until the tables are restored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from faust.exceptions import SameNode

from services.scheduler.engine import Scheduler, explain
from services.scheduler.routing import space_targets, space_view
from services.scheduler.usage import UsageStats
from shared.settings import Settings

if TYPE_CHECKING:
    import faust

    from services.scheduler.topology import Tables

log = logging.getLogger(__name__)


def problem(web: Any, status: int, code: str, detail: str) -> Any:
    titles = {404: "Not Found", 502: "Bad Gateway", 503: "Service Unavailable"}
    body = {
        "type": "about:blank",
        "title": titles.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    return web.json(body, status=status, content_type="application/problem+json")


async def _route(app: Any, table: Any, key: str, web: Any, request: Any) -> Any | None:
    """The owner's answer, or None when this worker owns ``key`` (answer locally)."""
    try:
        return await app.router.route_req(table.name, key, web, request)
    except SameNode:
        return None
    except TypeError:  # partition metadata not loaded yet: answer locally
        log.warning("no partition metadata for table %s yet", table.name)
        return None


def add_views(
    app: faust.App,
    tables: Tables,
    scheduler: Scheduler,
    stats: UsageStats,
    settings: Settings,
    clock: Callable[[], datetime],
) -> None:
    timeout_s = settings.vault.timeout_s

    async def targets_of(namespace: str, cube_id: str) -> dict[str, list[str]] | None:
        """Caches and adapters of ``namespace`` holding the cube; None if unknown."""
        if tables.owns(tables.spaces, namespace):
            return space_targets(scheduler.spaces.get(namespace), cube_id)
        import aiohttp  # faust's own HTTP stack

        url = app.router.key_store(tables.spaces.name, namespace)
        try:
            async with app.http_client.get(
                f"{str(url).rstrip('/')}/spaces/{namespace}",
                params={"raw": "1"},
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as r:
                if r.status == 404:
                    return space_targets(None, cube_id)
                r.raise_for_status()
                return space_targets(await r.json(), cube_id)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("namespace %s: owner %s did not answer: %r", namespace, url, exc)
            return None

    @app.page("/usage/{cube_id}")
    async def usage(web: Any, request: Any, cube_id: str) -> Any:
        routed = await _route(app, tables.usage, cube_id, web, request)
        if routed is not None:
            return routed
        view = explain(scheduler, cube_id, clock(), tenant=request.query.get("tenant"))
        if view is None:
            return problem(web, 404, "usage_not_found", f"no usage recorded for {cube_id!r}")
        if view.get("namespace"):
            found = await targets_of(view["namespace"], cube_id)
            if found is None:  # the view still answers; say what is missing
                view["caches"] = view["adapters"] = None
            else:
                view.update(found)
        return web.json(view)

    @app.page("/spaces/{namespace}")
    async def space(web: Any, request: Any, namespace: str) -> Any:
        routed = await _route(app, tables.spaces, namespace, web, request)
        if routed is not None:
            return routed
        data = scheduler.spaces.get(namespace)
        tenant = request.query.get("tenant")
        if data is None or (tenant is not None and data.get("tenant") != tenant):
            return problem(web, 404, "namespace_not_found", f"no state for {namespace!r}")
        if request.query.get("raw") == "1":  # between workers: targets with their cubes
            return web.json({k: data.get(k, {}) for k in ("caches", "adapters")})
        return web.json(space_view(data))

    @app.page("/stats/usage")
    async def usage_stats(web: Any, request: Any) -> Any:
        body = stats.as_dict(latency=request.query.get("latency") != "0")
        body["cubes"] = len(tables.usage)
        body["namespaces"] = len(tables.spaces)
        if request.query.get("reset") == "latency":  # benches measure one run at a time
            stats.reset_latency()
        return web.json(body)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        if not tables.ready():
            return problem(web, 503, "recovering", "restoring the tables from their changelogs")
        return web.json({"status": "ready"})
