"""Reading a Slack chat back from its history: `conversations.history`, and `conversations.replies` per thread.

Slack's history of a channel lists only its top-level messages; a reply in
a thread shows only as its parent's `latest_reply`. So the last day of the
channel's top level is listed, and the threads read are those whose parent
shows a reply since the mark, newest first, and those the log saw recently
whose parent is older than a day (their replies cannot be seen otherwise);
at most `MAX_THREADS` (more is told like a cut). A thread deleted since is
passed over; a thread's replies are listed oldest first, so they are
followed to their last page, where the newest are. `ts` values are
compared as decimals: a float would round their microseconds. The rules the
two readers share are in router/channels/read_back.py.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Awaitable, Callable

from loguru import logger
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from router.channels.read_back import MAX_MESSAGES, MAX_THREADS, ChatRead, ChatToRead, HistoryRefused, newest
from router.channels.slack_inbound import RECORDED_SUBTYPES, channel_of

PAGES = 3  # pages of 100 of a day's top level followed
REPLY_PAGES = 10  # pages of 100 of a thread's replies (listed oldest first: the newest are on the last)
THREAD_GONE = ("thread_not_found", "message_not_found")
MISSING_SCOPE = ("Slack answered missing_scope: add channels:history, groups:history, im:history and "
                 "mpim:history to the app's Bot Token Scopes and reinstall it")


def ts_of(ts: object) -> Decimal:
    """A Slack `ts` as a number that orders exactly (0 for what is not one)."""
    try:
        return Decimal(str(ts))
    except (InvalidOperation, ValueError):
        return Decimal(0)


async def read_chat(client: AsyncWebClient, chat: ChatToRead, *, bot_user: str | None,
                    hand_over: Callable[[dict], Awaitable[None]]) -> ChatRead:
    """Hand over the chat's messages after its mark (not older than a day, but the bot's own), oldest first."""
    channel = channel_of(chat.jid)
    if channel is None:
        raise ValueError(f"not a Slack JID: {chat.jid!r}")
    mark = max(ts_of(m.message_id) for m in chat.recorded)
    if chat.listed_at is not None:  # read back before: complete up to then only
        mark = min(mark, ts_of(f"{chat.listed_at.timestamp():.6f}"))
    floor = ts_of(f"{chat.not_before.timestamp():.6f}")
    start = max(mark, floor)
    try:
        top, more = await _pages(client.conversations_history, PAGES, channel=channel, oldest=f"{floor:.6f}")
        found = [m for m in top if ts_of(m.get("ts")) > start]
        more = more and len(found) == len(top)  # listed newest first: cut short before reaching the mark
        threads = _threads(chat, top, start)
        more = more or len(threads) > MAX_THREADS
        for thread in threads[:MAX_THREADS]:
            try:
                replies, cut = await _pages(client.conversations_replies, REPLY_PAGES, channel=channel, ts=thread,
                                            oldest=f"{start:.6f}")
            except SlackApiError as exc:
                if exc.response.get("error") not in THREAD_GONE:
                    raise
                logger.debug("slack {}: thread {} is gone; passed over", chat.jid, thread)
                continue
            found += [m for m in replies if ts_of(m.get("ts")) > start]
            more = more or cut
        older_unread = mark < floor and await _any_between(client, channel, mark, floor, bot_user)
    except SlackApiError as exc:
        error = exc.response.get("error", "")
        if error == "missing_scope":
            raise HistoryRefused(MISSING_SCOPE) from None
        if error in ("not_in_channel", "channel_not_found"):
            raise HistoryRefused(f"Slack answered {error}: invite the app to the channel (/invite @yourapp)") from None
        raise
    messages, left_out = await newest(chat, (m for m in found if _said(m, bot_user)), key=lambda m: ts_of(m["ts"]),
                                      id_of=lambda m: m["ts"])
    for message in messages:
        await hand_over({**message, "channel": channel})
    return ChatRead(len(messages), left_out or int(more), older_unread)


def _threads(chat: ChatToRead, top: list[dict], start: Decimal) -> list[str]:
    """The threads to read, in order: parents listed with a reply since `start`, newest reply first, then threads
    the log saw recently whose parent is older than the listing."""
    listed = {m.get("ts") for m in top}
    replied = sorted((m for m in top if m.get("reply_count") and ts_of(m.get("latest_reply")) > start),
                     key=lambda m: ts_of(m.get("latest_reply")), reverse=True)
    older = sorted((t for t in chat.threads() if t not in listed), key=ts_of, reverse=True)
    return [m["ts"] for m in replied] + older  # the caller reads the first MAX_THREADS and tells of the rest


async def _pages(method, pages: int, **args) -> tuple[list[dict], bool]:
    """Up to `pages` pages of a listing; (the messages, whether Slack had more)."""
    messages: list[dict] = []
    cursor = None
    for _ in range(pages):
        answer = await method(limit=MAX_MESSAGES, inclusive=False, cursor=cursor, **args)
        messages += list(answer.get("messages") or [])
        cursor = (answer.get("response_metadata") or {}).get("next_cursor")
        if not answer.get("has_more") or not cursor:
            return messages, False
    return messages, True


async def _any_between(client: AsyncWebClient, channel: str, after: Decimal, before: Decimal,
                       bot_user: str | None) -> bool:
    """Whether someone wrote at the top level between the mark and the day's start (messages not read back)."""
    answer = await client.conversations_history(channel=channel, oldest=f"{after:.6f}", latest=f"{before:.6f}",
                                                inclusive=False, limit=10)
    return any(_said(m, bot_user) for m in answer.get("messages") or [])


def _said(message: dict, bot_user: str | None) -> bool:
    """Something a person or another bot said (not a join or an edit), not the assistant's own: the log has
    those as the replies it sent."""
    return message.get("subtype") in RECORDED_SUBTYPES and not (bool(bot_user) and message.get("user") == bot_user)
