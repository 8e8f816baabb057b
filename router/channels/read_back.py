"""What was said in a registered chat while the service was away, read back from the platform's history.

Telegram holds a bot's updates until the bot asks for them, and WhatsApp's
servers hand a linked device what it missed when it reconnects. A Slack app
in Socket Mode and a Discord bot are sent only what happens while they are
connected: Slack retries an unacknowledged event for a few minutes, and
Discord replays only a resumed session. So when one of those connections
opens, each registered chat is read back from the newest message the log
holds for it (its mark), and what is found goes to the router like any
message. The platform's message id is in the key, so a message read twice
is stored once.

The marks are taken the moment the connection opens, and the channel holds
its live messages until they are (`ReadBacks.marks_taken`): a message said
just after the connection opened must not become the mark and hide the gap
before it. A connection that opens while a read-back runs gets a pass of
its own, after that one. A chat a pass could not read (a scope missing) is
read by the next pass from the same mark, so messages recorded live in the
meantime do not hide what it owes. And a chat read back before, in this
process, is read again from that time at the latest: that pass may have
handed over a thread's reply newer than a message said after it listed
the chat's top level, so the newest message recorded is no safe mark then.
Messages the log holds already are not handed over again, nor counted as
left out. A restart forgets both, and starts from the newest message
recorded.

Limits, so a service away for a month does not wake its agents with a
month of chatter: a chat the log holds nothing of is not read (there is no
mark), nothing older than `MAX_AGE` is read, and at most the newest
`MAX_MESSAGES` of a chat, its threads included, are handed over. When
messages were left out for either reason the chat is told once, so whoever
wrote then knows to ask again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Awaitable, Callable, Iterable, TypeVar

from loguru import logger

from events.types import MessageReceived
from router.channels.base import Channel, ChannelContext

MAX_AGE = timedelta(hours=24)
MAX_MESSAGES = 100
MAX_THREADS = 20  # threads of one chat read, those with the newest replies first
RECENT = 50  # recorded messages looked at for the mark and the threads in use
CLOCK_SKEW = timedelta(minutes=1)  # this machine's clock against the platform's, when a time is the mark

T = TypeVar("T")


class HistoryRefused(Exception):
    """The platform will not show the bot a chat's history; the text says what to grant it."""


@dataclass(frozen=True)
class ChatToRead:
    """A registered chat, what the log last held of it when the connection opened, and how far back to go."""

    jid: str
    recorded: tuple[MessageReceived, ...]  # newest first
    not_before: datetime
    # when this process last read the chat back: complete up to then, whatever the newest message recorded
    listed_at: datetime | None = None
    known: Callable[[list[str]], Awaitable[set[str]]] | None = field(default=None, compare=False)

    def threads(self) -> set[str]:
        """The threads the chat's recent messages were in (a thread's replies are not in the chat's own
        history on Slack, nor in its channel on Discord)."""
        return {m.thread_id for m in self.recorded if m.thread_id}


@dataclass
class ChatRead:
    """What reading one chat back found."""

    handed: int = 0  # messages handed to the router
    left_out: int = 0  # found, but older than the newest MAX_MESSAGES
    older_unread: bool = False  # messages said between the mark and MAX_AGE ago, which were not read


async def chats_to_read(ctx: ChannelContext, owns: Callable[[str], bool]) -> list[ChatToRead]:
    """The registered chats of one channel that the log holds a message of."""
    if ctx.recent_messages is None:
        return []
    not_before = datetime.now(timezone.utc) - MAX_AGE
    chats = []
    for jid in sorted(ctx.registered_groups(fresh=True)):
        if owns(jid) and (recorded := await ctx.recent_messages(jid, RECENT)):
            known = partial(ctx.recorded_ids, jid) if ctx.recorded_ids is not None else None
            chats.append(ChatToRead(jid, tuple(recorded), not_before, known=known))
    return chats


async def newest(chat: ChatToRead, found: Iterable[T], key: Callable[[T], object],
                 id_of: Callable[[T], str]) -> tuple[list[T], int]:
    """(the newest `MAX_MESSAGES` of what was found that the log does not hold, oldest first, each platform id
    once; how many such were left out)."""
    unique = {key(item): item for item in found}
    known = await chat.known([id_of(item) for item in unique.values()]) if chat.known and unique else set()
    ordered = [unique[k] for k in sorted(unique) if id_of(unique[k]) not in known]
    return ordered[-MAX_MESSAGES:], max(len(ordered) - MAX_MESSAGES, 0)


def left_out_notice(chat: ChatToRead, read: ChatRead) -> str | None:
    """What the chat is told when reading back left messages out; None when nothing was."""
    if read.older_unread:
        since = chat.not_before.strftime("%Y-%m-%d %H:%M")
        return (f"I was away for more than a day, and what was said here before {since} UTC was not read back. "
                "If you asked me something then, please ask again.")
    if read.left_out:
        return (f"I was away for a while and could not read back everything said here meanwhile (I read the "
                f"newest {MAX_MESSAGES} messages, in at most {MAX_THREADS} threads). If you asked me something "
                "and got no answer, please ask again.")
    return None


class ReadBacks:
    """One channel's read-backs: marks taken when a connection opens, passes run one after another.

    `read_chat` reads one chat back and hands what it finds to the router;
    `ready` (if given) is awaited before reading, for a platform whose
    connection lists the chats' threads only after it opens (Discord).
    """

    def __init__(self, channel: Channel, ctx: ChannelContext, read_chat: Callable[[ChatToRead], Awaitable[ChatRead]],
                 ready: Callable[[], Awaitable[object]] | None = None):
        self.channel, self.ctx, self.read_chat, self.ready = channel, ctx, read_chat, ready
        self._marks: asyncio.Future | None = None
        self._pass: asyncio.Task | None = None
        self._unfinished: list[asyncio.Future] = []  # the marks of passes not yet done, oldest first
        self._reading: set[asyncio.Task] = set()  # passes past their wait, reading
        self._passes: set[asyncio.Task] = set()  # every pass not done
        self._closed = False
        self._owed: dict[str, ChatToRead] = {}  # chats a pass could not read: the next one starts at their mark
        self._listed_at: dict[str, datetime] = {}  # when each chat was last read back, in this process

    def opened(self) -> None:
        """A connection opened: take the marks now, before any of its messages is recorded, and read back.

        A pass still under way may have listed a chat before the connection dropped and handed over messages
        newer than what it missed since, so the new pass starts each chat from the oldest mark of the passes
        not done; one that has not begun reading is dropped for it (its marks are among those).
        """
        if self._closed:
            return
        marks = asyncio.ensure_future(chats_to_read(self.ctx, self.channel.owns_jid))
        self._marks = marks
        earlier = list(self._unfinished)
        self._unfinished.append(marks)
        previous = self._pass
        if previous is not None and not previous.done() and previous not in self._reading:
            previous.cancel()
        self._pass = asyncio.create_task(self._run(previous, marks, earlier), name=f"{self.channel.name} read-back")
        self._passes.add(self._pass)
        self._pass.add_done_callback(self._passes.discard)

    async def marks_taken(self) -> None:
        """Wait until the marks of the newest connection are taken (a live message is recorded after that)."""
        if self._marks is not None and not self._marks.done():
            await asyncio.wait([self._marks])

    async def close(self) -> None:
        self._closed = True
        tasks = [*self._passes, *self._unfinished]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, previous: asyncio.Task | None, marks: asyncio.Future, earlier: list[asyncio.Future]) -> None:
        me = asyncio.current_task()
        try:
            if previous is not None:  # wait, not gather: cancelling this pass must not cancel that one
                await asyncio.wait([previous])
            chats = await self._oldest_marks(await marks, earlier)
            if self.ready is not None:
                await self.ready()
            self._reading.add(me)
            await self._read_all(chats)
        except asyncio.CancelledError:  # dropped for a newer pass, which starts from these marks too
            self._reading.discard(me)
            raise
        except Exception as exc:
            logger.opt(exception=exc).error("{}: reading back what was said while the service was away failed "
                                            "({}: {})", self.channel.name, type(exc).__name__, exc)
            self.channel.problem = f"reading back what was said while the service was away failed: {exc}"
        self._reading.discard(me)
        covered = {id(m) for m in (marks, *earlier)}  # done: what a chat still owes is in `_owed`
        self._unfinished = [m for m in self._unfinished if id(m) not in covered]

    async def _oldest_marks(self, chats: list[ChatToRead], earlier: list[asyncio.Future]) -> list[ChatToRead]:
        """Each chat from its owed mark, else the oldest mark of an unfinished pass, else the one just taken."""
        older: dict[str, ChatToRead] = {}
        for taken in earlier:
            try:
                for chat in await asyncio.shield(taken):
                    older.setdefault(chat.jid, chat)
            except Exception:  # that pass's marks failed: the new ones stand
                continue
        return [self._still_owed(older.get(chat.jid, chat), chat.not_before) for chat in chats]

    def _still_owed(self, chat: ChatToRead, not_before: datetime) -> ChatToRead:
        """A chat a pass failed to read is read from its mark then, not from what was recorded live since."""
        start = self._owed.get(chat.jid) or chat
        return replace(start, not_before=not_before)

    async def _tell(self, chat: ChatToRead, read: ChatRead) -> None:
        """Log, and tell the chat once per gap (the mark names it), when messages were left out."""
        if (notice := left_out_notice(chat, read)) is None:
            return
        logger.warning("{}: messages said in {} while the service was away were left out ({})", self.channel.name,
                       chat.jid, "more than a day ago" if read.older_unread else
                       f"beyond the newest {MAX_MESSAGES}, or in more than {MAX_THREADS} threads")
        if self.ctx.notify is not None:
            await self.ctx.notify(chat.jid, f"read-back:{chat.jid}:{chat.recorded[0].message_id}", notice)

    async def _read_all(self, chats: list[ChatToRead]) -> None:
        """Every chat; one that cannot be read is logged with what to fix and becomes the channel's `problem`
        (shown by `status` and the dashboard until a pass reads every chat), and does not stop the others."""
        handed, failed = 0, []
        for chat in chats:
            started = datetime.now(timezone.utc)
            chat = replace(chat, listed_at=self._listed_at.get(chat.jid))
            try:
                read = await self.read_chat(chat)
                self._listed_at[chat.jid] = started - CLOCK_SKEW
                await self._tell(chat, read)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("{}: could not read back what was said in {} while the service was away: {}",
                               self.channel.name, chat.jid, exc)
                failed.append(f"{chat.jid} ({exc})")
                self._owed.setdefault(chat.jid, chat)
                continue
            self._owed.pop(chat.jid, None)
            handed += read.handed
        self.channel.problem = ("what was said while the service was away could not be read back in "
                                + "; ".join(failed)) if failed else None
        if handed:
            logger.info("{}: read back {} message(s) said while the service was away (each recorded once)",
                        self.channel.name, handed)
