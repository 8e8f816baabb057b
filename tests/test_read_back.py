"""Reading back what was said while the service was away, where the platform does not hold it: Slack, Discord.

The channel contract checks the plain case on every channel that has it
(tests/test_channel_contract.py, "away"); here is what is each one's own:
threads, direct messages, the day and the hundred messages it goes back at
most, chats it must not read, and a missing permission said in plain words.
Every test runs `RouterApp` with its real event log against the channel's
stand-in, reached by slack-sdk or discord.py on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import io
import time
from contextlib import contextmanager

import pytest
from loguru import logger

from base.timefmt import iso_now
from events import EventLog, types as t
from nanoclaw import cli_status, status
from router.channels.read_back import MAX_MESSAGES
from rules.groups import register_group
from tests import discord_stub_api as dc
from tests.discord_harness import (ALICE as DC_ALICE, BOB as DC_BOB, DM_CHANNEL, FAMILY, PLANS,  # noqa: F401
                                   log, settings, stub)
from tests.live_router import live_router, until
from tests.observe import of_type
from tests.router_process import RouterProcess
from tests.slack_harness import ALICE, BOB, DM, GENERAL, slack, slack_log, slack_settings  # noqa: F401
from tests.waiting import wait_for

HOUR = 3600.0


def _messages(log: EventLog) -> list[t.MessageReceived]:
    return of_type(log, t.MessageReceived)


@contextmanager
def _warnings():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")
    try:
        yield lines
    finally:
        logger.remove(sink)


def _slack_ts(at: float, n: int) -> str:
    return f"{int(at)}.{n:06d}"


# ----- Slack ---------------------------------------------------------------------------------------


def test_slack_reads_back_replies_in_known_and_new_threads(slack, slack_settings, slack_log):
    register_group(slack_log, slack_settings, jid=f"slack:{GENERAL}", name="General", folder="general")

    async def scenario():
        async with live_router(slack_settings, slack_log):
            await until(slack.connected, what="the socket")
            _, lunch = slack.say(GENERAL, BOB, "lunch?")
            slack.say(GENERAL, ALICE, "where?", thread_ts=lunch)
            await until(lambda: len(_messages(slack_log)) == 2, what="the messages before the stop")
        await until(lambda: not slack.connected(), what="the socket to close")
        slack.say(GENERAL, BOB, "the usual place", thread_ts=lunch)
        _, film = slack.say(GENERAL, ALICE, "film tonight?")
        slack.say(GENERAL, BOB, "@Andy what is on?", thread_ts=film)
        slack.give_up_retries()
        async with live_router(slack_settings, slack_log):
            await until(lambda: len(_messages(slack_log)) >= 5, what="what was said while it was stopped")
            await asyncio.sleep(0.3)
        return lunch, film

    lunch, film = asyncio.run(scenario())
    read = {m.content: m.thread_id for m in _messages(slack_log)[2:]}
    assert read == {"the usual place": lunch, "film tonight?": None, "@Andy what is on?": film}
    assert len(_messages(slack_log)) == 5
    assert [r.folder for r in of_type(slack_log, t.AgentRunRequested)] == ["general"]  # the trigger read back


def _slack_away(slack, settings, log, before, meanwhile, expected: int) -> None:
    """Said `before` with the service live, `meanwhile` with it stopped (past Slack's retries), then started."""
    async def scenario():
        async with live_router(settings, log):
            await until(slack.connected, what="the socket")
            before()
            await until(lambda: _messages(log), what="the messages before the stop")
        await until(lambda: not slack.connected(), what="the socket to close")
        meanwhile()
        slack.give_up_retries()
        async with live_router(settings, log):
            await until(lambda: len(_messages(log)) >= expected, what="what was said while it was stopped")
            await asyncio.sleep(0.5)
    asyncio.run(scenario())


def test_slack_reads_back_a_day_at_most(slack, slack_settings, slack_log):
    register_group(slack_log, slack_settings, jid=f"slack:{DM}", name="Alice", folder="main", is_main=True)
    now = time.time()

    def meanwhile():
        slack.say(DM, ALICE, "too old to answer now", ts=_slack_ts(now - 26 * HOUR, 2))
        slack.say(DM, ALICE, "recent")

    _slack_away(slack, slack_settings, slack_log,
                lambda: slack.say(DM, ALICE, "from a while ago", ts=_slack_ts(now - 30 * HOUR, 1)),
                meanwhile, expected=2)
    assert [m.content for m in _messages(slack_log)] == ["from a while ago", "recent"]


def test_slack_reads_back_the_newest_hundred_of_a_chat(slack, slack_settings, slack_log):
    register_group(slack_log, slack_settings, jid=f"slack:{DM}", name="Alice", folder="main", is_main=True)

    def meanwhile():
        for n in range(MAX_MESSAGES + 20):
            slack.say(DM, ALICE, f"note {n}")

    _slack_away(slack, slack_settings, slack_log, lambda: slack.say(DM, ALICE, "hello"), meanwhile,
                expected=1 + MAX_MESSAGES)
    assert [m.content for m in _messages(slack_log)[1:]] == [f"note {n}" for n in range(20, MAX_MESSAGES + 20)]


def test_slack_reads_only_registered_chats_it_has_heard_from(slack, slack_settings, slack_log):
    slack.channel("C0QUIET", "quiet")
    register_group(slack_log, slack_settings, jid=f"slack:{DM}", name="Alice", folder="main", is_main=True)
    register_group(slack_log, slack_settings, jid="slack:C0QUIET", name="Quiet", folder="quiet")

    async def scenario():
        async with live_router(slack_settings, slack_log):
            await until(slack.connected, what="the socket")
            slack.say(DM, ALICE, "hello")
            await until(lambda: _messages(slack_log), what="the message")
        slack.say(GENERAL, BOB, "not registered here")
        slack.say("C0QUIET", BOB, "said before anything was recorded here")
        slack.give_up_retries()
        async with live_router(slack_settings, slack_log):
            await until(lambda: slack.listed, what="the history to be read")
            await asyncio.sleep(0.5)

    asyncio.run(scenario())
    assert slack.listed == [DM]
    assert [m.content for m in _messages(slack_log)] == ["hello"]


def test_slack_without_the_history_scope_says_which_scopes_and_goes_on(slack, slack_settings, slack_log):
    register_group(slack_log, slack_settings, jid=f"slack:{DM}", name="Alice", folder="main", is_main=True)

    async def scenario(lines):
        async with live_router(slack_settings, slack_log):
            await until(slack.connected, what="the socket")
            slack.say(DM, ALICE, "hello")
            await until(lambda: _messages(slack_log), what="the message")
        slack.refuse("conversations.history", "missing_scope")
        slack.say(DM, ALICE, "lost while away")
        slack.give_up_retries()
        async with live_router(slack_settings, slack_log) as app:
            channel = next(c for c in app.channels if c.name == "slack")
            await until(lambda: channel.problem, what="the problem")
            problem = channel.problem
            slack.say(DM, ALICE, "still listening?")
            await until(lambda: len(_messages(slack_log)) == 2, what="a live message")
            slack.refuse("conversations.history", None)  # the scope added: the next socket reads back fine
            await asyncio.to_thread(slack.go_away)
            await asyncio.to_thread(slack.come_back)
            await until(lambda: channel.problem is None, what="the problem to clear")
        return problem

    with _warnings() as lines:
        problem = asyncio.run(scenario(lines))
    [warning] = [line for line in lines if "read back" in line]
    for said in (warning, problem):
        assert f"slack:{DM}" in said and "channels:history" in said and "im:history" in said
    assert [m.content for m in _messages(slack_log)] == ["hello", "still listening?"]


@pytest.mark.docker  # `nanoclaw run` checks the container runtime first
def test_a_chat_that_cannot_be_read_back_is_a_problem_in_status(slack, slack_settings, slack_log):
    register_group(slack_log, slack_settings, jid=f"slack:{DM}", name="Alice", folder="main", is_main=True)
    slack_log.append(t.MessageReceived(channel="slack", chat_jid=f"slack:{DM}", message_id=slack.next_ts(),
                                       sender=ALICE, sender_name="Alice", content="hello", timestamp=iso_now()))
    slack.refuse("conversations.history", "missing_scope")
    service = RouterProcess(slack_settings).wait_ready()
    try:
        wait_for(lambda: status.service_info(slack_settings).channel_problems, timeout=30, what="the problem")
        shown = io.StringIO()
        cli_status.render(status.gather(slack_settings), shown)
    finally:
        assert service.stop() == 0
    [line] = [line for line in shown.getvalue().splitlines() if "PROBLEM" in line]
    assert line.split()[:2] == ["slack", "PROBLEM:"] and f"slack:{DM}" in line and "channels:history" in line


# ----- Discord -------------------------------------------------------------------------------------


def _away(stub, settings, log, before, meanwhile, expected: int, expected_before: int = 1):
    """Said `before` with the service live, `meanwhile` with it stopped, then started until `expected` messages."""
    async def scenario():
        async with live_router(settings, log):
            await until(stub.ready, what="the gateway")
            before()
            await until(lambda: len(_messages(log)) >= expected_before, what="the messages before the stop")
        await until(lambda: not stub.ready(), what="the gateway to close")
        meanwhile()
        async with live_router(settings, log):
            await until(lambda: len(_messages(log)) >= expected, what="what was said while it was stopped")
            await asyncio.sleep(0.5)
    asyncio.run(scenario())


def test_discord_reads_back_a_channel_its_threads_and_a_direct_message(stub, settings, log):
    register_group(log, settings, jid=f"dc:{FAMILY}", name="Family", folder="family")
    register_group(log, settings, jid=f"dc:{DM_CHANNEL}", name="Alice", folder="main", is_main=True)

    def before():
        stub.say(FAMILY, DC_BOB, "hello all")
        stub.say(DM_CHANNEL, DC_ALICE, "hi")
        stub.say(DM_CHANNEL, dc.BOT_USER, "hello Alice")  # the bot's own in a DM: the chat keeps her name

    def meanwhile():
        stub.say(PLANS, DC_BOB, "@Andy which dates?")
        stub.say(FAMILY, DC_ALICE, "anyone in?")
        stub.say(DM_CHANNEL, DC_ALICE, "call me")
        stub.say(DM_CHANNEL, dc.BOT_USER, "I will")  # the bot's own: the log has it as a reply it sent

    _away(stub, settings, log, before, meanwhile, expected=6, expected_before=3)
    read = {m.content: (m.chat_jid, m.thread_id, m.is_from_me) for m in _messages(log)[3:]}
    assert read == {"@Andy which dates?": (f"dc:{FAMILY}", PLANS, False),
                    "anyone in?": (f"dc:{FAMILY}", None, False),
                    "call me": (f"dc:{DM_CHANNEL}", None, False)}
    assert len(_messages(log)) == 6
    assert {c.name for c in of_type(log, t.ChatSeen) if c.chat_jid == f"dc:{DM_CHANNEL}"} == {"Alice"}
    assert {"family", "main"} <= {r.folder for r in of_type(log, t.AgentRunRequested)}


def test_discord_reads_back_a_day_at_most(stub, settings, log):
    register_group(log, settings, jid=f"dc:{FAMILY}", name="Family", folder="family")
    now = time.time()

    def meanwhile():
        stub.say(FAMILY, DC_BOB, "too old to answer now", at=now - 26 * HOUR)
        stub.say(FAMILY, DC_BOB, "recent")

    _away(stub, settings, log, lambda: stub.say(FAMILY, DC_ALICE, "from a while ago", at=now - 30 * HOUR),
          meanwhile, expected=2)
    assert [m.content for m in _messages(log)] == ["from a while ago", "recent"]


def test_discord_without_read_message_history_says_so_and_goes_on(stub, settings, log):
    register_group(log, settings, jid=f"dc:{FAMILY}", name="Family", folder="family")

    def meanwhile():
        stub.history_refused = True
        stub.say(FAMILY, DC_BOB, "lost while away")

    with _warnings() as lines:
        async def scenario():
            async with live_router(settings, log):
                await until(stub.ready, what="the gateway")
                stub.say(FAMILY, DC_ALICE, "hello")
                await until(lambda: _messages(log), what="the first message")
            await until(lambda: not stub.ready(), what="the gateway to close")
            meanwhile()
            async with live_router(settings, log):
                await until(lambda: any("read back" in line for line in lines), what="the warning")
                stub.say(FAMILY, DC_ALICE, "still listening?")
                await until(lambda: len(_messages(log)) == 2, what="a live message")
        asyncio.run(scenario())
    [warning] = [line for line in lines if "read back" in line]
    assert f"dc:{FAMILY}" in warning and "Read Message History" in warning
    assert [m.content for m in _messages(log)] == ["hello", "still listening?"]
