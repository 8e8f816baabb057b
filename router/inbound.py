"""Channel callbacks become events: `MessageReceived` and `ChatSeen`.

A message's idempotency key is its chat and platform message id, so a
channel that redelivers cannot store it twice. Drop-mode senders of the
allowlist are refused here, before anything is stored (SPEC 5.1, 5.5).
"""

from __future__ import annotations

from loguru import logger

from events import EventLog
from events import types as t
from nanoclaw.faults import fault_point
from router.allowlist import AllowlistFile
from router.channels.base import InboundMessage, RegisteredChat


def message_key(chat_jid: str, message_id: str) -> str:
    return f"{chat_jid}:{message_id}"


def registered_chats(log: EventLog) -> dict[str, RegisteredChat]:
    rows = log.query("SELECT jid, name, folder, is_main FROM groups")
    return {r["jid"]: RegisteredChat(r["jid"], r["name"], r["folder"], bool(r["is_main"])) for r in rows}


class Inbound:
    """Records what channels report; every method runs on the router's DB thread."""

    def __init__(self, log: EventLog, allowlist: AllowlistFile):
        self.log = log
        self.allowlist = allowlist
        self._seen: dict[str, tuple] = {}

    def message(self, channel: str, msg: InboundMessage) -> int | None:
        """Append the message; returns its seq, or None when drop mode refused it."""
        if not msg.is_from_me and not msg.is_bot_message:
            rules = self.allowlist.current()
            if rules.drops(msg.chat_jid, msg.sender) and self._is_registered(msg.chat_jid):
                if rules.log_denied:
                    logger.debug("dropped a message from {} in {} (sender allowlist, drop mode)",
                                 msg.sender, msg.chat_jid)
                return None
        event = t.MessageReceived(
            chat_jid=msg.chat_jid, message_id=msg.message_id, sender=msg.sender,
            sender_name=msg.sender_name, content=msg.content, timestamp=msg.timestamp, channel=channel,
            is_from_me=msg.is_from_me, is_bot_message=msg.is_bot_message,
            reply_to_message_id=msg.reply_to_message_id,
            reply_to_message_content=msg.reply_to_message_content,
            reply_to_sender_name=msg.reply_to_sender_name, thread_id=msg.thread_id,
        )
        appended = self.log.append(event, key=message_key(msg.chat_jid, msg.message_id))
        fault_point("inbound-recorded")
        return appended.seq

    def chat_metadata(self, chat_jid: str, timestamp: str, name: str | None, channel: str | None,
                      is_group: bool | None) -> None:
        """Record a chat's metadata when it is new or changed (not on every message)."""
        facts = (name, channel, is_group)
        if self._seen.get(chat_jid) == facts:
            return
        self.log.append(t.ChatSeen(chat_jid=chat_jid, timestamp=timestamp, name=name, channel=channel,
                                   is_group=is_group))
        self._seen[chat_jid] = facts

    def _is_registered(self, chat_jid: str) -> bool:
        return bool(self.log.query("SELECT 1 FROM groups WHERE jid = ?", (chat_jid,)))
