"""The daily clean-up deletes old leftovers and spares sessions in use."""

from __future__ import annotations

import os
import time

from events import types as t
from jobs.cleanup import cleanup_if_due, run_cleanup

DAY = 86_400


def make(path, age_days: float, text: str = "x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    if text is None:
        path.mkdir(exist_ok=True)
    else:
        path.write_text(text)
    then = time.time() - age_days * DAY
    os.utime(path, (then, then))
    return path


def test_old_unused_files_go_and_active_or_recent_ones_stay(settings, log):
    log.append(t.SessionUpdated(folder="main", session_id="live"))
    claude = settings.data_dir / "sessions" / "main" / ".claude"
    transcripts = claude / "projects" / "-workspace-group"
    old_dead = make(transcripts / "dead.jsonl", 8)
    old_dead_results = make(transcripts / "dead" / "result.txt", 8)
    old_live = make(transcripts / "live.jsonl", 30)
    recent_dead = make(transcripts / "fresh.jsonl", 2)
    debug_old = make(claude / "debug" / "other.txt", 4)
    debug_live = make(claude / "debug" / "live.txt", 10)
    debug_latest = make(claude / "debug" / "latest", 10)
    todo_old = make(claude / "todos" / "dead-agent.json", 4)
    todo_live = make(claude / "todos" / "live-agent.json", 10)
    telemetry_young = make(claude / "telemetry" / "dead.json", 5)
    group_log_old = make(settings.logs_dir / "runs" / "main" / "container-old.log", 8)
    group_log_new = make(settings.logs_dir / "runs" / "main" / "container-new.log", 1)
    agents_own = make(settings.groups_dir / "main" / "logs" / "container-mine.log", 30)  # the agent's, not ours

    count, freed = run_cleanup(settings, log)

    for gone in (old_dead, old_dead_results.parent, debug_old, todo_old, group_log_old):
        assert not gone.exists(), gone
    for kept in (old_live, recent_dead, debug_live, debug_latest, todo_live, telemetry_young, group_log_new,
                 agents_own):
        assert kept.exists(), kept
    assert count == 5 and freed > 0


def test_a_dry_run_deletes_nothing(settings, log):
    old = make(settings.logs_dir / "runs" / "main" / "container-old.log", 8)
    assert run_cleanup(settings, log, dry_run=True)[0] == 1
    assert old.exists()


def test_the_clean_up_runs_once_a_day(settings, log):
    assert cleanup_if_due(settings, log) is True
    assert cleanup_if_due(settings, log) is False
    stamp = settings.data_dir / "last-cleanup"
    then = time.time() - DAY - 5
    os.utime(stamp, (then, then))
    assert cleanup_if_due(settings, log) is True
