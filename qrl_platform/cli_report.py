"""`qrl report factor ID|strategy ID --from --to`: print the figures and write an HTML tear sheet.

Reads the evaluation frames the `factor_ic` / `strategy_backtest` assets stored under QRL_HOME; the
tear sheet is one self-contained file (charts embedded), by default `report-<kind>-<id>-<from>-<to>.html`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qrl_platform.calendar import parse_date
from qrl_platform.settings import settings
from qrl_platform.storage.frames import FrameStore


def add_parser(sub) -> None:
    report = sub.add_parser("report", help="print a factor's or a strategy's evaluation and write an HTML tear sheet")
    report.add_argument("kind", choices=["factor", "strategy"])
    report.add_argument("id", help="factor id (e.g. ret_20) or strategy id (e.g. STG_MOMENTUM_001)")
    report.add_argument("--from", dest="start", required=True, help="first day (YYYY-MM-DD)")
    report.add_argument("--to", dest="end", required=True, help="last day (YYYY-MM-DD)")
    report.add_argument("--html", help="where to write the tear sheet (default: ./report-<kind>-<id>-<from>-<to>.html)")
    report.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    start, end = parse_date(args.start, field="--from"), parse_date(args.end, field="--to")
    if start > end:
        print(f"--from {start} is after --to {end}", file=sys.stderr)
        return 2
    # Imported here: the evaluation and chart libraries take a third of a second, which every other
    # `qrl` command (and `qrl --help`) would otherwise pay for this one.
    from qrl_platform.evaluation.tearsheet import factor_sheet, strategy_sheet

    build = factor_sheet if args.kind == "factor" else strategy_sheet
    try:
        sheet = build(FrameStore(settings().qrl_home), args.id, start, end)
    except (KeyError, ValueError) as error:
        print(f"qrl report: {error.args[0] if error.args else error}", file=sys.stderr)
        return 1
    print(sheet.text())
    path = Path(args.html or f"report-{args.kind}-{args.id}-{start}-{end}.html")
    path.write_text(sheet.html(), encoding="utf-8")
    print(f"\ntear sheet: {path.resolve()}")
    return 0
