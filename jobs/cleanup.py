"""Daily clean-up of what agents leave behind, sessions in use spared.

Old conversation transcripts, debug, todo and telemetry files of the Claude
Code CLI, and old per-run container logs are deleted; anything that names a
session still recorded in `sessions` stays. The 60 s pass runs it when the
last clean-up is a day old, so a machine that was off at night still gets it.
The `.claude` folders are the agents' own, so every folder is opened without
following links and every deletion acts on a name inside it: a planted link
is deleted itself, never its target, and the walk never leaves the tree.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from base.agent_paths import OnRefused, PathRefused, closing_fd, open_under, remove_entry, warn_refusal
from base.config import Settings
from events import EventLog
from events.queries import list_groups, session_ids
from jobs.container_log import RUNS_DIR
from rules.refusals import recorder

DAY_S = 86_400
INTERVAL_S = DAY_S
STAMP = "last-cleanup"
TRANSCRIPTS = ("projects", "-workspace-group")
CLEANUP = "clean up"


@dataclass(frozen=True)
class Doomed:
    """One entry to delete: `name` inside `base/parts...`, each folder opened without following links."""

    base: Path
    parts: tuple[str, ...]
    name: str

    @property
    def path(self) -> Path:
        return self.base.joinpath(*self.parts, self.name)


def _entries(base: Path, parts: tuple[str, ...], on_refused: OnRefused) -> dict[str, os.stat_result]:
    """The names in `base/parts...` with their own (never a link target's) status; {} if missing."""
    try:
        fd = open_under(base, parts)
    except PathRefused as refused:
        on_refused(CLEANUP, refused)
        return {}
    if fd is None:
        return {}
    found = {}
    with closing_fd(fd):
        for name in os.listdir(fd):
            try:
                found[name] = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
    return found


def _old(info: os.stat_result, days: int, now: float) -> bool:
    return now - info.st_mtime > days * DAY_S


def _session_candidates(sessions: Path, group: str, active: set[str], now: float,
                        on_refused: OnRefused) -> list[Doomed]:
    home = (group, ".claude")
    doomed: list[Doomed] = []
    transcripts = _entries(sessions, home + TRANSCRIPTS, on_refused)
    for name, info in transcripts.items():
        stem = name.removesuffix(".jsonl")
        if name.endswith(".jsonl") and stem not in active and _old(info, 7, now):
            doomed.append(Doomed(sessions, home + TRANSCRIPTS, name))
            if stem in transcripts and stat.S_ISDIR(transcripts[stem].st_mode):
                doomed.append(Doomed(sessions, home + TRANSCRIPTS, stem))
    keep_debug = {"latest"} | {f"{sid}.txt" for sid in active}
    doomed += [Doomed(sessions, home + ("debug",), name)
               for name, info in _entries(sessions, home + ("debug",), on_refused).items()
               if name not in keep_debug and _old(info, 3, now)]
    for folder, days in (("todos", 3), ("telemetry", 7)):
        doomed += [Doomed(sessions, home + (folder,), name)
                   for name, info in _entries(sessions, home + (folder,), on_refused).items()
                   if not any(sid in name for sid in active) and _old(info, days, now)]
    return doomed


def candidates(settings: Settings, active: set[str], now: float,
               refused_by: dict[str, OnRefused] | None = None) -> list[Doomed]:
    """Everything the clean-up would delete now; `refused_by` gives each group's refusal callback."""
    def on_refused(group: str) -> OnRefused:
        return (refused_by or {}).get(group, warn_refusal)

    doomed: list[Doomed] = []
    sessions = settings.data_dir / "sessions"
    for group in sorted(_entries(settings.data_dir, ("sessions",), on_refused("sessions"))):
        doomed += _session_candidates(sessions, group, active, now, on_refused(group))
    runs = settings.logs_dir / RUNS_DIR
    for group in sorted(_entries(settings.logs_dir, (RUNS_DIR,), on_refused("runs"))):
        doomed += [Doomed(runs, (group,), name) for name, info in _entries(runs, (group,), on_refused(group)).items()
                   if name.startswith("container-") and _old(info, 7, now)]
    return doomed


def _remove(doomed: Doomed) -> int:
    """Delete one entry through its folder's descriptor; returns the bytes freed."""
    fd = open_under(doomed.base, doomed.parts)
    if fd is None:
        return 0
    with closing_fd(fd):
        return remove_entry(fd, doomed.name)


def run_cleanup(settings: Settings, log: EventLog, *, dry_run: bool = False) -> tuple[int, int]:
    """Delete what is old and unused; returns (items, bytes freed)."""
    active = session_ids(log)
    folders = {group.folder for group in list_groups(log)}
    record = {folder: recorder(log, folder) for folder in folders}
    doomed = candidates(settings, active, time.time(), record)
    freed = 0
    for entry in doomed:
        try:
            freed += 0 if dry_run else _remove(entry)
        except PathRefused as refused:
            record.get(entry.parts[0], warn_refusal)(CLEANUP, refused)
        except OSError as exc:
            logger.warning("clean-up could not delete {}: {}", entry.path, exc)
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
