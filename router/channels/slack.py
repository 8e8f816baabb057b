"""The Slack channel: a Slack app in Socket Mode (a WebSocket the app opens, so no public URL is needed).

Why Bolt with `process_before_response`: Bolt routes the envelope to our
listener and, with that setting, acknowledges it only after the listener
returns, so an envelope is acknowledged once its message is in the log; one
whose recording failed is not, and Slack sends it again (the
`slack:<channel>:<ts>` key stores it once). slack-sdk's retry handlers wait
out 429s by their `Retry-After` and resend requests that never left. The
bot token (`xoxb-`) calls the Web API; the app token (`xapp-`) opens the
socket. While the agent works, the message it answers wears an :eyes:
reaction (Slack bots have no typing indicator).
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import aiohttp
from loguru import logger
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (AsyncConnectionErrorRetryHandler,
                                                         AsyncRateLimitErrorRetryHandler)
from slack_sdk.web.async_client import AsyncWebClient

from events.types import OutboundFile
from router.channels import registry, slack_history
from router.channels.base import Channel, ChannelContext, ChannelStartError, connection_refused, retry_unsent
from router.channels.credentials import problems_of
from router.channels.inbound_files import MAX_INBOUND_BYTES, Incoming, kind_of, receive_files
from router.channels.markdown import to_plain
from router.channels.read_back import ChatRead, ChatToRead, ReadBacks
from router.channels.registration import HelpLimiter, registration_help
from router.channels.slack_format import split_message, to_mrkdwn
from router.channels.slack_inbound import (GROUP_TYPES, PREFIX, channel_of, iso_of, jid_of, mentions,
                                           to_inbound)

BOT_TOKEN_KEY = "SLACK_BOT_TOKEN"
APP_TOKEN_KEY = "SLACK_APP_TOKEN"
DEFAULT_API_URL = "https://slack.com"
WORKING_REACTION = "eyes"
RATE_LIMIT_RETRIES = 8  # 429s waited out per request before delivery's own retry takes over
PING_INTERVAL_S = 5.0  # the socket's ping; a dead connection is replaced after a few missed pongs
# Slack's answers to a token it will not take: a restart cannot fix them.
REFUSED_TOKEN = ("invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
                 "not_allowed_token_type")
REFUSED_FORMATTING = ("invalid_blocks", "invalid_blocks_format", "msg_blocks_too_long")

# slack-sdk logs every reconnect attempt with a traceback; our own lines say what matters
for _name in ("slack_sdk", "slack_bolt"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)


class SlackSendError(Exception):
    """Slack did not take a message; the text says what to do."""


class SlackChannel(Channel):
    """One Slack app in one workspace: Socket Mode in, the Web API out."""

    name = "slack"

    def __init__(self, ctx: ChannelContext, bot_token: str, app_token: str, api_url: str = DEFAULT_API_URL):
        self.ctx = ctx
        self.api_url = api_url
        self.client = AsyncWebClient(
            token=bot_token, base_url=f"{api_url}/api/", timeout=30,
            retry_handlers=[AsyncConnectionErrorRetryHandler(max_retry_count=2),
                            AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)])
        self.app_token = app_token
        self.bot_user: str | None = None
        self.app = AsyncApp(client=self.client, process_before_response=True, request_verification_enabled=False,
                            logger=logging.getLogger("slack_bolt"))
        self._handler: AsyncSocketModeHandler | None = None
        self._connecting: asyncio.Task | None = None
        self._names: dict[str, str] = {}  # user id -> display name
        self._chats: dict[str, tuple[str, bool]] = {}  # channel id -> (name, is_group)
        self._newest: dict[str, str] = {}  # jid -> ts of the newest message recorded (the one the agent answers)
        self._working: dict[str, str] = {}  # jid -> ts wearing the working reaction
        self._help = HelpLimiter()
        self.read_backs = ReadBacks(self, ctx, self._read_chat)
        self._route()

    # ----- lifetime -----------------------------------------------------------------------------
    async def connect(self) -> None:
        """Check both tokens, then open the socket in the background (an unreachable Slack is retried there)."""
        tokens = {BOT_TOKEN_KEY: self.client.token, APP_TOKEN_KEY: self.app_token}
        if wrong := problems_of(tuple(tokens), tokens.get):
            raise ChannelStartError("; ".join(wrong))
        try:
            await self._who_am_i(raise_refusal=True)
            await self.client.apps_connections_open(app_token=self.app_token)
        except SlackApiError as exc:
            error = exc.response.get("error", "")
            if error in REFUSED_TOKEN:
                key = APP_TOKEN_KEY if "apps.connections.open" in str(exc.response.api_url) else BOT_TOKEN_KEY
                raise ChannelStartError(f"Slack refused {key} ({error}); copy it again from the app's settings "
                                        f"(api.slack.com/apps) into .env, or remove it to run without Slack") from None
            logger.warning("slack: the Web API answered {}; will keep trying in the background", error)
        except Exception as exc:  # not reachable: Socket Mode keeps trying
            logger.warning("slack: cannot reach Slack at {} ({}: {}); will keep trying in the background",
                           self.api_url, type(exc).__name__, exc)
        self._handler = AsyncSocketModeHandler(self.app, self.app_token, logger=logging.getLogger("slack_sdk"),
                                               web_client=self.client, ping_interval=PING_INTERVAL_S)
        self._handler.client.message_listeners.append(self._on_socket_message)
        self._connecting = asyncio.create_task(self._open_socket(), name="slack socket")

    async def _open_socket(self) -> None:
        await self._handler.connect_async()
        logger.info("slack: connected as {} via {} (Socket Mode)", self.bot_user or "the app", self.api_url)

    async def disconnect(self) -> None:
        await self.read_backs.close()  # first: a socket opening meanwhile starts no new one
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        if self._handler is not None:
            await self._handler.close_async()
        await self._clear_working()

    def is_connected(self) -> bool:
        client = self._handler.client if self._handler is not None else None
        session = getattr(client, "current_session", None)
        return session is not None and not session.closed and not client.closed

    def owns_jid(self, jid: str) -> bool:
        return jid.startswith(PREFIX)

    # ----- inbound ------------------------------------------------------------------------------
    def _route(self) -> None:
        async def on_message(event: dict) -> None:
            await self._on_message(event)

        async def on_chatid(ack, command: dict) -> None:
            jid = jid_of(command.get("channel_id", ""))
            name, _ = await self._chat(command.get("channel_id", ""), command.get("channel_name"))
            await ack(text=registration_help(jid, name, self.ctx.registered_groups(fresh=True).get(jid),
                                             self.ctx.settings.root, "slack_team"))

        async def on_ping(ack) -> None:
            await ack(text=f"{self.ctx.settings.assistant_name} is online.")

        async def acknowledge_only() -> None:
            """An event the app is subscribed to but that carries nothing to record (the message event does)."""

        self.app.event("message")(on_message)
        self.app.command("/chatid")(on_chatid)
        self.app.command("/ping")(on_ping)
        self.app.event(re.compile(".*"))(acknowledge_only)  # acknowledged, so Slack does not send it again

    async def _on_message(self, event: dict) -> None:
        """Record the message; returns (and Bolt acknowledges the envelope) only once it is in the log."""
        channel = event.get("channel", "")
        if not channel or not event.get("ts"):
            return
        jid = jid_of(channel)
        name, is_group = await self._chat(channel)
        await self.ctx.on_chat_metadata(jid, iso_of(event["ts"]), name, self.name, is_group)
        chat = self.ctx.registered(jid)
        if chat is None:
            await self._help_unregistered(jid, name, event)
            return
        if self.bot_user is None:
            await self._who_am_i()
        sender_name = await self._name(event["user"]) if event.get("user") else event.get("username", "a bot")
        await self._names_in(event.get("text") or "")
        files = [Incoming(f.get("name") or "file", kind_of(f.get("mimetype"), "Document"), f.get("size"),
                          self._fetcher(f["url_private_download"]))
                 for f in event.get("files") or [] if f.get("url_private_download")]
        extra = await receive_files(self.ctx.settings, chat.folder, event["ts"], files) if files else ""
        inbound = to_inbound(event, bot_user=self.bot_user, sender_name=sender_name,
                             name_of=lambda user: self._names.get(user, user),
                             trigger=chat.trigger or self.ctx.settings.trigger, extra=extra)
        if inbound is None:
            return
        newest = slack_history.ts_of(self._newest.get(jid))
        if not inbound.is_bot_message and slack_history.ts_of(event["ts"]) > newest:  # not one read back
            self._newest[jid] = event["ts"]
        await self.read_backs.marks_taken()  # a live message must not become the mark that hides a gap
        await self.ctx.on_message(self.name, inbound)

    async def _on_socket_message(self, _client, message: dict, _raw: str | None) -> None:
        """Slack greets every new connection with `hello`: read back what was said while there was none."""
        if message.get("type") == "hello":
            self.read_backs.opened()

    async def _read_chat(self, chat: ChatToRead) -> ChatRead:
        if self.bot_user is None:
            await self._who_am_i()
        return await slack_history.read_chat(self.client, chat, bot_user=self.bot_user, hand_over=self._on_message)

    def _fetcher(self, url: str):
        """A file's download, with the bot token Slack asks for (files:read), stopped past the size cap."""
        async def fetch() -> bytes:
            async with aiohttp.ClientSession() as session:
                async with session.get(url, headers={"Authorization": f"Bearer {self.client.token}"}) as response:
                    response.raise_for_status()
                    return await response.content.read(MAX_INBOUND_BYTES + 1)
        return fetch


    async def _help_unregistered(self, jid: str, name: str, event: dict) -> None:
        """A person who mentions the bot (or writes to it directly) in a chat not registered is told how to register it."""
        direct = event.get("channel_type") == "im"
        if event.get("bot_id") or not (direct or mentions(event.get("text") or "", self.bot_user)):
            logger.debug("slack: message in unregistered chat {} ({!r}) not recorded; /chatid there tells how "
                         "to register it", jid, name)
            return
        if not self._help.due(jid):
            return
        text = registration_help(jid, name, None, self.ctx.settings.root, "slack_team")
        try:
            await self.send(jid, text, outbound_id="registration help", thread_id=event.get("thread_ts"))
        except Exception as exc:
            logger.warning("slack {}: could not say how to register it: {}", jid, exc)

    async def _who_am_i(self, raise_refusal: bool = False) -> None:
        """The bot's own user id and name (auth.test), so its mentions and its own messages are known."""
        try:
            auth = await self.client.auth_test()
        except Exception as exc:
            if raise_refusal:
                raise
            logger.debug("slack: auth.test failed ({}); mentions of the bot are not recognized yet", exc)
            return
        self.bot_user = auth.get("user_id")
        if self.bot_user:
            self._names.setdefault(self.bot_user, auth.get("user") or "the assistant")

    async def _name(self, user: str) -> str:
        """A person's display name (asked once per user per run); the id when Slack will not say."""
        if user not in self._names:
            try:
                info = (await self.client.users_info(user=user))["user"]
                profile = info.get("profile") or {}
                self._names[user] = profile.get("display_name") or info.get("real_name") or info.get("name") or user
            except Exception as exc:
                logger.debug("slack: users.info {} failed: {}", user, exc)
                return user
        return self._names[user]

    async def _names_in(self, text: str) -> None:
        for user in re.findall(r"<@([A-Z0-9]+)", text):
            await self._name(user)

    async def _chat(self, channel: str, known_name: str | None = None) -> tuple[str, bool]:
        """(name, is_group) of a conversation: `#general`, or the person's name for a direct message."""
        if channel not in self._chats:
            try:
                info = (await self.client.conversations_info(channel=channel))["channel"]
                if info.get("is_im"):
                    self._chats[channel] = (await self._name(info.get("user", channel)), False)
                else:
                    kind = "mpim" if info.get("is_mpim") else "group" if info.get("is_private") else "channel"
                    self._chats[channel] = (f"#{info.get('name', channel)}", kind in GROUP_TYPES)
            except Exception as exc:
                logger.debug("slack: conversations.info {} failed: {}", channel, exc)
                return (f"#{known_name}" if known_name else channel), True
        return self._chats[channel]

    # ----- outbound -----------------------------------------------------------------------------
    def split(self, text: str) -> list[str]:
        return split_message(text)

    async def send(self, jid: str, text: str, *, outbound_id: str, thread_id: str | None = None) -> None:
        plain = to_plain(text)
        try:
            await self._post(jid, outbound_id, text=plain, thread_ts=thread_id,
                             blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": to_mrkdwn(text)}}])
            return
        except SlackApiError as exc:
            error = exc.response.get("error", "")
            if error not in REFUSED_FORMATTING:
                raise SlackSendError(_explain(jid, error)) from None
            logger.warning("slack {}: Slack refused the formatting of {} ({}); sending it as plain text",
                           jid, outbound_id, error)
        try:
            await self._post(jid, outbound_id, text=plain, thread_ts=thread_id, mrkdwn=False)
        except SlackApiError as exc:
            raise SlackSendError(_explain(jid, exc.response.get("error", ""))) from None

    async def _post(self, jid: str, outbound_id: str, **message) -> None:
        await retry_unsent(lambda: self.client.chat_postMessage(channel=self._channel(jid), unfurl_links=False,
                                                                unfurl_media=False, **message),
                           connection_refused, f"slack {jid}: {outbound_id}")

    async def send_file(self, jid: str, file: OutboundFile, path: Path, caption: str, *, outbound_id: str,
                        thread_id: str | None = None) -> None:
        try:
            await self.client.files_upload_v2(channel=self._channel(jid), file=str(path), filename=file.name,
                                              title=file.name, initial_comment=to_mrkdwn(caption) or None,
                                              thread_ts=thread_id)
        except SlackApiError as exc:
            raise SlackSendError(_explain(jid, exc.response.get("error", ""), "files:write")) from None

    async def set_typing(self, jid: str, on: bool) -> None:
        """The working reaction on the message the agent answers, while it works."""
        if on:
            ts = self._newest.get(jid)
            if ts is None or self._working.get(jid) == ts:
                return
            await self._unreact(jid)
            self._working[jid] = ts
            await self._react("add", jid, ts)
        else:
            await self._unreact(jid)

    async def _unreact(self, jid: str) -> None:
        ts = self._working.pop(jid, None)
        if ts is not None:
            await self._react("remove", jid, ts)

    async def _react(self, op: str, jid: str, ts: str) -> None:
        call = self.client.reactions_add if op == "add" else self.client.reactions_remove
        try:
            await call(channel=self._channel(jid), timestamp=ts, name=WORKING_REACTION)
        except SlackApiError as exc:
            if exc.response.get("error") not in ("already_reacted", "no_reaction"):
                logger.debug("slack {}: working reaction not {}: {}", jid, "shown" if op == "add" else "removed",
                             exc.response.get("error"))

    async def _clear_working(self) -> None:
        for jid in list(self._working):
            await self._unreact(jid)

    @staticmethod
    def _channel(jid: str) -> str:
        channel = channel_of(jid)
        if channel is None:
            raise ValueError(f"not a Slack JID: {jid!r} (expected slack:<channel id>)")
        return channel


def _explain(jid: str, error: str, scope: str = "chat:write") -> str:
    if error in ("not_in_channel", "channel_not_found"):
        return f"Slack answered {error} for {jid}: invite the app to the channel (/invite @yourapp)"
    if error == "missing_scope":
        return f"Slack answered missing_scope: add {scope} to the app's Bot Token Scopes and reinstall it"
    return f"Slack answered {error or 'an error'} for {jid}"


def _factory(ctx: ChannelContext) -> Channel | None:
    bot_token, app_token = ctx.settings.secret(BOT_TOKEN_KEY), ctx.settings.secret(APP_TOKEN_KEY)
    if not bot_token and not app_token:
        return None
    if wrong := problems_of((BOT_TOKEN_KEY, APP_TOKEN_KEY), ctx.settings.secret):
        raise ChannelStartError("; ".join(wrong))
    return SlackChannel(ctx, bot_token, app_token, ctx.settings.slack_api_base_url or DEFAULT_API_URL)


registry.register("slack", _factory, credentials=(BOT_TOKEN_KEY, APP_TOKEN_KEY), jid_prefix=PREFIX)
