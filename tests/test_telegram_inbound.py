"""Telegram messages as the router records them: the rules, on the library's own `Message` objects."""

from __future__ import annotations

import pytest
from telegram import Message

from router.channels.telegram_inbound import (chat_facts, chat_id_of, command_of, jid_of, message_text,
                                              to_inbound)
from tests.telegram_stub_api import BOT_USER, TelegramStub

ALICE = TelegramStub.user(42, "Alice", username="alice")
FORUM = {"id": -100900, "type": "supergroup", "title": "Team", "is_forum": True}


def message(text: str | None = None, *, chat: dict = FORUM, sender: dict | None = ALICE, **extra) -> Message:
    data = {"message_id": 7, "date": 1767225600, "chat": chat, **extra}
    if sender is not None:
        data["from"] = sender
    if text is not None:
        data["text"] = text
    return Message.de_json(data, None)


def inbound(msg: Message):
    return to_inbound(msg, bot_id=BOT_USER["id"], bot_username=BOT_USER["username"], assistant_name="Andy",
                      trigger="@Andy")


@pytest.mark.parametrize(("jid", "chat_id"), [("tg:42", 42), ("tg:-1001234567890", -1001234567890),
                                              ("tg:", None), ("tg:abc", None), ("local:me", None)])
def test_telegram_jids(jid, chat_id):
    assert chat_id_of(jid) == chat_id
    if chat_id is not None:
        assert jid_of(chat_id) == jid


@pytest.mark.parametrize(("text", "command"), [
    ("/chatid", "chatid"), ("/ChatId extra words", "chatid"), ("/chatid@andy_test_bot", "chatid"),
    ("/chatid@other_bot", None), ("/start", "start"), ("/ping", "ping"), ("/weather", None),
    ("chatid", None), (" /chatid", "chatid"),
])
def test_commands_for_this_bot(text, command):
    assert command_of(message(text), "andy_test_bot") == command


@pytest.mark.parametrize(("extra", "text"), [
    ({"photo": [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}], "caption": "look"},
     "[Photo] look"),
    ({"voice": {"file_id": "f", "file_unique_id": "u", "duration": 3}}, "[Voice message]"),
    ({"document": {"file_id": "f", "file_unique_id": "u", "file_name": "plan.pdf"}}, "[Document: plan.pdf]"),
    ({"sticker": {"file_id": "f", "file_unique_id": "u", "type": "regular", "width": 1, "height": 1,
                  "is_animated": False, "is_video": False, "emoji": "👍"}}, "[Sticker 👍]"),
    ({"location": {"latitude": 1.0, "longitude": 2.0}}, "[Location]"),
])
def test_media_without_text_reads_as_a_placeholder(extra, text):
    assert message_text(message(**extra)) == text


def test_a_service_message_carries_nothing_to_record():
    assert inbound(message(new_chat_members=[ALICE])) is None


def test_a_topic_message_keeps_its_thread_and_the_timestamp_is_in_the_log_shape():
    msg = inbound(message("hi", message_thread_id=5, is_topic_message=True))
    assert (msg.thread_id, msg.timestamp, msg.chat_jid, msg.message_id) == (
        "5", "2026-01-01T00:00:00.000Z", "tg:-100900", "7")


def test_an_anonymous_group_admin_is_the_group_itself():
    msg = inbound(message("announcement", sender=None, sender_chat=FORUM))
    assert (msg.sender, msg.sender_name) == ("-100900", "Team")


def test_a_mention_already_starting_with_the_trigger_is_left_alone():
    text = "@Andy ask @andy_test_bot"
    msg = inbound(message(text, entities=[{"type": "mention", "offset": 10, "length": 14}]))
    assert msg.content == text


def test_private_chats_are_named_after_the_person_and_are_not_groups():
    facts = chat_facts(message("x", chat={"id": 42, "type": "private", "first_name": "Alice",
                                          "last_name": "Smith"}).chat)
    assert (facts.jid, facts.name, facts.is_group) == ("tg:42", "Alice Smith", False)


ANONYMOUS = {"id": 1087968824, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot"}
OTHER_BOT = {"id": 555, "is_bot": True, "first_name": "Weather", "username": "weather_bot"}


def test_an_anonymous_admin_is_a_person_writing_as_the_group():
    msg = inbound(message("@Andy what's on today?", sender=ANONYMOUS, sender_chat=FORUM))
    assert (msg.is_bot_message, msg.is_from_me) == (False, False)
    assert (msg.sender, msg.sender_name) == (str(FORUM["id"]), "Team")


@pytest.mark.parametrize("sender, sender_chat", [
    (OTHER_BOT, None),                                                        # a bot is a bot
    (ANONYMOUS, {"id": -100777, "type": "channel", "title": "Elsewhere"}),    # not the group itself
    ({**OTHER_BOT, "username": "GroupAnonymousBot", "is_bot": True}, None),   # the name alone is not enough
])
def test_other_bots_and_look_alikes_stay_bots(sender, sender_chat):
    extra = {"sender_chat": sender_chat} if sender_chat else {}
    assert inbound(message("@Andy hello", sender=sender, **extra)).is_bot_message
