"""Telegram inbound through the real router: messages become events once, /chatid, start-up.

Every test runs `RouterApp` with its real event log against the stand-in
Bot API (tests/telegram_stub_api.py), reached by python-telegram-bot over
HTTP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from loguru import logger

from base.config import ConfigError, load_settings
from events import types as t
from router.app import RouterApp
from router.channels.base import ChannelStartError
from rules.groups import register_group
from tests.live_router import start_and_stop
from tests.telegram_harness import (ALICE, BOB, keys_of, live_router, of_type, stub,  # noqa: F401  (fixtures)
                                    tg_log, tg_settings, until)
from tests.telegram_stub_api import BOT_USER, TOKEN, TelegramStub


def test_a_message_in_a_registered_chat_becomes_an_event_and_the_reply_goes_back(stub, tg_settings, tg_log):
    chat = stub.private_chat(ALICE)
    register_group(tg_log, tg_settings, jid="tg:42", name="Alice", folder="main", is_main=True)

    async def scenario():
        async with live_router(tg_settings, tg_log):
            said = stub.say(chat, ALICE, "what is the weather?")
            await until(lambda: of_type(tg_log, t.AgentRunRequested), what="a run request")
            tg_log.append(t.OutboundQueued(outbound_id="o1", chat_jid="tg:42", text="**Sunny**, 21 °C."))
            await until(lambda: of_type(tg_log, t.OutboundSent), what="the reply to be sent")
            return said

    said = asyncio.run(scenario())
    [message] = of_type(tg_log, t.MessageReceived)
    assert (message.chat_jid, message.sender, message.sender_name, message.content, message.channel) == (
        "tg:42", "42", "Alice Smith", "what is the weather?", "telegram")
    assert keys_of(tg_log, t.MessageReceived) == [f"tg:42:{said['message_id']}"]
    assert [(c.name, c.is_group, c.channel) for c in of_type(tg_log, t.ChatSeen)] == [
        ("Alice Smith", False, "telegram")]
    [reply] = stub.sent
    assert (reply.chat_id, reply.parse_mode, reply.text, reply.shown) == (
        42, "HTML", "<b>Sunny</b>, 21 °C.", "Sunny, 21 °C.")
    assert [s.channel for s in of_type(tg_log, t.OutboundSent)] == ["telegram"]


def test_a_group_records_its_title_senders_replies_and_bots(stub, tg_settings, tg_log):
    family = stub.group(-1001234567890, "Family")
    other_bot = TelegramStub.user(77, "Weather Bot", is_bot=True)
    register_group(tg_log, tg_settings, jid="tg:-1001234567890", name="Family", folder="family")

    async def scenario():
        async with live_router(tg_settings, tg_log):
            first = stub.say(family, BOB, "do we need milk?")
            stub.say(family, ALICE, "@Andy buy it", reply_to=first)
            stub.say(family, other_bot, "rain at 5pm")
            mine = stub.say(family, BOT_USER, "Noted.")
            stub.say(family, BOB, "thanks", reply_to=mine)
            stub.say(family, ALICE, caption="the list", photo=[stub.add_file(b"\xff\xd8\xff\xe0" + b"\0" * 60,
                                                                              width=1, height=1)])
            await until(lambda: len(of_type(tg_log, t.MessageReceived)) == 6, what="six messages")
            await until(lambda: of_type(tg_log, t.AgentRunRequested), what="the trigger's run request")

    asyncio.run(scenario())
    by_content = {m.content.split("\n")[0]: m for m in of_type(tg_log, t.MessageReceived)}
    reply = by_content["@Andy buy it"]
    assert (reply.sender_name, reply.reply_to_message_content, reply.reply_to_sender_name) == (
        "Alice Smith", "do we need milk?", "Bob")
    assert reply.reply_to_message_id == str(by_content["do we need milk?"].message_id)
    assert (by_content["rain at 5pm"].is_bot_message, by_content["rain at 5pm"].is_from_me) == (True, False)
    assert (by_content["Noted."].is_from_me, by_content["Noted."].is_bot_message) == (True, True)
    assert by_content["thanks"].reply_to_sender_name == "Andy"  # quoting the assistant's own message
    photo = by_content["the list"]
    assert photo.sender == "42" and "\n[Photo: /workspace/group/inbox/" in photo.content and "(image/jpeg" in photo.content
    assert [(c.name, c.is_group) for c in of_type(tg_log, t.ChatSeen)] == [("Family", True)]
    assert [r.chat_jid for r in of_type(tg_log, t.AgentRunRequested)] == ["tg:-1001234567890"]


def test_mentioning_the_bot_by_its_username_counts_as_the_trigger(stub, tg_settings, tg_log):
    family = stub.group(-100200, "Family")
    register_group(tg_log, tg_settings, jid="tg:-100200", name="Family", folder="family")

    async def scenario():
        async with live_router(tg_settings, tg_log):
            stub.say(family, ALICE, "hey @andy_test_bot what's for dinner?",
                     entities=[{"type": "mention", "offset": 4, "length": 14}])
            return await until(lambda: of_type(tg_log, t.AgentRunRequested), what="a run request")

    asyncio.run(scenario())
    assert [m.content for m in of_type(tg_log, t.MessageReceived)] == ["@Andy hey @andy_test_bot what's for dinner?"]


def test_a_mention_stands_for_the_groups_own_trigger(stub, tg_settings, tg_log):
    club = stub.group(-100201, "Club")
    register_group(tg_log, tg_settings, jid="tg:-100201", name="Club", folder="club", trigger="@Bob")

    async def scenario():
        async with live_router(tg_settings, tg_log):
            stub.say(club, ALICE, "@andy_test_bot any news?", entities=[{"type": "mention", "offset": 0, "length": 14}])
            return await until(lambda: of_type(tg_log, t.AgentRunRequested), what="a run request")

    asyncio.run(scenario())
    assert [m.content for m in of_type(tg_log, t.MessageReceived)] == ["@Bob any news?"]


def test_an_unregistered_chat_is_seen_but_its_messages_are_not_recorded(stub, tg_settings, tg_log):
    strangers = stub.group(-100300, "Strangers")

    async def scenario():
        async with live_router(tg_settings, tg_log):
            stub.say(strangers, BOB, "hello?")
            await until(lambda: stub.confirmed_offset > stub.last_update_id(), what="the update to be handled")

    asyncio.run(scenario())
    assert of_type(tg_log, t.MessageReceived) == []
    assert [(c.chat_jid, c.name, c.is_group) for c in of_type(tg_log, t.ChatSeen)] == [
        ("tg:-100300", "Strangers", True)]


def test_chatid_answers_with_the_jid_and_the_command_that_registers_it(stub, tg_settings, tg_log):
    club = stub.group(-100555, 'Book "club"')

    async def scenario():
        async with live_router(tg_settings, tg_log):
            stub.say(club, ALICE, "/chatid")
            await until(lambda: stub.sent, what="the answer")
            register_group(tg_log, tg_settings, jid="tg:-100555", name="Books", folder="books")
            stub.say(club, ALICE, "/chatid@andy_test_bot")
            stub.say(club, ALICE, "/chatid@some_other_bot")
            await until(lambda: len(stub.sent) == 2 and of_type(tg_log, t.MessageReceived), what="two answers")

    asyncio.run(scenario())
    first, second = (s.shown for s in stub.sent)
    assert "This chat is tg:-100555." in first
    assert ".venv/bin/nanoclaw groups add tg:-100555 --name \"Book 'club'\" --folder FOLDER" in first
    assert f"run in the NanoClaw folder ({tg_settings.root})" in first
    assert "registered as a group ('Books', folder books)" in second
    assert [m.content for m in of_type(tg_log, t.MessageReceived)] == ["/chatid@some_other_bot"]


def test_a_redelivered_update_is_stored_once(stub, tg_settings, tg_log):
    chat = stub.private_chat(ALICE)
    register_group(tg_log, tg_settings, jid="tg:42", name="Alice", folder="main", is_main=True)

    async def scenario():
        async with live_router(tg_settings, tg_log):
            stub.say(chat, ALICE, "only once")
            await until(lambda: of_type(tg_log, t.MessageReceived), what="the message")
        update_id = stub.last_update_id()
        stub.deliver_again(update_id)  # as after a crash before the router confirmed it
        async with live_router(tg_settings, tg_log):
            await until(lambda: any(m == "getUpdates" and (p.get("offset") or 0) > update_id
                                    for m, p, _ in stub.calls[-3:]), what="the redelivery to be handled")
            stub.say(chat, ALICE, "and this")
            await until(lambda: len(of_type(tg_log, t.MessageReceived)) == 2, what="the next message")

    asyncio.run(scenario())
    assert [m.content for m in of_type(tg_log, t.MessageReceived)] == ["only once", "and this"]
    assert len([m for m, p, _ in stub.calls if m == "getUpdates" and not p.get("offset")]) >= 2


def test_without_a_token_telegram_is_skipped_at_start_up_with_the_warning(settings, log):
    warnings: list[str] = []
    sink = logger.add(warnings.append, level="WARNING")

    async def scenario():
        app = RouterApp(settings, log)
        await app.start()
        names = [c.name for c in app.channels]
        await app.stop()
        return names

    try:
        names = asyncio.run(scenario())
    finally:
        logger.remove(sink)
    assert names == ["local"]
    assert any("channel telegram: credentials missing, skipping it" in w for w in warnings)


def test_a_refused_token_stops_start_up_with_a_clear_error_that_hides_it(stub, root, monkeypatch):
    wrong = "999:WrongTokenWrongTokenWrongToken"
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", wrong)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", stub.url)
    settings = load_settings()
    settings.ensure_dirs()
    from events import EventLog

    log = EventLog(settings.db_path)

    try:
        with pytest.raises(ChannelStartError, match="Telegram refused TELEGRAM_BOT_TOKEN") as caught:
            start_and_stop(settings, log)
    finally:
        log.close()
    assert wrong not in str(caught.value) and "@BotFather" in str(caught.value)


@pytest.mark.parametrize("value", ["ftp://x", "127.0.0.1:8081", "http://", "http://a b"])
def test_a_bad_api_base_url_is_a_clear_error(root, monkeypatch, value):
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", value)
    with pytest.raises(ConfigError, match="TELEGRAM_API_BASE_URL: .* is not an http"):
        load_settings()


def test_the_api_base_url_loses_its_trailing_slash(root, monkeypatch):
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", "http://127.0.0.1:8081/")
    assert load_settings().telegram_api_base_url == "http://127.0.0.1:8081"


def test_the_token_is_a_secret_kept_out_of_the_environment(root):
    (root / ".env").write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\n")
    settings = load_settings()
    assert settings.secret("TELEGRAM_BOT_TOKEN") == TOKEN and TOKEN not in repr(settings)


def test_in_a_forum_the_reply_typing_and_chatid_go_to_the_topic_the_person_wrote_in(stub, tg_settings, tg_log):
    forum = {**stub.group(-100900, "Team"), "is_forum": True}
    stub.chats[-100900] = forum
    register_group(tg_log, tg_settings, jid="tg:-100900", name="Team", folder="team", requires_trigger=False)
    topic = {"message_thread_id": 7, "is_topic_message": True}

    def agent_says(text: str) -> None:
        name = f"{time.time_ns()}-abc.json"
        tg_log.append(t.IpcReceived(folder="team", kind="messages", file=name,
                                    payload={"type": "message", "chatJid": "tg:-100900", "text": text}),
                      key=f"ipc:team/messages/{name}")

    async def scenario():
        async with live_router(tg_settings, tg_log):
            stub.say(forum, ALICE, "/chatid", **topic)
            stub.say(forum, ALICE, "the release is out?", **topic)
            await until(lambda: of_type(tg_log, t.MessageReceived), what="the message")
            tg_log.append(t.AgentRunStarted(run_id="r1", folder="team", chat_jid="tg:-100900", container="c"))
            await until(lambda: stub.actions, what="typing")  # a reply before it would cancel the indicator
            agent_says("yes, this morning")
            await until(lambda: len(stub.sent) == 2, what="the answers")
            stub.say(forum, ALICE, "and in General?")
            await until(lambda: len(of_type(tg_log, t.MessageReceived)) == 2, what="the second message")
            agent_says("General, too")
            await until(lambda: len(stub.sent) == 3, what="the reply in General")

    asyncio.run(scenario())
    [chatid] = [s for s in stub.sent if "This chat is" in s.shown]
    replies = {s.shown: s.topic for s in stub.sent if s is not chatid}
    assert chatid.topic == 7
    assert replies == {"yes, this morning": 7, "General, too": None}
    assert [m.thread_id for m in of_type(tg_log, t.MessageReceived)] == ["7", None]
    assert stub.action_topics[0] == 7


def test_the_readme_shows_the_chatid_answer_word_for_word():
    from pathlib import Path

    from router.channels.registration import registration_help

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("It answers\n   with the chat's JID and the command that registers it:\n\n   ```text\n", 1)[1]
    shown = "\n".join(line.removeprefix("   ") for line in block.split("   ```", 1)[0].splitlines())
    assert shown.strip() == registration_help("tg:123456789", "Me", None, Path("/home/you/nanoclaw"))
