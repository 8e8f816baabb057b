"""Daily clean-up of what agents leave behind (SPEC 12.5), sessions in use spared.

Old conversation transcripts, debug, todo and telemetry files of the Claude
Code CLI, and old per-run container logs are deleted; anything that names a
session still recorded in `sessions` stays. The 60 s pass runs it when the
last clean-up is a day old, so a machine that was off at night still gets it.
"""

from __future__ import annotations

import time
from pathlib import Path

from loguru import logger

from events import EventLog
from nanoclaw.config import Settings

DAY_S = 86_400
INTERVAL_S = DAY_S
STAMP = "last-cleanup"


def _older_than(path: Path, days: int, now: float) -> bool:
    try:
        return now - path.lstat().st_mtime > days * DAY_S
    except FileNotFoundError:
        return False


def _remove(path: Path) -> int:
    """Delete a file or a folder tree; returns the bytes freed."""
    if path.is_dir() and not path.is_symlink():
        freed = sum(_remove(child) for child in path.iterdir())
        path.rmdir()
        return freed
    size = path.lstat().st_size
    path.unlink()
    return size


def candidates(settings: Settings, active: set[str], now: float) -> list[Path]:
    """Everything the clean-up would delete now."""
    doomed: list[Path] = []
    for claude in (settings.data_dir / "sessions").glob("*/.claude"):
        for transcript in (claude / "projects" / "-workspace-group").glob("*.jsonl"):
            if transcript.stem not in active and _older_than(transcript, 7, now):
                doomed.append(transcript)
                if (tool_results := transcript.with_suffix("")).is_dir():
                    doomed.append(tool_results)
        keep_debug = {"latest"} | {f"{sid}.txt" for sid in active}
        doomed += [p for p in (claude / "debug").glob("*") if p.name not in keep_debug and _older_than(p, 3, now)]
        for folder, days in (("todos", 3), ("telemetry", 7)):
            doomed += [p for p in (claude / folder).glob("*")
                       if not any(sid in p.name for sid in active) and _older_than(p, days, now)]
    doomed += [p for p in settings.groups_dir.glob("*/logs/*") if _older_than(p, 7, now)]
    return doomed


def run_cleanup(settings: Settings, log: EventLog, *, dry_run: bool = False) -> tuple[int, int]:
    """Delete what is old and unused; returns (items, bytes freed)."""
    active = {row["session_id"] for row in log.query("SELECT session_id FROM sessions")}
    now = time.time()
    doomed = candidates(settings, active, now)
    freed = 0
    for path in doomed:
        try:
            freed += 0 if dry_run else _remove(path)
        except OSError as exc:
            logger.warning("clean-up could not delete {}: {}", path, exc)
    logger.info("clean-up {}: {} item(s), about {} KiB", "would delete" if dry_run else "deleted",
                len(doomed), freed // 1024)
    return len(doomed), freed


def cleanup_if_due(settings: Settings, log: EventLog) -> bool:
    """Run the clean-up when the last one is at least a day old (or never happened)."""
    stamp = settings.data_dir / STAMP
    try:
        if time.time() - stamp.stat().st_mtime < INTERVAL_S:
            return False
    except FileNotFoundError:
        pass
    run_cleanup(settings, log)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()
    return True
