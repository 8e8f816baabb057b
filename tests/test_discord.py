"""Discord through the real router: gateway dispatches become events once, replies go back where they belong.

Every test runs `RouterApp` with its real event log against the stand-in
(tests/discord_stub_api.py), reached by discord.py over HTTP and the gateway
WebSocket on 127.0.0.1. What every channel does is in the channel contract;
here is what is Discord's own: threads, resuming a dropped gateway, the
Message Content intent, `!chatid`, typing and the 2,000-character limit.
"""

from __future__ import annotations

import asyncio

import pytest

from events import EventLog, types as t
from router.channels.base import ChannelStartError
from router.channels.discord_format import MAX_MESSAGE_CHARS, split_message, to_discord
from rules.groups import register_group
from tests import discord_stub_api as dc
from tests.discord_harness import ALICE, BOB, FAMILY, PLANS, log, settings, stub  # noqa: F401
from tests.live_router import fresh_settings, keys_of, live_router, start_and_stop, until
from tests.observe import of_type


def test_a_mention_in_a_thread_is_the_trigger_and_the_reply_goes_back_into_the_thread(stub, settings, log):
    register_group(log, settings, jid=f"dc:{FAMILY}", name="Family", folder="family")

    async def scenario():
        async with live_router(settings, log) as app:
            await until(stub.ready, what="the gateway")
            said = stub.say(PLANS, ALICE, f"<@{dc.BOT_ID}> ask <@{BOB['id']}> about dates",
                            mentions=[dc.BOT_USER, BOB])
            await until(lambda: of_type(log, t.AgentRunRequested), what="a run request")
            channel = next(c for c in app.channels if c.name == "discord")
            await channel.set_typing(f"dc:{FAMILY}", True)
            await until(lambda: stub.typing, what="the typing indicator")
            await channel.set_typing(f"dc:{FAMILY}", False)
            log.append(t.OutboundQueued(outbound_id="o1", chat_jid=f"dc:{FAMILY}", text="**Done**: `2 weeks`",
                                        thread_id=PLANS))
            await until(lambda: of_type(log, t.OutboundSent), what="the reply")
            return said

    said = asyncio.run(scenario())
    [message] = of_type(log, t.MessageReceived)
    assert (message.chat_jid, message.thread_id, message.sender, message.content) == (
        f"dc:{FAMILY}", PLANS, ALICE["id"], "@Andy ask @Bob about dates")
    assert keys_of(log, t.MessageReceived) == [f"dc:{FAMILY}:{said['id']}"]
    assert [(c.name, c.is_group) for c in of_type(log, t.ChatSeen)] == [("#family", True)]
    assert [(p.channel, p.content) for p in stub.sent] == [(PLANS, "**Done**: `2 weeks`")]
    assert stub.typing == [FAMILY] * len(stub.typing)


def test_a_dropped_gateway_is_resumed_and_what_was_said_meanwhile_is_recorded_once(stub, settings, log):
    register_group(log, settings, jid=f"dc:{FAMILY}", name="Family", folder="family")

    async def scenario():
        async with live_router(settings, log):
            await until(stub.ready, what="the gateway")
            first = stub.say(FAMILY, ALICE, "@Andy one")
            await until(lambda: of_type(log, t.MessageReceived), what="the first message")
            stub.drop_sockets(4000)  # resumable: discord.py reconnects and sends RESUME
            await asyncio.to_thread(stub.say, FAMILY, BOB, "@Andy two")
            await until(lambda: stub.resumed, timeout=60, what="the session to be resumed")
            await until(lambda: len(of_type(log, t.MessageReceived)) >= 2, what="the message said meanwhile")
            stub.deliver_again(first)
            await asyncio.sleep(0.5)

    asyncio.run(scenario())
    assert [m.content for m in of_type(log, t.MessageReceived)] == ["@Andy one", "@Andy two"]
    assert stub.identified == 1


def test_chatid_in_an_unregistered_channel_answers_with_the_command_that_registers_it(stub, settings, log):
    async def scenario():
        async with live_router(settings, log):
            await until(stub.ready, what="the gateway")
            stub.say(FAMILY, ALICE, "!chatid")
            await until(lambda: stub.sent, what="the answer")

    asyncio.run(scenario())
    [answer] = stub.sent
    assert f"This chat is dc:{FAMILY}." in answer.content
    assert f'nanoclaw groups add dc:{FAMILY} --name "#family" --folder FOLDER' in answer.content
    assert not of_type(log, t.MessageReceived)


def test_the_message_content_intent_switched_off_is_logged_with_where_to_switch_it_on(stub, settings, log):
    from loguru import logger
    lines: list[str] = []
    sink = logger.add(lines.append, level="ERROR")
    stub.message_content_enabled = False

    async def scenario():
        async with live_router(settings, log):
            await until(lambda: any("MESSAGE CONTENT INTENT" in line for line in lines), what="the error")

    try:
        asyncio.run(scenario())
    finally:
        logger.remove(sink)
    assert stub.identified == 0


def test_a_refused_token_stops_start_up_with_a_clear_error(stub, settings, monkeypatch):
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "not.the.token")
    settings = fresh_settings()
    log = EventLog(settings.db_path)

    try:
        with pytest.raises(ChannelStartError, match="Discord refused DISCORD_BOT_TOKEN") as caught:
            start_and_stop(settings, log)
    finally:
        log.close()
    assert "not.the.token" not in str(caught.value)


def test_a_long_code_block_is_kept_whole_in_parts_within_discords_limit():
    code = "\n".join(f"line {n} = {n * n}" for n in range(60))
    text = "Intro " * 250 + f"\n\n```python\n{code}\n```\n\nThe end."
    parts = [to_discord(p) for p in split_message(text)]
    assert all(len(p) <= MAX_MESSAGE_CHARS for p in parts)
    [block] = [p for p in parts if "```python" in p]
    assert block.startswith("```python\n") and f"{code}\n```" in block


def test_text_that_looks_like_markup_is_shown_as_written():
    assert to_discord("use a_b_c and 2 * 3 * 4, ~tilde~ | pipe") == r"use a\_b\_c and 2 \* 3 \* 4, \~tilde\~ \| pipe"
    assert to_discord("[docs](https://example.com/a)") == "[docs](<https://example.com/a>)"
