"""Copies of the event log that can be trusted: made while the service runs, checked by folding.

`backup` uses SQLite's online backup API, so it is consistent even while the
router and workers write. A copy counts as good only once it passes the
file check (events/health.py), every event in it decodes, and a fresh fold
of its events equals the projections it carries. `restore` puts such a copy
in place of the live file, keeping the replaced one beside it, never deleting.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from events.health import log_problem
from events.log import EventDecodeError, EventLog
from events.replay import check

SIDE_FILES = ("-wal", "-shm")


class BackupError(Exception):
    """A backup that cannot be made, or a file that is not a good copy; the message says which and why."""


@dataclass(frozen=True)
class Verified:
    path: Path
    events: int


def make_backup(db_path: Path, target: Path) -> Verified:
    """Copy the live log to `target` (which must not exist) and verify the copy."""
    if target.exists():
        raise BackupError(f"{target} exists already; choose another name")
    target.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(db_path, timeout=30)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
    except sqlite3.Error as exc:
        copy.close()
        target.unlink(missing_ok=True)
        raise BackupError(f"the backup of {db_path} failed: {exc}") from exc
    finally:
        source.close()
    copy.close()
    return verify(target)


def verify(path: Path) -> Verified:
    """The copy's event count if it is a good copy; BackupError naming what is wrong otherwise."""
    if not path.is_file():
        raise BackupError(f"{path} is not a file")
    if (problem := log_problem(path)) is not None:
        raise BackupError(f"{path} {problem}")
    try:
        log = EventLog(path)
    except (sqlite3.DatabaseError, EventDecodeError) as exc:
        raise BackupError(f"{path} cannot be opened as an event log: {exc}") from exc
    try:
        diffs = check(log)
        events = log.last_seq()
    except (sqlite3.DatabaseError, EventDecodeError) as exc:
        raise BackupError(f"{path} does not fold: {exc}") from exc
    finally:
        log.close()
    if diffs:
        tables = ", ".join(d.table for d in diffs)
        raise BackupError(f"{path}: its projections differ from a fold of its events ({tables})")
    return Verified(path, events)


def restore(backup: Path, db_path: Path, stamp: str) -> Path | None:
    """Put a verified backup in place of the live log; returns where the replaced file went (None: there was none)."""
    verify(backup)
    kept = None
    if db_path.exists():
        kept = db_path.with_name(f"{db_path.name}.replaced-{stamp}")
        for suffix in ("", *SIDE_FILES):
            current = Path(f"{db_path}{suffix}")
            if current.exists():
                current.rename(Path(f"{kept}{suffix}"))
    shutil.copy2(backup, db_path)
    return kept
