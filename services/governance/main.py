"""``memgrid serve --service governance``: the audit subscriber as a faust worker.

For now governance is the audit log over every memory.* topic; policies,
compliance scanning and erasure come with their issues. faust is imported
inside ``serve`` only.
"""

from __future__ import annotations

from shared.settings import Settings


def serve(settings: Settings) -> None:
    from services.governance.stream import create_app
    from shared.faust_worker import run_worker
    from shared.streams import ensure_faust_topics

    stream = create_app(settings)
    ensure_faust_topics(stream.app, settings)
    print(
        f"memgrid governance ({settings.governance.app_id}): audit log {stream.audit.path}",
        flush=True,
    )
    try:
        run_worker(stream.app, settings)
    finally:
        stream.audit.close()
