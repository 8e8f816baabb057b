"""Channel callbacks become events: `MessageReceived` and `ChatSeen`.

A message's idempotency key is its chat and platform message id, so a
channel that redelivers cannot store it twice. Drop-mode senders of the
allowlist are refused here, before anything is stored.
"""

from __future__ import annotations

import time

import msgspec
from loguru import logger

from base.faults import fault_point
from events import EventLog, types as t
from events.queries import list_groups, message_key
from router.channels.base import InboundMessage, RegisteredChat
from rules.allowlist import AllowlistFile


class GroupDirectory:
    """The registered groups, re-read only when the `groups` projection changed.

    The change counter is checked at most every `RECHECK_S` (one primary-key
    lookup); `fresh=True` checks now, which a channel does before refusing an
    unknown chat, so a group registered a moment ago is never turned away.
    """

    RECHECK_S = 0.25

    def __init__(self, log: EventLog):
        self.log = log
        self._signature: int | None = None
        self._checked = 0.0
        self._chats: dict[str, RegisteredChat] = {}

    def current(self, fresh: bool = False) -> dict[str, RegisteredChat]:
        now = time.monotonic()
        if not fresh and now - self._checked < self.RECHECK_S:
            return self._chats
        self._checked = now
        signature = self.log.table_version("groups")
        if signature != self._signature:
            self._chats = {g.jid: RegisteredChat(g.jid, g.name, g.folder, g.is_main, g.trigger) for g in list_groups(self.log)}
            self._signature = signature
        return self._chats


class Inbound:
    """Records what channels report; every method runs on the router's DB thread."""

    def __init__(self, log: EventLog, allowlist: AllowlistFile, groups: GroupDirectory | None = None):
        self.log = log
        self.allowlist = allowlist
        self.groups = groups or GroupDirectory(log)
        self._seen: dict[str, tuple] = {}

    def message(self, channel: str, msg: InboundMessage) -> int | None:
        """Append the message; returns its seq, or None when drop mode refused it."""
        return self.messages([(channel, msg)])[0]

    def messages(self, batch: list[tuple[str, InboundMessage]]) -> list[int | None]:
        """Append several messages in one transaction; None for each one drop mode refused."""
        kept = [(i, self._event(channel, msg)) for i, (channel, msg) in enumerate(batch) if not self._dropped(msg)]
        appended = self.log.append_many(
            [(event, message_key(event.chat_jid, event.message_id)) for _, event in kept]) if kept else []
        fault_point("inbound-recorded")
        seqs: list[int | None] = [None] * len(batch)
        for (index, _), result in zip(kept, appended):
            seqs[index] = result.seq
        return seqs

    def _dropped(self, msg: InboundMessage) -> bool:
        if msg.is_from_me or msg.is_bot_message:
            return False
        rules = self.allowlist.current()
        if rules.drops(msg.chat_jid, msg.sender) and msg.chat_jid in self.groups.current(fresh=True):
            if rules.log_denied:
                logger.debug("dropped a message from {} in {} (sender allowlist, drop mode)", msg.sender, msg.chat_jid)
            return True
        return False

    @staticmethod
    def _event(channel: str, msg: InboundMessage) -> t.MessageReceived:
        return t.MessageReceived(channel=channel, **msgspec.structs.asdict(msg))

    def knows(self, chat_jid: str, name: str | None, channel: str | None, is_group: bool | None) -> bool:
        """True when this metadata was already recorded (no need to reach the database)."""
        return self._seen.get(chat_jid) == (name, channel, is_group)

    def chat_metadata(self, chat_jid: str, timestamp: str, name: str | None, channel: str | None,
                      is_group: bool | None) -> None:
        """Record a chat's metadata when it is new or changed (not on every message)."""
        facts = (name, channel, is_group)
        if self.knows(chat_jid, *facts):
            return
        self.log.append(t.ChatSeen(chat_jid=chat_jid, timestamp=timestamp, name=name, channel=channel,
                                   is_group=is_group))
        self._seen[chat_jid] = facts
