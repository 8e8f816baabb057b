"""The Discord channel: a bot (token from the developer portal) on the gateway WebSocket, replies over REST.

Why discord.py: it keeps the gateway alive (heartbeats, RESUME after a
dropped connection, so dispatches missed meanwhile are replayed) and waits
out 429s per rate-limit bucket. The `dc:<channel>:<id>` key stores a
replayed message once. It needs the Message Content intent, switched on in
the developer portal, to read what people write; without it Discord closes
the gateway with 4014 and the log says where to switch it on. Replies
mention nobody (`AllowedMentions.none()`): an agent cannot ping @everyone.
`DISCORD_API_BASE_URL` points REST and the gateway at another server (the
tests' stand-in); discord.py keeps both in class attributes.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route
from loguru import logger

from base.timefmt import to_iso
from events.types import OutboundFile
from router.channels import discord_history, registry
from router.channels.base import (Channel, ChannelContext, ChannelStartError, RegisteredChat,
                                  connection_refused, retry_unsent)
from router.channels.discord_format import split_message, to_discord
from router.channels.discord_inbound import (PREFIX, channel_of, chat_name, conversation_of, jid_of,
                                             mentions_bot, to_inbound)
from router.channels.inbound_files import Incoming, kind_of, receive_files
from router.channels.read_back import ChatRead, ChatToRead, ReadBacks
from router.channels.registration import HelpLimiter, registration_help

TOKEN_KEY = "DISCORD_BOT_TOKEN"
DEFAULT_API_URL = "https://discord.com"
COMMANDS = ("!chatid", "!ping")
MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # what a bot may attach without the server's boosts

logging.getLogger("discord").setLevel(logging.CRITICAL)  # our own lines say what matters


class DiscordSendError(Exception):
    """Discord did not take a message; the text says what to do."""


def point_at(api_url: str) -> None:
    """REST at `{api_url}/api/v10`; the gateway is asked for at connect (GET /gateway/bot)."""
    Route.BASE = f"{api_url}/api/v10"


class DiscordChannel(Channel):
    name = "discord"

    def __init__(self, ctx: ChannelContext, token: str, api_url: str = DEFAULT_API_URL):
        self.ctx = ctx
        self.token = token
        self.api_url = api_url
        intents = discord.Intents.none()
        intents.guilds = intents.guild_messages = intents.dm_messages = intents.message_content = True
        self.client = discord.Client(intents=intents, chunk_guilds_at_startup=False,
                                     allowed_mentions=discord.AllowedMentions.none(), max_messages=None)
        self.client.event(self.on_message)
        self.client.event(self.on_connect)
        self.client.event(self.on_ready)
        self._runner: asyncio.Task | None = None
        self._listed = asyncio.Event()  # the gateway has listed the guilds (and their active threads)
        self.read_backs = ReadBacks(self, ctx, self._read_chat, ready=self._listed.wait)
        self._typing: dict[str, asyncio.Task] = {}
        self._help = HelpLimiter()

    # ----- lifetime -----------------------------------------------------------------------------
    async def connect(self) -> None:
        """Log in (a refused token cannot be fixed by a restart), then keep the gateway up in the background."""
        if self.api_url != DEFAULT_API_URL:
            point_at(self.api_url)
        try:
            await self.client.login(self.token)
            if self.api_url != DEFAULT_API_URL:
                _, gateway, _ = await self.client.http.get_bot_gateway()
                DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
        except discord.LoginFailure:
            raise ChannelStartError("Discord refused DISCORD_BOT_TOKEN; copy the bot's token again from the "
                                    "developer portal (Bot, Reset Token) into .env, or remove it to run "
                                    "without Discord") from None
        self._runner = asyncio.create_task(self._run(), name="discord gateway")

    async def _run(self) -> None:
        try:
            await self.client.connect(reconnect=True)
        except discord.PrivilegedIntentsRequired:
            logger.error("discord: the gateway refused the Message Content intent: switch on MESSAGE CONTENT "
                         "INTENT under Bot, Privileged Gateway Intents, in the developer portal, then restart")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.opt(exception=exc).error("discord: the gateway stopped for good ({}: {})", type(exc).__name__, exc)

    async def disconnect(self) -> None:
        await self.read_backs.close()
        for task in self._typing.values():
            task.cancel()
        await self.client.close()
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)

    def is_connected(self) -> bool:
        return self.client.is_ready() and not self.client.is_closed()

    def owns_jid(self, jid: str) -> bool:
        return jid.startswith(PREFIX)

    # ----- inbound ------------------------------------------------------------------------------
    async def on_message(self, message: discord.Message) -> None:
        chat, _ = conversation_of(message)
        jid = jid_of(chat)
        me = self.client.user.id if self.client.user else None
        name, is_group = chat_name(message, me)
        if name is not None:
            await self.ctx.on_chat_metadata(jid, to_iso(message.created_at), name, self.name, is_group)
        if message.content.strip().lower() in COMMANDS and message.author.id != me and not message.author.bot:
            await self._command(jid, name, message)
            return
        registered = self.ctx.registered(jid)
        if registered is None:
            await self._help_unregistered(jid, name, message, me)
            return
        await self._record(registered, message)

    async def _record(self, registered: RegisteredChat, message: discord.Message) -> None:
        me = self.client.user.id if self.client.user else None
        files = [Incoming(a.filename, kind_of(a.content_type, "Document"), a.size, a.read)
                 for a in message.attachments]
        extra = await receive_files(self.ctx.settings, registered.folder, str(message.id), files) if files else ""
        inbound = to_inbound(message, bot_id=me, trigger=registered.trigger or self.ctx.settings.trigger,
                             extra=extra)
        if inbound is not None:
            await self.read_backs.marks_taken()  # a live message must not become the mark that hides a gap
            await self.ctx.on_message(self.name, inbound)

    async def on_connect(self) -> None:
        """A new gateway session (at start, or after a resume was refused): nothing said meanwhile is replayed,
        so the chats are read back (router/channels/read_back.py), once the guilds and threads are listed."""
        self._listed.clear()
        self.read_backs.opened()

    async def on_ready(self) -> None:
        self._listed.set()

    async def _read_chat(self, chat: ChatToRead) -> ChatRead:
        registered = self.ctx.registered(chat.jid)
        if registered is None:
            return ChatRead()
        return await discord_history.read_chat(self.client, chat,
                                               hand_over=lambda message: self._record(registered, message))

    async def _command(self, jid: str, name: str | None, message: discord.Message) -> None:
        if message.content.strip().lower() == "!ping":
            text = f"{self.ctx.settings.assistant_name} is online."
        else:
            text = registration_help(jid, name, self.ctx.registered_groups(fresh=True).get(jid),
                                     self.ctx.settings.root, "discord_team")
        await self._answer(message, text)

    async def _help_unregistered(self, jid: str, name: str | None, message: discord.Message, me: int | None) -> None:
        direct = message.guild is None
        if message.author.bot or not (direct or mentions_bot(message, me)) or not self._help.due(jid):
            logger.debug("discord: message in unregistered chat {} ({!r}) not recorded; !chatid there tells how "
                         "to register it", jid, name)
            return
        await self._answer(message, registration_help(jid, name, None, self.ctx.settings.root, "discord_team"))

    async def _answer(self, message: discord.Message, text: str) -> None:
        try:
            await message.channel.send(text)
        except discord.HTTPException as exc:
            logger.warning("discord: could not answer in {}: {}", message.channel.id, exc)

    # ----- outbound -----------------------------------------------------------------------------
    def split(self, text: str) -> list[str]:
        return split_message(text)

    def _target(self, jid: str, thread_id: str | None) -> discord.PartialMessageable:
        channel = channel_of(jid)
        if channel is None:
            raise ValueError(f"not a Discord JID: {jid!r} (expected dc:<channel id>)")
        return self.client.get_partial_messageable(int(thread_id) if thread_id else channel)

    async def send(self, jid: str, text: str, *, outbound_id: str, thread_id: str | None = None) -> None:
        target = self._target(jid, thread_id)
        await self._post(jid, outbound_id, lambda: target.send(to_discord(text)))

    async def send_file(self, jid: str, file: OutboundFile, path: Path, caption: str, *, outbound_id: str,
                        thread_id: str | None = None) -> None:
        if file.size > MAX_UPLOAD_BYTES:
            await super().send_file(jid, file, path, caption, outbound_id=outbound_id, thread_id=thread_id)
            return
        target = self._target(jid, thread_id)
        await self._post(jid, outbound_id, lambda: target.send(to_discord(caption) or None,
                                                               file=discord.File(path, filename=file.name)))

    async def _post(self, jid: str, outbound_id: str, send) -> None:
        try:
            await retry_unsent(send, connection_refused, f"discord {jid}: {outbound_id}")
        except discord.Forbidden as exc:
            raise DiscordSendError(f"Discord refused to post in {jid} ({exc.text}): give the bot Send Messages "
                                   "there, or invite it to the server again") from None
        except discord.NotFound:
            raise DiscordSendError(f"Discord has no channel {jid} the bot can see") from None

    async def set_typing(self, jid: str, on: bool) -> None:
        """Typing while the agent works: discord.py's `typing()` renews Discord's 10 s indicator."""
        running = self._typing.pop(jid, None)
        if running is not None:
            running.cancel()
        if on:
            self._typing[jid] = asyncio.create_task(self._type(jid), name=f"discord typing {jid}")

    async def _type(self, jid: str) -> None:
        try:
            async with self._target(jid, None).typing():
                await asyncio.Event().wait()
        except discord.HTTPException as exc:
            logger.debug("discord {}: typing not shown: {}", jid, exc)


def _factory(ctx: ChannelContext) -> Channel | None:
    token = ctx.settings.secret(TOKEN_KEY)
    if not token:
        return None
    return DiscordChannel(ctx, token, ctx.settings.discord_api_base_url or DEFAULT_API_URL)


registry.register("discord", _factory, credentials=(TOKEN_KEY,), jid_prefix=PREFIX)
