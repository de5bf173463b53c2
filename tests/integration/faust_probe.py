"""A faust worker built with shared.streams, run as a subprocess by test_faust_stream.

It consumes memory.accessed with ``handle_events`` and appends one JSON line
per handled event to the file named by argv[2]. An event whose ``query_id`` is
``"fail"`` makes the handler raise, so the test sees it dead-lettered. Settings
come from the environment (MEMGRID_BUS__URL, MEMGRID_BUS__DEAD_LETTER_TOPIC, ...).
"""

from __future__ import annotations

import json
import sys

import faust

from shared.schemas.events import EventEnvelope
from shared.settings import load_settings
from shared.streams import ensure_faust_topics, event_topic, handle_events, make_faust_app
from shared.topics import MEMORY_ACCESSED


def main() -> None:
    app_id, out_path = sys.argv[1], sys.argv[2]
    settings = load_settings()
    app = make_faust_app(app_id, settings)
    accessed = event_topic(app, MEMORY_ACCESSED.name, settings.bus)
    out = open(out_path, "a", encoding="utf-8")  # noqa: SIM115 - open for the worker's life

    async def record(event: EventEnvelope) -> None:
        if event.data.get("query_id") == "fail":
            raise RuntimeError("probe handler refuses this event")
        out.write(json.dumps({"id": event.id, "tenant": event.tenant}) + "\n")
        out.flush()

    @app.agent(accessed)
    async def track(stream: faust.StreamT) -> None:
        await handle_events(stream, record, app=app, settings=settings)

    ensure_faust_topics(app, settings)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
