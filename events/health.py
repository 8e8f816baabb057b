"""Is the event log's file usable? Asked before anything opens it for writing.

A damaged `store/messages.db` must stop the service at once with a clear
word (and the configuration-error exit code, so systemd does not restart it
in a loop), not let the router say "live" while the worker crash-loops. A
missing file is a fresh install; a file of zero bytes is not (a fresh
install has no file at all), nor one that does not start like an SQLite
database, nor one SQLite's own quick check finds damaged.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

SQLITE_HEADER = b"SQLite format 3\x00"
RECOVERY_HINT = ("stop the service, keep a copy of store/, then put a backup back with 'nanoclaw restore BACKUP' "
                 "(backups: 'nanoclaw backup'; see the README, 'The event log')")


def log_problem(path: Path) -> str | None:
    """What is wrong with the log file, in a few words; None when it is usable (or absent)."""
    if path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        return (f"cannot be written: its folder {path.parent} is read-only for this user (check its owner and "
                "mode, or the mount)")
    if path.exists() and not os.access(path, os.W_OK):
        return "cannot be written: the file is read-only for this user (check its owner and mode)"
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not header:
        return "is empty (0 bytes): it was cut short, since a fresh install has no file at all"
    if header != SQLITE_HEADER:
        return f"is not an SQLite database (it starts with {header[:8]!r})"
    return _quick_check(path)


def _quick_check(path: Path) -> str | None:
    try:
        conn = sqlite3.connect(path, timeout=30)  # read-write: a WAL database may need its -shm file made
    except sqlite3.Error as exc:
        return f"cannot be opened: {exc}"
    try:
        rows = conn.execute("PRAGMA quick_check(3)").fetchall()
    except sqlite3.DatabaseError as exc:
        return f"is damaged: {exc}"
    finally:
        conn.close()
    found = [" ".join(str(row[0]).split()) for row in rows]
    return None if found == ["ok"] else f"is damaged: {'; '.join(found)}"
