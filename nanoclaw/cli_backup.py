"""`nanoclaw backup` and `nanoclaw restore`: a checked copy of the event log, and putting one back."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from base.config import Settings
from base.timefmt import iso_now
from events.backup import BackupError, make_backup, restore
from nanoclaw.status import service_info

BACKUPS_DIR = "backups"


def _stamp() -> str:
    return iso_now().replace(":", "").replace("-", "").replace(".", "")


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    target = Path(args.to) if args.to else settings.store_dir / BACKUPS_DIR / f"messages-{_stamp()}.db"
    try:
        made = make_backup(settings.db_path, target)
    except BackupError as exc:
        print(f"nanoclaw backup: {exc}", file=sys.stderr)
        return 1
    print(f"backed up {made.events:,} event(s) to {made.path}; the copy folds to the same projections")
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    state = service_info(settings).state
    if state not in ("down",):
        print(f"nanoclaw restore: the service is {state}; stop it first (nanoclaw service stop)", file=sys.stderr)
        return 1
    try:
        kept = restore(Path(args.backup), settings.db_path, _stamp())
    except (BackupError, OSError) as exc:
        print(f"nanoclaw restore: {exc}", file=sys.stderr)
        return 1
    print(f"restored {settings.db_path} from {args.backup}"
          + (f"; the file it replaced is kept as {kept}" if kept else ""))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("backup", help="a consistent, checked copy of the event log (safe while the service runs)")
    b.add_argument("--to", metavar="PATH", help=f"where (default store/{BACKUPS_DIR}/messages-<time>.db)")
    b.set_defaults(handler=cmd_backup)
    r = sub.add_parser("restore", help="put a checked backup in place of the event log (the service stopped)")
    r.add_argument("backup", metavar="BACKUP")
    r.set_defaults(handler=cmd_restore)
