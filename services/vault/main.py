"""``memgrid serve --service vault``: the system of record as its own process."""

from __future__ import annotations

from shared.settings import Settings


def serve(settings: Settings) -> None:
    import uvicorn

    from services.vault.app import create_app
    from services.vault.factory import build_vault
    from shared.logging_setup import uvicorn_log_config

    vault = build_vault(settings)
    vault.start()  # the relay first publishes what a previous process left in the outbox
    app = create_app(settings, vault)
    print(f"memgrid vault on http://{settings.host}:{settings.port}", flush=True)
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            log_config=uvicorn_log_config(settings),
        )
    finally:
        vault.close()
