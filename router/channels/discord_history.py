"""Reading a Discord chat back from its history: GET /channels/{id}/messages, for the channel and its threads.

A message in a thread is in the thread's own history, not its channel's,
so the threads read are the channel's active ones that the gateway listed
(skipping those whose newest message is older than the mark) and those
the log saw recently, at most `MAX_THREADS`, newest first. A thread the bot
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

from router.channels.discord_inbound import channel_of
from router.channels.read_back import MAX_MESSAGES, MAX_THREADS, ChatRead, ChatToRead, HistoryRefused, newest

PERMISSION = "give the bot Read Message History there (Server Settings, Roles, or the channel's permissions)"


async def read_chat(client: discord.Client, chat: ChatToRead, *,
                    hand_over: Callable[[discord.Message], Awaitable[None]]) -> ChatRead:
    """Hand over the chat's messages after its mark (not older than a day, but the bot's own), oldest first."""
    me = client.user.id if client.user else None
    mark = max(int(m.message_id) for m in chat.recorded if m.message_id.isdigit())
    floor = discord.utils.time_snowflake(chat.not_before, high=True)
    after = discord.Object(max(mark, floor))
    home = await _fetch(client, channel_of(chat.jid))
    try:
        found = await _history(home, after)
        older_unread = mark < floor and any([m.author.id != me async for m in home.history(
            limit=10, after=discord.Object(mark), before=discord.Object(floor))])
    except discord.Forbidden:
        raise HistoryRefused(f"Discord refused to show the bot the history of {chat.jid}: {PERMISSION}") from None
    for thread in await _threads(client, home, chat, after.id):
        try:
            found += await _history(thread, after)
        except (discord.Forbidden, discord.NotFound) as exc:
            logger.debug("discord {}: thread {} not read back ({})", chat.jid, thread.id, exc)
    messages, left_out = newest((m for m in found if m.author.id != me), key=lambda m: m.id)
    for message in messages:
        await hand_over(message)
    return ChatRead(len(messages), left_out, older_unread)


async def _history(place, after: discord.Object) -> list[discord.Message]:
    """The newest messages of a channel or thread after `after` (one more than kept, to tell some were left out)."""
    return [m async for m in place.history(limit=MAX_MESSAGES + 1, after=after, oldest_first=False)]


async def _threads(client: discord.Client, home, chat: ChatToRead, after: int) -> list:
    """The channel's active threads with a message after the mark, and the threads the log saw recently."""
    active = {t.id: t for t in getattr(home, "threads", ()) if t.last_message_id is None or t.last_message_id > after}
    threads = sorted(active.values(), key=lambda t: t.last_message_id or after, reverse=True)
    for thread_id in sorted((int(t) for t in chat.threads() if t.isdigit()), reverse=True):
        if thread_id in active or thread_id == home.id:
            continue
        try:
            threads.append(await _fetch(client, thread_id))
        except (HistoryRefused, discord.HTTPException) as exc:  # deleted, or out of the bot's sight
            logger.debug("discord {}: thread {} not read back ({})", chat.jid, thread_id, exc)
    return threads[:MAX_THREADS]


async def _fetch(client: discord.Client, channel_id: int | None):
    """A channel or thread, from the gateway's cache or asked for."""
    if channel_id is None:
        raise ValueError("not a Discord channel id")
    try:
        return client.get_channel(channel_id) or await client.fetch_channel(channel_id)
    except discord.Forbidden:
        raise HistoryRefused(f"Discord refused to show the bot channel {channel_id}: {PERMISSION}") from None
