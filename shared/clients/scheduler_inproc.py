"""The SchedulerAPI over a scheduler running in this process (embedded mode).

It wraps any object with the embedded scheduler's ``explain(cube_id, *, tenant)``
(services.scheduler.inproc.EmbeddedScheduler), which the composition root
(services/embedded.py) passes in: the interface never imports the scheduler.
"""

from __future__ import annotations

from typing import Any, Protocol


class Explainer(Protocol):
    def explain(self, cube_id: str, *, tenant: str | None = None) -> dict[str, Any] | None: ...


class InProcessScheduler:
    def __init__(self, scheduler: Explainer) -> None:
        self._scheduler = scheduler

    def explain(self, tenant: str | None, cube_id: str) -> dict[str, Any] | None:
        return self._scheduler.explain(cube_id, tenant=tenant)


class NoScheduler:
    """No scheduler in this deployment (an app built without one, e.g. in tests):
    every memory reads as not yet tracked, with zero counters."""

    def explain(self, tenant: str | None, cube_id: str) -> dict[str, Any] | None:
        return None
