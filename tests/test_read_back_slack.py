"""Slack reads back what was said in registered chats while the service was away (router/channels/slack_history.py).

The channel contract checks the plain case on every channel that has it
(tests/test_channel_contract.py, "away"); here is Slack's own: threads,
whose replies its history leaves out, a thread deleted since, the day and
the hundred messages it goes back at most and the chat told what was left
out, chats it must not read, a socket that opens while a read-back runs,
and a missing scope said in plain words. Each test runs `RouterApp` with
its real event log against the stand-in (tests/slack_stub_api.py), reached
by slack-sdk over HTTP and Socket Mode on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import io
import time

import pytest

from base.timefmt import iso_now
from events import types as t
from nanoclaw import cli_status, status
from router.channels.read_back import MAX_MESSAGES, MAX_THREADS
from rules.groups import register_group
from tests.live_router import live_router, until
from tests.observe import of_type
from tests.read_back_harness import HOUR, away, heard_then_stopped, messages, notices, warnings
from tests.router_process import RouterProcess
from tests.slack_harness import ALICE, BOB, DM, GENERAL, slack, slack_log, slack_settings  # noqa: F401
from tests.waiting import wait_for


def _ts(at: float, n: int) -> str:
    return f"{int(at)}.{n:06d}"


def _main(slack_log, slack_settings) -> None:
    register_group(slack_log, slack_settings, jid=f"slack:{DM}", name="Alice", folder="main", is_main=True)


def _general(slack_log, slack_settings) -> None:
    register_group(slack_log, slack_settings, jid=f"slack:{GENERAL}", name="General", folder="general")


def test_replies_in_a_thread_it_knew_and_in_threads_started_meanwhile_are_read_back(slack, slack_settings,
                                                                                      slack_log):
    _general(slack_log, slack_settings)
    roots = {}

    def before():
        roots["lunch"] = slack.say(GENERAL, BOB, "lunch?")[1]
        slack.say(GENERAL, ALICE, "where?", thread_ts=roots["lunch"])

    def meanwhile():
        slack.say(GENERAL, BOB, "the usual place", thread_ts=roots["lunch"], unsent=True)
        roots["film"] = slack.say(GENERAL, ALICE, "film tonight?", unsent=True)[1]
        slack.say(GENERAL, BOB, "@Andy what is on?", thread_ts=roots["film"], unsent=True)

    away(slack_settings, slack_log, slack.connected, before, meanwhile, expected=5, expected_before=2)
    read = {m.content: m.thread_id for m in messages(slack_log)[2:]}
    assert read == {"the usual place": roots["lunch"], "film tonight?": None, "@Andy what is on?": roots["film"]}
    assert len(messages(slack_log)) == 5
    assert [r.folder for r in of_type(slack_log, t.AgentRunRequested)] == ["general"]  # the trigger read back


def test_a_reply_under_a_message_it_had_is_read_back(slack, slack_settings, slack_log):
    """The message was the newest the log held, with no reply recorded: only its `latest_reply` shows the thread."""
    _general(slack_log, slack_settings)
    roots = {}

    def before():
        roots["lunch"] = slack.say(GENERAL, BOB, "anyone up for lunch?")[1]

    away(slack_settings, slack_log, slack.connected, before,
         lambda: slack.say(GENERAL, ALICE, "@Andy yes, me", thread_ts=roots["lunch"], unsent=True), expected=2)
    [_, reply] = messages(slack_log)
    assert (reply.content, reply.thread_id) == ("@Andy yes, me", roots["lunch"])


def test_a_thread_deleted_since_is_passed_over_and_the_rest_is_read(slack, slack_settings, slack_log):
    _general(slack_log, slack_settings)
    roots = {}

    def before():
        roots["old"] = slack.say(GENERAL, BOB, "a thread soon deleted")[1]
        slack.say(GENERAL, ALICE, "a reply in it", thread_ts=roots["old"])

    def meanwhile():
        slack.delete(GENERAL, roots["old"])
        slack.say(GENERAL, BOB, "still here?", unsent=True)

    with warnings() as lines:
        away(slack_settings, slack_log, slack.connected, before, meanwhile, expected=3, expected_before=2)
    assert [m.content for m in messages(slack_log)][2:] == ["still here?"]
    assert not [line for line in lines if "read back" in line]


def test_a_day_is_read_back_at_most_and_the_chat_is_told_once_what_was_not(slack, slack_settings, slack_log):
    _main(slack_log, slack_settings)
    now = time.time()

    def meanwhile():
        slack.say(DM, ALICE, "too old to answer now", ts=_ts(now - 26 * HOUR, 2), unsent=True)
        slack.say(DM, ALICE, "recent", unsent=True)

    away(slack_settings, slack_log, slack.connected, lambda: slack.say(DM, ALICE, "from a while ago",
                                                                      ts=_ts(now - 30 * HOUR, 1)),
         meanwhile, expected=2)
    assert [m.content for m in messages(slack_log)] == ["from a while ago", "recent"]
    [notice] = notices(slack_log, f"slack:{DM}")
    assert "more than a day" in notice and "please ask again" in notice


def test_a_long_quiet_spell_is_no_gap_to_tell_of(slack, slack_settings, slack_log):
    _main(slack_log, slack_settings)
    now = time.time()
    away(slack_settings, slack_log, slack.connected,
         lambda: slack.say(DM, ALICE, "from a while ago", ts=_ts(now - 30 * HOUR, 1)),
         lambda: slack.say(DM, ALICE, "back again", unsent=True), expected=2)
    assert [m.content for m in messages(slack_log)] == ["from a while ago", "back again"]
    assert notices(slack_log, f"slack:{DM}") == []


def test_the_newest_hundred_of_a_chat_are_read_back_and_the_chat_is_told(slack, slack_settings, slack_log):
    _main(slack_log, slack_settings)

    def meanwhile():
        for n in range(MAX_MESSAGES + 20):
            slack.say(DM, ALICE, f"note {n}", unsent=True)

    away(slack_settings, slack_log, slack.connected, lambda: slack.say(DM, ALICE, "hello"), meanwhile,
         expected=1 + MAX_MESSAGES)
    assert [m.content for m in messages(slack_log)[1:]] == [f"note {n}" for n in range(20, MAX_MESSAGES + 20)]
    [notice] = notices(slack_log, f"slack:{DM}")
    assert "could not read back everything" in notice and f"newest {MAX_MESSAGES} messages" in notice


def test_a_long_thread_keeps_its_newest_replies(slack, slack_settings, slack_log):
    _general(slack_log, slack_settings)
    roots = {}

    def before():
        roots["plan"] = slack.say(GENERAL, BOB, "the plan")[1]

    def meanwhile():
        for n in range(MAX_MESSAGES + 30):
            slack.say(GENERAL, ALICE, f"idea {n}", thread_ts=roots["plan"], unsent=True)

    away(slack_settings, slack_log, slack.connected, before, meanwhile, expected=1 + MAX_MESSAGES)
    assert [m.content for m in messages(slack_log)[1:]] == [f"idea {n}" for n in range(30, MAX_MESSAGES + 30)]
    assert len(notices(slack_log, f"slack:{GENERAL}")) == 1


def test_a_thread_of_more_than_three_hundred_new_replies_keeps_its_newest(slack, slack_settings, slack_log):
    """Slack lists a thread's replies oldest first: the last page holds the ones a person is waiting on."""
    _general(slack_log, slack_settings)
    roots = {}

    def before():
        roots["plan"] = slack.say(GENERAL, BOB, "the plan")[1]

    def meanwhile():
        for n in range(330):
            slack.say(GENERAL, ALICE, f"idea {n}", thread_ts=roots["plan"], unsent=True)

    away(slack_settings, slack_log, slack.connected, before, meanwhile, expected=1 + MAX_MESSAGES)
    assert [m.content for m in messages(slack_log)[1:]] == [f"idea {n}" for n in range(230, 330)]
    assert len(notices(slack_log, f"slack:{GENERAL}")) == 1


def test_threads_beyond_those_it_reads_are_told_of(slack, slack_settings, slack_log):
    _general(slack_log, slack_settings)
    roots = []

    def before():
        for n in range(MAX_THREADS + 1):
            roots.append(slack.say(GENERAL, BOB, f"topic {n}")[1])

    def meanwhile():
        for n, root in enumerate(roots):
            slack.say(GENERAL, ALICE, f"reply {n}", thread_ts=root, unsent=True)

    away(slack_settings, slack_log, slack.connected, before, meanwhile, expected=2 * MAX_THREADS + 1,
         expected_before=MAX_THREADS + 1)
    read = [m.content for m in messages(slack_log)[MAX_THREADS + 1:]]
    assert sorted(read) == sorted(f"reply {n}" for n in range(1, MAX_THREADS + 1))  # the newest replies' threads
    [notice] = notices(slack_log, f"slack:{GENERAL}")
    assert "could not read back everything" in notice


def test_a_thread_reply_handed_over_by_a_pass_does_not_hide_what_was_said_before_it(slack, slack_settings,
                                                                                     slack_log):
    """Pass 1 lists the top level, then a thread; a message said between the two is older than the reply it hands
    over, and the socket dropped meanwhile: the next pass reads from when pass 1 began, not from that reply."""
    _general(slack_log, slack_settings)
    roots = {}

    async def scenario():
        def before():
            roots["plan"] = slack.say(GENERAL, BOB, "the plan")[1]
            slack.say(GENERAL, ALICE, "first idea", thread_ts=roots["plan"])

        await heard_then_stopped(slack_settings, slack_log, slack.connected, before, expected_before=2)
        slack.say(GENERAL, ALICE, "second idea", thread_ts=roots["plan"], unsent=True)
        slack.slow("conversations.history", 2.0)
        async with live_router(slack_settings, slack_log):
            await until(lambda: slack.listed, what="the first pass to list the top level")
            slack.say(GENERAL, BOB, "@Andy said while the first pass listed", unsent=True)
            slack.say(GENERAL, ALICE, "third idea", thread_ts=roots["plan"], unsent=True)
            await until(lambda: "third idea" in [m.content for m in messages(slack_log)], what="the thread's reply")
            slack.slow("conversations.history", 0)
            connections = slack.connections
            slack.drop_sockets()
            await until(lambda: slack.connections > connections and slack.connected(), what="a new socket")
            await until(lambda: len(messages(slack_log)) >= 5, what="the message the first pass could not see")
            await asyncio.sleep(0.5)

    asyncio.run(scenario())
    assert sorted(m.content for m in messages(slack_log)[2:]) == [
        "@Andy said while the first pass listed", "second idea", "third idea"]
    assert notices(slack_log, f"slack:{GENERAL}") == []  # what the log held is not counted as left out


def test_only_registered_chats_it_has_heard_from_are_read(slack, slack_settings, slack_log):
    slack.channel("C0QUIET", "quiet")
    _main(slack_log, slack_settings)
    register_group(slack_log, slack_settings, jid="slack:C0QUIET", name="Quiet", folder="quiet")

    def meanwhile():
        slack.say(GENERAL, BOB, "not registered here", unsent=True)
        slack.say("C0QUIET", BOB, "said before anything was recorded here", unsent=True)
        slack.say(DM, ALICE, "and here", unsent=True)

    away(slack_settings, slack_log, slack.connected, lambda: slack.say(DM, ALICE, "hello"), meanwhile, expected=2)
    assert set(slack.listed) == {DM}
    assert [m.content for m in messages(slack_log)] == ["hello", "and here"]


def test_a_socket_opened_while_a_read_back_runs_gets_a_pass_of_its_own(slack, slack_settings, slack_log):
    """The first pass lists the history as it was; what was said while the next socket opened is read by the next."""
    _main(slack_log, slack_settings)

    async def scenario():
        await heard_then_stopped(slack_settings, slack_log, slack.connected, lambda: slack.say(DM, ALICE, "hello"))
        slack.say(DM, ALICE, "in the first gap", unsent=True)
        slack.slow("conversations.history", 3.0)
        async with live_router(slack_settings, slack_log):
            await until(lambda: slack.listed, what="the first pass to list the history")
            slack.say(DM, ALICE, "in the second gap", unsent=True)
            slack.slow("conversations.history", 0)
            connections = slack.connections
            slack.drop_sockets()
            await until(lambda: slack.connections > connections and slack.connected(), what="a new socket")
            await until(lambda: len(messages(slack_log)) >= 3, what="both gaps")
            await asyncio.sleep(0.5)

    asyncio.run(scenario())
    assert [m.content for m in messages(slack_log)] == ["hello", "in the first gap", "in the second gap"]


def test_without_the_history_scope_the_scopes_are_named_and_live_messages_still_come(slack, slack_settings,
                                                                                      slack_log):
    _main(slack_log, slack_settings)

    async def scenario():
        await heard_then_stopped(slack_settings, slack_log, slack.connected, lambda: slack.say(DM, ALICE, "hello"))
        slack.refuse("conversations.history", "missing_scope")
        slack.say(DM, ALICE, "lost while away", unsent=True)
        async with live_router(slack_settings, slack_log) as app:
            channel = next(c for c in app.channels if c.name == "slack")
            await until(lambda: channel.problem, what="the problem")
            problem = channel.problem
            slack.say(DM, ALICE, "still listening?")
            await until(lambda: len(messages(slack_log)) == 2, what="a live message")
            slack.refuse("conversations.history", None)  # the scope added: the next socket reads from the old mark
            slack.drop_sockets()
            await until(lambda: channel.problem is None, what="the problem to clear")
            await until(lambda: len(messages(slack_log)) == 3, what="what the failed pass owed")
        return problem

    with warnings() as lines:
        problem = asyncio.run(scenario())
    [warning] = [line for line in lines if "read back" in line]
    for said in (warning, problem):
        assert f"slack:{DM}" in said and "channels:history" in said and "im:history" in said
    assert [m.content for m in messages(slack_log)] == ["hello", "still listening?", "lost while away"]


@pytest.mark.docker  # `nanoclaw run` checks the container runtime first
def test_a_chat_that_cannot_be_read_back_is_a_problem_in_status(slack, slack_settings, slack_log):
    _main(slack_log, slack_settings)
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
