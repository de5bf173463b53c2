"""``memgrid compliance ...``: offline compliance tools (docs/compliance.md).

``memgrid compliance watermark FILE`` reads the export ids that watermarked
exports left in leaked text. It needs no server: the mark is in the text.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from shared.compliance import watermark


def _watermark(args: argparse.Namespace) -> int:
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8", errors="replace") as f:
                text = f.read()
    except OSError as exc:
        print(f"memgrid: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    found = watermark.decode(text)
    if args.json:
        print(json.dumps({"export_ids": found}))
    else:
        for export_id in found:
            print(export_id)
    if not found:
        print("memgrid: no intact export watermark in that text", file=sys.stderr)
        return 1
    return 0


def add_parser(sub: Any) -> None:
    compliance = sub.add_parser("compliance", help="compliance tools")
    cmds = compliance.add_subparsers(dest="compliance_command", required=True)
    mark = cmds.add_parser(
        "watermark",
        help="the export ids watermarked into a text (e.g. a leaked file)",
        description="Prints each export id found, one per line (GET /v1/exports/{id} tells"
        " who exported it and when). Exit 1: no intact watermark; 2: unreadable file.",
    )
    mark.add_argument("file", metavar="FILE", help="the text to read ('-': stdin)")
    mark.add_argument("--json", action="store_true", help='{"export_ids": [...]}')
    mark.set_defaults(fn=_watermark)
