"""``memgrid serve --service interface``: the public API as its own process."""

from __future__ import annotations

from shared.clients.vault_http import HttpVault
from shared.errors import ConfigError
from shared.settings import Settings


def serve(settings: Settings) -> None:
    import uvicorn

    from services.interface.app import create_app

    if not settings.vault.url.startswith(("http://", "https://")):
        raise ConfigError(
            "the interface service needs the vault's URL: MEMGRID_VAULT__URL=http://host:port"
        )
    vault = HttpVault(settings.vault)
    app = create_app(settings, vault)
    print(f"memgrid interface on http://{settings.host}:{settings.port}", flush=True)
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)
    finally:
        vault.close()
