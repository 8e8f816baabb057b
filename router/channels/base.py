"""The one interface every chat channel implements, and what it gets in return.

A channel connects to a platform, hands each inbound message and chat
update to the router through `ChannelContext`, and sends text to the chats
it owns. Sends carry the outbound's idempotency key so a channel that can
deduplicate (the local chat does) delivers a reply once even when the
router resends it after a crash.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp
import msgspec
from loguru import logger

from base.config import Settings
from events.types import MessageReceived, OutboundFile
from rules.triggers import matches_trigger


class ChannelStartError(Exception):
    """A channel cannot start as configured (a refused token); the message says what to fix."""


class InboundMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One message as a channel reports it: the fields of `MessageReceived` but the channel, which the router adds."""

    chat_jid: str
    message_id: str
    sender: str
    sender_name: str
    content: str
    timestamp: str
    is_from_me: bool = False
    is_bot_message: bool = False
    reply_to_message_id: str | None = None
    reply_to_message_content: str | None = None
    reply_to_sender_name: str | None = None
    thread_id: str | None = None


@dataclass(frozen=True)
class RegisteredChat:
    """What a channel may know about a registered group."""

    jid: str
    name: str
    folder: str
    is_main: bool
    trigger: str = ""  # the group's own trigger word (`@Andy`); a mention of the bot stands for it


@dataclass(frozen=True)
class ChannelContext:
    """The router's callbacks, handed to every channel factory."""

    settings: Settings
    on_message: Callable[[str, InboundMessage], Awaitable[int | None]]
    on_chat_metadata: Callable[[str, str, str, str | None, bool | None], Awaitable[None]]
    registered_groups: Callable[..., dict[str, RegisteredChat]]  # (fresh: bool = False)
    # (chat, limit): the chat's newest recorded messages, newest first; None where nothing is read back
    recent_messages: Callable[[str, int], Awaitable[list[MessageReceived]]] | None = None
    # (chat, platform message ids): those of them the log holds
    recorded_ids: Callable[[str, list[str]], Awaitable[set[str]]] | None = None
    # (chat, outbound id, text): a notice queued for the chat once per id, like a failure notice
    notify: Callable[[str, str, str], Awaitable[None]] | None = None

    def registered(self, jid: str) -> RegisteredChat | None:
        """The chat's registered group, asked again once (fresh) before a message is dropped as unregistered."""
        return self.registered_groups().get(jid) or self.registered_groups(fresh=True).get(jid)


class Channel(ABC):
    """A connection to one chat platform."""

    name: str = ""
    problem: str | None = None  # a fault its owner must fix, in plain words (`status` shows it); None when well

    @abstractmethod
    async def connect(self) -> None:
        """Establish the platform connection (awaited at start-up)."""

    @abstractmethod
    async def send(self, jid: str, text: str, *, outbound_id: str, thread_id: str | None = None) -> None:
        """Deliver one part of a reply (all of it unless `split` cuts it); raise when it was not delivered.

        `thread_id` is the thread of the chat it answers (a forum topic), None for the chat itself.
        """

    def split(self, text: str) -> list[str]:
        """A reply as the parts this channel sends, in order; the same text always splits the same way.

        Delivery records each part once it is sent, so a restart resumes at the first part not sent.
        """
        return [text]

    async def send_file(self, jid: str, file: OutboundFile, path: Path, caption: str, *, outbound_id: str,
                        thread_id: str | None = None) -> None:
        """Deliver a file (the host's copy at `path`) with its caption; raise when it was not delivered.

        A channel that cannot carry files says so in the chat rather than dropping the reply.
        """
        note = f"[{file.name}, {describe_size(file.size)}: a file this chat cannot show]"
        await self.send(jid, f"{caption}\n{note}" if caption else note, outbound_id=outbound_id, thread_id=thread_id)

    @abstractmethod
    def owns_jid(self, jid: str) -> bool:
        """True when this channel is responsible for the chat."""

    @abstractmethod
    async def disconnect(self) -> None:
        """Close the platform connection (at shutdown)."""

    def is_connected(self) -> bool:
        return True

    async def set_typing(self, jid: str, on: bool) -> None:
        """Show or hide a typing indicator; channels without one ignore it."""

    async def sync_groups(self, force: bool) -> None:
        """Refresh chat names and metadata from the platform, where supported."""


UNSENT_RETRY_S = 20.0  # how long a request that never reached the platform is tried again (an outage)
UNSENT_BACKOFF_MAX_S = 4.0


async def retry_unsent(send: Callable[[], Awaitable[None]], never_sent: Callable[[BaseException], bool],
                       what: str) -> None:
    """`send()` until it goes out; only a request that provably never left (connection refused) is tried again.

    Anything else is raised at once: a request that may have arrived is delivery's to retry (and record).
    """
    started = time.monotonic()
    backoff = 0.5
    while True:
        try:
            await send()
            return
        except Exception as exc:
            if not never_sent(exc) or time.monotonic() - started > UNSENT_RETRY_S:
                raise
            logger.debug("{}: the server is unreachable ({}); again in {:g} s", what, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, UNSENT_BACKOFF_MAX_S)


def connection_refused(exc: BaseException) -> bool:
    """True when an aiohttp request (Slack's and Discord's clients) never reached the server."""
    return isinstance(exc, aiohttp.ClientConnectorError)


def mention_as_trigger(content: str, mention: str, trigger: str) -> str:
    """A message that mentions the bot, as the trigger: `@andy_bot what now?` is `@Andy what now?`.

    A leading mention is replaced by the trigger; a mention elsewhere gets the trigger in front.
    """
    stripped = content.lstrip()
    if mention and stripped.lower().startswith(mention.lower()):
        rest = stripped[len(mention):].lstrip(" ,:")
        return f"{trigger} {rest}".rstrip()
    if matches_trigger(content, trigger, trigger):
        return content
    return f"{trigger} {content}"


def describe_size(size: int) -> str:
    """`812 bytes`, `16 KB`, `2.4 MB`: a file's size as a chat shows it."""
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


ChannelFactory = Callable[[ChannelContext], "Channel | None"]
