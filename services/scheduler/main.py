"""``memgrid serve --service scheduler``: the scheduler as a faust worker.

faust is imported here, inside ``serve``, so that importing the scheduler's
processing logic (embedded mode) never needs faust installed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from shared.schemas.memcube import utcnow
from shared.settings import Settings


def serve(settings: Settings, *, clock: Callable[[], datetime] = utcnow) -> None:
    """Runs the worker until it is stopped. ``clock`` gives tick times: the wall
    clock in production; tests run this with another one."""
    from services.scheduler.stream import create_app
    from shared.faust_worker import run_worker
    from shared.streams import ensure_faust_topics
    from shared.topics import create_missing_topics

    stream = create_app(settings, clock=clock)
    # Declared topics, the tables' changelogs and the internal topics exist
    # before the worker joins: faust is not allowed to create topics itself. The
    # internal ones first: the namespace table's changelog needs a larger
    # message size than ensure_faust_topics would give it.
    create_missing_topics(settings.bus, stream.internal_topics, client="topics")
    ensure_faust_topics(stream.app, settings)
    cfg = settings.scheduler
    web = f"http://{settings.host}:{cfg.web_port}"
    print(f"memgrid scheduler ({cfg.app_id}): usage at {web}/usage/CUBE_ID", flush=True)
    run_worker(stream.app, settings, fetch_max_wait_ms=cfg.fetch_max_wait_ms)
