"""Sending to Telegram: one part of a reply, or a file, until the API takes it, whatever it answers.

A 429 is waited out and the part sent again; a part whose formatting is refused goes again as plain
text; a request that never left (connection refused) is retried for a while. Splitting a reply is
`split_message`'s; delivery records each accepted part, so a restart resumes at the next one.
"""

from __future__ import annotations

import asyncio
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Awaitable, Callable

import httpx  # python-telegram-bot's HTTP client: its exceptions say whether a request left
from loguru import logger
from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import BadRequest, ChatMigrated, NetworkError, RetryAfter

from events.types import OutboundFile
from router.channels.base import retry_unsent
from router.channels.telegram_format import split_message, to_telegram_html

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
PHOTO_TYPES = ("image/png", "image/jpeg", "image/webp")  # shown inline; anything else goes as a document
PHOTO_MAX_BYTES = 10 * 1024 * 1024  # the Bot API's limit for a photo
UPLOAD_TIMEOUT_S = 150.0  # writing a file of up to 20 MB (python-telegram-bot's default is 20 s)


class TelegramSendError(Exception):
    """Telegram did not take a part of a reply; the message says what to do."""


def retry_after_s(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the int form of retry_after is deprecated in favour of timedelta
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def never_sent(exc: NetworkError) -> bool:
    """True when the request provably never reached Telegram, so sending again cannot duplicate it."""
    return isinstance(exc.__cause__, _NOT_SENT)


def _never_left(exc: BaseException) -> bool:
    return isinstance(exc, NetworkError) and never_sent(exc)


def refused_formatting(exc: BadRequest) -> bool:
    return "can't parse entities" in exc.message.lower()


class ReplySender:
    """Sends replies part by part through one `Bot`; which parts went out is the caller's to record."""

    def __init__(self, bot: Bot):
        self.bot = bot

    async def send(self, jid: str, chat_id: int, text: str, topic: int | None = None) -> int:
        """Every part of a text that is not in the outbox (a command's answer); returns how many parts."""
        parts = split_message(text)
        for index, part in enumerate(parts):
            await self.send_part(jid, chat_id, part, f"part {index + 1}/{len(parts)}", topic)
        return len(parts)

    async def send_part(self, jid: str, chat_id: int, part: str, which: str = "the reply",
                        topic: int | None = None) -> None:
        """One part (at most Telegram's length), formatted, or plain when the formatting is refused.

        `topic` is the forum topic (`message_thread_id`) it goes to; None for the chat's General.
        """
        await self._send_part(jid, which, lambda formatted: self._post(chat_id, part, formatted, topic))

    async def send_file(self, jid: str, chat_id: int, path: Path, file: OutboundFile, caption: str,
                        topic: int | None = None) -> None:
        """One file with its caption: a photo when Telegram shows it as one, else a document."""
        data = path.read_bytes()
        as_photo = file.media_type in PHOTO_TYPES and file.size <= PHOTO_MAX_BYTES

        async def post(formatted: bool) -> None:
            nonlocal as_photo
            shown = to_telegram_html(caption) if formatted and caption else caption
            options = {"caption": shown or None, "parse_mode": ParseMode.HTML if formatted and caption else None,
                       "message_thread_id": topic, "write_timeout": UPLOAD_TIMEOUT_S}
            if as_photo:
                try:
                    await self.bot.send_photo(chat_id, photo=data, filename=file.name, **options)
                    return
                except BadRequest as exc:
                    if refused_formatting(exc):
                        raise
                    # too tall, too wide, or not an image Telegram can show: the file itself, as a document
                    logger.info("telegram {}: Telegram would not show {} as a photo ({}); sending it as a document",
                                jid, file.name, exc.message)
                    as_photo = False
            await self.bot.send_document(chat_id, document=data, filename=file.name, **options)

        await self._send_part(jid, f"file {file.name}", post)

    async def _send_part(self, jid: str, which: str, post: Callable[[bool], Awaitable[None]]) -> None:
        """Send one part (`post(formatted)`) until Telegram takes it: 429s waited out, formatting dropped if refused.

        A request that never left (the API unreachable) is tried again by the rule every channel shares.
        """
        formatted = True
        while True:
            try:
                await retry_unsent(lambda: post(formatted), _never_left, f"telegram {jid}: {which}")
                return
            except RetryAfter as exc:
                wait = retry_after_s(exc)
                logger.info("telegram {}: rate-limited; waiting {:g} s, then sending {} again", jid, wait, which)
                await asyncio.sleep(wait)
            except ChatMigrated as exc:
                raise TelegramSendError(
                    f"{jid} became a supergroup with the id tg:{exc.new_chat_id}; register that JID instead "
                    f"(nanoclaw groups add tg:{exc.new_chat_id} ...)") from exc
            except BadRequest as exc:
                if not (formatted and refused_formatting(exc)):
                    raise
                logger.warning("telegram {}: Telegram refused the formatting of {} ({}); sending it as "
                               "plain text", jid, which, exc.message)
                formatted = False

    async def _post(self, chat_id: int, part: str, formatted: bool, topic: int | None) -> None:
        if formatted:
            await self.bot.send_message(chat_id, to_telegram_html(part), parse_mode=ParseMode.HTML,
                                        message_thread_id=topic)
        else:
            await self.bot.send_message(chat_id, part, message_thread_id=topic)
