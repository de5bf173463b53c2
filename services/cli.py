"""The ``memgrid`` command."""

from __future__ import annotations

import argparse
import logging
import sys

from shared.errors import ConfigError

SERVICES = ("embedded", "interface", "vault", "scheduler", "governance", "trainer", "inference")


def _serve(args: argparse.Namespace) -> int:
    from shared.settings import load_settings

    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if args.service != "embedded":
        raise ConfigError(
            f"--service {args.service}: distributed services are not available in this build; "
            "run `memgrid serve` (embedded mode)"
        )
    import uvicorn

    from services.embedded import build_embedded

    app, close = build_embedded(settings)
    print(f"memgrid (embedded) on http://{settings.host}:{settings.port}", flush=True)
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)
    finally:
        close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memgrid", description="memgrid memory OS")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run memgrid (embedded by default)")
    serve.add_argument("--service", choices=SERVICES, default="embedded")
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
