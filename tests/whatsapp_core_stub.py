"""A stand-in for whatsmeow, the Go core inside neonize's wheel, at the library's own FFI boundary.

No stand-in for WhatsApp's servers can be built (the protocol is end-to-end
encrypted with keys WhatsApp issues), so the tests replace the one thing
below neonize's Python client: the compiled core it calls through ctypes.
Everything above it is the real library: `NewAClient` builds and
serializes its protobuf messages, parses the core's protobuf answers
(raising its own errors on `Error`), and dispatches events through its own
`Event.execute` callback, called from the core's thread as Go calls it.

The stand-in keeps what a test needs to see (messages sent, presence, uploads)
and plays the other side: people's messages, QR codes, pairing, a dropped
connection, a logout. It outlives a client, so a restarted channel finds
what was sent before, as WhatsApp would.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import itertools
import json
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from neonize.aioze.client import NewAClient
from neonize.events import EVENT_TO_INT
from neonize.proto import Neonize_pb2 as N
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ContextInfo, ExtendedTextMessage, Message

BOT_NUMBER = "447700900077"
BOT_LID = "99887766554433"
BOT_DEVICE = 12
SENDERS_URL = "http://169.254.169.254/latest/meta-data/"  # what a hostile sender puts in a media message


def complete(message):
    """Every required field set, as the Go side always sends them (the library's types are proto2)."""
    for f in message.DESCRIPTOR.fields:
        if f.message_type is not None:
            if f.is_repeated:
                for item in getattr(message, f.name):
                    complete(item)
            elif f.is_required or message.HasField(f.name):
                getattr(message, f.name).SetInParent()
                complete(getattr(message, f.name))
        elif f.is_required and not message.HasField(f.name):
            setattr(message, f.name, f.default_value)
    return message


def wire(message) -> bytes:
    return complete(message).SerializeToString()


def jid(address: str, device: int = 0) -> N.JID:
    user, _, server = address.partition("@")
    return N.JID(User=user, Server=server or "s.whatsapp.net", Device=device, RawAgent=0, Integrator=0,
                 IsEmpty=False)


@dataclass
class Sent:
    to: str  # user@server
    message: Message
    id: str

    @property
    def text(self) -> str:
        m = self.message
        if m.conversation:
            return m.conversation
        if m.HasField("extendedTextMessage"):
            return m.extendedTextMessage.text
        for media in ("imageMessage", "documentMessage"):
            if m.HasField(media):
                return getattr(m, media).caption
        return ""


@dataclass
class Core:
    """One WhatsApp account, as the core (whatsmeow) shows it to the library."""

    linked: bool = True
    number: str = BOT_NUMBER
    sent: list[Sent] = field(default_factory=list)
    presence: list[tuple[str, int]] = field(default_factory=list)  # (chat, 0 composing / 1 paused)
    uploads: dict[str, bytes] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=lambda: {"120363000000000001@g.us": "Family"})
    send_error: str = ""  # the next sends fail with this, as the core reports an unreachable server
    qr_codes: tuple[str, ...] = ("2@stand-in-qr-one", "2@stand-in-qr-two")
    pairing_code: str = "ABCD-EFGH"
    connections: int = 0
    download_urls: list[str] = field(default_factory=list)
    spool: Path | None = None  # events to deliver arrive here as files, and sends are written here (`Spool`)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._actions: queue.Queue = queue.Queue()
        self._callbacks: dict | None = None
        self._running = threading.Event()
        self._stopped = threading.Event()
        self._subscribed: set[int] = set()

    # ----- what the library calls (the names and arguments of neonize's ctypes bindings) --------
    def Neonize(self, name, uuid, jidbuf, jidsize, new_device, level, qr_cb, login_cb, event_cb, log_cb,
                subscribers, n_subscribers, props, n_props, *rest):
        self._callbacks = {"qr": qr_cb, "event": event_cb, "uuid": uuid}
        self._subscribed = set(bytes(subscribers)[:n_subscribers])
        self._stopped.clear()
        self.connections += 1
        if self.linked:
            self._emit(N.Device(JID=jid(f"{self.number}@s.whatsapp.net", BOT_DEVICE), LID=jid(f"{BOT_LID}@lid"),
                                PushName="Andy", Initialized=True))
            self._emit(N.Connected(status=True))
        else:
            for code in self.qr_codes:
                self._show_qr(code)
        self._running.set()
        marker = Spool(self.spool).up(os.getpid()) if self.spool else None
        try:
            while not self._stopped.is_set():
                if self.spool:
                    for event in Spool(self.spool).take():
                        self._emit(event)
                try:
                    action = self._actions.get(timeout=0.05)
                except queue.Empty:
                    continue
                action()
        finally:
            self._running.clear()
            if marker is not None:
                marker.unlink(missing_ok=True)
        return None

    def Stop(self, uuid):
        self._stopped.set()
        return None

    def SendMessage(self, uuid, to, n_to, message, n_message):
        if self.send_error:
            return wire(N.SendMessageReturnFunction(Error=self.send_error))
        target = N.JID.FromString(to)
        sent = Sent(f"{target.User}@{target.Server}", Message.FromString(message),
                    f"3EB0{os.getpid():06X}{next(self._ids):06X}")
        self.sent.append(sent)
        if self.spool:
            Spool(self.spool).record(sent)
        return wire(N.SendMessageReturnFunction(SendResponse=N.SendResponse(ID=sent.id, Timestamp=int(time.time()))))

    def SendChatPresence(self, uuid, chat, n_chat, state, media):
        target = N.JID.FromString(chat)
        self.presence.append((f"{target.User}@{target.Server}", state))
        return b""

    def SendPresence(self, uuid, presence):
        return b""

    def GetMe(self, uuid):
        return wire(N.Device(JID=jid(f"{self.number}@s.whatsapp.net", BOT_DEVICE), LID=jid(f"{BOT_LID}@lid")))

    def GetJoinedGroups(self, uuid):
        return wire(N.GetJoinedGroupsReturnFunction(Group=[self._group(a) for a in self.groups]))

    def GetGroupInfo(self, uuid, group, n_group):
        target = N.JID.FromString(group)
        return wire(N.GetGroupInfoReturnFunction(GroupInfo=self._group(f"{target.User}@{target.Server}")))

    def Upload(self, uuid, data, n_data, media_type):
        url = f"https://mmg.stand-in/{len(self.uploads) + 1}"
        self.uploads[url] = bytes(data[:n_data])
        return wire(N.UploadReturnFunction(UploadResponse=N.UploadResponse(url=url, DirectPath=url, FileLength=n_data)))

    def DownloadAny(self, uuid, message, n_message):
        found = Message.FromString(message)
        for media in ("imageMessage", "videoMessage", "audioMessage", "documentMessage", "stickerMessage"):
            if found.HasField(media):
                self.download_urls.append(getattr(found, media).URL)  # what whatsmeow would fetch from first
                if getattr(found, media).directPath in self.uploads:
                    return wire(N.DownloadReturnFunction(Binary=self.uploads[getattr(found, media).directPath]))
        return wire(N.DownloadReturnFunction(Error="download failed with status code 404"))

    def PairPhone(self, uuid, payload, n_payload):
        params = N.PairPhoneParams.FromString(payload)
        self.paired_phone = params.phone
        return wire(N.PairPhoneReturnFunction(Code=self.pairing_code))

    def Logout(self, uuid):
        self.linked = False
        return b""

    # ----- the other side: what a test makes happen ----------------------------------------------
    def wait_running(self, timeout: float = 10) -> None:
        assert self._running.wait(timeout), "the library never called the core's Neonize()"

    def running(self) -> bool:
        return self._running.is_set()

    def deliver(self, event) -> None:
        """An event as the core dispatches it: from its own thread, through the library's callback."""
        self._actions.put(lambda: self._emit(event))

    def link_phone(self) -> None:
        """The phone accepted the link: the device exists now and connects."""
        def accept():
            self.linked = True
            self._emit(N.PairStatus(ID=jid(f"{self.number}@s.whatsapp.net"), Status=N.PairStatus.SUCCESS))
            self._emit(N.Device(JID=jid(f"{self.number}@s.whatsapp.net", BOT_DEVICE), LID=jid(f"{BOT_LID}@lid")))
            self._emit(N.Connected(status=True))
        self._actions.put(accept)

    def drop(self) -> None:
        self.send_error = "websocket not connected"
        self.deliver(N.Disconnected(status=True))

    def restore(self) -> None:
        self.send_error = ""
        self.deliver(N.Connected(status=True))

    def log_out(self, reason: int = N.ConnectFailureReason.LOGGED_OUT) -> None:
        self.linked = False
        self.deliver(N.LoggedOut(OnConnect=False, Reason=reason))

    def add_media(self, data: bytes) -> str:
        """A file on WhatsApp's media servers; returns its `directPath`."""
        path = f"/v/t62.7119-24/stand-in-{len(self.uploads) + 1}"
        self.uploads[path] = data
        return path

    # ----- inside --------------------------------------------------------------------------------
    def _emit(self, event) -> None:
        code = EVENT_TO_INT[type(event)]
        if code not in self._subscribed and code != 0:
            return
        data = wire(event)
        buffer = ctypes.create_string_buffer(data, len(data) or 1)
        self._callbacks["event"](self._callbacks["uuid"], ctypes.addressof(buffer), len(data), code)

    def _show_qr(self, code: str) -> None:
        buffer = ctypes.create_string_buffer(code.encode())
        self._callbacks["qr"](self._callbacks["uuid"], ctypes.addressof(buffer))

    def _group(self, address: str) -> N.GroupInfo:
        return N.GroupInfo(JID=jid(address), GroupName=N.GroupName(Name=self.groups.get(address, "")))


class Spool:
    """The stand-in reached from another process (a `nanoclaw run` the test kills): a folder of files.

    `in/` holds events to deliver, one serialized event per file, renamed into
    place whole and taken in name order; `sent.jsonl` has every message sent,
    by any process; `up/<pid>` says a core is connected, and a dead pid says
    it is not.
    """

    def __init__(self, path: Path):
        self.path = path
        for sub in ("in", "up"):
            (path / sub).mkdir(parents=True, exist_ok=True)

    def put(self, event) -> None:
        name = f"{time.time_ns():020d}-{type(event).__name__}"
        temp = self.path / f".{name}.tmp"
        temp.write_bytes(wire(event))
        temp.rename(self.path / "in" / f"{name}.ev")

    def take(self) -> list:
        events = []
        for file in sorted((self.path / "in").glob("*.ev")):
            data = file.read_bytes()
            file.unlink()
            events.append(getattr(N, file.stem.split("-", 1)[1]).FromString(data))
        return events

    def up(self, pid: int) -> Path:
        marker = self.path / "up" / str(pid)
        marker.touch()
        return marker

    def connected(self) -> bool:
        for marker in (self.path / "up").iterdir():
            try:
                os.kill(int(marker.name), 0)
                return True
            except (ProcessLookupError, ValueError):
                continue
        return False

    def record(self, sent: Sent) -> None:
        line = json.dumps({"to": sent.to, "id": sent.id, "message": base64.b64encode(
            sent.message.SerializeToString()).decode()})
        with open(self.path / "sent.jsonl", "a") as journal:
            journal.write(line + "\n")

    def sent(self) -> list[Sent]:
        journal = self.path / "sent.jsonl"
        if not journal.exists():
            return []
        rows = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
        return [Sent(r["to"], Message.FromString(base64.b64decode(r["message"])), r["id"]) for r in rows]


class _AsyncCore:
    """What neonize's `async_gocode` is: every core call run in a worker thread."""

    def __init__(self, core: Core):
        self._core = core

    def __getattr__(self, name: str):
        function = getattr(self._core, name)
        return lambda *args: asyncio.to_thread(function, *args)


def client_on(core: Core):
    """A `make_client` for the channel and for login: the real `NewAClient`, its core replaced by `core`."""
    def make(session: Path) -> NewAClient:
        client = NewAClient(str(session))
        client._NewAClient__client = _AsyncCore(core)
        client._stop_finalizer.detach()  # its finalizer would stop a session in the real core
        return client
    return make


def devices_of(core: Core):
    """What `linked_devices` reads from a session file: the account's number while it is linked."""
    return lambda session: [core.number] if core.linked else []


def message(chat: str, sender: str, text: str = "", *, id: str, from_me: bool = False, device: int = 0,
            push_name: str = "Alice", mentions: list[str] | None = None, quoted: tuple[str, str, str] | None = None,
            media: Message | None = None, timestamp: int | None = None) -> N.Message:
    """A message event as whatsmeow hands it to neonize (`Info` plus the decrypted `Message`)."""
    context = None
    if mentions or quoted:
        context = ContextInfo(mentionedJID=mentions or [])
        if quoted:
            context.stanzaID, context.participant = quoted[0], quoted[1]
            context.quotedMessage.CopyFrom(Message(conversation=quoted[2]))
    if media is not None:
        body = media
    elif context is not None:
        body = Message(extendedTextMessage=ExtendedTextMessage(text=text, contextInfo=context))
    else:
        body = Message(conversation=text)
    chat_jid = jid(chat)
    return N.Message(Info=N.MessageInfo(
        MessageSource=N.MessageSource(Chat=chat_jid, Sender=jid(sender, device), IsFromMe=from_me,
                                      IsGroup=chat_jid.Server == "g.us"),
        ID=id, Pushname=push_name, Timestamp=timestamp or int(time.time()), Type="text"), Message=body)
