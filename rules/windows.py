"""Reading a chat's messages back from the log: the pending window and its prompt.

The router (when piping) and the agent-run job (when starting) both hand an
agent the newest `MAX_MESSAGES_PER_PROMPT` messages after the group's
cursor; this module is the one definition of that window.
"""

from __future__ import annotations

from dataclasses import dataclass

from base.config import Settings
from events import Record, Transaction
from events import types as t
from rules.allowlist import Allowlist
from rules.groups import Group
from rules.prompt import PromptMessage, format_prompt
from rules.triggers import may_trigger, needs_trigger


def is_conversation(event: t.MessageReceived) -> bool:
    """Messages the agent sees: not the bot's own echoes, not empty."""
    return not event.is_bot_message and bool(event.content)


def pending_messages(reader: Transaction, chat_jid: str, after_seq: int, limit: int) -> list[Record]:
    """The newest `limit` conversation messages after `after_seq`, oldest first."""
    found: list[Record] = []
    before: int | None = None
    while len(found) < limit:
        chunk = reader.read_since(after_seq, types=[t.MessageReceived], streams=[chat_jid],
                                  limit=limit, before_seq=before, newest=True)
        if not chunk:
            break
        found = [r for r in chunk if is_conversation(r.event)] + found
        before = chunk[0].seq
        if len(chunk) < limit:
            break
    return found[-limit:]


def run_in_progress(reader: Transaction, folder: str) -> bool:
    """True while the group holds its lease: a run started and not finished."""
    return bool(reader.query("SELECT 1 FROM runs WHERE folder = ? AND state = 'running'", (folder,)))


def outstanding_request(reader: Transaction, folder: str) -> Record | None:
    """The group's newest run request that no run has started since, or None."""
    last = reader.read_since(0, types=[t.AgentRunRequested], streams=[folder], limit=1, newest=True)
    if not last:
        return None
    started = reader.query("SELECT max(started_seq) FROM runs WHERE folder = ?", (folder,))[0][0] or 0
    return last[0] if last[0].seq > started else None


def message_wakes(event: t.MessageReceived, *, trigger: str, default_trigger: str, rules: Allowlist) -> bool:
    """One message passes the trigger and its sender may trigger."""
    return may_trigger(content=event.content, is_from_me=event.is_from_me,
                       sender_allowed=rules.may_trigger(event.chat_jid, event.sender),
                       trigger=trigger, default_trigger=default_trigger)


def window_wakes(records: list[Record], group: Group, *, default_trigger: str, rules: Allowlist) -> bool:
    """The one rule for waking a group's agent: some message in `records` passes its trigger rules.

    The trigger stage applies it to the messages just recorded, a message
    run and recovery to the whole pending window.
    """
    if not records:
        return False
    if not needs_trigger(group.is_main, group.requires_trigger):
        return True
    return any(message_wakes(r.event, trigger=group.trigger, default_trigger=default_trigger, rules=rules)
               for r in records)


@dataclass(frozen=True)
class Window:
    """The messages a run of the group would be handed now, and whether they wake its agent."""

    cursor: int
    records: list[Record]
    wakes: bool

    @property
    def through_seq(self) -> int:
        return self.records[-1].seq if self.records else self.cursor


def pending_window(reader: Transaction, settings: Settings, group: Group, rules: Allowlist) -> Window:
    cursor = cursor_of(reader, group.jid)
    records = pending_messages(reader, group.jid, cursor, settings.max_messages_per_prompt)
    return Window(cursor, records, window_wakes(records, group, default_trigger=settings.trigger, rules=rules))


def cursor_of(reader: Transaction, chat_jid: str) -> int:
    rows = reader.query("SELECT seq FROM cursors WHERE chat_jid = ?", (chat_jid,))
    return rows[0][0] if rows else 0


def prompt_for(records: list[Record], timezone: str) -> str:
    messages = []
    for record in records:
        ev: t.MessageReceived = record.event  # type: ignore[assignment]
        messages.append(PromptMessage(
            sender_name=ev.sender_name, content=ev.content, timestamp=ev.timestamp,
            reply_to_message_id=ev.reply_to_message_id,
            reply_to_message_content=ev.reply_to_message_content,
            reply_to_sender_name=ev.reply_to_sender_name,
        ))
    return format_prompt(messages, timezone)
