"""Reading a chat's messages back from the log: the pending window and its prompt.

The router (when piping) and the agent-run job (when starting) both hand an
agent the newest `MAX_MESSAGES_PER_PROMPT` messages after the group's
cursor; this module is the one definition of that window.
"""

from __future__ import annotations

import msgspec

from events import Record, Transaction
from events import types as t
from rules.allowlist import Allowlist
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


def window_wakes(records: list[Record], *, is_main: bool, requires_trigger: bool, trigger: str,
                 default_trigger: str, rules: Allowlist) -> bool:
    """The pending window holds work the agent must take."""
    if not records:
        return False
    if not needs_trigger(is_main, requires_trigger):
        return True
    return any(message_wakes(r.event, trigger=trigger, default_trigger=default_trigger, rules=rules)
               for r in records)


def cursor_of(reader: Transaction, chat_jid: str) -> int:
    rows = reader.query("SELECT seq FROM cursors WHERE chat_jid = ?", (chat_jid,))
    return rows[0][0] if rows else 0


def prompt_for(records: list[Record], timezone: str) -> str:
    messages = [msgspec.convert(record.event, PromptMessage, from_attributes=True) for record in records]
    return format_prompt(messages, timezone)
