"""Discord reads back what was said in registered chats while the service was away (router/channels/discord_history.py).

The channel contract checks the plain case (tests/test_channel_contract.py,
"away"); here is Discord's own: threads and DMs, a message said the moment
the gateway opens (before discord.py calls the session ready), the day and
the hundred messages it goes back at most and the chat told what was left
out, and a missing permission said in plain words. Each test runs
`RouterApp` with its real event log against the stand-in
(tests/discord_stub_api.py), reached by discord.py over REST and the
gateway on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import time

from events import types as t
from router.channels.read_back import MAX_MESSAGES
from rules.groups import register_group
from tests import discord_stub_api as dc
from tests.discord_harness import ALICE, BOB, DM_CHANNEL, FAMILY, PLANS, log, settings, stub  # noqa: F401
from tests.live_router import live_router, until
from tests.observe import of_type
from tests.read_back_harness import HOUR, away, heard_then_stopped, messages, notices, warnings


def _family(log, settings) -> None:
    register_group(log, settings, jid=f"dc:{FAMILY}", name="Family", folder="family")


def test_a_channel_its_threads_and_a_direct_message_are_read_back(stub, settings, log):
    _family(log, settings)
    register_group(log, settings, jid=f"dc:{DM_CHANNEL}", name="Alice", folder="main", is_main=True)

    def before():
        stub.say(FAMILY, BOB, "hello all")
        stub.say(DM_CHANNEL, ALICE, "hi")
        stub.say(DM_CHANNEL, dc.BOT_USER, "hello Alice")  # the bot's own in a DM: the chat keeps her name

    def meanwhile():
        stub.say(PLANS, BOB, "@Andy which dates?")
        stub.say(FAMILY, ALICE, "anyone in?")
        stub.say(DM_CHANNEL, ALICE, "call me")
        stub.say(DM_CHANNEL, dc.BOT_USER, "I will")  # the bot's own: the log has it as a reply it sent

    away(settings, log, stub.ready, before, meanwhile, expected=6, expected_before=3)
    read = {m.content: (m.chat_jid, m.thread_id, m.is_from_me) for m in messages(log)[3:]}
    assert read == {"@Andy which dates?": (f"dc:{FAMILY}", PLANS, False),
                    "anyone in?": (f"dc:{FAMILY}", None, False),
                    "call me": (f"dc:{DM_CHANNEL}", None, False)}
    assert len(messages(log)) == 6
    assert {c.name for c in of_type(log, t.ChatSeen) if c.chat_jid == f"dc:{DM_CHANNEL}"} == {"Alice"}
    assert {"family", "main"} <= {r.folder for r in of_type(log, t.AgentRunRequested)}


def test_a_message_said_as_the_gateway_opens_does_not_hide_the_gap_before_it(stub, settings, log):
    """discord.py hands messages over from READY but calls the session ready 2 s later."""
    _family(log, settings)

    async def scenario():
        await heard_then_stopped(settings, log, stub.ready, lambda: stub.say(FAMILY, ALICE, "hello"))
        stub.say(FAMILY, BOB, "said while away")
        async with live_router(settings, log):
            await until(stub.ready, what="READY")
            stub.say(FAMILY, ALICE, "said at once")
            await until(lambda: len(messages(log)) >= 3, what="both")
            await asyncio.sleep(0.5)

    asyncio.run(scenario())
    assert sorted(m.content for m in messages(log)[1:]) == ["said at once", "said while away"]


def test_a_day_is_read_back_at_most_and_the_chat_is_told_once_what_was_not(stub, settings, log):
    _family(log, settings)
    now = time.time()

    def meanwhile():
        stub.say(FAMILY, BOB, "too old to answer now", at=now - 26 * HOUR)
        stub.say(FAMILY, BOB, "recent")

    away(settings, log, stub.ready, lambda: stub.say(FAMILY, ALICE, "from a while ago", at=now - 30 * HOUR),
         meanwhile, expected=2)
    assert [m.content for m in messages(log)] == ["from a while ago", "recent"]
    [notice] = notices(log, f"dc:{FAMILY}")
    assert "more than a day" in notice and "please ask again" in notice


def test_the_newest_hundred_of_a_chat_are_read_back_and_the_chat_is_told(stub, settings, log):
    _family(log, settings)

    def meanwhile():
        for n in range(MAX_MESSAGES + 20):
            stub.say(FAMILY, BOB, f"note {n}")

    away(settings, log, stub.ready, lambda: stub.say(FAMILY, ALICE, "hello"), meanwhile, expected=1 + MAX_MESSAGES)
    assert [m.content for m in messages(log)[1:]] == [f"note {n}" for n in range(20, MAX_MESSAGES + 20)]
    [notice] = notices(log, f"dc:{FAMILY}")
    assert "could not read back everything" in notice and f"newest {MAX_MESSAGES} messages" in notice


def test_without_read_message_history_the_permission_is_named_and_live_messages_still_come(stub, settings, log):
    _family(log, settings)

    async def scenario(lines):
        await heard_then_stopped(settings, log, stub.ready, lambda: stub.say(FAMILY, ALICE, "hello"))
        stub.history_refused = True
        stub.say(FAMILY, BOB, "lost while away")
        async with live_router(settings, log):
            await until(lambda: any("read back" in line for line in lines), what="the warning")
            stub.say(FAMILY, ALICE, "still listening?")
            await until(lambda: len(messages(log)) == 2, what="a live message")

    with warnings() as lines:
        asyncio.run(scenario(lines))
    [warning] = [line for line in lines if "read back" in line]
    assert f"dc:{FAMILY}" in warning and "Read Message History" in warning
    assert [m.content for m in messages(log)] == ["hello", "still listening?"]
