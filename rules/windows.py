"""The rules over a chat's pending window: whether it wakes the agent, and its prompt.

The router (when piping) and the agent-run job (when starting) both hand an
agent the newest `MAX_MESSAGES_PER_PROMPT` messages after the group's cursor
(events/queries.py reads them); this module decides whether that window
holds work for the agent and turns it into the prompt the agent reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from base.config import Settings
from events import Record, Transaction, types as t
from events.queries import Group, cursor_of, pending_messages
from rules.allowlist import Allowlist
from rules.prompt import PromptMessage, format_prompt
from rules.triggers import may_trigger, needs_trigger


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


def prompt_for(records: list[Record], timezone: str) -> str:
    """The window as the text the agent reads, times in the owner's `timezone`."""
    messages = [msgspec.convert(record.event, PromptMessage, from_attributes=True) for record in records]
    return format_prompt(messages, timezone)
