"""WhatsApp through the real router: the real neonize client on a stand-in for its Go core.

What every channel does is in the channel contract; here is what is
WhatsApp's own: a number shared with the owner or the assistant's own,
quoted replies, mentions by number, groups synced with their names,
"typing…", photos out, `/chatid`, and a session that WhatsApp ends.
"""

from __future__ import annotations

import asyncio
import io
import time

from neonize.proto import Neonize_pb2 as N
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import AudioMessage, DocumentMessage, Message
from PIL import Image

from events import EventLog, types as t
from nanoclaw import doctor, status
from router.channels import whatsapp, whatsapp_link as link
from rules.groups import register_group
from rules.snapshots import groups_for
from tests import whatsapp_core_stub as wa, whatsapp_harness
from tests.live_router import fresh_settings, live_router, queue_file, until
from tests.observe import of_type
from tests.whatsapp_harness import ALICE, BOB, FAMILY, ME, SELF_CHAT, connected_channel, saved_file, say

core, own, shared = whatsapp_harness.core, whatsapp_harness.own, whatsapp_harness.shared  # the fixtures


def test_sharing_the_owners_number_replies_carry_the_name_and_the_owner_may_trigger(shared, core):
    settings, log = shared

    async def scenario():
        async with live_router(settings, log) as app:
            await connected_channel(app)
            say(core, ME, ME, "what is on today?", "OWN1", from_me=True, device=0)  # typed on the phone
            await until(lambda: of_type(log, t.AgentRunRequested), what="the owner's run")
            log.append(t.OutboundQueued(outbound_id="o1", chat_jid=SELF_CHAT, text="Nothing until **noon**."),
                       key="out:o1")
            await until(lambda: core.sent, what="the reply")

    asyncio.run(scenario())
    [message] = of_type(log, t.MessageReceived)
    assert (message.is_from_me, message.is_bot_message, message.sender) == (True, False, ME)
    assert [(s.to, s.text) for s in core.sent] == [(ME, "Andy: Nothing until *noon*.")]


def test_sharing_the_owners_number_the_assistants_own_messages_are_told_apart_by_event_not_by_text(shared, core):
    settings, log = shared

    async def scenario():
        async with live_router(settings, log) as app:
            await connected_channel(app)
            log.append(t.OutboundQueued(outbound_id="o1", chat_jid=SELF_CHAT, text="Done."), key="out:o1")
            await until(lambda: core.sent, what="the reply")
            sent_id = core.sent[0].id
            # the reply coming back (another device's copy of it), and one of this device's messages
            say(core, ME, ME, "Andy: Done.", sent_id, from_me=True, device=0)
            say(core, ME, ME, "@Andy from this device", "ECHO1", from_me=True, device=wa.BOT_DEVICE)
            # the owner typing the name prefix is still the owner
            say(core, ME, ME, "Andy: is this you?", "OWN2", from_me=True, device=0)
            await until(lambda: len(of_type(log, t.MessageReceived)) == 3, what="three messages")
            await until(lambda: of_type(log, t.AgentRunRequested), what="the owner's run")
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert [(m.content, m.is_bot_message) for m in of_type(log, t.MessageReceived)] == [
        ("Andy: Done.", True), ("@Andy from this device", True), ("Andy: is this you?", False)]
    [run] = of_type(log, t.AgentRunRequested)
    assert run.chat_jid == SELF_CHAT


def test_with_its_own_number_replies_are_plain_and_the_accounts_own_messages_never_wake_it(own, core):
    settings, log = own

    async def scenario():
        async with live_router(settings, log) as app:
            await connected_channel(app)
            say(core, ALICE, ME, "@Andy typed on the assistant's phone", "MINE1", from_me=True, device=0)
            say(core, ALICE, ALICE, "hello", "A1")
            await until(lambda: of_type(log, t.AgentRunRequested), what="Alice's run")
            log.append(t.OutboundQueued(outbound_id="o1", chat_jid=f"wa:{ALICE}", text="Hi **Alice**"),
                       key="out:o1")
            await until(lambda: core.sent, what="the reply")
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert [(m.content, m.is_bot_message) for m in of_type(log, t.MessageReceived)] == [
        ("@Andy typed on the assistant's phone", True), ("hello", False)]
    assert len(of_type(log, t.AgentRunRequested)) == 1
    assert [s.text for s in core.sent] == ["Hi *Alice*"]


def test_a_quoted_reply_carries_what_it_quotes_and_a_mention_by_lid_is_the_trigger(own, core):
    settings, log = own

    async def scenario():
        async with live_router(settings, log) as app:
            await connected_channel(app)
            say(core, FAMILY[3:], BOB, f"@{wa.BOT_LID} and this one?", "G1", push_name="Bob",
                 mentions=[f"{wa.BOT_LID}@lid"], quoted=("Q1", ALICE, "the pasta recipe"))
            await until(lambda: of_type(log, t.AgentRunRequested), what="the mention's run")

    asyncio.run(scenario())
    [message] = of_type(log, t.MessageReceived)
    assert (message.content, message.sender_name, message.sender) == ("@Andy and this one?", "Bob", BOB)
    # the quote's author is the sender's claim (WhatsApp does not check it), so it is not recorded as fact
    assert (message.reply_to_message_id, message.reply_to_message_content, message.reply_to_sender_name) == (
        "Q1", "the pasta recipe", None)
    assert [m.key for m in log.read_since(0, types=[t.MessageReceived], limit=None)] == [f"{FAMILY}:G1"]


def test_a_sender_named_by_lid_is_recorded_by_the_phone_number_whatsapp_gives_beside_it(own, core):
    settings, log = own
    event = wa.message(FAMILY[3:], "12345678901234@lid", "@Andy hi", id="L1", push_name="Bob")
    event.Info.MessageSource.SenderAlt.CopyFrom(wa.jid(BOB))

    async def scenario():
        async with live_router(settings, log) as app:
            await connected_channel(app)
            core.deliver(event)
            await until(lambda: of_type(log, t.MessageReceived), what="the message")

    asyncio.run(scenario())
    assert of_type(log, t.MessageReceived)[0].sender == BOB


def test_groups_are_synced_with_their_names_for_mains_available_groups(own, core):
    settings, log = own
    core.groups["120363000000000002@g.us"] = "Book club"

    async def scenario():
        async with live_router(settings, log) as app:
            await connected_channel(app)
            await until(lambda: len(of_type(log, t.ChatSeen)) >= 2, what="the groups")
            core.deliver(wa.complete(N.JoinedGroup(GroupInfo=N.GroupInfo(
                JID=wa.jid("120363000000000003@g.us"), GroupName=N.GroupName(Name="Climbing")))))
            await until(lambda: len(of_type(log, t.ChatSeen)) >= 3, what="the group joined")

    asyncio.run(scenario())
    seen = {(c.chat_jid, c.name, c.channel, c.is_group) for c in of_type(log, t.ChatSeen)}
    assert seen == {(FAMILY, "Family", "whatsapp", True), ("wa:120363000000000002@g.us", "Book club", "whatsapp", True),
                    ("wa:120363000000000003@g.us", "Climbing", "whatsapp", True)}
    assert {(g["jid"], g["name"]) for g in groups_for(log, True)} >= {
        ("wa:120363000000000002@g.us", "Book club"), ("wa:120363000000000003@g.us", "Climbing")}


def test_typing_is_shown_while_the_agent_works_and_stopped_after(own, core, monkeypatch):
    settings, log = own
    monkeypatch.setattr(whatsapp, "TYPING_RENEW_S", 0.1)

    async def scenario():
        async with live_router(settings, log) as app:
            channel = await connected_channel(app)
            await channel.set_typing(f"wa:{ALICE}", True)
            await until(lambda: len(core.presence) >= 2, what="typing renewed")
            await channel.set_typing(f"wa:{ALICE}", False)
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    states = [state for chat, state in core.presence if chat == ALICE]
    assert states[:2] == [0, 0] and states[-1] == 1 and 1 not in states[:-1]  # composing, renewed, then paused


def test_a_photo_goes_as_a_photo_with_its_caption(own, core):
    settings, log = own
    image = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(image, format="PNG")

    async def scenario():
        async with live_router(settings, log) as app:
            await connected_channel(app)
            queue_file(settings, log, "f1", "chart.png", image.getvalue(), "image/png", "the **chart**",
                       jid=f"wa:{ALICE}")
            await until(lambda: core.sent, what="the photo")

    asyncio.run(scenario())
    [sent] = core.sent
    assert sent.message.HasField("imageMessage")
    photo = sent.message.imageMessage
    assert (photo.caption, photo.mimetype, core.uploads[photo.URL]) == ("the *chart*", "image/png", image.getvalue())
    assert photo.JPEGThumbnail  # the library drew it


def test_a_voice_note_is_saved_for_the_agent_and_named_as_one(own, core):
    settings, log = own
    url = core.add_media(b"OggS" + b"\0" * 60)
    note = Message(audioMessage=AudioMessage(URL=wa.SENDERS_URL, directPath=url, mimetype="audio/ogg; codecs=opus",
                                             PTT=True, fileLength=64))

    async def scenario():
        async with live_router(settings, log) as app:
            await connected_channel(app)
            say(core, ALICE, ALICE, "", "V1", media=note)
            await until(lambda: of_type(log, t.MessageReceived), what="the voice note")

    asyncio.run(scenario())
    [message] = of_type(log, t.MessageReceived)
    assert message.content.startswith("[Voice message: /workspace/group/inbox/V1-1-")
    assert saved_file(settings, message.content).read_bytes().startswith(b"OggS")
    assert core.download_urls == [""]  # fetched by its path on WhatsApp's servers, never from the sender's URL


def test_chatid_is_answered_for_the_owner_and_nobody_else_on_a_shared_number(shared, core):
    settings, log = shared
    elsewhere = "120363000000000009@g.us"

    async def scenario():
        async with live_router(settings, log) as app:
            await connected_channel(app)
            say(core, elsewhere, BOB, "/chatid", "C1", push_name="Bob")
            say(core, elsewhere, ME, "/chatid", "C2", from_me=True)
            await until(lambda: core.sent, what="the answer")
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    [answer] = core.sent
    assert answer.to == elsewhere
    assert answer.text.startswith(f"Andy: This chat is wa:{elsewhere}.")
    assert f"nanoclaw groups add wa:{elsewhere}" in answer.text
    assert not of_type(log, t.MessageReceived)  # an unregistered chat's messages are not recorded


def test_a_logged_out_device_is_reported_in_status_doctor_and_the_log_and_replies_fail_with_the_fix(own, core):
    settings, log = own

    async def scenario():
        async with live_router(settings, log) as app:
            channel = await connected_channel(app)
            core.log_out()
            await until(lambda: not channel.is_connected(), what="the logout")
            await until(lambda: (link.read_state(settings) or link.LinkState(state="linked", at="")).state
                        == "logged_out", what="the state written")
            log.append(t.OutboundQueued(outbound_id="o1", chat_jid=f"wa:{ALICE}", text="late"), key="out:o1")
            await until(lambda: of_type(log, t.OutboundFailed), timeout=60, what="the reply given up")

    asyncio.run(scenario())
    assert link.read_state(settings).account == f"+{wa.BOT_NUMBER}"
    note = status.channel_notes(settings)["whatsapp"]
    assert note.startswith("NOT LINKED: logged out") and link.LOGIN_COMMAND in note
    check = doctor.check_whatsapp(settings)
    assert check.level == "fail" and link.LOGIN_COMMAND in check.fix
    [failed] = of_type(log, t.OutboundFailed)
    assert link.LOGIN_COMMAND in failed.reason
    assert not core.sent


def test_a_session_with_no_device_left_is_never_paired_by_the_service(own, core):
    settings, log = own
    core.linked = False  # logged out while the service was stopped

    async def scenario():
        async with live_router(settings, log) as app:
            channel = next(c for c in app.channels if c.name == "whatsapp")
            await asyncio.sleep(0.3)
            assert not channel.is_connected()

    asyncio.run(scenario())
    assert core.connections == 0  # no connection, so no QR code in the service's log
    assert link.read_state(settings).state == "logged_out"
    assert doctor.check_whatsapp(settings).level == "fail"


def test_without_a_linked_device_whatsapp_is_not_started_and_doctor_says_how_to_link_it(root, core):
    settings = fresh_settings()
    log = EventLog(settings.db_path)
    try:
        register_group(log, settings, jid=FAMILY, name="Family", folder="family")
        check = doctor.check_channels(settings, log)
    finally:
        log.close()
    assert "whatsapp" not in check.detail.split("ready: ")[1].split(";")[0]
    assert check.level == "warn" and link.LOGIN_COMMAND in check.detail
    assert doctor.check_whatsapp(settings) is None and status.channel_notes(settings) == {}


def test_messages_are_recorded_in_the_order_whatsapp_delivered_them_even_behind_a_slow_download(own, core):
    settings, log = own
    url = core.add_media(b"%PDF-1.4 " + b"x" * 200)
    slow = core.DownloadAny

    def slow_download(*args):
        time.sleep(0.5)
        return slow(*args)
    core.DownloadAny = slow_download
    lease = Message(documentMessage=DocumentMessage(URL=wa.SENDERS_URL, directPath=url, caption="first, with a file",
                                                    fileName="lease.pdf",
                                                    mimetype="application/pdf", fileLength=209))

    async def scenario():
        async with live_router(settings, log) as app:
            await connected_channel(app)
            say(core, ALICE, ALICE, "", "S0", media=lease)
            for n in range(1, 30):
                say(core, ALICE, ALICE if n % 2 else BOB, f"message {n}", f"S{n}")
            await until(lambda: len(of_type(log, t.MessageReceived)) == 30, what="every message")

    asyncio.run(scenario())
    ids = [m.message_id for m in of_type(log, t.MessageReceived)]
    assert ids == [f"S{n}" for n in range(30)]
