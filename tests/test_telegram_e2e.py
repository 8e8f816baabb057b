"""`nanoclaw run` as a real process with Telegram (the stand-in Bot API): a crash, a conversation."""

from __future__ import annotations

import signal

import pytest

from events import types as t
from rules.groups import register_group
from tests.router_process import RouterProcess
from tests.telegram_harness import ALICE, of_type, stub  # noqa: F401  (fixture)
from tests.waiting import wait_for

pytestmark = pytest.mark.docker  # `nanoclaw run` checks the container runtime first


@pytest.fixture
def telegram_env(stub, settings, log, monkeypatch):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", stub.token)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", stub.url)
    monkeypatch.setenv("LOG_LEVEL", "debug")  # the most talkative logs still never show the token
    register_group(log, settings, jid="tg:42", name="Alice", folder="main", is_main=True)
    return stub.private_chat(ALICE)


def test_a_crash_after_recording_a_message_and_telegrams_redelivery_store_it_once(stub, settings, log,
                                                                                     telegram_env):
    crashed = RouterProcess(settings, NANOCLAW_FAULT="inbound-recorded").wait_ready()
    stub.say(telegram_env, ALICE, "remember the milk")
    assert crashed.proc.wait(timeout=30) == -signal.SIGKILL  # killed before confirming the update to Telegram
    update_id = stub.last_update_id()
    assert stub.confirmed_offset <= update_id
    restarted = RouterProcess(settings).wait_ready()
    try:
        wait_for(lambda: stub.confirmed_offset > update_id, timeout=60, what="the redelivered update to be handled")
    finally:
        assert restarted.stop() == 0
    assert [m.content for m in of_type(log, t.MessageReceived)] == ["remember the milk"]
    assert len(of_type(log, t.AgentRunRequested)) == 1
    everything = crashed.stderr() + restarted.stderr() + (settings.logs_dir / "nanoclaw.log").read_text()
    assert "telegram: connected as @andy_test_bot" in everything
    assert stub.token not in everything and stub.token.split(":")[1] not in everything


def test_a_telegram_message_is_answered_by_an_agent_container(stub, settings, log, telegram_env, agent_image,
                                                              monkeypatch):
    for key, value in dict(CONTAINER_IMAGE=agent_image, CONTAINER_NETWORK="none", AGENT_PROVIDER="scripted",
                           IDLE_TIMEOUT="2000").items():
        monkeypatch.setenv(key, value)
    service = RouterProcess(settings, worker=True).wait_ready()
    try:
        stub.say(telegram_env, ALICE, "what is 2 + 2?")
        [reply] = wait_for(lambda: stub.sent, timeout=120, what="the agent's reply")
    finally:
        assert service.stop(timeout=60) == 0
    assert "what is 2 + 2?</message>" in reply.shown  # the scripted agent answers with its prompt
    assert reply.parse_mode == "HTML" and reply.chat_id == 42
    assert any(chat == 42 and action == "typing" for chat, action, _ in stub.actions)
    assert [f.status for f in of_type(log, t.AgentRunFinished)] == ["ok"]


def test_a_refused_token_is_a_fatal_start_up_error_that_does_not_print_it(stub, settings, monkeypatch):
    wrong = "555:RefusedRefusedRefusedRefused"
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", wrong)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", stub.url)
    process = RouterProcess(settings)
    assert process.proc.wait(timeout=60) == 2  # the unit's RestartPreventExitStatus: no restart every 5 s
    assert "FATAL: Telegram refused TELEGRAM_BOT_TOKEN" in process.stderr()
    assert wrong not in process.stderr() and "Refused" * 4 not in process.stderr()


def _three_part_reply(log) -> list[str]:
    """A reply Telegram takes in three parts, queued before the service starts."""
    from router.channels.telegram_format import split_message
    from tests.test_telegram_delivery import long_reply

    text = long_reply(10_000)
    log.append(t.OutboundQueued(outbound_id="long", chat_jid="tg:42", text=text), key="out:long")
    parts = split_message(text)
    assert len(parts) == 3
    return parts


def _shown(stub) -> list[str]:
    return [sent.shown for sent in stub.sent]


@pytest.mark.parametrize("fault, resent", [("delivery-part-recorded", 0), ("delivery-after-part", 1)])
def test_a_reply_cut_by_a_kill_resumes_at_the_first_part_not_recorded(stub, settings, log, telegram_env,
                                                                     fault, resent):
    parts = _three_part_reply(log)
    crashed = RouterProcess(settings, NANOCLAW_FAULT=fault)
    assert crashed.proc.wait(timeout=60) == -signal.SIGKILL
    assert len(stub.sent) == 1
    restarted = RouterProcess(settings).wait_ready()
    try:
        wait_for(lambda: of_type(log, t.OutboundSent), timeout=60, what="the reply to be sent")
    finally:
        assert restarted.stop() == 0
    # killed after part 1 was recorded: nothing again; killed between its send and its record: it alone again
    assert _shown(stub) == [parts[0]] * (1 + resent) + parts[1:]
    assert [e.part for e in of_type(log, t.OutboundPartSent)] == [1, 2, 3]


def test_a_reply_cut_by_sigterm_sends_nothing_while_stopping_and_resumes_after_the_restart(
        stub, settings, log, telegram_env):
    parts = _three_part_reply(log)
    stub.flood_limit(answers=1, retry_after_s=30, after=1)  # part 2 must wait half a minute
    service = RouterProcess(settings).wait_ready()
    wait_for(lambda: stub.rate_limited, timeout=60, what="part 2 to meet the rate limit")
    assert service.stop(timeout=30) == 0  # SIGTERM while part 2 waits
    after_stop = list(stub.sent)
    assert [s.shown for s in after_stop] == parts[:1]
    restarted = RouterProcess(settings).wait_ready()
    try:
        wait_for(lambda: of_type(log, t.OutboundSent), timeout=60, what="the reply to be sent")
    finally:
        assert restarted.stop() == 0
    assert _shown(stub) == parts  # each part once, in order


def test_a_base_url_ending_in_bot_is_a_configuration_error_naming_the_root_to_use(stub, settings, monkeypatch):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", stub.token)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", f"{stub.url}/bot")
    process = RouterProcess(settings)
    assert process.proc.wait(timeout=60) == 2
    assert f"TELEGRAM_API_BASE_URL: '{stub.url}/bot' ends in /bot: give the server's root without it " \
           f"('{stub.url}')" in process.stderr()
