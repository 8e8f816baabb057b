"""`nanoclaw usage`: model calls, tokens and estimated cost, by group, day or model."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import date

from base.config import Settings
from events import EventLog
from nanoclaw import show
from rules.prices import PRICES_FILE, PriceError, PriceTable
from rules.usage import usage_by, utc_day

DAYS_RE = re.compile(r"^(\d{1,4})d$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DEFAULT_DAYS = 30


def since_day(text: str) -> str:
    """`7d` (the last seven UTC days, today included) or a date such as 2026-11-01."""
    if (match := DAYS_RE.match(text)) and int(match.group(1)) > 0:
        return utc_day(1 - int(match.group(1)))
    if DATE_RE.match(text):
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            pass
    raise ValueError(f"--since {text!r}: use a number of days such as 7d, or a date such as 2026-11-01")


def cmd_usage(settings: Settings, args: argparse.Namespace) -> int:
    try:
        since = since_day(args.since)
        prices = PriceTable.load(settings.config_dir)
    except (ValueError, PriceError) as exc:
        print(f"nanoclaw usage: {exc}", file=sys.stderr)
        return 1
    log = EventLog(settings.db_path, sync=settings.event_log_sync)
    try:
        rows = usage_by(log, prices, args.by, since, folder=args.group)
    finally:
        log.close()
    if args.json:
        for row in rows:
            show.json_line(row)
        return 0
    if not rows:
        print(f"no model calls since {since} (UTC)")
        return 0
    show.table((args.by.upper(), "CALLS", "FAILED", "INPUT", "OUTPUT", "CACHE WRITE", "CACHE READ", "EST. USD"),
               [(r.key, r.calls, r.failed, f"{r.input_tokens:,}", f"{r.output_tokens:,}",
                 f"{r.cache_creation_input_tokens:,}", f"{r.cache_read_input_tokens:,}",
                 "?" if r.cost_usd is None else f"{r.cost_usd:.4f}") for r in rows])
    unpriced = sorted({m for r in rows for m in r.unpriced_models})
    if unpriced:
        print(f"? no price for {', '.join(unpriced)}: add it to {settings.config_dir / PRICES_FILE}",
              file=sys.stderr)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("usage", help="model calls, tokens and estimated cost, by group, day or model")
    p.add_argument("--by", choices=("group", "day", "model"), default="group")
    p.add_argument("--since", default=f"{DEFAULT_DAYS}d", metavar="WHEN",
                   help=f"7d (the last 7 UTC days) or a date; default {DEFAULT_DAYS}d")
    p.add_argument("--group", metavar="FOLDER", help="only this group")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_usage)
