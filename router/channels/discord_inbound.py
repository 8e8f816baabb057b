"""Discord messages as the router records them: JIDs, senders, threads, mentions.

JIDs are `dc:<channel id>`: a guild text channel or a DM. A message in a
thread belongs to the thread's channel, with the thread as its `thread_id`
so the reply goes back into the thread; its key is `dc:<channel>:<id>`
with the message's own id. Mentions are shown as names (the library's
`clean_content`); a mention of the bot becomes the trigger.
"""

from __future__ import annotations

import re

import discord

from base.timefmt import to_iso
from router.channels.base import InboundMessage, mention_as_trigger

PREFIX = "dc:"
PERSON_TYPES = (discord.MessageType.default, discord.MessageType.reply)  # not joins, pins, boosts


def jid_of(channel_id: int | str) -> str:
    return f"{PREFIX}{channel_id}"


def channel_of(jid: str) -> int | None:
    rest = jid[len(PREFIX):] if jid.startswith(PREFIX) else ""
    return int(rest) if re.fullmatch(r"\d{1,20}", rest) else None


def conversation_of(message: discord.Message) -> tuple[int, int | None]:
    """(the chat's channel id, the thread id when the message is in a thread)."""
    channel = message.channel
    if isinstance(channel, discord.Thread) and channel.parent_id:
        return channel.parent_id, channel.id
    return channel.id, None


def chat_name(message: discord.Message, bot_id: int | None) -> tuple[str | None, bool]:
    """(name, is_group): `#general`, or the person's name for a DM (None on the bot's own there: not its name)."""
    if message.guild is None:
        person = getattr(message.channel, "recipient", None)
        if person is None and bot_id is not None and message.author.id == bot_id:
            return None, False
        return (person or message.author).display_name, False
    channel = message.channel
    parent = channel.parent if isinstance(channel, discord.Thread) else channel
    return f"#{getattr(parent, 'name', None) or parent.id}", True


def mentions_bot(message: discord.Message, bot_id: int | None) -> bool:
    return bot_id is not None and any(user.id == bot_id for user in message.mentions)


def _mention_shown(message: discord.Message, bot_id: int) -> str:
    """The bot's mention as `clean_content` writes it (the member's name in a guild, else the user's)."""
    member = (message.guild.get_member(bot_id) if message.guild else None) or \
        discord.utils.get(message.mentions, id=bot_id)
    return f"@{member.display_name}" if member else "@deleted-user"


def is_bot(message: discord.Message) -> bool:
    return message.author.bot or message.webhook_id is not None


def to_inbound(message: discord.Message, *, bot_id: int | None, trigger: str,
               extra: str = "") -> InboundMessage | None:
    """The message as the router records it; None for a system message or one with nothing in it."""
    if message.type not in PERSON_TYPES:
        return None
    content = message.clean_content.strip()
    if mentions_bot(message, bot_id):
        content = mention_as_trigger(content, _mention_shown(message, bot_id), trigger)
    content = "\n".join(part for part in (content, extra) if part)
    if not content:
        return None
    chat, thread = conversation_of(message)
    from_me = bot_id is not None and message.author.id == bot_id
    quoted = message.reference.resolved if message.reference is not None else None
    quoted = quoted if isinstance(quoted, discord.Message) else None
    return InboundMessage(
        chat_jid=jid_of(chat), message_id=str(message.id), sender=str(message.author.id),
        sender_name=message.author.display_name, content=content, timestamp=to_iso(message.created_at),
        is_from_me=from_me, is_bot_message=from_me or is_bot(message),
        reply_to_message_id=str(quoted.id) if quoted else None,
        reply_to_message_content=quoted.clean_content if quoted else None,
        reply_to_sender_name=quoted.author.display_name if quoted else None,
        thread_id=str(thread) if thread else None,
    )
