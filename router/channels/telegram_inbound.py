"""Telegram messages as the router records them: JIDs, senders, replies, commands.

Pure functions over python-telegram-bot's `Message`, so every rule (who is
the sender, what a photo without text says, when `@botname` means the
trigger) is tested without a network. JIDs are `tg:<chat id>`; groups have
negative ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from telegram import Chat, Message, MessageEntity, User

from base.timefmt import to_iso
from router.channels.base import InboundMessage, mention_as_trigger

PREFIX = "tg:"
# Telegram's stand-in author of a group admin's anonymous message; the group itself is `sender_chat`.
ANONYMOUS_ADMIN_BOT = "GroupAnonymousBot"
GROUP_TYPES = (Chat.GROUP, Chat.SUPERGROUP)
COMMANDS = ("chatid", "start", "ping")

# What a message without text says, by the attribute that carries its media.
_PLACEHOLDERS = (
    ("photo", "[Photo]"), ("video", "[Video]"), ("animation", "[GIF]"), ("voice", "[Voice message]"),
    ("audio", "[Audio]"), ("video_note", "[Video message]"), ("document", "[Document]"),
    ("sticker", "[Sticker]"), ("location", "[Location]"), ("contact", "[Contact]"), ("poll", "[Poll]"),
)


def jid_of(chat_id: int) -> str:
    return f"{PREFIX}{chat_id}"


def chat_id_of(jid: str) -> int | None:
    """-1001234 for `tg:-1001234`; None for anything that is not a Telegram JID."""
    if not jid.startswith(PREFIX):
        return None
    try:
        return int(jid[len(PREFIX):])
    except ValueError:
        return None


@dataclass(frozen=True)
class ChatFacts:
    """What `ChatSeen` records about a chat."""

    jid: str
    name: str
    is_group: bool


def chat_facts(chat: Chat) -> ChatFacts:
    name = chat.title or chat.full_name or chat.username or str(chat.id)
    return ChatFacts(jid_of(chat.id), name, chat.type in GROUP_TYPES)


def display_name(user: User | None, sender_chat: Chat | None = None) -> str:
    if user is not None:
        return user.full_name or user.username or str(user.id)
    if sender_chat is not None:
        return sender_chat.title or sender_chat.full_name or str(sender_chat.id)
    return "Unknown"


def message_text(message: Message) -> str:
    """The text, the caption with a placeholder for its media, or the placeholder alone."""
    if message.text:
        return message.text
    for attribute, placeholder in _PLACEHOLDERS:
        media = getattr(message, attribute, None)
        if media:
            if attribute == "document" and media.file_name:
                placeholder = f"[Document: {media.file_name}]"
            elif attribute == "sticker" and media.emoji:
                placeholder = f"[Sticker {media.emoji}]"
            return f"{placeholder} {message.caption}" if message.caption else placeholder
    return message.caption or ""


def command_of(message: Message, bot_username: str | None) -> str | None:
    """`chatid` for `/chatid` or `/chatid@thisbot`; None for text and other bots' commands."""
    text = (message.text or "").strip()
    if not text.startswith("/"):
        return None
    word = text.split(maxsplit=1)[0][1:]
    name, _, addressee = word.partition("@")
    if addressee and (bot_username is None or addressee.lower() != bot_username.lower()):
        return None
    return name.lower() if name.lower() in COMMANDS else None


def mentions_bot(message: Message, bot_username: str | None) -> bool:
    if not bot_username:
        return False
    wanted = f"@{bot_username}".lower()
    found = message.parse_entities([MessageEntity.MENTION]) or message.parse_caption_entities(
        [MessageEntity.MENTION])
    return any(text.lower() == wanted for text in found.values())


def files_of(message: Message) -> list[tuple[str, str, str, int | None]]:
    """(file id, name, kind, size) of the photo (its largest size), voice note, audio, video or document."""
    found = []
    if message.photo:
        largest = message.photo[-1]
        found.append((largest.file_id, f"photo-{message.message_id}.jpg", "Photo", largest.file_size))
    for attribute, kind, default in (("voice", "Voice message", "voice.ogg"), ("audio", "Audio", "audio"),
                                     ("video", "Video", "video.mp4"), ("document", "Document", "document")):
        media = getattr(message, attribute, None)
        if media:
            found.append((media.file_id, getattr(media, "file_name", None) or default, kind, media.file_size))
    return found


def to_inbound(message: Message, *, bot_id: int | None, bot_username: str | None, assistant_name: str,
               trigger: str, files_text: str = "") -> InboundMessage | None:
    """The message as the router records it; None when it carries nothing to read (a service message).

    `files_text` names the files saved from it; without it, a placeholder stands for its media.
    """
    content = (message.text or message.caption or "") if files_text else message_text(message)
    if mentions_bot(message, bot_username):
        content = mention_as_trigger(content, f"@{bot_username}", trigger)
    content = "\n".join(part for part in (content.strip() and content, files_text) if part)
    if not content.strip():
        return None
    user = message.from_user
    if is_anonymous_admin(message):
        user = None  # a person writing as the group: the group is the sender, and no bot
    sender = str(user.id) if user is not None else str((message.sender_chat or message.chat).id)
    from_me = user is not None and bot_id is not None and user.id == bot_id
    return InboundMessage(
        chat_jid=jid_of(message.chat.id), message_id=str(message.message_id), sender=sender,
        sender_name=display_name(user, message.sender_chat), content=content, timestamp=to_iso(message.date),
        is_from_me=from_me, is_bot_message=from_me or bool(user and user.is_bot),
        thread_id=str(topic_of(message)) if topic_of(message) is not None else None,
        **_reply_fields(message.reply_to_message, bot_id, assistant_name),
    )


def topic_of(message: Message) -> int | None:
    """The forum topic a message was written in; None in a chat without topics or in its General topic."""
    return message.message_thread_id if message.is_topic_message else None


def is_anonymous_admin(message: Message) -> bool:
    """A group admin writing anonymously: Telegram's `GroupAnonymousBot` as author, the group as `sender_chat`."""
    user, chat = message.from_user, message.sender_chat
    return (user is not None and user.is_bot and user.username == ANONYMOUS_ADMIN_BOT
            and chat is not None and chat.id == message.chat.id)


def _reply_fields(quoted: Message | None, bot_id: int | None, assistant_name: str) -> dict:
    if quoted is None:
        return {}
    author = quoted.from_user
    name = assistant_name if author is not None and author.id == bot_id else display_name(author, quoted.sender_chat)
    return {"reply_to_message_id": str(quoted.message_id),
            "reply_to_message_content": message_text(quoted) or None,
            "reply_to_sender_name": name}
