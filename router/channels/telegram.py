"""The Telegram channel: a bot (token from BotFather) that reads its chats by long polling.

Why python-telegram-bot 22: typed Bot API calls and errors (`RetryAfter`, `BadRequest`) over httpx alone,
and a `base_url` for other Bot API servers; aiogram would add aiohttp, pydantic and a dispatcher we do
not use. Our own poll loop, not its `Updater` (which confirms a batch before handling it): the offset
passes an update only once its message is in the log, and the `tg:<chat>:<message>` key absorbs redelivery.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from loguru import logger
from telegram import Bot, BotCommand, Message, Update
from telegram.constants import ChatAction
from telegram.error import Conflict, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.request import HTTPXRequest

from base.timefmt import to_iso
from events.types import OutboundFile
from router.channels import registry
from router.channels.base import Channel, ChannelContext, ChannelStartError
from router.channels.inbound_files import Incoming, receive_files
from router.channels.registration import registration_help
from router.channels.telegram_format import split_message
from router.channels.telegram_inbound import (PREFIX, chat_facts, chat_id_of, command_of, files_of,
                                              to_inbound, topic_of)
from router.channels.telegram_send import ReplySender, retry_after_s

TOKEN_KEY = "TELEGRAM_BOT_TOKEN"
DEFAULT_API_URL = "https://api.telegram.org"
POLL_TIMEOUT_S = 30
POLL_BACKOFF_MAX_S = 30.0
TYPING_REFRESH_S = 4.5  # Telegram shows "typing..." for 5 s per chat action
TYPING_MAX_S = 600.0
BOT_COMMANDS = [BotCommand("chatid", "Show this chat's id for registering it with NanoClaw"),
                BotCommand("ping", "Check that the assistant is online")]

logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request, token in the URL


def redact(text: str, token: str) -> str:
    return text.replace(token, "****") if token else text


class TelegramChannel(Channel):
    """One bot: polls for messages, sends replies, shows typing."""

    name = "telegram"

    def __init__(self, ctx: ChannelContext, token: str, api_url: str = DEFAULT_API_URL):
        self.ctx = ctx
        self.token = token
        self.api_url = api_url
        self.bot = Bot(token, base_url=f"{api_url}/bot", base_file_url=f"{api_url}/file/bot",
                       request=HTTPXRequest(connection_pool_size=16),
                       get_updates_request=HTTPXRequest(connection_pool_size=2))
        self.sender = ReplySender(self.bot)
        self.offset: int | None = None
        self._ready = False
        self._poller: asyncio.Task | None = None
        self._typing: dict[str, asyncio.Task] = {}
        self._topics: dict[str, int | None] = {}  # per chat, the forum topic of its newest message
        self._chores: set[asyncio.Task] = set()

    # ----- lifetime -----------------------------------------------------------------------------
    async def connect(self) -> None:
        """Check the token (getMe) and start polling; an unreachable API is retried in the background."""
        try:
            await self._prepare()
        except InvalidToken as exc:
            raise ChannelStartError(
                f"Telegram refused TELEGRAM_BOT_TOKEN ({redact(str(exc), self.token)}); copy the token again from "
                "@BotFather into .env, or remove it to run without Telegram") from None
        except TelegramError as exc:
            logger.warning("telegram: cannot reach the Bot API at {} ({}); will keep trying in the background",
                           self.api_url, redact(str(exc), self.token))
        self._poller = asyncio.create_task(self._poll_forever(), name="telegram poll")

    async def _prepare(self) -> None:
        """getMe (who we are), then make sure no webhook blocks getUpdates; once per start."""
        if self._ready:
            return
        await self.bot.initialize()
        await self.bot.delete_webhook(drop_pending_updates=False)
        try:
            await self.bot.set_my_commands(BOT_COMMANDS)
        except TelegramError as exc:
            logger.debug("telegram: could not publish the command list: {}", exc)
        self._ready = True
        logger.info("telegram: connected as @{} via {}", self.bot.username, self.api_url)

    async def disconnect(self) -> None:
        tasks = [t for t in (self._poller, *self._typing.values(), *self._chores) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._typing.clear()
        if self._ready and self.offset is not None:
            await self._confirm_offset()
        await self.bot.shutdown()

    async def _confirm_offset(self) -> None:
        """Tell Telegram the last batch is handled, so the next start does not see it again."""
        try:
            await self.bot.get_updates(offset=self.offset, limit=1, timeout=0, read_timeout=2, connect_timeout=2)
        except TelegramError as exc:
            logger.debug("telegram: could not confirm offset {} at shutdown ({}); Telegram will resend, "
                         "and duplicates are ignored", self.offset, exc)

    def is_connected(self) -> bool:
        return self._ready and self._poller is not None and not self._poller.done()

    def owns_jid(self, jid: str) -> bool:
        return jid.startswith(PREFIX)

    # ----- inbound ------------------------------------------------------------------------------
    async def _poll_forever(self) -> None:
        failures = 0
        while True:
            try:
                await self._prepare()
                updates = await self.bot.get_updates(offset=self.offset, timeout=POLL_TIMEOUT_S,
                                                     allowed_updates=[Update.MESSAGE])
                await self._handle(updates)
                if updates:
                    self.offset = updates[-1].update_id + 1
                if failures:
                    logger.info("telegram: Bot API reachable again after {} failed poll(s)", failures)
                failures = 0
            except asyncio.CancelledError:
                raise
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_s(exc))
            except Exception as exc:  # the poll must outlive any failure: log, back off, poll again
                failures += 1
                await asyncio.sleep(self._poll_failed(exc, failures))

    def _poll_failed(self, exc: Exception, failures: int) -> float:
        delay = min(2.0 ** (failures - 1), POLL_BACKOFF_MAX_S)
        reason = redact(f"{type(exc).__name__}: {exc}", self.token)
        if isinstance(exc, InvalidToken):
            logger.error("telegram: the token was refused ({}); polling again in {:g} s", reason, delay)
        elif isinstance(exc, Conflict):
            logger.error("telegram: another program is reading this bot's updates ({}); stop it; polling again in "
                         "{:g} s", reason, delay)
        elif isinstance(exc, NetworkError) and failures > 1:
            logger.debug("telegram: Bot API still unreachable ({}); polling again in {:g} s", reason, delay)
        elif isinstance(exc, TelegramError):
            logger.warning("telegram: polling failed ({}); polling again in {:g} s", reason, delay)
        else:
            logger.opt(exception=exc).error("telegram: handling updates failed; the same updates again in {:g} s",
                                            delay)
        return delay

    async def _handle(self, updates: tuple[Update, ...]) -> None:
        """Record a batch; returns only when every message in it is in the log (or was not for us)."""
        pending = []
        for update in updates:
            message = update.message
            if message is None:
                continue
            facts = chat_facts(message.chat)
            await self.ctx.on_chat_metadata(facts.jid, to_iso(message.date), facts.name, self.name, facts.is_group)
            command = command_of(message, self.bot.username)
            if command is not None:
                self._chore(self._answer_command(command, message))
            elif (chat := self.ctx.registered(facts.jid)) is not None:
                files = [Incoming(name, kind, size, self._fetcher(file_id))
                         for file_id, name, kind, size in files_of(message)]
                saved = await receive_files(self.ctx.settings, chat.folder, str(message.message_id), files) \
                    if files else ""
                inbound = to_inbound(message, bot_id=self.bot.id, bot_username=self.bot.username,
                                     assistant_name=self.ctx.settings.assistant_name,
                                     trigger=chat.trigger or self.ctx.settings.trigger, files_text=saved)
                if inbound is not None:
                    pending.append(inbound)
                    self._topics[facts.jid] = topic_of(message)
            else:
                logger.debug("telegram: message in unregistered chat {} ({!r}) not recorded; /chatid there "
                             "tells how to register it", facts.jid, facts.name)
        await asyncio.gather(*(self.ctx.on_message(self.name, inbound) for inbound in pending))

    def _fetcher(self, file_id: str):
        async def fetch() -> bytes:
            return bytes(await (await self.bot.get_file(file_id)).download_as_bytearray())
        return fetch


    def _chore(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def _answer_command(self, command: str, message: Message) -> None:
        facts = chat_facts(message.chat)
        if command == "ping":
            text = f"{self.ctx.settings.assistant_name} is online."
        else:
            text = registration_help(facts.jid, facts.name, self.ctx.registered_groups(fresh=True).get(facts.jid),
                                     self.ctx.settings.root)
        try:
            await self.sender.send(facts.jid, message.chat.id, text, topic_of(message))
        except TelegramError as exc:
            logger.warning("telegram {}: could not answer /{}: {}", facts.jid, command, redact(str(exc), self.token))

    # ----- outbound -----------------------------------------------------------------------------
    def split(self, text: str) -> list[str]:
        return split_message(text)

    async def send(self, jid: str, text: str, *, outbound_id: str, thread_id: str | None = None) -> None:
        chat_id = self._chat_id(jid)
        self._stop_typing(jid)
        await self.sender.send_part(jid, chat_id, text, f"a part of {outbound_id}", _topic(thread_id))

    async def send_file(self, jid: str, file: OutboundFile, path: Path, caption: str, *, outbound_id: str,
                        thread_id: str | None = None) -> None:
        chat_id = self._chat_id(jid)
        self._stop_typing(jid)
        await self.sender.send_file(jid, chat_id, path, file, caption, _topic(thread_id))

    async def set_typing(self, jid: str, on: bool) -> None:
        """Typing in the topic of the chat's newest message (its General topic when that had none)."""
        chat_id = self._chat_id(jid)
        self._stop_typing(jid)
        if on:
            self._typing[jid] = asyncio.create_task(self._keep_typing(jid, chat_id, self._topics.get(jid)),
                                                    name=f"typing {jid}")

    def _stop_typing(self, jid: str) -> None:
        task = self._typing.pop(jid, None)
        if task is not None:
            task.cancel()

    async def _keep_typing(self, jid: str, chat_id: int, topic: int | None) -> None:
        """Renew the indicator until the reply, the end of the run, or TYPING_MAX_S."""
        deadline = asyncio.get_running_loop().time() + TYPING_MAX_S
        while asyncio.get_running_loop().time() < deadline:
            try:
                await self.bot.send_chat_action(chat_id, ChatAction.TYPING, message_thread_id=topic)
            except TelegramError as exc:
                logger.debug("telegram {}: typing indicator not shown: {}", jid, redact(str(exc), self.token))
            await asyncio.sleep(TYPING_REFRESH_S)

    @staticmethod
    def _chat_id(jid: str) -> int:
        chat_id = chat_id_of(jid)
        if chat_id is None:
            raise ValueError(f"not a Telegram JID: {jid!r} (expected tg:<chat id>)")
        return chat_id


def _topic(thread_id: str | None) -> int | None:
    """A stored thread id as the Bot API's `message_thread_id`."""
    return int(thread_id) if thread_id and thread_id.lstrip("-").isdigit() else None


def _factory(ctx: ChannelContext) -> Channel | None:
    token = ctx.settings.secret(TOKEN_KEY)
    if not token:
        return None
    return TelegramChannel(ctx, token, ctx.settings.telegram_api_base_url or DEFAULT_API_URL)


registry.register("telegram", _factory, credentials=(TOKEN_KEY,), jid_prefix=PREFIX)
