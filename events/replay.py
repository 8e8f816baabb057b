"""Replay: rebuild projections from the log, prove them, and show what is pending.

`rebuild` drops and refolds every projection. `check` folds the whole log
into a scratch database and compares it, table by table, with the live
projections read in the same snapshot; any difference is a bug in an
apply rule. `pending` shows, per consumer, how much of the log lies past
its checkpoint: what a restart would re-drive.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from events import projections
from events.log import EventLog, connect, fold


@dataclass(frozen=True)
class RebuildReport:
    events: int
    seconds: float


@dataclass(frozen=True)
class TableDiff:
    table: str
    only_live: int
    only_rebuilt: int


@dataclass(frozen=True)
class PendingReport:
    consumer: str
    checkpoint: int
    pending: int


def rebuild(log: EventLog) -> RebuildReport:
    started = time.perf_counter()
    count = log.rebuild_projections()
    return RebuildReport(count, time.perf_counter() - started)


def check(log: EventLog) -> list[TableDiff]:
    """Differences between the live projections and a fresh fold of the log (empty: equal)."""
    with tempfile.TemporaryDirectory(dir=log.path.parent, prefix=".replay-check-") as tmp:
        scratch = connect(Path(tmp) / "scratch.db")
        try:
            scratch.execute("ATTACH DATABASE ? AS live", (f"file:{log.path}?mode=ro",))
            projections.create_all(scratch)
            scratch.execute("BEGIN")
            rows = scratch.execute("SELECT seq, at, type, data FROM live.events ORDER BY seq")
            fold(scratch, rows)
            diffs = [_diff_table(scratch, name) for name in projections.TABLES]
            scratch.execute("ROLLBACK")
            return [d for d in diffs if d.only_live or d.only_rebuilt]
        finally:
            scratch.close()


def _diff_table(conn: sqlite3.Connection, table: str) -> TableDiff:
    def count(left: str, right: str) -> int:
        sql = f"SELECT count(*) FROM (SELECT * FROM {left}.{table} EXCEPT SELECT * FROM {right}.{table})"
        return conn.execute(sql).fetchone()[0]

    return TableDiff(table, count("live", "main"), count("main", "live"))


def pending(log: EventLog) -> list[PendingReport]:
    """Each known consumer's checkpoint and the number of events after it."""
    rows = log.query("SELECT consumer, seq FROM checkpoints ORDER BY consumer")
    last = log.last_seq()
    return [PendingReport(row["consumer"], row["seq"], last - row["seq"]) for row in rows]


def snapshot(log: EventLog) -> dict[str, list[tuple]]:
    """Every projection's rows in key order (for tests and diagnostics)."""
    return {
        name: [tuple(r) for r in log.query(f"SELECT * FROM {name} ORDER BY {projections.KEYS[name]}")]
        for name in projections.TABLES
    }
