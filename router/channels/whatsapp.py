"""The WhatsApp channel: this machine as a linked device of a WhatsApp account, through neonize.

Why neonize: it wraps whatsmeow, a maintained Go implementation of
WhatsApp's multi-device protocol (end-to-end encryption, keys, reconnects,
offline delivery), shipped compiled inside its wheel; no browser, no Node.
The device session is `store/whatsapp/session.db` (router/channels/
whatsapp_link.py); the channel starts only when a device was linked there
with `nanoclaw channels login whatsapp`, and never shows a QR code itself:
a session that ended is reported (status, doctor, the log) rather than
re-paired by the service.

`ASSISTANT_HAS_OWN_NUMBER=true` says the account is the assistant's own:
replies are plain, and whatever the account sends is the assistant's.
Otherwise it is the owner's account: each reply part starts with the
assistant's name, the owner's own messages may trigger it, and the
assistant's own are told apart by the message event (whatsapp_inbound.py).

Presence: "typing…" is shown while the agent works. With its own number
the assistant is also marked online at connect; on a shared number it is
not, as a linked device that says "online" stops the owner's phone from
ringing for new messages.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sqlite3
import time
from collections import OrderedDict
from contextlib import closing
from pathlib import Path
from typing import Callable

from loguru import logger
from neonize.aioze import events as library_events
from neonize.aioze.client import NewAClient
from neonize.aioze.events import (ClientOutdatedEv, ConnectedEv, ConnectFailureEv, DisconnectedEv,
                                  GroupInfoEv, JoinedGroupEv, LoggedOutEv, MessageEv, StreamReplacedEv,
                                  TemporaryBanEv)
from neonize.proto.Neonize_pb2 import GroupInfo
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message
from neonize.utils.enum import ChatPresence, ChatPresenceMedia, Presence
from PIL import Image

from base.timefmt import iso_now
from events.types import OutboundFile
from router.channels import registry, whatsapp_link as link
from router.channels.base import Channel, ChannelContext
from router.channels.inbound_files import Incoming, receive_files
from router.channels.registration import HelpLimiter, registration_help
from router.channels.whatsapp_format import name_prefix, split_message, to_whatsapp
from router.channels.whatsapp_inbound import (GROUP_SERVER, PREFIX, Me, address, body, jid_of, media_of,
                                              to_inbound, to_jid)

COMMANDS = ("/chatid", "/ping")
SEND_WAIT_S = 20.0          # a reply waits this long for a dropped connection to come back, then fails to retry
TYPING_RENEW_S = 8.0        # WhatsApp drops "typing…" after about 10 s without a renewal
GROUP_SYNC_EVERY_S = 3600.0
SENT_IDS_KEPT = 2000
MAX_IMAGE_BYTES = 16 * 1024 * 1024     # what WhatsApp sends as a photo
MAX_DOCUMENT_BYTES = 100 * 1024 * 1024  # and as a document
PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp")

for _name in ("neonize", "whatsmeow", "Whatsmeow"):  # the library's chatter; our own lines say what matters
    logging.getLogger(_name).setLevel(logging.WARNING)


DRAIN_WAIT_S = 10.0         # at shutdown, messages already taken from WhatsApp get this long to be recorded
COMMAND_EVERY_S = 60.0      # /ping and /chatid answered once a minute per chat: repeats look like spam to WhatsApp
MAX_PHOTO_PIXELS = 40_000_000  # a larger image goes as a document, rather than decoded for its thumbnail


def plain_message(text: str) -> Message:
    """Text as a message of its own making: handed a string, neonize makes every `@<number>` a real mention
    (and looks up every `@<id>@g.us` group), so an agent could ping anyone; replies mention nobody."""
    return Message(conversation=text)


def _without_mentions(message: Message, field: str, caption: str | None) -> Message:
    media = getattr(message, field)
    media.ClearField("contextInfo")
    if caption:
        media.caption = caption
    return message


def _drawable(data: bytes) -> bool:
    """An image whose thumbnail the library can draw without decoding a bomb: read from its header alone."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:
        return False
    return 0 < width * height <= MAX_PHOTO_PIXELS


def _enum_name(event, field: str) -> str:
    """An event's enum field by its name (`LOGGED_OUT`); the library hands over the number."""
    return event.DESCRIPTOR.fields_by_name[field].enum_type.values_by_number[getattr(event, field)].name


def _logged(handler):
    """A handler whose exception is logged: neonize drops the future its events run in, and the error with it."""
    async def run(*args) -> None:
        try:
            await handler(*args)
        except Exception as exc:
            logger.opt(exception=exc).error("whatsapp: {} failed ({}: {})", handler.__name__, type(exc).__name__, exc)
    return run


class WhatsAppSendError(Exception):
    """WhatsApp did not take a message; the text says why."""


def new_client(session: Path) -> NewAClient:
    """The library's client on the session file (tests hand the channel another factory)."""
    return NewAClient(str(session))


def linked_devices(session: Path) -> list[str]:
    """The numbers of the devices whose keys the session holds (none once WhatsApp logged this one out).

    Read from whatsmeow's own table, read-only: neonize's lister splits the
    account's name on commas and fails on "Acme, Inc.".
    """
    if not session.is_file():
        return []
    with closing(sqlite3.connect(f"file:{session}?mode=ro", uri=True)) as db:
        try:
            rows = db.execute("SELECT jid FROM whatsmeow_device").fetchall()
        except sqlite3.OperationalError:  # no table yet: nothing was ever linked
            return []
    return [str(jid).split("@", 1)[0].split(":", 1)[0].split(".", 1)[0] for (jid,) in rows]


class WhatsAppChannel(Channel):
    name = "whatsapp"

    def __init__(self, ctx: ChannelContext, make_client: Callable[[Path], NewAClient] | None = None,
                 devices: Callable[[Path], list] | None = None):
        self.ctx = ctx
        self.settings = ctx.settings
        self.own_number = ctx.settings.assistant_has_own_number
        self.prefix = "" if self.own_number else name_prefix(ctx.settings.assistant_name)
        self._make_client = make_client or new_client
        self._devices = devices or linked_devices
        self.client: NewAClient | None = None
        self.me = Me(own_number=self.own_number)
        self._connected = asyncio.Event()
        self._ended: str | None = None  # why the session is over (logged out, banned, replaced)
        self._sent: OrderedDict[str, None] = OrderedDict()
        self._typing: dict[str, asyncio.Task] = {}
        self._group_names: dict[str, str] = {}
        self._synced_at = -GROUP_SYNC_EVERY_S
        self._tasks: set[asyncio.Task] = set()
        self._inbound: asyncio.Queue[tuple[NewAClient, MessageEv]] = asyncio.Queue()
        self._reader: asyncio.Task | None = None
        self._help = HelpLimiter()
        self._commands = HelpLimiter(COMMAND_EVERY_S)

    # ----- lifetime -----------------------------------------------------------------------------
    async def connect(self) -> None:
        """Connect with the linked device in the background; a session that ended is reported, not re-paired.

        Nothing here stops the service: a session that cannot be opened is
        reported like a logged-out one, and the other channels go on.
        """
        try:
            await self._connect()
        except Exception as exc:
            self._end("logged_out", f"the session could not be opened ({type(exc).__name__}: {exc})")

    async def _connect(self) -> None:
        session = link.session_path(self.settings)
        link.ensure_folder(self.settings)
        if not self._devices(session):
            self._end("logged_out", "no linked device in the session (it was logged out, or never linked)")
            return
        # neonize dispatches every client's events on the first loop it saw; the service has one loop
        library_events.event_global_loop = asyncio.get_running_loop()
        self.client = client = self._make_client(session)
        for kind, handler in ((MessageEv, self._on_message), (ConnectedEv, self._on_connected),
                              (DisconnectedEv, self._on_disconnected), (LoggedOutEv, self._on_logged_out),
                              (StreamReplacedEv, self._on_replaced), (TemporaryBanEv, self._on_banned),
                              (ConnectFailureEv, self._on_connect_failure), (JoinedGroupEv, self._on_joined),
                              (GroupInfoEv, self._on_group_info), (ClientOutdatedEv, self._on_outdated)):
            client.event(kind)(_logged(handler))
        client.qr(_logged(self._on_qr))  # never drawn by the service: the library's default prints it
        runner = await client.connect()
        runner.add_done_callback(self._runner_ended)

    def _runner_ended(self, task: asyncio.Task) -> None:
        self._connected.clear()
        if not task.cancelled() and task.exception() is not None and self._ended is None:
            logger.error("whatsapp: the connection stopped for good ({}); restart the service to try again",
                         task.exception())

    async def disconnect(self) -> None:
        """Stop the connection first, then record what is still queued (WhatsApp took it as delivered)."""
        for task in [*self._typing.values(), *self._tasks]:
            task.cancel()
        if self.client is not None:
            await self._stop_client()
        if self._reader is not None and not self._reader.done():
            try:
                await asyncio.wait_for(self._inbound.join(), DRAIN_WAIT_S)
            except asyncio.TimeoutError:
                logger.error("whatsapp: {} message(s) not recorded at shutdown (still waiting after {:g} s)",
                             self._inbound.qsize(), DRAIN_WAIT_S)
            self._reader.cancel()

    async def _stop_client(self) -> None:
        client = self.client
        runner = getattr(client, "connect_task", None)
        try:
            await asyncio.wait_for(client.stop(), 10)
        except Exception as exc:
            logger.debug("whatsapp: stopping the client: {}", exc)
        if runner is not None:
            await asyncio.wait([runner], timeout=10)

    def is_connected(self) -> bool:
        return self._connected.is_set()

    def owns_jid(self, jid: str) -> bool:
        return jid.startswith(PREFIX)

    # ----- the session's state --------------------------------------------------------------------
    async def _on_connected(self, client: NewAClient, _: ConnectedEv) -> None:
        device = client.me if client.me is not None and client.me.JID.User else await client.get_me()
        self.me = Me(user=device.JID.User, lid=device.LID.User, device=device.JID.Device,
                     own_number=self.own_number)
        self._ended = None
        self._connected.set()
        link.write_state(self.settings, "linked", account=f"+{self.me.user}")
        link.keep_private(self.settings)
        logger.info("whatsapp: connected as +{}", self.me.user)
        if self.own_number:
            await self._quietly(client.send_presence(Presence.AVAILABLE), "presence")
        self._spawn(self.sync_groups(False))

    async def _on_disconnected(self, _: NewAClient, __: DisconnectedEv) -> None:
        self._connected.clear()
        if self._ended is None:
            logger.warning("whatsapp: disconnected; the library reconnects by itself")

    async def _on_logged_out(self, _: NewAClient, event: LoggedOutEv) -> None:
        reason = _enum_name(event, "Reason")
        self._end("logged_out", f"WhatsApp ended the device's session ({reason.lower().replace('_', ' ')})")
        self._spawn(self._stop_client())

    async def _on_replaced(self, _: NewAClient, __: StreamReplacedEv) -> None:
        self._end("replaced", "another program connected with this device's keys")
        self._spawn(self._stop_client())

    async def _on_banned(self, _: NewAClient, event: TemporaryBanEv) -> None:
        code = _enum_name(event, "Code")
        self._end("banned", f"{code.lower().replace('_', ' ')}, for {event.Expire} s")
        self._spawn(self._stop_client())

    async def _on_qr(self, _: NewAClient, __: bytes) -> None:
        """WhatsApp offers pairing: the device is gone. Linking is a person's to do, with the login command."""
        self._end("logged_out", "WhatsApp no longer knows this device and offers to pair it again")
        self._spawn(self._stop_client())

    async def _on_outdated(self, _: NewAClient, __: ClientOutdatedEv) -> None:
        self._end("logged_out", "WhatsApp refuses this version of the library (client outdated): upgrade neonize "
                                "(.venv/bin/pip install -U neonize), then link again")
        self._spawn(self._stop_client())

    async def _on_connect_failure(self, _: NewAClient, event: ConnectFailureEv) -> None:
        reason = _enum_name(event, "Reason")
        if reason in ("LOGGED_OUT", "MAIN_DEVICE_GONE", "UNKNOWN_LOGOUT"):
            self._end("logged_out", f"WhatsApp refused the device ({reason.lower().replace('_', ' ')})")
            self._spawn(self._stop_client())
        else:
            logger.warning("whatsapp: WhatsApp refused the connection ({}: {}); the library tries again",
                           reason, event.Message)

    def _end(self, state: link.LinkStateName, reason: str) -> None:
        self._connected.clear()
        self._ended = reason
        link.write_state(self.settings, state, reason=reason)
        logger.error("whatsapp: {}; nothing is sent or received on WhatsApp until `{}` links this machine again "
                     "(then restart the service)", reason, link.LOGIN_COMMAND)

    # ----- groups ---------------------------------------------------------------------------------
    async def sync_groups(self, force: bool) -> None:
        """Every group the account is in, with its name, for main's `available_groups` (hourly unless forced)."""
        if self.client is None or (not force and time.monotonic() - self._synced_at < GROUP_SYNC_EVERY_S):
            return
        try:
            groups = await self.client.get_joined_groups()
        except Exception as exc:
            logger.warning("whatsapp: could not list the groups: {}", exc)
            return
        self._synced_at = time.monotonic()
        for group in groups:
            await self._group_seen(group)

    async def _group_seen(self, group: GroupInfo) -> None:
        jid = jid_of(group.JID)
        self._group_names[jid] = group.GroupName.Name or address(group.JID)
        await self.ctx.on_chat_metadata(jid, iso_now(), self._group_names[jid], self.name, True)

    async def _on_joined(self, _: NewAClient, event: JoinedGroupEv) -> None:
        await self._group_seen(event.GroupInfo)

    async def _on_group_info(self, _: NewAClient, event: GroupInfoEv) -> None:
        if event.HasField("Name") and event.Name.Name:
            jid = jid_of(event.JID)
            self._group_names[jid] = event.Name.Name
            await self.ctx.on_chat_metadata(jid, iso_now(), event.Name.Name, self.name, True)

    async def _chat_name(self, event: MessageEv) -> str:
        chat = event.Info.MessageSource.Chat
        jid = jid_of(chat)
        if chat.Server != GROUP_SERVER:
            return event.Info.Pushname if not event.Info.MessageSource.IsFromMe and event.Info.Pushname \
                else f"+{chat.User}"
        if jid not in self._group_names:
            try:
                self._group_names[jid] = (await self.client.get_group_info(chat)).GroupName.Name or chat.User
            except Exception as exc:
                logger.debug("whatsapp: no name for group {}: {}", jid, exc)
                return chat.User
        return self._group_names[jid]

    # ----- inbound ------------------------------------------------------------------------------
    async def _on_message(self, client: NewAClient, event: MessageEv) -> None:
        """Queued before anything is awaited: the library starts one task per event, in the order WhatsApp
        delivered them, and one reader records them in that order (behind a file being downloaded too)."""
        self._inbound.put_nowait((client, event))
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_inbound(), name="whatsapp inbound")

    async def _read_inbound(self) -> None:
        while True:
            client, event = await self._inbound.get()
            try:
                await self._receive(client, event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.opt(exception=exc).error("whatsapp: message {} in {} not recorded ({}: {})", event.Info.ID,
                                                jid_of(event.Info.MessageSource.Chat), type(exc).__name__, exc)
            finally:
                self._inbound.task_done()

    async def _receive(self, client: NewAClient, event: MessageEv) -> None:
        source = event.Info.MessageSource
        if source.Chat.Server not in ("s.whatsapp.net", GROUP_SERVER, "lid"):
            return  # status updates, broadcasts, channels (newsletters): not conversations
        jid = jid_of(source.Chat)
        await self.ctx.on_chat_metadata(jid, iso_now(), await self._chat_name(event), self.name, source.IsGroup)
        text = body(event.Message)[0].strip().lower()
        if text in COMMANDS and (self.own_number or source.IsFromMe):
            if self._commands.due(f"{jid} {text}"):
                await self._command(jid, text, await self._chat_name(event))
            return
        registered = self.ctx.registered(jid)
        if registered is None:
            await self._unregistered(jid, event)
            return
        extra = ""
        if (media := media_of(event.Message)) is not None:
            extra = await self._receive_media(client, registered.folder, event.Info.ID, *media)
        inbound = to_inbound(event, me=self.me, sent_ids=set(self._sent),
                             trigger=registered.trigger or self.settings.trigger, extra=extra)
        if inbound is not None:
            await self.ctx.on_message(self.name, inbound)

    async def _receive_media(self, client: NewAClient, folder: str, message_id: str, kind: str, only, name: str,
                             mime: str, size: int) -> str:
        """A file a person sent, fetched from WhatsApp's own media servers only.

        The message names a URL, but the sender writes it: it is dropped, so
        whatsmeow fetches by the media's path on WhatsApp's hosts. The size
        the sender declares is checked before anything is fetched; one
        declaring none is refused, as its download could not be bounded.
        """
        field = only.ListFields()[0][0].name
        getattr(only, field).ClearField("URL")
        if size <= 0:
            return f"[{kind}: {name}, not downloaded: it declares no size]"

        async def fetch() -> bytes:
            return await client.download_any(only)
        return await receive_files(self.settings, folder, message_id, [Incoming(name, kind, size, fetch)])

    async def _unregistered(self, jid: str, event: MessageEv) -> None:
        """A person writing to the assistant's own number is told how to register the chat (hourly at most).

        Never on a shared number, where the answer would come from the owner's account, nor in a group.
        """
        source = event.Info.MessageSource
        if self.own_number and not source.IsGroup and not source.IsFromMe and self._help.due(jid):
            await self._command(jid, "/chatid", await self._chat_name(event))
            return
        logger.debug("whatsapp: message in unregistered chat {} not recorded; /chatid there tells how to "
                     "register it", jid)

    async def _command(self, jid: str, command: str, name: str) -> None:
        if command == "/ping":
            text = f"{self.settings.assistant_name} is online."
        else:
            text = registration_help(jid, name, self.ctx.registered_groups(fresh=True).get(jid), self.settings.root,
                                     "whatsapp_family")
        try:
            await self._post(jid, lambda to: self.client.send_message(to, plain_message(to_whatsapp(text, self.prefix))))
        except Exception as exc:
            logger.warning("whatsapp: could not answer {} in {}: {}", command, jid, exc)

    # ----- outbound -----------------------------------------------------------------------------
    def split(self, text: str) -> list[str]:
        return split_message(text, self.prefix)

    async def send(self, jid: str, text: str, *, outbound_id: str, thread_id: str | None = None) -> None:
        await self._post(jid, lambda to: self.client.send_message(to, plain_message(to_whatsapp(text, self.prefix))))

    async def send_file(self, jid: str, file: OutboundFile, path: Path, caption: str, *, outbound_id: str,
                        thread_id: str | None = None) -> None:
        """An image WhatsApp can show goes as a photo; anything else (or an image it cannot read) as a document."""
        if file.size > MAX_DOCUMENT_BYTES:
            await super().send_file(jid, file, path, caption, outbound_id=outbound_id, thread_id=thread_id)
            return
        shown = to_whatsapp(caption, self.prefix) if caption or self.prefix else None

        async def build_and_send(to):
            data = await asyncio.to_thread(path.read_bytes)
            message = None
            if file.media_type in PHOTO_TYPES and file.size <= MAX_IMAGE_BYTES and await asyncio.to_thread(
                    _drawable, data):
                try:
                    message = _without_mentions(await self.client.build_image_message(data), "imageMessage", shown)
                except Exception as exc:  # the thumbnail could not be drawn: it goes as a document
                    logger.debug("whatsapp: {} goes as a document: {}", file.name, exc)
            if message is None:
                message = _without_mentions(await self.client.build_document_message(
                    data, title=file.name, filename=file.name, mimetype=file.media_type), "documentMessage", shown)
            return await self.client.send_message(to, message)
        await self._post(jid, build_and_send)

    async def _post(self, jid: str, send) -> None:
        to = to_jid(jid)
        await self._wait_connected(jid)
        response = await send(to)
        self._sent[response.ID] = None
        while len(self._sent) > SENT_IDS_KEPT:
            self._sent.popitem(last=False)

    async def _wait_connected(self, jid: str) -> None:
        if self._ended is not None or self.client is None:
            raise WhatsAppSendError(f"WhatsApp is not linked ({self._ended or 'no session'}): run "
                                    f"`{link.LOGIN_COMMAND}`")
        try:
            await asyncio.wait_for(self._connected.wait(), SEND_WAIT_S)
        except asyncio.TimeoutError:
            raise WhatsAppSendError(f"WhatsApp is not connected (waited {SEND_WAIT_S:g} s to send to {jid})") \
                from None

    async def set_typing(self, jid: str, on: bool) -> None:
        running = self._typing.pop(jid, None)
        if running is not None:
            running.cancel()
        if on:
            self._typing[jid] = asyncio.create_task(self._type(jid), name=f"whatsapp typing {jid}")
        elif self.is_connected():
            await self._quietly(self.client.send_chat_presence(
                to_jid(jid), ChatPresence.CHAT_PRESENCE_PAUSED, ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT), jid)

    async def _type(self, jid: str) -> None:
        while True:
            if self.is_connected():
                await self._quietly(self.client.send_chat_presence(
                    to_jid(jid), ChatPresence.CHAT_PRESENCE_COMPOSING, ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT),
                    jid)
            await asyncio.sleep(TYPING_RENEW_S)

    # ----- helpers --------------------------------------------------------------------------------
    @staticmethod
    async def _quietly(call, what: str) -> None:
        try:
            await call
        except Exception as exc:
            logger.debug("whatsapp {}: presence not shown: {}", what, exc)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _factory(ctx: ChannelContext) -> Channel | None:
    return WhatsAppChannel(ctx) if link.has_session(ctx.settings) else None


registry.register("whatsapp", _factory, jid_prefix=PREFIX)
