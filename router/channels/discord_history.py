"""Reading a Discord chat back from its history: GET /channels/{id}/messages, for the channel and its threads.

A message in a thread is in the thread's own history, not its channel's,
so the threads read are the channel's active ones that the gateway listed
(skipping those whose newest message is older than the mark) and those
the log saw recently, at most `MAX_THREADS`, newest first (more is told
like a cut); a forum channel has no history of its own, only its posts'
threads. A thread the bot
can no longer see is passed over; the channel itself refusing is the
chat's failure, said with the permission to grant. discord.py's
`history(after=..., oldest_first=False)` lists the newest messages after
the mark, newest first. Snowflake ids order by time, across channels and
threads alike. The rules the two readers share are in
router/channels/read_back.py.
"""

from __future__ import annotations

from typing import Awaitable, Callable

import discord
from loguru import logger

from router.channels.discord_inbound import PERSON_TYPES, channel_of
from router.channels.read_back import MAX_MESSAGES, MAX_THREADS, ChatRead, ChatToRead, HistoryRefused, newest

PERMISSION = "give the bot Read Message History there (Server Settings, Roles, or the channel's permissions)"


async def read_chat(client: discord.Client, chat: ChatToRead, *,
                    hand_over: Callable[[discord.Message], Awaitable[None]]) -> ChatRead:
    """Hand over the chat's messages after its mark (not older than a day, but the bot's own), oldest first."""
    me = client.user.id if client.user else None
    mark = max(int(m.message_id) for m in chat.recorded if m.message_id.isdigit())
    if chat.listed_at is not None:  # read back before: complete up to then only
        mark = min(mark, discord.utils.time_snowflake(chat.listed_at))
    floor = discord.utils.time_snowflake(chat.not_before, high=True)
    after = discord.Object(max(mark, floor))
    home = await _fetch(client, channel_of(chat.jid))
    said = lambda m: m.author.id != me and m.type in PERSON_TYPES  # noqa: E731  (the live path's rule)
    found: list[discord.Message] = []
    older_unread = False
    if hasattr(home, "history"):  # a forum channel has none: its posts are threads
        try:
            found = await _history(home, after)
            older_unread = mark < floor and any([said(m) async for m in home.history(
                limit=10, after=discord.Object(mark), before=discord.Object(floor))])
        except discord.Forbidden:
            raise HistoryRefused(f"Discord refused to show the bot the history of {chat.jid}: {PERMISSION}") from None
    threads, cut = await _threads(client, home, chat, after.id)
    for thread in threads:
        try:
            found += await _history(thread, after)
        except (discord.Forbidden, discord.NotFound) as exc:
            logger.debug("discord {}: thread {} not read back ({})", chat.jid, thread.id, exc)
    messages, left_out = await newest(chat, (m for m in found if said(m)), key=lambda m: m.id,
                                      id_of=lambda m: str(m.id))
    for message in messages:
        await hand_over(message)
    return ChatRead(len(messages), left_out or int(cut), older_unread)


async def _history(place, after: discord.Object) -> list[discord.Message]:
    """The newest messages of a channel or thread after `after` (one more than kept, to tell some were left out)."""
    return [m async for m in place.history(limit=MAX_MESSAGES + 1, after=after, oldest_first=False)]


async def _threads(client: discord.Client, home, chat: ChatToRead, after: int) -> tuple[list, bool]:
    """(the threads to read: the channel's active ones with a message after the mark, newest first, then the
    ones the log saw recently; whether more than `MAX_THREADS` were left out)."""
    active = {t.id: t for t in getattr(home, "threads", ()) if t.last_message_id is None or t.last_message_id > after}
    threads = sorted(active.values(), key=lambda t: t.last_message_id or after, reverse=True)
    seen = [int(t) for t in chat.threads() if t.isdigit() and int(t) not in active and int(t) != home.id]
    unread = False
    for thread_id in sorted(seen, reverse=True):
        if len(threads) >= MAX_THREADS:
            unread = True  # not even asked for: it may hold messages
            break
        try:
            thread = await _fetch(client, thread_id)
        except (HistoryRefused, discord.HTTPException) as exc:  # deleted, or out of the bot's sight
            logger.debug("discord {}: thread {} not read back ({})", chat.jid, thread_id, exc)
            continue
        if getattr(thread, "last_message_id", None) is None or thread.last_message_id > after:
            threads.append(thread)
    return threads[:MAX_THREADS], unread or len(threads) > MAX_THREADS


async def _fetch(client: discord.Client, channel_id: int | None):
    """A channel or thread, from the gateway's cache or asked for."""
    if channel_id is None:
        raise ValueError("not a Discord channel id")
    try:
        return client.get_channel(channel_id) or await client.fetch_channel(channel_id)
    except discord.Forbidden:
        raise HistoryRefused(f"Discord refused to show the bot channel {channel_id}: {PERMISSION}") from None
