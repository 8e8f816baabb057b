"""The named queries over the projections, on a real log, and the rule that nothing else writes such SQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from freezegun import freeze_time

from events import queries as q, types as t
from events.projections import TABLES

REPO = Path(__file__).resolve().parents[1]
# Packages that must read the projections through events/queries.py only.
PACKAGES_WITHOUT_SQL = ("base", "rules", "router", "jobs", "nanoclaw")
# Files being rewritten while their queries move to events/queries.py; empty this set as each one is converted.
STILL_WRITING_SQL: frozenset[str] = frozenset()
SQL_ON_A_TABLE = re.compile(
    r"\b(?:FROM|JOIN|INTO|UPDATE)\s+(?:%s)\b" % "|".join(sorted({*TABLES, "events", "checkpoints", "meta"})))


def group(log, jid: str, folder: str, *, is_main: bool = False) -> None:
    log.append(t.GroupRegistered(jid=jid, name=folder.title(), folder=folder, trigger="@Andy", is_main=is_main))


def start(log, run_id: str, folder: str = "family", *, task_id: str | None = None) -> int:
    return log.append(t.AgentRunStarted(run_id=run_id, folder=folder, chat_jid="tg:fam", container=f"c-{run_id}",
                                        task_id=task_id)).seq


def finish(log, run_id: str, folder: str = "family") -> None:
    log.append(t.AgentRunFinished(run_id=run_id, folder=folder, chat_jid="tg:fam", status="ok"))


def task(log, task_id: str, next_run: str | None, folder: str = "family") -> None:
    log.append(t.TaskScheduled(task_id=task_id, group_folder=folder, chat_jid="tg:fam", prompt=f"do {task_id}",
                               schedule_type="once", schedule_value="2026-01-01T00:00:00", next_run=next_run))


def queue(log, outbound_id: str, chat: str, *, origin: str = "agent", run_id: str | None = None) -> int:
    return log.append(t.OutboundQueued(outbound_id=outbound_id, chat_jid=chat, text=f"text {outbound_id}",
                                       origin=origin, run_id=run_id)).seq  # type: ignore[arg-type]


# --- the two meanings of "a run is in progress" --------------------------------------


def test_a_task_run_makes_the_group_busy_but_is_no_run_to_pipe_messages_into(log):
    start(log, "task-run", task_id="t1")
    assert q.group_busy(log, "family")
    assert q.message_run_to_pipe_into(log, "family") is None


def test_a_running_message_run_is_the_one_messages_are_piped_into(log):
    start(log, "message-run")
    assert q.group_busy(log, "family")
    assert q.message_run_to_pipe_into(log, "family") == "message-run"


def test_messages_are_piped_into_the_newest_of_several_running_message_runs(log):
    start(log, "older")
    start(log, "newer")
    start(log, "a-task", task_id="t1")
    assert q.message_run_to_pipe_into(log, "family") == "newer"


def test_a_finished_run_neither_holds_the_group_nor_takes_messages(log):
    start(log, "r1")
    finish(log, "r1")
    assert not q.group_busy(log, "family")
    assert q.message_run_to_pipe_into(log, "family") is None


def test_a_run_of_another_group_does_not_make_this_one_busy(log):
    start(log, "r1", folder="main")
    assert not q.group_busy(log, "family")
    assert q.message_run_to_pipe_into(log, "family") is None


def test_running_runs_are_listed_in_the_order_they_started_and_leave_when_finished(log):
    for run_id in ("b", "a", "c"):
        start(log, run_id)
    finish(log, "a")
    assert [row["run_id"] for row in q.running_runs(log)] == ["b", "c"]


def test_a_run_request_is_outstanding_until_a_run_of_the_group_starts(log):
    assert q.outstanding_request(log, "family") is None
    asked = log.append(t.AgentRunRequested(folder="family", chat_jid="tg:fam")).seq
    with log.transaction() as tx:
        assert q.outstanding_request(tx, "family").seq == asked
    started = start(log, "r1")
    assert q.outstanding_request(log, "family") is None
    assert q.last_run_started_seq(log, "family") == started


# --- groups -----------------------------------------------------------------------------


def test_groups_are_listed_main_first_then_by_folder(log):
    group(log, "tg:2", "zoo")
    group(log, "tg:1", "family")
    group(log, "local:me", "main", is_main=True)
    assert [g.folder for g in q.list_groups(log)] == ["main", "family", "zoo"]
    assert q.main_group(log).jid == "local:me"


def test_find_group_prefers_a_jid_over_a_folder_of_the_same_name(log):
    group(log, "tg:1", "family")
    group(log, "family", "other")
    assert q.find_group(log, "family").folder == "other"
    assert q.find_group(log, "tg:1").folder == "family"
    assert q.find_group(log, "nobody") is None


def test_groups_by_jid_leaves_out_chats_that_are_not_registered(log):
    group(log, "tg:1", "family")
    group(log, "tg:2", "zoo")
    found = q.groups_by_jid(log, ["tg:2", "tg:unknown"])
    assert list(found) == ["tg:2"] and found["tg:2"].folder == "zoo"
    assert q.group_by_folder(log, "family").jid == "tg:1" and q.group_by_jid(log, "tg:9") is None


def test_no_main_group_until_one_is_registered(log):
    group(log, "tg:1", "family")
    assert q.main_group(log) is None


# --- tasks ---------------------------------------------------------------------------------


def test_due_tasks_are_the_active_ones_whose_time_has_come_soonest_first(log):
    task(log, "late", "2026-01-01T10:00:00.000Z")
    task(log, "early", "2026-01-01T09:00:00.000Z")
    task(log, "future", "2026-01-02T00:00:00.000Z")
    task(log, "never", None)
    task(log, "paused", "2026-01-01T08:00:00.000Z")
    log.append(t.TaskPaused(task_id="paused", group_folder="family"))
    task(log, "elsewhere", "2026-01-01T08:00:00.000Z", folder="main")
    now = "2026-01-01T12:00:00.000Z"
    assert q.due_tasks(log, now) == ["elsewhere", "early", "late"]
    assert q.due_tasks(log, now, folder="family") == ["early", "late"]


def test_upcoming_tasks_are_the_next_active_ones_up_to_the_limit(log):
    task(log, "third", "2026-01-03T00:00:00.000Z")
    task(log, "first", "2026-01-01T00:00:00.000Z")
    task(log, "never", None)
    task(log, "second", "2026-01-02T00:00:00.000Z")
    assert [row["id"] for row in q.upcoming_tasks(log, 2)] == ["first", "second"]


def test_tasks_soonest_first_put_those_that_never_run_again_first(log):
    task(log, "later", "2026-01-02T00:00:00.000Z")
    task(log, "never", None)
    task(log, "sooner", "2026-01-01T00:00:00.000Z", folder="main")
    assert [row["id"] for row in q.tasks_soonest_first(log)] == ["never", "sooner", "later"]
    assert [row["id"] for row in q.tasks_soonest_first(log, "family")] == ["never", "later"]


def test_tasks_newest_first_are_in_reverse_order_of_scheduling(log):
    for task_id in ("one", "two", "three"):
        task(log, task_id, None)
    assert [row["id"] for row in q.tasks_newest_first(log)] == ["three", "two", "one"]
    assert q.tasks_newest_first(log, "main") == []
    assert q.task_by_id(log, "two")["prompt"] == "do two" and q.task_by_id(log, "nine") is None


# --- replies and notices ---------------------------------------------------------------------


def test_chats_with_queued_replies_come_longest_waiting_first_and_sent_ones_leave(log):
    queue(log, "a1", "tg:a")
    queue(log, "b1", "tg:b")
    queue(log, "a2", "tg:a")
    log.append(t.OutboundSent(outbound_id="a1", chat_jid="tg:a"))
    assert q.chats_with_queued_replies(log) == ["tg:b", "tg:a"]
    assert q.next_queued_reply(log, "tg:a")["outbound_id"] == "a2"
    log.append(t.OutboundSent(outbound_id="a2", chat_jid="tg:a"))
    assert q.next_queued_reply(log, "tg:a") is None
    assert q.outbound_by_id(log, "a2")["state"] == "sent" and q.outbound_by_id(log, "zz") is None


def test_replies_queued_by_a_run_count_sent_and_unsent_alike(log):
    queue(log, "x1", "tg:a", run_id="r1")
    queue(log, "x2", "tg:a", run_id="r1")
    queue(log, "y1", "tg:a", run_id="r2")
    log.append(t.OutboundSent(outbound_id="x1", chat_jid="tg:a"))
    assert q.replies_queued_by_run(log, "r1") == 2 and q.replies_queued_by_run(log, "r9") == 0


def test_a_notice_counts_as_recent_only_in_its_own_chat_and_after_the_given_time(log):
    queue(log, "n1", "tg:a", origin="notice")
    queue(log, "r1", "tg:b")
    assert q.notice_queued_since(log, "tg:a", "2000-01-01T00:00:00.000Z")
    assert not q.notice_queued_since(log, "tg:a", "2999-01-01T00:00:00.000Z")
    assert not q.notice_queued_since(log, "tg:b", "2000-01-01T00:00:00.000Z")  # a reply is no notice


# --- cursors, sessions, usage, the log itself --------------------------------------------------


def test_a_chats_cursor_is_zero_until_a_run_takes_its_messages(log):
    assert q.cursor_of(log, "tg:fam") == 0
    log.append(t.AgentRunStarted(run_id="r1", folder="family", chat_jid="tg:fam", container="c", through_seq=7))
    assert q.cursor_of(log, "tg:fam") == 7


def test_sessions_are_read_per_group_and_all_together(log):
    log.append(t.SessionUpdated(folder="family", session_id="s-fam"))
    log.append(t.SessionUpdated(folder="main", session_id="s-main"))
    assert q.session_of(log, "family") == "s-fam" and q.session_of(log, "zoo") is None
    assert q.session_ids(log) == {"s-fam", "s-main"}


def call(log, folder: str, model: str, day: str) -> None:
    """One model call, recorded on `day` (the projection's day is the event's own time)."""
    with freeze_time(f"{day}T12:00:00Z"):
        log.append(t.ModelCalled(run_id="r", folder=folder, method="POST", path="/v1/messages", status=200,
                                 duration_ms=1.0, model=model, input_tokens=1))


def test_usage_rows_are_ordered_by_the_column_asked_for_first(log):
    call(log, "zoo", "opus", "2026-01-02")
    call(log, "family", "haiku", "2026-01-03")
    call(log, "family", "sonnet", "2026-01-01")
    keys = lambda rows: [(r["day"], r["folder"], r["model"]) for r in rows]  # noqa: E731
    assert keys(q.usage_since(log, "2026-01-01")) == [
        ("2026-01-01", "family", "sonnet"), ("2026-01-02", "zoo", "opus"), ("2026-01-03", "family", "haiku")]
    assert [r["model"] for r in q.usage_since(log, "2026-01-01", first_by="model")] == ["haiku", "opus", "sonnet"]
    assert keys(q.usage_since(log, "2026-01-02", "family")) == [("2026-01-03", "family", "haiku")]
    with pytest.raises(ValueError):
        q.usage_since(log, "2026-01-01", first_by="tokens; DROP TABLE usage")


def test_the_first_seq_at_or_after_a_time_is_none_when_nothing_came_since(log):
    first = log.append(t.SessionUpdated(folder="family", session_id="s")).seq
    assert q.first_seq_at_or_after(log, "2000-01-01T00:00:00.000Z") == first
    assert q.first_seq_at_or_after(log, "2999-01-01T00:00:00.000Z") is None


# --- the rule that keeps the SQL here ---------------------------------------------------------


def sql_outside_events() -> list[str]:
    found = []
    for package in PACKAGES_WITHOUT_SQL:
        for path in sorted((REPO / package).rglob("*.py")):
            name = path.relative_to(REPO).as_posix()
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if SQL_ON_A_TABLE.search(line) and name not in STILL_WRITING_SQL:
                    found.append(f"{name}:{number}: {line.strip()}")
    return found


def test_no_module_outside_events_writes_sql_against_the_log_or_its_tables():
    assert sql_outside_events() == [], "read the projections through a function of events/queries.py"


def test_the_sql_rule_sees_a_query_written_inline():
    assert SQL_ON_A_TABLE.search('rows = tx.query("SELECT jid FROM groups WHERE folder = ?", (folder,))')
    assert SQL_ON_A_TABLE.search('"SELECT c.jid FROM chats c JOIN groups g ON g.jid = c.jid"')
    assert not SQL_ON_A_TABLE.search("the folder is removed from groups/ by hand")
