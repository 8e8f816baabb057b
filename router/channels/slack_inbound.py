"""Slack messages as the router records them: JIDs, senders, threads, mentions.

Pure functions over the Events API's `message` event, so each rule is
tested without a network. JIDs are `slack:<channel id>` (C... public, G...
or C... private, D... a direct message); a message's id is its `ts`, so its
key is `slack:<channel>:<ts>`. Slack writes mentions and links in angle
brackets (`<@U123>`, `<#C123|general>`, `<https://x|label>`) and escapes
`&`, `<`, `>`: the recorded text reads as the person wrote it.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Callable

from base.timefmt import to_iso
from router.channels.base import InboundMessage, mention_as_trigger

PREFIX = "slack:"
# What a person writes; other subtypes (edits, deletions, joins, topic changes) carry nothing to answer.
PERSON_SUBTYPES = (None, "file_share", "thread_broadcast", "me_message")
RECORDED_SUBTYPES = (*PERSON_SUBTYPES, "bot_message")  # what becomes a `MessageReceived`, live or read back
GROUP_TYPES = ("channel", "group", "mpim")

_ANGLE_RE = re.compile(r"<([^<>]+)>")


def jid_of(channel_id: str) -> str:
    return f"{PREFIX}{channel_id}"


def channel_of(jid: str) -> str | None:
    rest = jid[len(PREFIX):] if jid.startswith(PREFIX) else ""
    return rest if re.fullmatch(r"[A-Z0-9]{2,40}", rest) else None


def iso_of(ts: str) -> str:
    """A Slack `ts` (seconds since the epoch, as text) in the log's timestamp shape."""
    return to_iso(datetime.fromtimestamp(float(ts), timezone.utc))


def is_bot(event: dict) -> bool:
    return bool(event.get("bot_id")) or event.get("subtype") == "bot_message"


def readable(text: str, name_of: Callable[[str], str]) -> str:
    """Slack's text with mentions, channels and links as a person reads them."""
    def one(match: re.Match) -> str:
        inner = match[1]
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            return f"@{label or name_of(target[1:])}"
        if target.startswith("#"):
            return f"#{label or target[1:]}"
        if target.startswith("!"):
            return f"@{label or target[1:].split('^')[0]}"  # <!here>, <!channel>
        return target if not label or label == target else f"{label} ({target})"
    return _ANGLE_RE.sub(one, text).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def mentions(text: str, user_id: str | None) -> bool:
    return bool(user_id) and f"<@{user_id}" in text


def to_inbound(event: dict, *, bot_user: str | None, sender_name: str, name_of: Callable[[str], str],
               trigger: str, extra: str = "") -> InboundMessage | None:
    """The message as the router records it; None for what is not a person's (or a bot's) message."""
    if event.get("subtype") not in RECORDED_SUBTYPES or not event.get("ts"):
        return None
    raw = event.get("text") or ""
    content = readable(raw, name_of).strip()
    if not content and not extra:
        return None
    if mentions(raw, bot_user):
        content = mention_as_trigger(content, f"@{name_of(bot_user)}", trigger)
    content = "\n".join(part for part in (content, extra) if part)
    sender = event.get("user") or event.get("bot_id") or "unknown"
    from_me = bool(bot_user) and sender == bot_user
    thread = event.get("thread_ts")
    return InboundMessage(
        chat_jid=jid_of(event["channel"]), message_id=event["ts"], sender=sender, sender_name=sender_name,
        content=content, timestamp=iso_of(event["ts"]), is_from_me=from_me,
        is_bot_message=from_me or is_bot(event),
        thread_id=thread if thread and thread != event["ts"] else None,  # a reply in a thread is answered there
    )
