"""What was said in a registered chat while the service was away, read back from the platform's history.

Telegram holds a bot's updates until the bot asks for them, and WhatsApp's
servers hand a linked device what it missed when it reconnects. A Slack app
in Socket Mode and a Discord bot are sent only what happens while they are
connected: Slack retries an unacknowledged event for a few minutes, and
Discord replays only a resumed session. So when those two connect, they
read each registered chat back from the newest message the log holds for
it, and hand what they find to the router like any message. The platform's
message id is in the key, so a message already recorded is stored once.

Limits, so a service away for a month does not wake its agents with a
month of chatter: a chat the log holds nothing for is not read (there is no
"since"), nothing older than `MAX_AGE` is read, and at most the newest
`MAX_MESSAGES` of a chat (its threads included) are handed over.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Awaitable, Callable, Iterable, TypeVar

from loguru import logger

from events.types import MessageReceived
from router.channels.base import Channel, ChannelContext

MAX_AGE = timedelta(hours=24)
MAX_MESSAGES = 100
RECENT = 50  # recorded messages looked at for the newest one and the threads in use

T = TypeVar("T")


@dataclass(frozen=True)
class ChatToRead:
    """A registered chat, what the log last holds of it, and how far back reading may go."""

    jid: str
    recorded: tuple[MessageReceived, ...]  # newest first
    not_before: datetime

    def threads(self) -> set[str]:
        """The threads of the chat its recent messages were in (read back too: a thread's replies are not
        in the chat's own history on Slack, nor in its channel on Discord)."""
        return {m.thread_id for m in self.recorded if m.thread_id}


async def chats_to_read(ctx: ChannelContext, owns: Callable[[str], bool]) -> list[ChatToRead]:
    """The registered chats of one channel that the log holds a message of."""
    if ctx.recent_messages is None:
        return []
    not_before = datetime.now(timezone.utc) - MAX_AGE
    chats = []
    for jid in sorted(ctx.registered_groups(fresh=True)):
        if owns(jid) and (recorded := await ctx.recent_messages(jid, RECENT)):
            chats.append(ChatToRead(jid, tuple(recorded), not_before))
    return chats


def newest(found: Iterable[T], key: Callable[[T], object]) -> list[T]:
    """The newest `MAX_MESSAGES` of what was found, oldest first, each platform id once."""
    unique = {key(item): item for item in found}
    return [unique[k] for k in sorted(unique)][-MAX_MESSAGES:]


async def read_all(channel: Channel, ctx: ChannelContext, read_chat: Callable[[ChatToRead], Awaitable[int]]) -> int:
    """Read every chat of the channel with `read_chat` (which returns how many messages it handed over).

    A chat that cannot be read is logged with what to fix and becomes the channel's `problem`, which
    `status` and the dashboard show until a read-back succeeds everywhere; it does not stop the others.
    """
    handed, failed = 0, []
    for chat in await chats_to_read(ctx, channel.owns_jid):
        try:
            handed += await read_chat(chat)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("{}: could not read back what was said in {} while the service was away: {}",
                           channel.name, chat.jid, exc)
            failed.append(f"{chat.jid} ({exc})")
    channel.problem = ("what was said while the service was away could not be read back in "
                       + "; ".join(failed)) if failed else None
    if handed:
        logger.info("{}: read back {} message(s) said while the service was away (each recorded once)",
                    channel.name, handed)
    return handed
