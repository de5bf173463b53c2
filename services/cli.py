"""The ``memgrid`` command."""

from __future__ import annotations

import argparse
import logging
import sys

from shared.errors import ConfigError

# Each service's process entry point, imported only when that service is started.
SERVICES: dict[str, str] = {
    "embedded": "services.embedded:serve",
    "interface": "services.interface.main:serve",
    "vault": "services.vault.main:serve",
    "scheduler": "services.scheduler.main:serve",
    "governance": "services.governance.main:serve",
}


def _serve(args: argparse.Namespace) -> int:
    from shared.registry import Registry
    from shared.settings import load_settings

    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    registry: Registry[None] = Registry("service")
    for name, target in SERVICES.items():
        registry.register(name, target)
    registry.create(args.service, settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memgrid", description="memgrid memory OS")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run memgrid (embedded by default)")
    serve.add_argument("--service", choices=sorted(SERVICES), default="embedded")
    serve.set_defaults(fn=_serve)
    args = parser.parse_args(argv)
    try:
        code: int = args.fn(args)
        return code
    except ConfigError as exc:
        print(f"memgrid: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
