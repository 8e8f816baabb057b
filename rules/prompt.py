"""What the agent reads and what the user gets back.

The prompt is v1's XML shape exactly: a timezone header, then one
`<message>` line per chat message with escaped text and a US-English local
time. Output cleanup removes `<internal>` blocks and sends nothing when
nothing remains.
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from base.timefmt import parse_iso

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_INTERNAL = re.compile(r"<internal>[\s\S]*?</internal>")


class PromptMessage(msgspec.Struct, frozen=True):
    """The fields of a chat message that the prompt shows (a `MessageReceived` converts to it)."""

    sender_name: str
    content: str
    timestamp: str
    reply_to_message_id: str | None = None
    reply_to_message_content: str | None = None
    reply_to_sender_name: str | None = None


def escape_xml(text: str | None) -> str:
    """v1's escaping: & < > and double quotes; single quotes stay."""
    if not text:
        return ""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def display_time(timestamp: str, tz_name: str) -> str:
    """`Jan 1, 2024, 1:30 PM` in the given zone (UTC if the zone is unknown)."""
    try:
        zone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    try:
        moment: datetime = parse_iso(timestamp).astimezone(zone)
    except ValueError:
        return timestamp
    hour = moment.hour % 12 or 12
    suffix = "AM" if moment.hour < 12 else "PM"
    return f"{_MONTHS[moment.month - 1]} {moment.day}, {moment.year}, {hour}:{moment.minute:02d} {suffix}"


def format_message(message: PromptMessage, tz_name: str) -> str:
    attrs = f'sender="{escape_xml(message.sender_name)}" time="{escape_xml(display_time(message.timestamp, tz_name))}"'
    if message.reply_to_message_id:
        attrs += f' reply_to="{escape_xml(message.reply_to_message_id)}"'
    quoted = ""
    if message.reply_to_message_content and message.reply_to_sender_name:
        quoted = (
            f'\n  <quoted_message from="{escape_xml(message.reply_to_sender_name)}">'
            f"{escape_xml(message.reply_to_message_content)}</quoted_message>"
        )
    return f"<message {attrs}>{quoted}{escape_xml(message.content)}</message>"


def format_prompt(messages: list[PromptMessage], tz_name: str) -> str:
    """The whole prompt for a list of messages, oldest first."""
    lines = "\n".join(format_message(m, tz_name) for m in messages)
    return f'<context timezone="{escape_xml(tz_name)}" />\n<messages>\n{lines}\n</messages>'


def clean_output(text: str) -> str:
    """Remove `<internal>...</internal>` blocks and trim; '' means send nothing."""
    return _INTERNAL.sub("", text).strip()
