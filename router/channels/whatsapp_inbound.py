"""WhatsApp messages, as neonize hands them over, as the router records them.

JIDs are `wa:<user>@<server>`: `wa:120363336345536173@g.us` for a group,
`wa:447700900123@s.whatsapp.net` for a person (WhatsApp's own JIDs, with
the device number dropped), so a message's key is `wa:<chat>:<message id>`
and a message WhatsApp delivers again is stored once. A sender is recorded
by phone number when WhatsApp names them by one, so the sender allowlist
can list numbers; newer groups name people by an opaque `@lid`, recorded
as it is.

A quoted reply carries the quoted words, capped, but not who wrote them:
WhatsApp passes a quote as the sender writes it, so its author is a claim.
A mention of the account is the trigger only when the account is the
assistant's; on a shared number it is a mention of the owner.

Whose is a message from this account? With a number of its own, anything
the account sent is the assistant's. Sharing the owner's number, the
owner's own messages are a person talking (they may trigger), and the
assistant's are told apart by the message event itself: sent by this
linked device, or carrying an id this channel sent. Never by a text prefix,
which a person can type.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from neonize.proto.Neonize_pb2 import JID, Message as MessageEv
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ContextInfo, Message

from base.timefmt import to_iso
from router.channels.base import InboundMessage, mention_as_trigger

PREFIX = "wa:"
GROUP_SERVER = "g.us"
PERSON_SERVER = "s.whatsapp.net"
LID_SERVER = "lid"
MAX_TEXT_CHARS = 65_536   # what WhatsApp's own apps send at most; a modified client may send more
MAX_QUOTE_CHARS = 1_000   # a quote is the sender's copy, not checked by WhatsApp: context, briefly
# Media a person sends, by the field that carries it, with what a chat calls it.
MEDIA_KINDS = (("imageMessage", "Photo"), ("videoMessage", "Video"), ("audioMessage", "Audio"),
               ("documentMessage", "Document"), ("stickerMessage", "Sticker"))


def address(jid: JID) -> str:
    """`user@server`, without the device: the chat or person, whichever phone or computer wrote."""
    return f"{jid.User}@{jid.Server}"


def jid_of(jid: JID) -> str:
    return f"{PREFIX}{address(jid)}"


def to_jid(chat_jid: str) -> JID:
    """A `wa:` JID as neonize's type; ValueError for anything else."""
    rest = chat_jid[len(PREFIX):] if chat_jid.startswith(PREFIX) else ""
    user, at, server = rest.partition("@")
    if not at or not user or server not in (GROUP_SERVER, PERSON_SERVER, LID_SERVER) or not user.isascii() \
            or any(c in user for c in "@:/ "):
        raise ValueError(f"not a WhatsApp JID: {chat_jid!r} (expected wa:<number>@s.whatsapp.net or "
                         "wa:<id>@g.us)")
    return JID(User=user, Server=server, Device=0, RawAgent=0, Integrator=0, IsEmpty=False)


@dataclass(frozen=True)
class Me:
    """This account as the channel knows it once connected: its number, its `@lid`, this device."""

    user: str = ""
    lid: str = ""
    device: int = 0
    own_number: bool = False  # ASSISTANT_HAS_OWN_NUMBER

    def named_in(self, jids: list[str]) -> bool:
        users = {j.split("@", 1)[0].split(":", 1)[0] for j in jids}
        return bool(self.user and self.user in users) or bool(self.lid and self.lid in users)


def sender_of(event: MessageEv) -> str:
    """The sender's `user@server`, by phone number when WhatsApp gives one."""
    source = event.Info.MessageSource
    if source.Sender.Server == LID_SERVER and source.SenderAlt.Server == PERSON_SERVER:
        return address(source.SenderAlt)
    return address(source.Sender)


def body(message: Message) -> tuple[str, ContextInfo | None]:
    """The words of a message (its text, or a caption) and the context it carries (a quote, mentions)."""
    if message.conversation:
        return message.conversation, None
    if message.HasField("extendedTextMessage"):
        ext = message.extendedTextMessage
        return ext.text, ext.contextInfo if ext.HasField("contextInfo") else None
    if message.HasField("documentWithCaptionMessage"):
        return body(message.documentWithCaptionMessage.message)
    for field, _ in MEDIA_KINDS:
        if message.HasField(field):
            media = getattr(message, field)
            caption = getattr(media, "caption", "") if field != "stickerMessage" else ""
            return caption, media.contextInfo if media.HasField("contextInfo") else None
    return "", None


def media_of(message: Message) -> tuple[str, Message, str, str, int] | None:
    """(what a chat calls it, the message that carries it alone, its name, its type, its size)."""
    if message.HasField("documentWithCaptionMessage"):
        return media_of(message.documentWithCaptionMessage.message)
    for field, kind in MEDIA_KINDS:
        if message.HasField(field):
            media = getattr(message, field)
            if field == "audioMessage" and media.PTT:
                kind = "Voice message"
            name = getattr(media, "fileName", "") or f"{kind.lower().replace(' ', '-')}"
            only = Message()
            getattr(only, field).CopyFrom(media)
            return kind, only, name, media.mimetype, int(media.fileLength)
    return None


def _capped(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}\n[... cut: {len(text):,} characters in all]"


def quoted_text(context: ContextInfo | None) -> str | None:
    if context is None or not context.HasField("quotedMessage"):
        return None
    text, _ = body(context.quotedMessage)
    return text or (f"[{found[0]}]" if (found := media_of(context.quotedMessage)) else None)


def timestamp_of(event: MessageEv) -> str:
    seconds = event.Info.Timestamp
    if seconds > 10**12:  # some builds hand over milliseconds
        seconds //= 1000
    moment = datetime.fromtimestamp(seconds, timezone.utc) if seconds > 0 else datetime.now(timezone.utc)
    return to_iso(moment)


def is_assistants(event: MessageEv, me: Me, sent_ids: set[str]) -> bool:
    """True when the assistant itself sent this: the rule in the module's docstring, by the event alone."""
    source = event.Info.MessageSource
    if not source.IsFromMe:
        return False
    if me.own_number:
        return True
    same_device = me.device != 0 and source.Sender.Device == me.device
    return same_device or event.Info.ID in sent_ids


def to_inbound(event: MessageEv, *, me: Me, sent_ids: set[str], trigger: str,
               extra: str = "") -> InboundMessage | None:
    """The message as the router records it; None for one with nothing a person wrote (a reaction, a revoke)."""
    text, context = body(event.Message)
    content = _capped(text.strip(), MAX_TEXT_CHARS)
    if me.own_number and context is not None and me.named_in(list(context.mentionedJID)):
        # WhatsApp writes a mention as `@<number>` (or `@<lid>` in newer groups) in the text itself. On a
        # shared number the account is the owner: a mention of them is for them, not the assistant
        mention = next((f"@{user}" for user in (me.user, me.lid) if user and f"@{user}" in content), "")
        content = mention_as_trigger(content, mention, trigger)
    content = "\n".join(part for part in (content, extra) if part)
    if not content:
        return None
    source = event.Info.MessageSource
    assistants = is_assistants(event, me, sent_ids)
    quoted = quoted_text(context)
    quoted = _capped(quoted, MAX_QUOTE_CHARS) if quoted is not None else None
    return InboundMessage(
        chat_jid=jid_of(source.Chat), message_id=event.Info.ID, sender=sender_of(event),
        sender_name=event.Info.Pushname or sender_of(event).split("@", 1)[0],
        content=content, timestamp=timestamp_of(event),
        is_from_me=source.IsFromMe, is_bot_message=assistants,
        reply_to_message_id=(context.stanzaID or None) if quoted is not None else None,
        reply_to_message_content=quoted,
        reply_to_sender_name=None,  # the quote's author is the sender's claim: WhatsApp does not check it
    )
