"""``memgrid audit verify``: checks the audit log's hash chain (docs/security.md).

Reads the log file directly (the governance worker's, or the embedded process's
``$MEMGRID_DATA_DIR/governance/audit.jsonl``); needs no running service. Exit 0:
intact; 1: broken (the first record at fault is named); 2: no such log.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from services.governance.audit import audit_path
from services.governance.chain import verify
from shared.settings import Settings


def _verify(args: argparse.Namespace) -> int:
    path = Path(args.path) if args.path else audit_path(Settings())
    if not path.exists():
        print(f"memgrid: no audit log at {path}")
        return 2
    report = verify(path)
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "entries": report.entries,
                    "seq": report.seq,
                    "line": report.line,
                    "reason": report.reason,
                    "path": str(path),
                }
            )
        )
    else:
        print(f"{path}: {report.describe()}")
    return 0 if report.ok else 1


def add_parser(sub: Any) -> None:
    audit = sub.add_parser("audit", help="audit log tools")
    cmds = audit.add_subparsers(dest="audit_command", required=True)
    check = cmds.add_parser(
        "verify",
        help="check the audit log's hash chain; names the first changed or removed record",
        description="Exit 0: intact; 1: broken (first record at fault named); 2: no log.",
    )
    check.add_argument(
        "--path", help="the audit log (default: $MEMGRID_DATA_DIR/governance/audit.jsonl)"
    )
    check.add_argument("--json", action="store_true", help="the report as JSON")
    check.set_defaults(fn=_verify)
