"""Tables derived from the log, updated in the same transaction as each event.

A projection row depends only on events (their data, `seq` and `at`), never
on the clock or on the order tables were created, so `nanoclaw replay
--rebuild` recreates them exactly. Bump `PROJECTION_VERSION` whenever a table
or a rule below changes: the log rebuilds stale projections at open.
"""

from __future__ import annotations

import sqlite3
from typing import Callable

import msgspec

from events import types as t
from events.rules import InvariantError, folder_problem

PROJECTION_VERSION = 7

TABLES: dict[str, str] = {
    "chats": """CREATE TABLE chats (
        jid TEXT PRIMARY KEY, name TEXT, last_message_time TEXT,
        channel TEXT, is_group INTEGER NOT NULL DEFAULT 0, last_seq INTEGER)""",
    "groups": """CREATE TABLE groups (
        jid TEXT PRIMARY KEY, name TEXT NOT NULL, folder TEXT NOT NULL UNIQUE,
        trigger TEXT NOT NULL, requires_trigger INTEGER NOT NULL, is_main INTEGER NOT NULL,
        container_config TEXT, added_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        registered_seq INTEGER NOT NULL)""",
    "versions": """CREATE TABLE versions (
        name TEXT PRIMARY KEY, version INTEGER NOT NULL)""",
    "cursors": """CREATE TABLE cursors (
        chat_jid TEXT PRIMARY KEY, seq INTEGER NOT NULL, updated_at TEXT NOT NULL)""",
    "sessions": """CREATE TABLE sessions (
        folder TEXT PRIMARY KEY, session_id TEXT NOT NULL, updated_at TEXT NOT NULL)""",
    "runs": """CREATE TABLE runs (
        run_id TEXT PRIMARY KEY, folder TEXT NOT NULL, chat_jid TEXT NOT NULL,
        task_id TEXT, container TEXT NOT NULL, state TEXT NOT NULL,
        started_seq INTEGER NOT NULL, started_at TEXT NOT NULL, from_seq INTEGER NOT NULL,
        through_seq INTEGER NOT NULL, outputs INTEGER NOT NULL DEFAULT 0,
        finished_at TEXT, status TEXT, error TEXT, had_output INTEGER, worker TEXT,
        ready INTEGER NOT NULL DEFAULT 0)""",
    "tasks": """CREATE TABLE tasks (
        id TEXT PRIMARY KEY, group_folder TEXT NOT NULL, chat_jid TEXT NOT NULL,
        prompt TEXT NOT NULL, schedule_type TEXT NOT NULL, schedule_value TEXT NOT NULL,
        context_mode TEXT NOT NULL, script TEXT, timezone TEXT, next_run TEXT,
        last_run TEXT, last_result TEXT, status TEXT NOT NULL, created_at TEXT NOT NULL,
        created_by TEXT NOT NULL)""",
    "task_runs": """CREATE TABLE task_runs (
        seq INTEGER PRIMARY KEY, task_id TEXT NOT NULL, run_id TEXT, run_at TEXT NOT NULL,
        duration_ms INTEGER NOT NULL, status TEXT NOT NULL, result TEXT, error TEXT)""",
    "outbound": """CREATE TABLE outbound (
        outbound_id TEXT PRIMARY KEY, chat_jid TEXT NOT NULL, origin TEXT NOT NULL,
        run_id TEXT, text TEXT NOT NULL, state TEXT NOT NULL, queued_seq INTEGER NOT NULL,
        queued_at TEXT NOT NULL, done_at TEXT, attempts INTEGER NOT NULL DEFAULT 0,
        reason TEXT, file TEXT, parts_sent INTEGER NOT NULL DEFAULT 0, thread_id TEXT)""",
    # file: the OutboundFile as JSON, for a reply that is a file; parts_sent: of a split reply, accepted so far
    # model calls through the gateway, summed per UTC day (from the event's time), group and model
    "usage": """CREATE TABLE usage (
        day TEXT NOT NULL, folder TEXT NOT NULL, model TEXT NOT NULL, calls INTEGER NOT NULL,
        failed INTEGER NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
        cache_creation_input_tokens INTEGER NOT NULL, cache_read_input_tokens INTEGER NOT NULL,
        PRIMARY KEY (day, folder, model))""",
}

INDEXES = (
    "CREATE INDEX runs_folder_state ON runs(folder, state)",
    "CREATE INDEX tasks_due ON tasks(status, next_run)",
    "CREATE INDEX task_runs_task ON task_runs(task_id, seq)",
    "CREATE INDEX outbound_state ON outbound(state, queued_seq)",
)

# Primary key of each table, for ordered comparisons.
KEYS = {
    "chats": "jid",
    "groups": "jid",
    "versions": "name",
    "cursors": "chat_jid",
    "sessions": "folder",
    "runs": "run_id",
    "tasks": "id",
    "task_runs": "seq",
    "outbound": "outbound_id",
    "usage": "day, folder, model",
}

SUMMARY_CHARS = 200


def create_all(conn: sqlite3.Connection) -> None:
    for ddl in TABLES.values():
        conn.execute(ddl)
    for ddl in INDEXES:
        conn.execute(ddl)


def drop_all(conn: sqlite3.Connection) -> None:
    for name in TABLES:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


def _bool(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _config_json(config: t.ContainerConfig | None) -> str | None:
    return None if config is None else msgspec.json.encode(config).decode()


# --- one function per event type that changes a table -----------------------


def _chat_seen(db: sqlite3.Connection, seq: int, at: str, ev: t.ChatSeen) -> None:
    db.execute(
        """INSERT INTO chats (jid, name, last_message_time, channel, is_group, last_seq)
           VALUES (?, coalesce(?, ?), ?, ?, coalesce(?, 0), ?)
           ON CONFLICT(jid) DO UPDATE SET
             name = coalesce(?, name),
             last_message_time = max(coalesce(last_message_time, ''), excluded.last_message_time),
             channel = coalesce(excluded.channel, channel),
             is_group = coalesce(?, is_group), last_seq = excluded.last_seq""",
        (ev.chat_jid, ev.name, ev.chat_jid, ev.timestamp, ev.channel, _bool(ev.is_group), seq,
         ev.name, _bool(ev.is_group)),
    )


def table_version(conn: sqlite3.Connection, name: str) -> int:
    """How many times the named table was changed by the events that bump it."""
    row = conn.execute("SELECT version FROM versions WHERE name = ?", (name,)).fetchone()
    return row[0] if row else 0


def _bump(db: sqlite3.Connection, name: str) -> None:
    """Count changes to a table so readers can cache it and check cheaply."""
    db.execute(
        "INSERT INTO versions (name, version) VALUES (?, 1)"
        " ON CONFLICT(name) DO UPDATE SET version = version + 1", (name,))


def _group_registered(db: sqlite3.Connection, seq: int, at: str, ev: t.GroupRegistered) -> None:
    if (problem := folder_problem(ev.folder)) is not None:
        raise InvariantError(seq, f"group folder {ev.folder!r}: {problem}")
    if ev.is_main and (main := db.execute("SELECT folder FROM groups WHERE is_main = 1").fetchone()):
        raise InvariantError(seq, f"a second main group ({ev.folder}); {main[0]} is the main group")
    if (taken := db.execute("SELECT jid FROM groups WHERE folder = ?", (ev.folder,)).fetchone()):
        raise InvariantError(seq, f"folder {ev.folder} is already used by {taken[0]}")
    if db.execute("SELECT 1 FROM groups WHERE jid = ?", (ev.jid,)).fetchone():
        raise InvariantError(seq, f"{ev.jid} is registered already")
    db.execute(
        """INSERT INTO groups (jid, name, folder, trigger, requires_trigger, is_main,
                               container_config, added_at, updated_at, registered_seq)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (ev.jid, ev.name, ev.folder, ev.trigger, int(ev.requires_trigger), int(ev.is_main),
         _config_json(ev.container_config), at, at, seq),
    )
    _bump(db, "groups")


def _group_updated(db: sqlite3.Connection, seq: int, at: str, ev: t.GroupUpdated) -> None:
    changes: dict[str, object] = {"updated_at": at}
    if ev.name is not t.UNSET:
        changes["name"] = ev.name
    if ev.trigger is not t.UNSET:
        changes["trigger"] = ev.trigger
    if ev.requires_trigger is not t.UNSET:
        changes["requires_trigger"] = int(ev.requires_trigger)
    if ev.container_config is not t.UNSET:
        changes["container_config"] = _config_json(ev.container_config)
    sets = ", ".join(f"{column} = ?" for column in changes)
    db.execute(f"UPDATE groups SET {sets} WHERE jid = ?", (*changes.values(), ev.jid))
    _bump(db, "groups")


def _group_removed(db: sqlite3.Connection, seq: int, at: str, ev: t.GroupRemoved) -> None:
    db.execute("DELETE FROM groups WHERE jid = ?", (ev.jid,))
    _bump(db, "groups")


def _set_cursor(db: sqlite3.Connection, chat_jid: str, seq: int, at: str) -> None:
    db.execute(
        """INSERT INTO cursors (chat_jid, seq, updated_at) VALUES (?, ?, ?)
           ON CONFLICT(chat_jid) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at""",
        (chat_jid, seq, at),
    )


def _run_started(db: sqlite3.Connection, seq: int, at: str, ev: t.AgentRunStarted) -> None:
    db.execute(
        """INSERT INTO runs (run_id, folder, chat_jid, task_id, container, state, started_seq,
                             started_at, from_seq, through_seq, worker, ready)
           VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)""",
        (ev.run_id, ev.folder, ev.chat_jid, ev.task_id, ev.container, seq, at,
         ev.from_seq, ev.through_seq, ev.worker, int(ev.ready)),
    )
    if ev.task_id is None and ev.through_seq > ev.from_seq:
        _set_cursor(db, ev.chat_jid, ev.through_seq, at)
    _bump(db, "runs")


def _messages_piped(db: sqlite3.Connection, seq: int, at: str, ev: t.MessagesPiped) -> None:
    db.execute(
        "UPDATE runs SET through_seq = max(through_seq, ?) WHERE run_id = ?",
        (ev.through_seq, ev.run_id),
    )
    _set_cursor(db, ev.chat_jid, ev.through_seq, at)
    _bump(db, "runs")


def _agent_output(db: sqlite3.Connection, seq: int, at: str, ev: t.AgentOutput) -> None:
    db.execute("UPDATE runs SET outputs = outputs + 1 WHERE run_id = ?", (ev.run_id,))


def _run_finished(db: sqlite3.Connection, seq: int, at: str, ev: t.AgentRunFinished) -> None:
    db.execute(
        """UPDATE runs SET state = 'finished', finished_at = ?, status = ?, error = ?,
                           had_output = ? WHERE run_id = ?""",
        (at, ev.status, ev.error, int(ev.had_output), ev.run_id),
    )
    if ev.cursor_rollback_to is not None:
        _set_cursor(db, ev.chat_jid, ev.cursor_rollback_to, at)
    _bump(db, "runs")


def _outbound_queued(db: sqlite3.Connection, seq: int, at: str, ev: t.OutboundQueued) -> None:
    db.execute(
        """INSERT INTO outbound (outbound_id, chat_jid, origin, run_id, text, state,
                                 queued_seq, queued_at, file, thread_id)
           VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)""",
        (ev.outbound_id, ev.chat_jid, ev.origin, ev.run_id, ev.text, seq, at,
         msgspec.json.encode(ev.file).decode() if ev.file is not None else None, ev.thread_id),
    )
    _bump(db, "outbound")


def _outbound_part_sent(db: sqlite3.Connection, seq: int, at: str, ev: t.OutboundPartSent) -> None:
    db.execute("UPDATE outbound SET parts_sent = max(parts_sent, ?) WHERE outbound_id = ?", (ev.part, ev.outbound_id))


def _outbound_sent(db: sqlite3.Connection, seq: int, at: str, ev: t.OutboundSent) -> None:
    db.execute(
        "UPDATE outbound SET state = 'sent', done_at = ?, attempts = ? WHERE outbound_id = ?",
        (at, ev.attempts, ev.outbound_id),
    )


def _outbound_failed(db: sqlite3.Connection, seq: int, at: str, ev: t.OutboundFailed) -> None:
    db.execute(
        """UPDATE outbound SET state = 'failed', done_at = ?, attempts = ?, reason = ?
           WHERE outbound_id = ?""",
        (at, ev.attempts, ev.reason, ev.outbound_id),
    )


def _task_scheduled(db: sqlite3.Connection, seq: int, at: str, ev: t.TaskScheduled) -> None:
    db.execute(
        """INSERT INTO tasks (id, group_folder, chat_jid, prompt, schedule_type, schedule_value,
                              context_mode, script, timezone, next_run, status, created_at,
                              created_by)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?)""",
        (ev.task_id, ev.group_folder, ev.chat_jid, ev.prompt, ev.schedule_type,
         ev.schedule_value, ev.context_mode, ev.script, ev.timezone, ev.next_run, at,
         ev.created_by),
    )


def _task_updated(db: sqlite3.Connection, seq: int, at: str, ev: t.TaskUpdated) -> None:
    names = ("prompt", "script", "schedule_type", "schedule_value", "timezone", "next_run")
    changes = {name: getattr(ev, name) for name in names if getattr(ev, name) is not t.UNSET}
    if changes:
        sets = ", ".join(f"{column} = ?" for column in changes)
        db.execute(f"UPDATE tasks SET {sets} WHERE id = ?", (*changes.values(), ev.task_id))


def _task_status(status: str) -> Callable[[sqlite3.Connection, int, str, t.Event], None]:
    def apply(db: sqlite3.Connection, seq: int, at: str, ev: t.Event) -> None:
        db.execute("UPDATE tasks SET status = ? WHERE id = ?", (status, ev.task_id))  # type: ignore[attr-defined]

    return apply


def _task_cancelled(db: sqlite3.Connection, seq: int, at: str, ev: t.TaskCancelled) -> None:
    db.execute("DELETE FROM tasks WHERE id = ?", (ev.task_id,))


def _task_run_finished(db: sqlite3.Connection, seq: int, at: str, ev: t.TaskRunFinished) -> None:
    db.execute(
        """INSERT INTO task_runs (seq, task_id, run_id, run_at, duration_ms, status, result, error)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
        (seq, ev.task_id, ev.run_id, at, ev.duration_ms, ev.status, ev.result, ev.error),
    )
    if ev.error:
        summary = f"Error: {ev.error}"
    else:
        summary = ev.result[:SUMMARY_CHARS] if ev.result else "Completed"
    db.execute(
        """UPDATE tasks SET next_run = ?, last_run = ?, last_result = ?,
                            status = CASE WHEN ? IS NULL THEN 'completed' ELSE status END
           WHERE id = ?""",
        (ev.next_run, at, summary, ev.next_run, ev.task_id),
    )


def _session_updated(db: sqlite3.Connection, seq: int, at: str, ev: t.SessionUpdated) -> None:
    db.execute(
        """INSERT INTO sessions (folder, session_id, updated_at) VALUES (?, ?, ?)
           ON CONFLICT(folder) DO UPDATE SET session_id = excluded.session_id,
                                             updated_at = excluded.updated_at""",
        (ev.folder, ev.session_id, at),
    )


def _session_cleared(db: sqlite3.Connection, seq: int, at: str, ev: t.SessionCleared) -> None:
    db.execute("DELETE FROM sessions WHERE folder = ?", (ev.folder,))


def _model_called(db: sqlite3.Connection, seq: int, at: str, ev: t.ModelCalled) -> None:
    failed = int(ev.status >= 400 or ev.error is not None)
    db.execute(
        """INSERT INTO usage VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?)
           ON CONFLICT(day, folder, model) DO UPDATE SET calls = calls + 1, failed = failed + excluded.failed,
             input_tokens = input_tokens + excluded.input_tokens,
             output_tokens = output_tokens + excluded.output_tokens,
             cache_creation_input_tokens = cache_creation_input_tokens + excluded.cache_creation_input_tokens,
             cache_read_input_tokens = cache_read_input_tokens + excluded.cache_read_input_tokens""",
        (at[:10], ev.folder, ev.model or "", failed, ev.input_tokens or 0, ev.output_tokens or 0,
         ev.cache_creation_input_tokens or 0, ev.cache_read_input_tokens or 0))


APPLY: dict[type[t.Event], Callable] = {
    t.ChatSeen: _chat_seen,
    t.GroupRegistered: _group_registered,
    t.GroupUpdated: _group_updated,
    t.GroupRemoved: _group_removed,
    t.AgentRunStarted: _run_started,
    t.MessagesPiped: _messages_piped,
    t.AgentOutput: _agent_output,
    t.AgentRunFinished: _run_finished,
    t.OutboundQueued: _outbound_queued,
    t.OutboundPartSent: _outbound_part_sent,
    t.OutboundSent: _outbound_sent,
    t.OutboundFailed: _outbound_failed,
    t.TaskScheduled: _task_scheduled,
    t.TaskUpdated: _task_updated,
    t.TaskPaused: _task_status("paused"),
    t.TaskResumed: _task_status("active"),
    t.TaskCancelled: _task_cancelled,
    t.TaskRunFinished: _task_run_finished,
    t.SessionUpdated: _session_updated,
    t.SessionCleared: _session_cleared,
    t.ModelCalled: _model_called,
}


def apply(db: sqlite3.Connection, seq: int, at: str, event: t.Event) -> None:
    """Fold one event into the projections (inside the caller's transaction)."""
    handler = APPLY.get(type(event))
    if handler is not None:
        handler(db, seq, at, event)
