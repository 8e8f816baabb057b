"""Every read of the projections (and the log lookups that go with them), one named function each.

The router, the jobs and the commands ask these functions, never the tables:
what "a run is in progress" or "a reply waits to be sent" means is written
once, here, and a change to a table's shape touches this file and
events/projections.py alone. Each function takes an EventLog or a Transaction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Iterable

import msgspec

from events import types as t
from events.log import EventLog, Record, Transaction

Reader = EventLog | Transaction
USAGE_ORDERS = ("day", "folder", "model")


# --- groups ------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """A registered group as the `groups` projection holds it."""

    jid: str
    name: str
    folder: str
    trigger: str
    requires_trigger: bool
    is_main: bool
    container_config: t.ContainerConfig | None
    added_at: str


def group_from_row(row: sqlite3.Row) -> Group:
    """A `groups` row (all its columns) as a Group."""
    config = row["container_config"]
    return Group(
        jid=row["jid"],
        name=row["name"],
        folder=row["folder"],
        trigger=row["trigger"],
        requires_trigger=bool(row["requires_trigger"]),
        is_main=bool(row["is_main"]),
        container_config=None if config is None else msgspec.json.decode(config, type=t.ContainerConfig),
        added_at=row["added_at"],
    )


def _one_group(db: Reader, where: str, params: tuple) -> Group | None:
    rows = db.query(f"SELECT * FROM groups WHERE {where}", params)
    return group_from_row(rows[0]) if rows else None


def list_groups(db: Reader) -> list[Group]:
    """Every registered group, the main group first, then by folder."""
    return [group_from_row(r) for r in db.query("SELECT * FROM groups ORDER BY is_main DESC, folder")]


def group_by_jid(db: Reader, jid: str) -> Group | None:
    return _one_group(db, "jid = ?", (jid,))


def group_by_folder(db: Reader, folder: str) -> Group | None:
    return _one_group(db, "folder = ?", (folder,))


def find_group(db: Reader, jid_or_folder: str) -> Group | None:
    """The group with this JID or, failing that, this folder (what people type at the CLI)."""
    return _one_group(db, "jid = ? OR folder = ? ORDER BY jid = ? DESC LIMIT 1",
                      (jid_or_folder, jid_or_folder, jid_or_folder))


def main_group(db: Reader) -> Group | None:
    """The one main group, if one is registered (the projection refuses a second)."""
    return _one_group(db, "is_main = 1", ())


def groups_by_jid(db: Reader, jids: Iterable[str]) -> dict[str, Group]:
    """The registered groups among these chats, by JID (unregistered chats are left out)."""
    wanted = list(jids)
    marks = ", ".join("?" * len(wanted))
    rows = db.query(f"SELECT * FROM groups WHERE jid IN ({marks})", wanted)
    return {row["jid"]: group_from_row(row) for row in rows}


def group_chats_seen(db: Reader, except_jid: str) -> list[sqlite3.Row]:
    """Group chats the channels reported, newest activity first, each with whether it is registered.

    Rows of `jid`, `name`, `last_message_time` and `registered` (0 or 1).
    """
    return db.query(
        """SELECT c.jid, c.name, c.last_message_time,
                  EXISTS (SELECT 1 FROM groups g WHERE g.jid = c.jid) AS registered
           FROM chats c WHERE c.is_group = 1 AND c.jid != ?
           ORDER BY c.last_message_time DESC, c.jid""",
        (except_jid,),
    )


# --- scheduled tasks ---------------------------------------------------------------


def task_by_id(db: Reader, task_id: str) -> sqlite3.Row | None:
    """The `tasks` row with all its columns, or None when no such task exists (a cancelled one is gone)."""
    rows = db.query("SELECT * FROM tasks WHERE id = ?", (task_id,))
    return rows[0] if rows else None


def _tasks(db: Reader, folder: str | None, order: str) -> list[sqlite3.Row]:
    where, params = ("", ()) if folder is None else (" WHERE group_folder = ?", (folder,))
    return db.query(f"SELECT * FROM tasks{where} ORDER BY {order}", params)


def tasks_soonest_first(db: Reader, folder: str | None = None) -> list[sqlite3.Row]:
    """Every task (of one group, or all), by next run; those that never run again come first."""
    return _tasks(db, folder, "next_run")


def tasks_newest_first(db: Reader, folder: str | None = None) -> list[sqlite3.Row]:
    """Every task (of one group, or all), the most recently scheduled first."""
    return _tasks(db, folder, "created_at DESC, rowid DESC")


def upcoming_tasks(db: Reader, limit: int) -> list[sqlite3.Row]:
    """The next `limit` active tasks that will run, soonest first."""
    return db.query("SELECT * FROM tasks WHERE status = 'active' AND next_run IS NOT NULL"
                    " ORDER BY next_run LIMIT ?", (limit,))


def due_tasks(db: Reader, now: str, folder: str | None = None) -> list[str]:
    """Ids of the active tasks whose next run is at or before `now` (of one group, or all), soonest first."""
    where, params = ("", (now,)) if folder is None else (" AND group_folder = ?", (now, folder))
    rows = db.query("SELECT id FROM tasks WHERE status = 'active' AND next_run IS NOT NULL"
                    f" AND next_run <= ?{where} ORDER BY next_run", params)
    return [row["id"] for row in rows]


# --- runs and run requests ---------------------------------------------------------


def group_busy(db: Reader, folder: str) -> bool:
    """The group holds its lease: a run of any kind, message or task, started and has not finished.

    No second run of a group starts while this is true.
    """
    return bool(db.query("SELECT 1 FROM runs WHERE folder = ? AND state = 'running' LIMIT 1", (folder,)))


def message_run_to_pipe_into(db: Reader, folder: str) -> str | None:
    """The run id of the group's newest running message run, the one new messages are piped into.

    A task run is left out: it answers its task's prompt, not the chat, so a
    group can be busy (`group_busy`) with no run to pipe into.
    """
    rows = db.query("SELECT run_id FROM runs WHERE folder = ? AND state = 'running' AND task_id IS NULL"
                    " ORDER BY started_seq DESC LIMIT 1", (folder,))
    return rows[0]["run_id"] if rows else None


def waits_ready(run: sqlite3.Row) -> bool:
    """A `runs` row of a ready agent handed no message yet (a pipe moves `through_seq` past `from_seq`)."""
    return bool(run["ready"]) and run["through_seq"] == run["from_seq"]


def ready_runs(db: Reader) -> list[sqlite3.Row]:
    """Running ready agents that wait for their first message, oldest first."""
    return [run for run in running_runs(db) if waits_ready(run)]


def was_handed_messages(db: Reader, run_id: str) -> bool:
    """Whether a message run was handed any message, at its start or piped in since."""
    rows = db.query("SELECT through_seq > from_seq FROM runs WHERE run_id = ?", (run_id,))
    return bool(rows and rows[0][0])


def piped_since(db: Reader, run_id: str, folder: str, seq: int) -> bool:
    """Whether messages were piped into the run after `seq`."""
    for record in db.read_since(seq, types=[t.MessagesPiped], streams=[folder], limit=None):
        if record.event.run_id == run_id:  # type: ignore[attr-defined]
            return True
    return False


def running_runs(db: Reader) -> list[sqlite3.Row]:
    """Every `runs` row (all columns) still running, in the order they started."""
    return db.query("SELECT * FROM runs WHERE state = 'running' ORDER BY started_seq")


def last_run_started_seq(db: Reader, folder: str) -> int:
    """The seq of the group's newest `AgentRunStarted`; 0 when it never ran."""
    return db.query("SELECT max(started_seq) FROM runs WHERE folder = ?", (folder,))[0][0] or 0


def outstanding_request(db: Reader, folder: str) -> Record | None:
    """The group's newest run request that no run has started since, or None."""
    last = db.read_since(0, types=[t.AgentRunRequested], streams=[folder], limit=1, newest=True)
    if not last:
        return None
    return last[0] if last[0].seq > last_run_started_seq(db, folder) else None


# --- a chat's messages and its cursor ------------------------------------------------


def cursor_of(db: Reader, chat_jid: str) -> int:
    """The seq up to which the chat's messages were handed to an agent; 0 before the first run."""
    rows = db.query("SELECT seq FROM cursors WHERE chat_jid = ?", (chat_jid,))
    return rows[0][0] if rows else 0


def is_conversation(event: t.MessageReceived) -> bool:
    """Messages the agent sees: not the bot's own echoes, not empty."""
    return not event.is_bot_message and bool(event.content)


def pending_messages(db: Reader, chat_jid: str, after_seq: int, limit: int) -> list[Record]:
    """The newest `limit` conversation messages of the chat after `after_seq`, oldest first."""
    found: list[Record] = []
    before: int | None = None
    while len(found) < limit:
        chunk = db.read_since(after_seq, types=[t.MessageReceived], streams=[chat_jid],
                              limit=limit, before_seq=before, newest=True)
        if not chunk:
            break
        found = [r for r in chunk if is_conversation(r.event)] + found  # type: ignore[arg-type]
        before = chunk[0].seq
        if len(chunk) < limit:
            break
    return found[-limit:]


def recent_messages(db: Reader, chat_jid: str, limit: int) -> list[t.MessageReceived]:
    """The chat's newest `limit` recorded messages, newest first, bots' and the assistant's own included."""
    records = db.read_since(0, types=[t.MessageReceived], streams=[chat_jid], limit=limit, newest=True)
    return [r.event for r in reversed(records)]  # type: ignore[misc]


def message_key(chat_jid: str, message_id: str) -> str:
    """The idempotency key a `MessageReceived` is stored under: a platform's redelivery is stored once."""
    return f"{chat_jid}:{message_id}"


def recorded_message_ids(db: Reader, chat_jid: str, message_ids: Iterable[str]) -> set[str]:
    """Which of the chat's platform message ids the log holds."""
    wanted = {message_key(chat_jid, i): i for i in message_ids}
    return {wanted[key] for key in db.known_keys(list(wanted))}


def first_seq_at_or_after(db: Reader, at: str) -> int | None:
    """The seq of the first event recorded at or after the ISO time `at`; None when there is none."""
    return db.query("SELECT min(seq) FROM events WHERE at >= ?", (at,))[0][0]


# --- replies and notices -----------------------------------------------------------


def chats_with_queued_replies(db: Reader) -> list[str]:
    """Chats with replies waiting to be sent, the one waiting longest first."""
    rows = db.query("SELECT chat_jid, min(queued_seq) AS first FROM outbound WHERE state = 'queued'"
                    " GROUP BY chat_jid ORDER BY first")
    return [row["chat_jid"] for row in rows]


def next_queued_reply(db: Reader, chat_jid: str) -> sqlite3.Row | None:
    """The chat's oldest reply still to send (`outbound_id`, `text`, `file` as JSON or None, `parts_sent`,
    `thread_id`), or None."""
    rows = db.query("SELECT outbound_id, text, file, parts_sent, thread_id FROM outbound"
                    " WHERE state = 'queued' AND chat_jid = ?"
                    " ORDER BY queued_seq LIMIT 1", (chat_jid,))
    return rows[0] if rows else None


def reply_thread(db: Reader, chat_jid: str) -> str | None:
    """The thread a reply to the chat goes to: that of its newest message from someone else (None: the chat)."""
    rows = db.query("SELECT json_extract(data, '$.thread_id') FROM events WHERE stream = ? AND type = 'MessageReceived'"
                    " AND coalesce(json_extract(data, '$.is_from_me'), 0) = 0 ORDER BY seq DESC LIMIT 1", (chat_jid,))
    return rows[0][0] if rows else None


def queued_file_bytes(db: Reader, chat_jid: str) -> int:
    """The bytes of files queued for the chat and not sent yet (their outbox copies)."""
    rows = db.query("SELECT coalesce(sum(json_extract(file, '$.size')), 0) FROM outbound"
                    " WHERE state = 'queued' AND chat_jid = ? AND file IS NOT NULL", (chat_jid,))
    return int(rows[0][0])


def queued_outbound_ids(db: Reader) -> set[str]:
    """Every reply still owed to a chat."""
    return {row[0] for row in db.query("SELECT outbound_id FROM outbound WHERE state = 'queued'")}


def outbound_file(row: sqlite3.Row) -> t.OutboundFile | None:
    """The file a queued reply carries (next_queued_reply's `file`), or None for text."""
    return msgspec.json.decode(row["file"], type=t.OutboundFile) if row["file"] else None


def outbound_by_id(db: Reader, outbound_id: str) -> sqlite3.Row | None:
    """One `outbound` row (all columns): its state, attempts, reason and when it was done."""
    rows = db.query("SELECT * FROM outbound WHERE outbound_id = ?", (outbound_id,))
    return rows[0] if rows else None


def replies_queued_by_run(db: Reader, run_id: str) -> int:
    """How many replies the run queued, sent or not."""
    return db.query("SELECT count(*) FROM outbound WHERE run_id = ?", (run_id,))[0][0]


def notice_queued_since(db: Reader, chat_jid: str, since: str) -> bool:
    """A failure or budget notice was queued for the chat at or after the ISO time `since`."""
    return bool(db.query("SELECT 1 FROM outbound WHERE chat_jid = ? AND origin = 'notice' AND queued_at >= ?"
                         " LIMIT 1", (chat_jid, since)))


# --- sessions --------------------------------------------------------------------------


def session_of(db: Reader, folder: str) -> str | None:
    """The agent session the group's next run resumes, if one is saved."""
    rows = db.query("SELECT session_id FROM sessions WHERE folder = ?", (folder,))
    return rows[0][0] if rows else None


def session_ids(db: Reader) -> set[str]:
    """Every saved session id, of every group."""
    return {row[0] for row in db.query("SELECT session_id FROM sessions")}


# --- model usage -----------------------------------------------------------------------


def usage_since(db: Reader, since_day: str, folder: str | None = None, *, first_by: str = "day") -> list[sqlite3.Row]:
    """`usage` rows from the UTC day `since_day` on (of one group, or all).

    Ordered by `first_by` (day, folder or model), then day, folder and model.
    """
    if first_by not in USAGE_ORDERS:
        raise ValueError(f"usage rows are ordered by one of {', '.join(USAGE_ORDERS)}, not {first_by!r}")
    where, params = ("", [since_day]) if folder is None else (" AND folder = ?", [since_day, folder])
    return db.query(f"SELECT * FROM usage WHERE day >= ?{where} ORDER BY {first_by}, day, folder, model", params)
