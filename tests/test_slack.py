"""Slack through the real router: Socket Mode envelopes become events once, replies go back, /chatid.

Every test runs `RouterApp` with its real event log against the stand-in
(tests/slack_stub_api.py), reached by slack-bolt and slack-sdk over HTTP and
a WebSocket on 127.0.0.1.
"""

from __future__ import annotations

import asyncio

from events import types as t
from rules.groups import register_group
from tests.live_router import keys_of, live_router, until
from tests.observe import of_type
from tests.slack_harness import ALICE, BOB, DM, GENERAL, slack, slack_log, slack_settings  # noqa: F401
from tests.slack_stub_api import BOT_USER


def test_a_direct_message_becomes_an_event_and_the_reply_goes_back_formatted(slack, slack_settings, slack_log):
    register_group(slack_log, slack_settings, jid=f"slack:{DM}", name="Alice", folder="main", is_main=True)

    async def scenario():
        async with live_router(slack_settings, slack_log):
            await until(slack.connected, what="the socket")
            envelope, ts = slack.say(DM, ALICE, "what is the weather &amp; the time?")
            await until(lambda: slack.acked(envelope), what="the envelope to be acknowledged")
            assert of_type(slack_log, t.MessageReceived)  # acknowledged only once recorded
            slack_log.append(t.OutboundQueued(outbound_id="o1", chat_jid=f"slack:{DM}", text="**Sunny** & <21> °C"))
            await until(lambda: of_type(slack_log, t.OutboundSent), what="the reply to be sent")
            return ts

    ts = asyncio.run(scenario())
    [message] = of_type(slack_log, t.MessageReceived)
    assert (message.chat_jid, message.sender, message.sender_name, message.content, message.channel) == (
        f"slack:{DM}", ALICE, "Alice", "what is the weather & the time?", "slack")
    assert keys_of(slack_log, t.MessageReceived) == [f"slack:{DM}:{ts}"]
    assert [(c.name, c.is_group) for c in of_type(slack_log, t.ChatSeen)] == [("Alice", False)]
    [reply] = slack.sent
    assert reply.shown == "*Sunny* &amp; &lt;21&gt; °C" and reply.text == "Sunny & <21> °C"


def test_a_mention_is_the_trigger_and_the_reply_goes_to_the_thread(slack, slack_settings, slack_log):
    register_group(slack_log, slack_settings, jid=f"slack:{GENERAL}", name="General", folder="general")

    async def scenario():
        async with live_router(slack_settings, slack_log):
            await until(slack.connected, what="the socket")
            _, root = slack.say(GENERAL, BOB, "lunch?")
            slack.say(GENERAL, ALICE, f"<@{BOT_USER}> book a table for <@{BOB}>", thread_ts=root)
            await until(lambda: of_type(slack_log, t.AgentRunRequested), what="a run request")
            slack_log.append(t.OutboundQueued(outbound_id="o1", chat_jid=f"slack:{GENERAL}", text="Done.",
                                              thread_id=root))
            await until(lambda: slack.sent, what="the reply")
            return root

    root = asyncio.run(scenario())
    assert [m.content for m in of_type(slack_log, t.MessageReceived)] == ["lunch?", "@Andy book a table for @Bob"]
    assert [m.thread_id for m in of_type(slack_log, t.MessageReceived)] == [None, root]
    assert [(s.channel, s.thread_ts) for s in slack.sent] == [(GENERAL, root)]


def test_chatid_answers_with_the_jid_and_the_registration_command(slack, slack_settings, slack_log):
    async def scenario():
        async with live_router(slack_settings, slack_log):
            await until(slack.connected, what="the socket")
            envelope = slack.slash(GENERAL, ALICE)
            await until(lambda: slack.acked(envelope), what="the command's answer")
            return slack.response(envelope)

    answer = asyncio.run(scenario())
    assert f"This chat is slack:{GENERAL}." in answer["text"]
    assert f'nanoclaw groups add slack:{GENERAL} --name "#general" --folder FOLDER' in answer["text"]
