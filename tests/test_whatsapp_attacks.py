"""WhatsApp attacked: what a hostile sender, a hostile agent or a session's end can do, and what stops it.

The real router and neonize client on the stand-in core, as in
tests/test_whatsapp.py: files fetched only from WhatsApp's servers and
only within their declared size, replies that mention nobody, a shared
number's owner mentioned, forged quotes, huge text, command floods, a
session WhatsApp ends in each way it can, the device keys' modes, and
what was taken in when the service stops.
"""

from __future__ import annotations

import asyncio
import io
import time

import pytest
from neonize.proto import Neonize_pb2 as N
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import DocumentMessage, Message
from PIL import Image

from events import types as t
from nanoclaw import status
from router.channels import whatsapp, whatsapp_link as link
from tests import whatsapp_core_stub as wa, whatsapp_harness
from tests.live_router import fresh_settings, live_router, queue_file, until
from tests.observe import of_type
from tests.whatsapp_harness import ALICE, BOB, FAMILY, ME, connected_channel, saved_file, say

core, own, shared = whatsapp_harness.core, whatsapp_harness.own, whatsapp_harness.shared  # the fixtures


def test_a_stranger_writing_to_the_assistants_own_number_is_told_how_to_register_the_chat_once_an_hour(own, core):
    settings, log = own
    stranger = "447700900055@s.whatsapp.net"

    async def scenario():
        async with live_router(settings, log) as app:
            await connected_channel(app)
            say(core, stranger, stranger, "hello?", "X1", push_name="Sam")
            say(core, stranger, stranger, "anyone?", "X2", push_name="Sam")
            say(core, "120363000000000009@g.us", stranger, "in a group", "X3", push_name="Sam")
            await until(lambda: core.sent, what="the answer")
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    [answer] = core.sent
    assert answer.to == stranger and answer.text.startswith(f"This chat is wa:{stranger}.")
    assert not of_type(log, t.MessageReceived)


def test_hostile_input_is_recorded_or_refused_and_never_stops_the_channel(own, core):
    settings, log = own
    url = core.add_media(b"#!/bin/sh\nrm -rf /\n")
    planted = Message(documentMessage=DocumentMessage(URL=wa.SENDERS_URL, directPath=url,
                                                      fileName="../../../../etc/cron.d/x", caption="see",
                                                      mimetype="text/x-sh", fileLength=20))
    oddities = [Message(locationMessage={"degreesLatitude": 51.5, "degreesLongitude": -0.1}),
                Message(pollCreationMessage={"name": "lunch?"}), Message()]
    huge = "x" * 200_000

    async def scenario():
        async with live_router(settings, log) as app:
            channel = await connected_channel(app)
            say(core, ALICE, ALICE, "", "H1", media=planted)
            for n, odd in enumerate(oddities):
                say(core, ALICE, ALICE, "", f"O{n}", media=odd)
            say(core, "status@broadcast", ALICE, "my status", "B1")
            say(core, ALICE, ALICE, huge, "H2")
            say(core, ALICE, ALICE, "still here", "H3")
            await until(lambda: len(of_type(log, t.MessageReceived)) == 3, what="the messages a person wrote")
            assert channel.is_connected()

    asyncio.run(scenario())
    file_msg, big, last = of_type(log, t.MessageReceived)
    assert saved_file(settings, file_msg.content).is_file()
    assert not (settings.root / "etc").exists()
    assert big.content.startswith("x" * 65_536 + "\n[... cut: 200,000 characters in all]")
    assert last.content == "still here"


def test_a_file_declaring_no_size_or_too_large_a_size_is_not_fetched_at_all(own, core):
    settings, log = own
    path = core.add_media(b"x" * 100)
    undeclared = Message(documentMessage=DocumentMessage(directPath=path, fileName="a.bin", fileLength=0))
    huge = Message(documentMessage=DocumentMessage(directPath=path, fileName="b.bin", fileLength=2_000_000_000))

    async def scenario():
        async with live_router(settings, log) as app:
            await connected_channel(app)
            say(core, ALICE, ALICE, "", "Z1", media=undeclared)
            say(core, ALICE, ALICE, "", "Z2", media=huge)
            await until(lambda: len(of_type(log, t.MessageReceived)) == 2, what="both messages")

    asyncio.run(scenario())
    assert [m.content for m in of_type(log, t.MessageReceived)] == [
        "[Document: a.bin, not downloaded: it declares no size]",
        "[Document: b.bin, not downloaded: it is 1907.3 MB and files up to 20.0 MB are]"]
    assert core.download_urls == []


def test_the_agents_words_mention_nobody_and_look_up_no_group(own, core):
    settings, log = own
    image = io.BytesIO()
    Image.new("RGB", (4, 4)).save(image, format="PNG")

    async def scenario():
        async with live_router(settings, log) as app:
            await connected_channel(app)
            text = "Ask @447700900002 and @0, or everyone in @120363000000000001@g.us"
            log.append(t.OutboundQueued(outbound_id="o1", chat_jid=FAMILY, text=text), key="out:o1")
            queue_file(settings, log, "f1", "a.png", image.getvalue(), "image/png", "see @447700900002", jid=FAMILY)
            queue_file(settings, log, "f2", "a.txt", b"notes", "text/plain", "and @447700900002", jid=FAMILY)
            await until(lambda: len(core.sent) == 3, what="the three replies")

    asyncio.run(scenario())
    text, photo, document = (s.message for s in core.sent)
    assert text.conversation.startswith("Ask @447700900002") and not text.HasField("extendedTextMessage")
    assert not photo.imageMessage.HasField("contextInfo") and photo.imageMessage.caption == "see @447700900002"
    assert not document.documentMessage.HasField("contextInfo")


def test_on_a_shared_number_a_mention_of_the_owner_is_for_the_owner(shared, core):
    settings, log = shared

    async def scenario():
        async with live_router(settings, log) as app:
            await connected_channel(app)
            say(core, FAMILY[3:], BOB, f"@{wa.BOT_NUMBER} are you coming?", "S1", push_name="Bob",
                 mentions=[ME])
            await until(lambda: of_type(log, t.MessageReceived), what="the message")
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert of_type(log, t.MessageReceived)[0].content == f"@{wa.BOT_NUMBER} are you coming?"
    assert not of_type(log, t.AgentRunRequested)


def test_commands_are_answered_once_a_minute_per_chat(own, core):
    settings, log = own

    async def scenario():
        async with live_router(settings, log) as app:
            await connected_channel(app)
            for n in range(5):
                say(core, ALICE, ALICE, "/ping", f"P{n}")
            await until(lambda: core.sent, what="the answer")
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert [s.text for s in core.sent] == ["Andy is online."]


@pytest.mark.parametrize("end, state", [
    (lambda core: core.deliver(wa.complete(N.TemporaryBan(Code=N.TemporaryBan.SENT_TOO_MANY_SAME_MESSAGE,
                                                           Expire=3600))), "banned"),
    (lambda core: core.deliver(N.StreamReplaced()), "replaced"),
    (lambda core: core.deliver(wa.complete(N.ClientOutdated())), "logged_out"),
    (lambda core: core._actions.put(lambda: core._show_qr("2@pair-me-again")), "logged_out"),
], ids=["banned", "replaced", "outdated", "offered-pairing"])
def test_a_session_that_ends_stops_the_connection_and_says_why(own, core, end, state, capsys):
    settings, log = own

    async def scenario():
        async with live_router(settings, log) as app:
            channel = await connected_channel(app)
            end(core)
            await until(lambda: not core.running(), what="the connection stopped")
            assert not channel.is_connected()

    asyncio.run(scenario())
    assert link.read_state(settings).state == state
    assert link.LOGIN_COMMAND in status.channel_notes(settings)["whatsapp"] or state == "banned"
    assert "2@pair-me-again" not in capsys.readouterr().out  # no QR code is drawn by the service


def test_the_session_files_are_the_service_users_alone_onceconnected_channel(own, core):
    settings, log = own
    session = link.session_path(settings)
    session.chmod(0o644)
    session.with_name("session.db-wal").write_bytes(b"")

    async def scenario():
        async with live_router(settings, log) as app:
            await connected_channel(app)

    asyncio.run(scenario())
    assert {p.name: p.stat().st_mode & 0o777 for p in link.folder(settings).glob("session.db*")} == {
        "session.db": 0o600, "session.db-wal": 0o600}


def test_messages_taken_from_whatsapp_are_recorded_before_the_service_stops(own, core):
    settings, log = own
    path = core.add_media(b"%PDF-1.4 " + b"y" * 100)
    slow, started = core.DownloadAny, []
    core.DownloadAny = lambda *args: (started.append(1), time.sleep(1.0), slow(*args))[2]
    doc = Message(documentMessage=DocumentMessage(directPath=path, fileName="a.pdf", fileLength=109))

    async def scenario():
        async with live_router(settings, log) as app:
            await connected_channel(app)
            say(core, ALICE, ALICE, "", "D1", media=doc)
            say(core, ALICE, ALICE, "behind the file", "D2")
            await until(lambda: started, what="the download to start")
            await asyncio.sleep(0.1)  # both taken from WhatsApp; the service stops while the file downloads

    asyncio.run(scenario())
    assert [m.message_id for m in of_type(log, t.MessageReceived)] == ["D1", "D2"]


def test_the_linked_device_is_read_from_whatsmeows_table_whatever_the_accounts_name(root):
    import sqlite3
    settings = fresh_settings()
    session = link.ensure_folder(settings) / "session.db"
    with sqlite3.connect(session) as db:
        db.execute("CREATE TABLE whatsmeow_device (jid TEXT PRIMARY KEY, push_name TEXT, business_name TEXT)")
        db.execute("INSERT INTO whatsmeow_device VALUES ('447700900077.0:12@s.whatsapp.net', 'Acme, Inc.', 'A, B')")
    assert whatsapp.linked_devices(session) == ["447700900077"]
    assert whatsapp.linked_devices(session.with_name("none.db")) == []
    empty = session.with_name("empty.db")
    sqlite3.connect(empty).close()
    assert whatsapp.linked_devices(empty) == []
