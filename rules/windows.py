"""The rules over a chat's pending window: whether it wakes the agent, and its prompt.

The router (when piping) and the agent-run job (when starting) both hand an
agent the newest `MAX_MESSAGES_PER_PROMPT` messages after the group's cursor
(events/queries.py reads them); this module decides whether that window
holds work for the agent and turns it into the prompt the agent reads.
"""

from __future__ import annotations

from events import Record
from events import types as t
from rules.allowlist import Allowlist
from rules.prompt import PromptMessage, format_prompt
from rules.triggers import may_trigger, needs_trigger


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


def prompt_for(records: list[Record], timezone: str) -> str:
    """The window as the text the agent reads, times in the owner's `timezone`."""
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
