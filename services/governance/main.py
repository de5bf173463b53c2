"""``memgrid serve --service governance``: the audit subscriber as a faust worker.

Governance is the audit log over every memory.* topic and, in the same worker,
the compliance scanner (services.governance.compliance). faust is imported
inside ``serve`` only.
"""

from __future__ import annotations

from shared.settings import Settings


def serve(settings: Settings) -> None:
    from services.governance.compliance import add_compliance_agent
    from services.governance.stream import create_app
    from shared.faust_worker import run_worker
    from shared.streams import ensure_faust_topics

    stream = create_app(settings)
    scanner = add_compliance_agent(stream.app, settings)
    ensure_faust_topics(stream.app, settings)
    print(
        f"memgrid governance ({settings.governance.app_id}): audit log {stream.audit.path}",
        flush=True,
    )
    try:
        run_worker(stream.app, settings)
    finally:
        scanner.close()
        stream.audit.close()
