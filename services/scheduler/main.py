"""``memgrid serve --service scheduler``: the usage stream processor as a faust worker.

faust is imported here, inside ``serve``, so that importing the scheduler's
processing logic (embedded mode) never needs faust installed.
"""

from __future__ import annotations

from shared.settings import Settings


def serve(settings: Settings) -> None:
    from services.scheduler.stream import create_app
    from shared.faust_worker import ensure_extra_topics, run_worker
    from shared.streams import ensure_faust_topics

    stream = create_app(settings)
    # Declared topics, the table's changelog and the lifecycle repartition topic
    # exist before the worker joins: faust is not allowed to create topics itself.
    ensure_faust_topics(stream.app, settings)
    ensure_extra_topics(settings, stream.internal_topics)
    cfg = settings.scheduler
    web = f"http://{settings.host}:{cfg.web_port}"
    print(f"memgrid scheduler ({cfg.app_id}): usage at {web}/usage/CUBE_ID", flush=True)
    run_worker(stream.app, settings, fetch_max_wait_ms=cfg.fetch_max_wait_ms)
