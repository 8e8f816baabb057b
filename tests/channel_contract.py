"""One driver per channel, so the channel contract (tests/test_channel_contract.py) is written once.

A driver starts the channel's stand-in server, points the service at it,
and plays the platform's people: it says things as a person, another bot or
the bot itself, delivers a message again, misbehaves on request (refuses
formatting, limits the rate, goes away) and reports what the chat was sent.
Each channel declares what it can do: the local chat has no bots, mentions,
rate limits, length limit (so no parts) or server to lose, so the contract items about them are not
generated for it (they appear in no test id, rather than as skips).
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from router.channels import discord_format, slack_format, telegram_format, whatsapp_format
from tests import discord_stub_api as dc, whatsapp_core_stub as wa
from tests.local_chat_harness import RawPeer
from tests.slack_harness import point_at
from tests.slack_stub_api import BOT_ID, BOT_USER, SlackStub
from tests.telegram_stub_api import BOT_USER as TG_BOT, TelegramStub, visible_text

EVERYTHING = frozenset({"bots", "mentions", "formatting", "rate_limit", "outage", "parts", "files", "away"})


@dataclass
class Said:
    """What a driver said, enough to deliver it again."""

    jid: str
    handle: object
    text: str = ""


@dataclass
class Shown:
    text: str  # what a person sees
    formatted: bool


@dataclass
class Driver:
    name: str
    main_jid: str  # a person's own chat with the assistant (answers everything)
    group_jid: str  # a group chat where the trigger is needed
    person: str  # the platform's user id of the person, as `MessageReceived.sender` records it
    other: str  # another person in the group
    can: frozenset[str] = field(default_factory=lambda: EVERYTHING)
    redelivers: bool = True  # the platform sends an unconfirmed message again to a restarted service
    service_module: str = "nanoclaw.cli"  # what a `nanoclaw run` process is started as
    service_env: dict[str, str] = field(default_factory=dict)

    def start(self, monkeypatch) -> None: ...
    def stop(self) -> None: ...
    def connected(self) -> bool: return True
    def say(self, jid: str, text: str, *, sender: str | None = None, mention: bool = False) -> Said: ...
    def say_as_bot(self, jid: str, text: str) -> None: ...
    def say_with_file(self, jid: str, text: str, name: str, data: bytes, media_type: str) -> None: ...
    def say_as_self(self, jid: str, text: str) -> None: ...
    def deliver_again(self, said: Said) -> None: ...
    def shown(self, jid: str) -> list[Shown]: ...
    def files_shown(self, jid: str) -> list[tuple[str, bytes, str]]: return []  # (name, data, caption as sent)
    def split(self, text: str) -> list[str]: return [text]
    def refuse_formatting(self) -> None: ...
    def rate_limit(self, retry_after_s: int) -> None: ...
    def rate_limited(self) -> int: return 0
    def go_away(self) -> None: ...
    def come_back(self) -> None: ...
    def not_listening(self) -> bool: return True  # the service's connection to the platform is closed
    def time_passes(self) -> None: ...  # longer than the platform retries a message nobody acknowledged


class LocalDriver(Driver):
    """The terminal chat: the router's own socket; a message is sent again with the same id."""

    def __init__(self):
        super().__init__("local", "local:me", "local:family", "local:alice", "local:bob",
                         can=frozenset(), redelivers=False)
        self._ids = itertools.count(1)
        self._threads: list[threading.Thread] = []
        self.answers: list[dict | None] = []
        self.settings = None

    def start(self, monkeypatch) -> None:
        pass

    def bind(self, settings) -> None:
        self.settings = settings

    def _peer(self) -> RawPeer:
        from router.channels.local import socket_path
        peer = RawPeer(socket_path(self.settings), timeout=10)
        assert peer.line()["op"] == "hello"
        return peer

    def connected(self) -> bool:
        from router.channels.local import socket_path
        return self.settings is not None and socket_path(self.settings).exists()

    def say(self, jid, text, *, sender=None, mention=False) -> Said:
        said = Said(jid, f"m{next(self._ids)}", text)
        self._send(said, sender or self.person)
        return said

    def _send(self, said: Said, sender: str) -> None:
        """Send from a thread of its own: the router may be running in the caller's event loop."""
        def exchange():
            peer = self._peer()
            try:
                peer.send({"op": "send", "jid": said.jid, "id": said.handle, "text": said.text,
                           "sender": sender.removeprefix("local:")})
                self.answers.append(peer.line())
            finally:
                peer.close()
        thread = threading.Thread(target=exchange, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        for thread in self._threads:
            thread.join(15)
        assert all(a is not None and a["op"] == "ack" for a in self.answers), self.answers

    def deliver_again(self, said: Said) -> None:
        self._send(said, self.person)

    def shown(self, jid) -> list[Shown]:
        transcript = self.settings.data_dir / "local" / f"{jid.split(':')[1]}.jsonl"
        if not transcript.exists():
            return []
        lines = [json.loads(line) for line in transcript.read_text().splitlines() if line.strip()]
        return [Shown(line["text"], False) for line in lines if line.get("kind") == "reply"]


class TelegramDriver(Driver):
    def __init__(self):
        super().__init__("telegram", "tg:42", "tg:-1009", "42", "43")
        self.stub = TelegramStub()
        self.alice = TelegramStub.user(42, "Alice")
        self.bob = TelegramStub.user(43, "Bob")
        self.bot = TelegramStub.user(77, "Weather Bot", is_bot=True)

    def start(self, monkeypatch) -> None:
        self.stub.start()
        self.chats = {"tg:42": self.stub.private_chat(self.alice), "tg:-1009": self.stub.group(-1009, "Family")}
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", self.stub.token)
        monkeypatch.setenv("TELEGRAM_API_BASE_URL", self.stub.url)

    def stop(self) -> None:
        self.stub.stop()

    def say(self, jid, text, *, sender=None, mention=False) -> Said:
        who = self.bob if sender == self.other else self.alice
        if mention:
            text = f"@{TG_BOT['username']} {text}"
            entities = [{"type": "mention", "offset": 0, "length": len(TG_BOT["username"]) + 1}]
        else:
            entities = None
        self.stub.say(self.chats[jid], who, text, entities=entities)
        return Said(jid, self.stub.last_update_id(), text)

    def say_as_bot(self, jid, text) -> None:
        self.stub.say(self.chats[jid], self.bot, text)

    def say_as_self(self, jid, text) -> None:
        self.stub.say(self.chats[jid], TG_BOT, text)

    def say_with_file(self, jid, text, name, data, media_type) -> None:
        if media_type.startswith("image/"):
            media = {"photo": [self.stub.add_file(data, width=1, height=1)]}
        else:
            media = {"document": self.stub.add_file(data, file_name=name, mime_type=media_type)}
        self.stub.say(self.chats[jid], self.alice, None, caption=text or None, **media)

    def deliver_again(self, said: Said) -> None:
        self.stub.deliver_again(said.handle)

    def shown(self, jid) -> list[Shown]:
        chat_id = int(jid.split(":")[1])
        return [Shown(s.shown, s.parse_mode is not None) for s in self.stub.sent if s.chat_id == chat_id]

    def files_shown(self, jid) -> list[tuple[str, bytes, str]]:
        chat_id = int(jid.split(":")[1])
        return [(f.filename, f.data, visible_text(f.caption or "")) for f in self.stub.files if f.chat_id == chat_id]

    def split(self, text: str) -> list[str]:
        return [visible_text(telegram_format.to_telegram_html(p)) for p in telegram_format.split_message(text)]

    def refuse_formatting(self) -> None:
        self.stub.refuse_formatting(1)

    def rate_limit(self, retry_after_s: int) -> None:
        self.stub.flood_limit(answers=1, retry_after_s=retry_after_s)

    def rate_limited(self) -> int:
        return len(self.stub.rate_limited)

    def go_away(self) -> None:
        self.stub.stop()

    def come_back(self) -> None:
        self.stub.start()


class WebSocketStubDriver(Driver):
    """A channel whose stand-in is a `StubServer` (Slack's, Discord's): the same knobs for limits and outages."""

    stub: object

    def stop(self) -> None:
        self.stub.stop()

    def rate_limit(self, retry_after_s: int) -> None:
        self.stub.flood_limit(answers=1, retry_after_s=retry_after_s)

    def rate_limited(self) -> int:
        return self.stub.rate_limited

    def go_away(self) -> None:
        self.stub.go_away()

    def come_back(self) -> None:
        self.stub.come_back()

    def not_listening(self) -> bool:
        return not self.stub.connected()


class SlackDriver(WebSocketStubDriver):
    def __init__(self):
        super().__init__("slack", "slack:D0ALICE", "slack:C0FAMILY", "U0ALICE", "U0BOB")
        self.stub = SlackStub()

    def start(self, monkeypatch) -> None:
        self.stub.start()
        self.stub.user("U0ALICE", "Alice")
        self.stub.user("U0BOB", "Bob")
        self.stub.channel("D0ALICE", "U0ALICE", kind="im")
        self.stub.channel("C0FAMILY", "family")
        point_at(self.stub, monkeypatch)

    def connected(self) -> bool:
        return self.stub.connected()

    def say(self, jid, text, *, sender=None, mention=False) -> Said:
        channel = jid.split(":")[1]
        shown = f"<@{BOT_USER}> {text}" if mention else text
        envelope, _ = self.stub.say(channel, sender or self.person, shown)
        return Said(jid, envelope, text)

    def say_as_bot(self, jid, text) -> None:
        self.stub.say(jid.split(":")[1], None, text, bot_id="B0WEATHER", subtype="bot_message")

    def say_with_file(self, jid, text, name, data, media_type) -> None:
        self.stub.say(jid.split(":")[1], self.person, text, files=[self.stub.add_file(name, data, media_type)])

    def say_as_self(self, jid, text) -> None:
        self.stub.say(jid.split(":")[1], BOT_USER, text, bot_id=BOT_ID)

    def deliver_again(self, said: Said) -> None:
        self.stub.deliver_again(said.handle)

    def shown(self, jid) -> list[Shown]:
        channel = jid.split(":")[1]
        return [Shown(p.shown, bool(p.blocks)) for p in self.stub.sent if p.channel == channel]

    def files_shown(self, jid) -> list[tuple[str, bytes, str]]:
        return [(u.name, u.data, u.comment or "") for u in self.stub.uploads if u.channel == jid.split(":")[1]]

    def split(self, text: str) -> list[str]:
        return [slack_format.to_mrkdwn(p) for p in slack_format.split_message(text)]

    def refuse_formatting(self) -> None:
        self.stub.refuse_formatting(1)

    def time_passes(self) -> None:
        self.stub.give_up_retries()


class DiscordDriver(WebSocketStubDriver):
    """Discord's gateway does not send a message again after a crash; a resumed session replays it."""

    def __init__(self):
        super().__init__("discord", "dc:800000000000000001", "dc:810000000000000001", "700000000000000001",
                         "700000000000000002", can=EVERYTHING - {"formatting"}, redelivers=False)
        self.stub = dc.DiscordStub()
        self.people = {self.person: dc.user(self.person, "Alice"), self.other: dc.user(self.other, "Bob")}
        self.weather = dc.user("700000000000000077", "Weather Bot", bot=True)

    def start(self, monkeypatch) -> None:
        self.stub.start()
        self.stub.dm(self.main_jid[3:], self.people[self.person])
        self.stub.text_channel(self.group_jid[3:], "family")
        monkeypatch.setenv("DISCORD_BOT_TOKEN", self.stub.token)
        monkeypatch.setenv("DISCORD_API_BASE_URL", self.stub.url)

    def connected(self) -> bool:
        return self.stub.ready()

    def say(self, jid, text, *, sender=None, mention=False) -> Said:
        shown = f"<@{dc.BOT_ID}> {text}" if mention else text
        data = self.stub.say(jid[3:], self.people[sender or self.person], shown,
                             mentions=[dc.BOT_USER] if mention else None)
        return Said(jid, data, text)

    def say_as_bot(self, jid, text) -> None:
        self.stub.say(jid[3:], self.weather, text)

    def say_with_file(self, jid, text, name, data, media_type) -> None:
        self.stub.say(jid[3:], self.people[self.person], text, attachments=[(name, data, media_type)])

    def say_as_self(self, jid, text) -> None:
        self.stub.say(jid[3:], dc.BOT_USER, text)

    def deliver_again(self, said: Said) -> None:
        self.stub.deliver_again(said.handle)

    def shown(self, jid) -> list[Shown]:
        return [Shown(p.shown, True) for p in self.stub.sent if p.channel == jid[3:]]

    def files_shown(self, jid) -> list[tuple[str, bytes, str]]:
        return [(name, data, p.content) for p in self.stub.sent if p.channel == jid[3:] for name, data in p.files]

    def split(self, text: str) -> list[str]:
        return [discord_format.to_discord(p) for p in discord_format.split_message(text)]


class WhatsAppDriver(Driver):
    """WhatsApp up to the library's boundary: the real neonize client on a stand-in for its Go core.

    The assistant has its own number here (replies plain, the account's own
    messages are the assistant's); tests/test_whatsapp.py covers a shared
    number. WhatsApp has no bots and never refuses formatting; its rate
    limits are the core's to meet, which the stand-in does not model, and
    so is handing a device what was sent while it was away ("away").
    People's messages and what was sent go through the stand-in's folder
    (`Spool`), so a `nanoclaw run` process (tests/whatsapp_service.py) and
    the router in this process are driven alike.
    """

    def __init__(self):
        super().__init__("whatsapp", "wa:447700900001@s.whatsapp.net", "wa:120363000000000001@g.us",
                         "447700900001@s.whatsapp.net", "447700900002@s.whatsapp.net",
                         can=EVERYTHING - {"bots", "formatting", "rate_limit", "away"}, redelivers=False,
                         service_module="tests.whatsapp_service")
        self.folder = Path(tempfile.mkdtemp(prefix="wa-standin-"))
        self.spool = wa.Spool(self.folder)
        checkout = str(Path(__file__).resolve().parents[1])  # the service runs in the install root: find `tests`
        self.service_env = {"WA_STANDIN_DIR": str(self.folder), "PYTHONPATH": checkout}
        self.core = wa.Core(spool=self.folder)
        self._ids = itertools.count(1)
        self.names = {self.person: "Alice", self.other: "Bob"}

    def start(self, monkeypatch) -> None:
        from router.channels import whatsapp
        monkeypatch.setattr(whatsapp, "new_client", wa.client_on(self.core))
        monkeypatch.setattr(whatsapp, "linked_devices", wa.devices_of(self.core))
        monkeypatch.setenv("ASSISTANT_HAS_OWN_NUMBER", "true")

    def bind(self, settings) -> None:
        from router.channels import whatsapp_link
        whatsapp_link.ensure_folder(settings)
        whatsapp_link.session_path(settings).touch()

    def stop(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def connected(self) -> bool:
        return self.spool.connected()

    def _deliver(self, jid: str, sender: str, text: str = "", **kw) -> Said:
        event = wa.message(jid[3:], sender, text, id=f"3A{next(self._ids):010d}", push_name=self.names.get(
            sender, "Andy"), **kw)
        self.spool.put(event)
        return Said(jid, event, text)

    def say(self, jid, text, *, sender=None, mention=False) -> Said:
        if mention:
            return self._deliver(jid, sender or self.person, f"@{wa.BOT_NUMBER} {text}",
                                 mentions=[f"{wa.BOT_NUMBER}@s.whatsapp.net"])
        return self._deliver(jid, sender or self.person, text)

    def say_as_self(self, jid, text) -> None:
        self._deliver(jid, f"{wa.BOT_NUMBER}@s.whatsapp.net", text, from_me=True)

    def say_with_file(self, jid, text, name, data, media_type) -> None:
        from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import DocumentMessage, ImageMessage, Message
        url = self.core.add_media(data)
        if media_type.startswith("image/"):
            media = Message(imageMessage=ImageMessage(URL=wa.SENDERS_URL, directPath=url, caption=text,
                                                      mimetype=media_type,
                                                      fileLength=len(data)))
        else:
            media = Message(documentMessage=DocumentMessage(URL=wa.SENDERS_URL, directPath=url, caption=text,
                                                            mimetype=media_type,
                                                            fileName=name, fileLength=len(data)))
        self._deliver(jid, self.person, media=media)

    def deliver_again(self, said: Said) -> None:
        self.spool.put(said.handle)

    def shown(self, jid) -> list[Shown]:
        return [Shown(s.text, "*" in s.text) for s in self.spool.sent() if s.to == jid[3:]
                and not s.message.HasField("documentMessage") and not s.message.HasField("imageMessage")]

    def files_shown(self, jid) -> list[tuple[str, bytes, str]]:
        shown = []
        for s in self.core.sent:
            if s.to == jid[3:] and s.message.HasField("documentMessage"):
                doc = s.message.documentMessage
                shown.append((doc.fileName, self.core.uploads[doc.URL], doc.caption))
        return shown

    def split(self, text: str) -> list[str]:
        return [whatsapp_format.to_whatsapp(p) for p in whatsapp_format.split_message(text)]

    def go_away(self) -> None:
        self.core.drop()

    def come_back(self) -> None:
        self.core.restore()


DRIVERS = {"local": LocalDriver, "telegram": TelegramDriver, "slack": SlackDriver, "discord": DiscordDriver,
           "whatsapp": WhatsAppDriver}


def drivers_that_can(*needs: str) -> list[str]:
    return [name for name, cls in DRIVERS.items() if set(needs) <= cls().can]


def write_allowlist(path: Path, chat: str, allowed: list[str], mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"default": {"allow": "*", "mode": "trigger"},
                                "chats": {chat: {"allow": allowed, "mode": mode}}}))
