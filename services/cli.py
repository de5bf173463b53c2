"""The ``memgrid`` command."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from services import cli_audit, cli_compliance, cli_setup
from shared.errors import ConfigError

if TYPE_CHECKING:
    from shared.schemas.usage import MemoryUsage
    from shared.settings import Settings

# Each service's process entry point, imported only when that service is started.
SERVICES: dict[str, str] = {
    "embedded": "services.embedded:serve",
    "interface": "services.interface.main:serve",
    "vault": "services.vault.main:serve",
    "scheduler": "services.scheduler.main:serve",
    "governance": "services.governance.main:serve",
    "inference": "services.inference.serve:serve",
    "trainer": "services.trainer.main:serve",
}


def _serve(args: argparse.Namespace) -> int:
    from shared.logging_setup import setup_logging
    from shared.registry import Registry
    from shared.settings import load_settings

    settings = load_settings()
    setup_logging(settings, args.service)
    registry: Registry[None] = Registry("service")
    for name, target in SERVICES.items():
        registry.register(name, target)
    registry.create(args.service, settings)
    return 0


def _scheduler_explain(args: argparse.Namespace) -> int:
    """``memgrid scheduler explain ID``: one memory's usage, scores and decisions."""
    from pydantic import ValidationError

    from shared.errors import Unavailable
    from shared.schemas.usage import MemoryUsage
    from shared.settings import load_settings

    settings = load_settings()
    try:
        view = _explain_view(settings, args.id, args.tenant, args.url, args.at)
    except FileNotFoundError as exc:
        print(
            f"memgrid: no scheduler state at {exc.args[0]} (MEMGRID_DATA_DIR of the embedded"
            " server; for a distributed scheduler give --url or MEMGRID_SCHEDULER__URL)",
            file=sys.stderr,
        )
        return 1
    except Unavailable as exc:
        print(f"memgrid: {exc.detail}", file=sys.stderr)
        return 3
    if view is None:
        whose = "" if args.tenant is None else f" of tenant {args.tenant!r}"
        print(f"memgrid: the scheduler has no usage of {args.id!r}{whose}", file=sys.stderr)
        return 1
    try:
        usage = MemoryUsage.from_view(view)
    except ValidationError as exc:
        print(f"memgrid: unreadable usage view: {exc}", file=sys.stderr)
        return 3
    print(usage.model_dump_json(indent=2) if args.json else format_usage(usage))
    return 0


def _explain_view(
    settings: Settings, cube_id: str, tenant: str | None, url: str | None, at: datetime | None
) -> dict[str, Any] | None:
    """Asks the scheduler's web server when a URL is given (``--url``, or
    MEMGRID_SCHEDULER__URL) or the mode is distributed; else reads the embedded
    scheduler's state file, as last flushed (after every tick and at shutdown),
    with the scores as of ``at`` (default now)."""
    from shared.clients.scheduler_http import HttpScheduler
    from shared.settings import SchedulerSettings

    url = url or settings.scheduler.url
    if url or settings.mode == "distributed":
        cfg = settings.scheduler
        if url != cfg.url:  # --url
            try:
                cfg = SchedulerSettings(url=url, timeout_s=cfg.timeout_s)
            except ValueError as exc:  # pydantic's ValidationError: not an http(s) URL
                raise ConfigError(f"--url {url!r}: must be an http:// or https:// URL") from exc
        client = HttpScheduler(cfg)
        try:
            return client.explain(tenant, cube_id)
        finally:
            client.close()

    from services.scheduler.engine import Scheduler
    from services.scheduler.persist import read_state
    from shared.schemas.memcube import utcnow

    maps = read_state(settings.data_dir / "scheduler.db")
    scheduler = Scheduler(
        settings.scheduler, cubes=maps["cubes"], spaces=maps["spaces"], journal=maps["journal"]
    )
    return scheduler.explain(cube_id, at or utcnow(), tenant=tenant)


def _adapters(args: argparse.Namespace) -> int:
    """``memgrid adapters list|show|train``: the public adapters API over HTTP.
    Exit 1: the API refused (not found, invalid); 3: the API is unreachable or down."""
    import httpx

    from shared.settings import load_settings

    settings = load_settings()
    key = _api_key(args)
    host = "127.0.0.1" if settings.host in ("", "0.0.0.0", "::") else settings.host
    url = (args.url or f"http://{host}:{settings.port}").rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--url {url!r}: must be an http:// or https:// URL")
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=args.timeout) as http:
            if args.adapters_command == "list":
                params = {} if args.namespace is None else {"namespace": args.namespace}
                r = http.get("/v1/adapters", params=params)
            elif args.adapters_command == "show":
                r = http.get(f"/v1/adapters/{_quote(args.id)}")
            else:
                body = {"cube_ids": args.cube_ids, "reason": args.reason}
                r = http.post(f"/v1/namespaces/{_quote(args.namespace)}/adapters", json=body)
    except httpx.TransportError as exc:
        print(f"memgrid: {url} unreachable: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    try:
        data: Any = r.json()
    except ValueError:
        data = {}
    if r.status_code >= 400:
        detail = data.get("detail", r.reason_phrase) if isinstance(data, dict) else r.text
        code = data.get("code", "error") if isinstance(data, dict) else "error"
        for err in (data.get("errors") or []) if isinstance(data, dict) else []:
            detail += f"\n  {err.get('field')}: {err.get('message')}"
        print(f"memgrid: {r.status_code} {code}: {detail}", file=sys.stderr)
        return 3 if r.status_code >= 500 else 1
    if args.json:
        print(json.dumps(data, indent=2))
    elif args.adapters_command == "list":
        print(format_adapter_list(data["adapters"]))
    elif args.adapters_command == "show":
        print(format_adapter(data))
    else:
        print(
            f"command {data['command_id']}: training an adapter of namespace"
            f" {data['namespace']} from {len(data['cube_ids'])} memories"
            " (follow it with `memgrid adapters list`)"
        )
    return 0


def _api_key(args: argparse.Namespace) -> str:
    """From --api-key, or --api-key-file (a file holding the key; ``-``: stdin)."""
    if args.api_key:
        return str(args.api_key).strip()
    if args.api_key_file:
        if args.api_key_file == "-":
            text = sys.stdin.readline()
        else:
            from pathlib import Path

            try:
                text = Path(args.api_key_file).read_text()
            except OSError as exc:
                raise ConfigError(f"--api-key-file: {exc}") from exc
        if text.strip():
            return text.strip()
    raise ConfigError("the adapters commands need an API key: --api-key or --api-key-file")


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def format_adapter_list(adapters: list[dict[str, Any]]) -> str:
    """One adapter a line, newest first, as the API lists them."""
    if not adapters:
        return "no adapters"
    rows = [("ADAPTER", "STATE", "NAMESPACE", "CREATED", "SOURCES")]
    rows += [
        (a["id"], a["state"], a["namespace"], a["created_at"], str(len(a["sources"])))
        for a in adapters
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    )


def format_adapter(a: dict[str, Any]) -> str:
    """One adapter for people: state and why, sources, the training run."""
    details = a.get("details") or {}

    def numbers(values: dict[str, Any]) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(values.items())) or "-"

    lines = [
        f"adapter      {a['id']}",
        f"namespace    {a['namespace']}",
        f"state        {a['state']}: {a['reason']}",
        f"created      {a['created_at']}, updated {a['updated_at']}",
        f"base model   {a['base_model']}",
        f"manifest     {a['manifest_key']}",
        f"record       {a['record']}",
        f"metrics      {numbers(details.get('metrics') or {})}",
        f"training     {details.get('data_size', 0)} examples in"
        f" {details.get('duration_s', 0.0):g} s"
        + ("" if not details.get("command_id") else f" (command {details['command_id']})"),
        f"hyperparams  {numbers(details.get('hyperparameters') or {})}",
        f"sources      {len(a['sources'])}",
    ]
    stale = set(a.get("stale_sources") or [])
    lines += [f"  {s}" + ("  (stale)" if s in stale else "") for s in a["sources"]]
    extra = [s for s in a.get("stale_sources") or [] if s not in a["sources"]]
    if extra:
        lines.append(f"stale        {', '.join(extra)}")
    return "\n".join(lines)


def _aware_time(value: str) -> datetime:
    """An ISO 8601 time; naive ones are UTC, as everywhere in memgrid."""
    from datetime import UTC

    t = datetime.fromisoformat(value)
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def format_usage(u: MemoryUsage) -> str:
    """The usage view for people: one fact a line, decisions oldest first."""

    def when(t: datetime | None) -> str:
        return "-" if t is None else t.isoformat()

    capped = "at least " if u.members_capped else ""
    lines = [
        f"memory     {u.id}" + ("" if u.namespace is None else f"  (namespace {u.namespace})"),
        f"state      {u.state}, tier {u.tier or '-'}, version {u.version}"
        + ("" if u.tracked else "  (not tracked by the scheduler yet)"),
        f"created    {when(u.created_at)}, updated {when(u.updated_at)}",
        f"accesses   {u.access_count} (first {when(u.first_access)}, last {when(u.last_access)})",
        f"used by    {capped}{u.distinct_principals} principals, "
        f"{capped}{u.distinct_sessions} sessions",
    ]
    if u.expires_at is not None or u.expired_at is not None:
        lines.append(f"lifespan   expires {when(u.expires_at)}, expired {when(u.expired_at)}")
    if u.decay_half_life_s is not None:
        lines.append(f"decay      half-life {u.decay_half_life_s:g} s")
    if u.scores is not None:
        s = u.scores
        vitality = "-" if s.vitality is None else f"{s.vitality:g}"
        lines.append(
            f"scores     decayed frequency {s.decayed_frequency:g}, hotness {s.hotness:g}, "
            f"stability {s.stability:g}, vitality {vitality}"
            + ("" if u.as_of is None else f"  (as of {when(u.as_of)})")
        )
    lines.append(f"caches     {', '.join(u.caches) or '-'}")
    lines.append(f"adapters   {', '.join(u.adapters) or '-'}")
    lines.append(f"decisions  {len(u.decisions) or 'none'}")
    for d in u.decisions:
        target = "" if d.target_id is None else f" -> {d.target_id}"
        lines.append(f"  {when(d.at)}  {d.kind}{target}  ({d.cube_count} memories)")
        lines.append(f"    {d.reason}")
        if d.numbers:
            numbers = ", ".join(f"{k}={v:g}" for k, v in sorted(d.numbers.items()))
            lines.append(f"    numbers: {numbers}")
        lines.append(f"    command {d.command_id}")
    return "\n".join(lines)


def _adapters_parser(sub: Any) -> None:
    adapters = sub.add_parser(
        "adapters",
        help="LoRA adapters (parametric memory): list, show, train",
        description="Asks the public API (--url, default http://127.0.0.1:$MEMGRID_PORT) with"
        " a tenant's API key. Exit 1: the API refused (not found, invalid); 3: unreachable.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the public API, e.g. http://127.0.0.1:8080")
    common.add_argument("--api-key", help="the tenant's API key")
    common.add_argument("--api-key-file", help="a file holding the API key ('-': stdin)")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    common.add_argument("--json", action="store_true", help="the API's JSON")
    cmds = adapters.add_subparsers(dest="adapters_command", required=True)
    ls = cmds.add_parser("list", parents=[common], help="the tenant's adapters, newest first")
    ls.add_argument("--namespace", help="only this namespace's")
    show = cmds.add_parser("show", parents=[common], help="one adapter: state, sources, metrics")
    show.add_argument("id", help="the adapter id (name@version+digest)")
    train = cmds.add_parser(
        "train", parents=[common], help="train an adapter from memories of a namespace"
    )
    train.add_argument("namespace", help="the namespace id")
    train.add_argument("cube_ids", nargs="+", metavar="CUBE_ID", help="its memories to distil")
    train.add_argument("--reason", default="requested with memgrid adapters train")
    adapters.set_defaults(fn=_adapters)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memgrid", description="memgrid memory OS")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run memgrid (embedded by default)")
    serve.add_argument("--service", choices=sorted(SERVICES), default="embedded")
    serve.set_defaults(fn=_serve)
    scheduler = sub.add_parser("scheduler", help="ask the scheduler")
    scheduler_sub = scheduler.add_subparsers(dest="scheduler_command", required=True)
    explain = scheduler_sub.add_parser(
        "explain",
        help="a memory's usage: counters, scores, caches, adapters and decisions with reasons",
        description="Reads the embedded scheduler's state file ($MEMGRID_DATA_DIR/scheduler.db)"
        " or, with --url / MEMGRID_SCHEDULER__URL / MEMGRID_MODE=distributed, asks the"
        " scheduler's web server. Exit 1: no usage recorded; 3: scheduler unreachable.",
    )
    explain.add_argument("id", help="the memory (cube) id")
    explain.add_argument("--tenant", help="only if the memory belongs to this tenant")
    explain.add_argument("--url", help="the scheduler's web server, e.g. http://127.0.0.1:6066")
    explain.add_argument("--json", action="store_true", help="the API's JSON view")
    explain.add_argument(
        "--at",
        type=_aware_time,
        help="scores as of this ISO time (state file only; default now), e.g. for a"
        " scheduler run on a simulated clock",
    )
    explain.set_defaults(fn=_scheduler_explain)
    _adapters_parser(sub)
    cli_compliance.add_parser(sub)
    cli_audit.add_parser(sub)
    cli_setup.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        code: int = args.fn(args)
        return code
    except ConfigError as exc:
        print(f"memgrid: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
