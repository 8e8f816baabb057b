"""`nanoclaw events` and `nanoclaw replay`: looking at the log and re-driving it.

Thin commands over `events/`: every decision lives in functions tests call
directly; this module parses options and prints.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import msgspec

from base.config import Settings
from base.timefmt import to_iso
from events import EventLog, Record, replay, types as t
from events.queries import find_group, first_seq_at_or_after
from nanoclaw import show

DEFAULT_LIMIT = 20
_RELATIVE = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class UsageError(Exception):
    """A command-line value that cannot be used, with what to type instead."""


def parse_since(text: str, tz_name: str, now: datetime | None = None) -> str:
    """`30m`, `2h`, `3d`, or a date/time (in the configured zone) -> UTC ISO string."""
    now = now or datetime.now(timezone.utc)
    relative = _RELATIVE.match(text.strip())
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return to_iso(now - timedelta(**{_UNITS[unit]: amount}))
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(
            f"--since {text!r}: use 30m, 2h, 3d, a date such as 2026-11-25, or 2026-11-25T09:00"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tz_name))
    return to_iso(moment)


def summary(event: t.Event) -> str:
    """One line a person can read for an event."""
    if isinstance(event, t.MessageReceived):
        who = "me" if event.is_from_me else event.sender_name
        return f"{who}: {event.content}"
    if isinstance(event, t.OutboundQueued):
        return f"-> {event.text}"
    data = msgspec.to_builtins(event)
    data.pop("type", None)
    return " ".join(f"{k}={v}" for k, v in data.items() if v not in (None, [], {}, "", False))


def record_json(record: Record) -> dict:
    return {
        "seq": record.seq,
        "at": record.at,
        "type": record.type,
        "stream": record.stream,
        "key": record.key,
        "data": msgspec.to_builtins(record.event),
    }


def select_records(log: EventLog, settings: Settings, args: argparse.Namespace) -> tuple[list[Record], dict]:
    """The records the options ask for, and the filters to keep following with."""
    types = args.type or None
    for name in types or ():
        if name not in t.EVENT_TYPES:
            raise UsageError(f"unknown event type {name!r}; known: {', '.join(t.EVENT_TYPES)}")
    streams = None
    if args.group:
        group = find_group(log, args.group)
        streams = [group.jid, group.folder] if group else [args.group]
    filters = {"types": types, "streams": streams}
    after = args.after_seq
    if args.since:
        since = parse_since(args.since, settings.timezone)
        after = max(after or 0, (first_seq_at_or_after(log, since) or log.last_seq() + 1) - 1)
    if after is not None:
        return log.read_since(after, limit=args.limit, **filters), filters
    newest = _newest(log, args.limit, filters)
    return newest, filters


def _newest(log: EventLog, limit: int, filters: dict) -> list[Record]:
    """The last `limit` matching records, oldest first, without reading the whole log."""
    high = log.last_seq() + 1
    found: list[Record] = []
    window = max(limit * 4, 256)
    while high > 1 and len(found) < limit:
        low = max(0, high - 1 - window)
        chunk = log.read_since(low, before_seq=high, limit=None, **filters)
        found = chunk + found
        high = low + 1
        window *= 4
    return found[-limit:] if limit else found


HEADERS = ("SEQ", "AT", "TYPE", "STREAM", "WHAT")


def print_records(records: list[Record], as_json: bool) -> None:
    if as_json:
        for record in records:
            show.json_line(record_json(record))
    else:
        show.table(HEADERS, [(r.seq, r.at, r.type, r.stream, summary(r.event)) for r in records])


def cmd_events(settings: Settings, args: argparse.Namespace) -> int:
    log = EventLog(settings.db_path, sync=settings.event_log_sync)
    try:
        records, filters = select_records(log, settings, args)
        print_records(records, args.json)
        if args.follow:
            after = records[-1].seq if records else log.last_seq()
            _follow(log, after, filters, as_table=not args.json)
        return 0
    finally:
        log.close()


def _follow(log: EventLog, after: int, filters: dict, as_table: bool) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        for record in log.follow(after, stop=stop, idle_timeout=0.25, **filters):
            if as_table:
                sys.stdout.write(
                    f"{record.seq}  {record.at}  {record.type}  {record.stream}  {summary(record.event)}\n"
                )
                sys.stdout.flush()
            else:
                show.json_line(record_json(record))
    except KeyboardInterrupt:
        pass


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    log = EventLog(settings.db_path, sync=settings.event_log_sync)
    try:
        if args.rebuild:
            report = replay.rebuild(log)
            print(f"rebuilt every projection from {report.events:,} events in {report.seconds:.2f} s")
        if args.check or args.rebuild:
            diffs = replay.check(log)
            for diff in diffs:
                print(f"{diff.table}: {diff.only_live} rows only live, "
                      f"{diff.only_rebuilt} rows only in the rebuild", file=sys.stderr)
            if diffs:
                print("projections differ from the log: run 'nanoclaw replay --rebuild'",
                      file=sys.stderr)
                return 1
            print(f"projections match the log ({log.last_seq():,} events)")
            return 0
        _print_pending(log, args.json)
        return 0
    finally:
        log.close()


def _print_pending(log: EventLog, as_json: bool) -> None:
    reports = replay.pending(log)
    if as_json:
        for r in reports:
            show.json_line({"consumer": r.consumer, "checkpoint": r.checkpoint, "pending": r.pending})
        return
    if not reports:
        print(f"no consumer has a checkpoint yet; the log holds {log.last_seq():,} events")
        return
    show.table(("CONSUMER", "CHECKPOINT", "PENDING"), [(r.consumer, r.checkpoint, r.pending) for r in reports])
    print("dry run: these events are re-driven when the service starts "
          "('--rebuild' recreates the projections, '--check' compares them)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("events", help="show the event log (filter, follow, JSON)")
    p.add_argument("--type", action="append", metavar="TYPE", help="only this event type (repeatable)")
    p.add_argument("--group", metavar="JID_OR_FOLDER", help="only events of this group or chat")
    p.add_argument("--since", metavar="WHEN", help="30m, 2h, 3d, or a date/time in TZ")
    p.add_argument("--after-seq", type=int, metavar="SEQ", help="only events after this seq")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="at most this many (default 20)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler=cmd_events)

    p = sub.add_parser("replay", help="show pending work; rebuild or check projections")
    p.add_argument("--rebuild", action="store_true", help="drop and recreate every projection")
    p.add_argument("--check", action="store_true", help="compare projections with a fresh fold")
    p.add_argument("--json", action="store_true", help="machine-readable pending report")
    p.set_defaults(handler=cmd_replay)
