"""Projections are exactly what folding the log gives, live or rebuilt."""

from __future__ import annotations

import pytest
from freezegun import freeze_time

from events import EventLog, projections, replay, types as t
from tests.history import synthetic_history


def _fill(log: EventLog, count: int, batch: int = 500) -> None:
    pending = []
    for item in synthetic_history(count, groups=12):
        pending.append(item)
        if len(pending) >= batch:
            log.append_many(pending)
            pending = []
    if pending:
        log.append_many(pending)


def test_rebuild_recreates_the_live_projections_exactly(log: EventLog):
    _fill(log, 5_000)
    live = replay.snapshot(log)
    assert all(live[name] for name in ("chats", "groups", "runs", "tasks", "task_runs", "outbound", "sessions"))
    report = replay.rebuild(log)
    assert report.events == log.last_seq()
    assert replay.snapshot(log) == live


@freeze_time("2026-11-25 12:00:00")
def test_single_appends_and_batches_give_the_same_projections(tmp_path):
    items = list(synthetic_history(1_500, groups=5))
    one = EventLog(tmp_path / "one.db")
    many = EventLog(tmp_path / "many.db")
    try:
        for event, key in items:
            one.append(event, key=key)
        many.append_many(items)
        assert replay.snapshot(one) == replay.snapshot(many)
    finally:
        one.close()
        many.close()


def test_check_finds_no_difference_on_a_healthy_log(log: EventLog):
    _fill(log, 2_000)
    assert replay.check(log) == []


def test_check_reports_a_projection_changed_behind_the_logs_back(log: EventLog):
    _fill(log, 2_000)
    log._writer.execute("UPDATE groups SET trigger = '@Mallory' WHERE folder = 'group3'")
    diffs = replay.check(log)
    assert [(d.table, d.only_live, d.only_rebuilt) for d in diffs] == [("groups", 1, 1)]
    replay.rebuild(log)
    assert replay.check(log) == []


def test_stale_projections_are_rebuilt_when_the_log_is_opened(settings):
    log = EventLog(settings.db_path)
    log.append(t.SessionUpdated(folder="main", session_id="s1"))
    log._writer.execute("UPDATE meta SET value = '0' WHERE key = 'projection_version'")
    log._writer.execute("DELETE FROM sessions")
    log.close()
    reopened = EventLog(settings.db_path)
    try:
        assert [tuple(r) for r in reopened.query("SELECT folder, session_id FROM sessions")] == [("main", "s1")]
        assert reopened.query("SELECT value FROM meta WHERE key = 'projection_version'")[0][0] == str(
            projections.PROJECTION_VERSION
        )
    finally:
        reopened.close()


def test_checkpoints_survive_a_rebuild(log: EventLog):
    _fill(log, 200)
    log.set_checkpoint("delivery", 150)
    replay.rebuild(log)
    assert log.checkpoint("delivery") == 150
    assert [(p.consumer, p.checkpoint, p.pending) for p in replay.pending(log)] == [
        ("delivery", 150, log.last_seq() - 150)
    ]


def test_a_cursor_moves_with_runs_and_pipes_and_rolls_back_on_failure(log: EventLog):
    jid, folder = "local:me", "main"
    log.append(t.AgentRunStarted(run_id="r1", folder=folder, chat_jid=jid, container="c", from_seq=0, through_seq=5))
    cursor = lambda: log.query("SELECT seq FROM cursors WHERE chat_jid = ?", (jid,))[0][0]
    assert cursor() == 5
    log.append(t.MessagesPiped(run_id="r1", folder=folder, chat_jid=jid, through_seq=9, message_count=2, file="f"))
    assert cursor() == 9
    log.append(t.AgentRunFinished(run_id="r1", folder=folder, chat_jid=jid, status="error", cursor_rollback_to=0))
    assert cursor() == 0
    run = log.query("SELECT state, status, through_seq FROM runs WHERE run_id = 'r1'")[0]
    assert tuple(run) == ("finished", "error", 9)


def test_a_task_run_records_history_and_completes_a_one_off_task(log: EventLog):
    log.append(t.TaskScheduled(task_id="t1", group_folder="main", chat_jid="local:me", prompt="p",
                               schedule_type="once", schedule_value="2026-01-01T09:00:00",
                               next_run="2026-01-01T09:00:00.000Z"))
    log.append(t.TaskRunFinished(task_id="t1", group_folder="main", status="success", result="x" * 300,
                                 duration_ms=12, next_run=None))
    task = log.query("SELECT status, next_run, last_result FROM tasks")[0]
    assert task["status"] == "completed" and task["next_run"] is None
    assert task["last_result"] == "x" * 200
    assert log.query("SELECT count(*) FROM task_runs")[0][0] == 1


@pytest.mark.parametrize("outcome", ["sent", "failed"])
def test_outbound_state_follows_its_events(log: EventLog, outcome):
    log.append(t.OutboundQueued(outbound_id="o1", chat_jid="local:me", text="hi"))
    if outcome == "sent":
        log.append(t.OutboundSent(outbound_id="o1", chat_jid="local:me", attempts=2))
    else:
        log.append(t.OutboundFailed(outbound_id="o1", chat_jid="local:me", attempts=3, reason="offline"))
    row = log.query("SELECT state, attempts FROM outbound")[0]
    assert (row["state"], row["attempts"]) == (outcome, 2 if outcome == "sent" else 3)
