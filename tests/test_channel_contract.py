"""The channel contract: what every chat channel does, written once and run against each one.

Each channel runs against its stand-in server on 127.0.0.1, reached by the
channel's real client library (python-telegram-bot; slack-bolt and
slack-sdk over HTTP and the Socket Mode WebSocket; the local chat over its
Unix socket), with the real `RouterApp` and event log; the crash item runs
`nanoclaw run` as a process and kills it. An item a channel has no part in
(the local chat has no bots, mentions, rate limits or server to lose) is
not generated for it: see `Driver.can` in tests/channel_contract.py.
"""

from __future__ import annotations

import asyncio
import signal
from contextlib import asynccontextmanager

import pytest

from events import EventLog, types as t
from rules.groups import register_group
from tests.channel_contract import DRIVERS, Driver, drivers_that_can, write_allowlist
from tests.live_router import fresh_settings, live_router, queue_file, until
from tests.observe import of_type
from tests.router_process import RouterProcess
from tests.waiting import wait_for


def _setup(name: str, root, monkeypatch) -> tuple[Driver, object, EventLog]:
    driver = DRIVERS[name]()
    driver.start(monkeypatch)
    settings = fresh_settings()
    if hasattr(driver, "bind"):
        driver.bind(settings)
    log = EventLog(settings.db_path)
    register_group(log, settings, jid=driver.main_jid, name="Alice", folder="main", is_main=True)
    register_group(log, settings, jid=driver.group_jid, name="Family", folder="family")
    return driver, settings, log


@pytest.fixture
def channel(request, root, monkeypatch):
    driver, settings, log = _setup(request.param, root, monkeypatch)
    yield driver, settings, log
    log.close()
    driver.stop()


def each(*needs: str):
    return pytest.mark.parametrize("channel", drivers_that_can(*needs), indirect=True)


def _queue(log: EventLog, jid: str, outbound_id: str, text: str) -> None:
    log.append(t.OutboundQueued(outbound_id=outbound_id, chat_jid=jid, text=text), key=f"out:{outbound_id}")


def _outcome(log: EventLog, outbound_id: str) -> str | None:
    for cls, state in ((t.OutboundSent, "sent"), (t.OutboundFailed, "failed")):
        if any(e.outbound_id == outbound_id for e in of_type(log, cls)):
            return state
    return None


async def _connected(driver: Driver) -> None:
    await until(driver.connected, what=f"{driver.name} to connect")


@asynccontextmanager
async def _live(driver: Driver, settings, log: EventLog):
    """The router running, and the channel connected to its stand-in."""
    async with live_router(settings, log):
        await _connected(driver)
        yield


LONG = " ".join(f"word{n}" for n in range(2_400))  # about 18,000 characters: several parts on every channel


@each()
def test_a_message_is_recorded_and_the_reply_goes_back(channel):
    driver, settings, log = channel

    async def scenario():
        async with _live(driver, settings, log):
            driver.say(driver.main_jid, "what is on today?")
            await until(lambda: of_type(log, t.AgentRunRequested), what="a run request")
            _queue(log, driver.main_jid, "o1", "Nothing until **noon**.")
            await until(lambda: _outcome(log, "o1"), what="the reply's outcome")

    asyncio.run(scenario())
    [message] = of_type(log, t.MessageReceived)
    assert (message.chat_jid, message.sender, message.content, message.channel) == (
        driver.main_jid, driver.person, "what is on today?", driver.name)
    assert _outcome(log, "o1") == "sent"
    assert [s.text.replace("*", "").replace("<b>", "").replace("</b>", "") for s in driver.shown(driver.main_jid)] \
        == ["Nothing until noon."]


@each()
def test_a_message_delivered_again_after_a_restart_is_stored_once(channel):
    driver, settings, log = channel

    async def scenario():
        async with _live(driver, settings, log):
            said = driver.say(driver.main_jid, "remember the milk")
            await until(lambda: of_type(log, t.MessageReceived), what="the message")
        async with _live(driver, settings, log):
            driver.deliver_again(said)
            driver.say(driver.main_jid, "and the bread")
            await until(lambda: len(of_type(log, t.MessageReceived)) >= 2, what="the next message")
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert [m.content for m in of_type(log, t.MessageReceived)] == ["remember the milk", "and the bread"]


@each()
def test_a_long_reply_arrives_in_order_as_the_parts_the_channel_cuts(channel):
    driver, settings, log = channel

    async def scenario():
        async with _live(driver, settings, log):
            _queue(log, driver.main_jid, "long", LONG)
            await until(lambda: _outcome(log, "long"), timeout=60, what="the long reply")

    asyncio.run(scenario())
    shown = [s.text for s in driver.shown(driver.main_jid)]
    assert shown == driver.split(LONG)
    assert " ".join(shown).split() == LONG.split()
    if driver.name != "local":  # the terminal takes any length in one piece
        assert len(shown) > 1
        assert [e.part for e in of_type(log, t.OutboundPartSent)] == list(range(1, len(shown) + 1))


@each("away")
def test_what_was_said_while_the_service_was_stopped_is_recorded_once_and_answered(channel):
    """Telegram holds a bot's updates; Slack and Discord are read back from their history when they connect."""
    driver, settings, log = channel
    contents = lambda: [m.content for m in of_type(log, t.MessageReceived)]

    async def scenario():
        async with _live(driver, settings, log):
            driver.say(driver.main_jid, "before the stop")
            driver.say(driver.group_jid, "just chatting", sender=driver.other)
            await until(lambda: len(contents()) == 2, what="the messages before the stop")
        await until(driver.not_listening, what=f"{driver.name} to be closed")
        driver.say(driver.main_jid, "what did I miss?")
        driver.say(driver.group_jid, "@Andy are you there?", sender=driver.other)
        driver.say(driver.group_jid, "no trigger here", sender=driver.other)
        driver.time_passes()
        async with _live(driver, settings, log):
            await until(lambda: len(contents()) >= 5, timeout=60, what="what was said while it was stopped")
            driver.say(driver.main_jid, "and now?")
            await until(lambda: len(contents()) >= 6, what="the next message")
        async with _live(driver, settings, log):  # started again: nothing is read back twice
            await _connected(driver)
            driver.say(driver.main_jid, "once more")
            await until(lambda: len(contents()) >= 7, what="the message after a second restart")
            await asyncio.sleep(0.5)

    asyncio.run(scenario())
    got = contents()
    assert sorted(got[:2]) == ["before the stop", "just chatting"]
    assert sorted(got[2:5]) == ["@Andy are you there?", "no trigger here", "what did I miss?"]
    assert got[5:] == ["and now?", "once more"]
    asked = [r.folder for r in of_type(log, t.AgentRunRequested)]
    assert "family" in asked  # only the trigger read back asks for the family's agent


@each("formatting")
def test_refused_formatting_is_sent_again_as_plain_text(channel):
    driver, settings, log = channel
    driver.refuse_formatting()

    async def scenario():
        async with _live(driver, settings, log):
            _queue(log, driver.main_jid, "fmt", "A **bold** plan")
            await until(lambda: _outcome(log, "fmt"), what="the reply")

    asyncio.run(scenario())
    [shown] = driver.shown(driver.main_jid)
    assert not shown.formatted and shown.text.replace("*", "") == "A bold plan"
    assert _outcome(log, "fmt") == "sent"


@each("rate_limit")
def test_a_rate_limit_is_waited_out_and_the_reply_sent_once(channel):
    driver, settings, log = channel
    driver.rate_limit(retry_after_s=1)

    async def scenario():
        async with _live(driver, settings, log):
            _queue(log, driver.main_jid, "slow", "After the wait.")
            await until(lambda: _outcome(log, "slow"), what="the reply")

    asyncio.run(scenario())
    assert driver.rate_limited() == 1
    assert [s.text for s in driver.shown(driver.main_jid)] == ["After the wait."]
    [sent] = of_type(log, t.OutboundSent)
    assert sent.attempts == 1  # waited out inside the attempt, not counted as a failure


@each("outage")
def test_the_server_gone_and_back_loses_nothing(channel):
    driver, settings, log = channel

    async def scenario():
        async with _live(driver, settings, log):
            driver.say(driver.main_jid, "before")
            await until(lambda: of_type(log, t.MessageReceived), what="the first message")
            driver.go_away()
            _queue(log, driver.main_jid, "during", "Written while the server was away.")
            await asyncio.sleep(2)
            assert _outcome(log, "during") is None  # still owed, not given up
            driver.come_back()
            await _connected(driver)
            driver.say(driver.main_jid, "after")
            await until(lambda: len(of_type(log, t.MessageReceived)) == 2, timeout=60, what="a message after")
            await until(lambda: _outcome(log, "during"), timeout=60, what="the reply owed")

    asyncio.run(scenario())
    assert [m.content for m in of_type(log, t.MessageReceived)] == ["before", "after"]
    assert _outcome(log, "during") == "sent"
    assert [s.text for s in driver.shown(driver.main_jid)] == ["Written while the server was away."]


@each("bots")
def test_other_bots_and_the_bots_own_messages_never_wake_the_agent(channel):
    driver, settings, log = channel

    async def scenario():
        async with _live(driver, settings, log):
            driver.say_as_bot(driver.main_jid, "@Andy rain at five")
            driver.say_as_self(driver.main_jid, "@Andy I said this")
            driver.say(driver.main_jid, "a person, last")
            await until(lambda: any(m.content == "a person, last" for m in of_type(log, t.MessageReceived)),
                        what="the person's message")
            await until(lambda: of_type(log, t.AgentRunRequested), what="the run for the person")
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    people = [m for m in of_type(log, t.MessageReceived) if not m.is_bot_message]
    assert [m.content for m in people] == ["a person, last"]
    assert len(of_type(log, t.AgentRunRequested)) == 1  # the person's message alone woke it


@each("mentions")
def test_a_mention_of_the_bot_is_the_trigger_in_a_group(channel):
    driver, settings, log = channel

    async def scenario():
        async with _live(driver, settings, log):
            driver.say(driver.group_jid, "anyone there?", sender=driver.other)
            await until(lambda: of_type(log, t.MessageReceived), what="the plain message")
            await asyncio.sleep(0.3)
            assert not of_type(log, t.AgentRunRequested)  # no trigger, no run
            driver.say(driver.group_jid, "what's for dinner?", mention=True)
            await until(lambda: of_type(log, t.AgentRunRequested), what="the mention's run")

    asyncio.run(scenario())
    assert [m.content for m in of_type(log, t.MessageReceived)] == ["anyone there?", "@Andy what's for dinner?"]


@each()
def test_the_sender_allowlist_goes_by_the_channels_user_ids(channel):
    driver, settings, log = channel
    write_allowlist(settings.sender_allowlist_path, driver.group_jid, [driver.person], mode="drop")

    async def scenario():
        async with _live(driver, settings, log):
            driver.say(driver.group_jid, "@Andy from someone not allowed", sender=driver.other)
            driver.say(driver.group_jid, "@Andy from the allowed person")
            await until(lambda: of_type(log, t.AgentRunRequested), what="the allowed person's run")
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert [(m.sender, m.content) for m in of_type(log, t.MessageReceived)] == [
        (driver.person, "@Andy from the allowed person")]


PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489") + b"\0" * 64


@each("files")
def test_a_file_sent_in_the_chat_is_saved_in_the_groups_folder_and_named_in_the_message(channel, monkeypatch):
    driver, settings, log = channel
    from router.channels import inbound_files
    monkeypatch.setattr(inbound_files, "MAX_INBOUND_BYTES", 4096)
    group = settings.groups_dir / "main"
    outside = settings.root / "outside"
    outside.mkdir()
    group.mkdir(parents=True, exist_ok=True)
    (group / "inbox").symlink_to(outside)  # planted by the agent: the host must not write through it

    async def scenario():
        async with _live(driver, settings, log):
            driver.say_with_file(driver.main_jid, "what is in this picture?", "../../cat photo.png", PNG, "image/png")
            driver.say_with_file(driver.main_jid, "", "huge.bin", b"x" * 5000, "application/octet-stream")
            await until(lambda: len(of_type(log, t.MessageReceived)) >= 2, what="both messages")

    asyncio.run(scenario())
    # a message waits for its files before it is recorded, so the two may be recorded in either order
    [photo] = [m for m in of_type(log, t.MessageReceived) if "picture" in m.content]
    [huge] = [m for m in of_type(log, t.MessageReceived) if "huge" in m.content]
    assert photo.content.startswith("what is in this picture?\n[Photo: /workspace/group/inbox/")
    assert "(image/png, " in photo.content
    stored = photo.content.split("/workspace/group/inbox/")[1].split(" (")[0]
    assert "/" not in stored and stored.endswith(".png")  # the name made plain, or given by its content
    assert (group / "inbox" / stored).read_bytes() == PNG
    assert not (group / "inbox").is_symlink() and list(outside.iterdir()) == []
    assert huge.content == "[Document: huge.bin, not downloaded: it is 5 KB and files up to 4 KB are]"


@each("files")
def test_a_file_the_agent_sends_arrives_with_its_caption(channel):
    driver, settings, log = channel

    async def scenario():
        async with _live(driver, settings, log):
            queue_file(settings, log, "f1", "report.png", PNG, "image/png", "the report", jid=driver.main_jid)
            await until(lambda: _outcome(log, "f1"), what="the file to be sent")

    asyncio.run(scenario())
    assert _outcome(log, "f1") == "sent"
    assert driver.files_shown(driver.main_jid) == [("report.png", PNG, "the report")]


@pytest.mark.docker  # `nanoclaw run` checks the container runtime first
@each()
def test_a_kill_after_recording_a_message_stores_it_once_when_it_comes_again(channel):
    driver, settings, log = channel
    crashed = RouterProcess(settings, module=driver.service_module, NANOCLAW_FAULT="inbound-recorded",
                            **driver.service_env).wait_ready()
    wait_for(driver.connected, timeout=30, what=f"{driver.name} to connect")
    said = driver.say(driver.main_jid, "remember the milk") if driver.name != "local" else None
    if said is None:  # the terminal's client is the one that sends again: this one dies waiting for its ack
        said = _say_without_ack(driver, "remember the milk")
    assert crashed.proc.wait(timeout=30) == -signal.SIGKILL
    restarted = RouterProcess(settings, module=driver.service_module, **driver.service_env).wait_ready()
    try:
        wait_for(driver.connected, timeout=30, what=f"{driver.name} to connect again")
        if not driver.redelivers:  # the terminal's client, or a resumed Discord session, sends it again
            driver.deliver_again(said)
        driver.say(driver.main_jid, "and the bread")
        wait_for(lambda: len(of_type(log, t.MessageReceived)) >= 2, timeout=60, what="the next message")
    finally:
        assert restarted.stop() == 0
    assert [m.content for m in of_type(log, t.MessageReceived)] == ["remember the milk", "and the bread"]
    assert len(of_type(log, t.AgentRunRequested)) <= 2


def _say_without_ack(driver, text: str):
    from tests.channel_contract import Said
    said = Said(driver.main_jid, "crash-1", text)
    peer = driver._peer()
    peer.send({"op": "send", "jid": said.jid, "id": said.handle, "text": text, "sender": "alice"})
    assert peer.line() is None  # the router died before answering
    peer.close()
    return said


@pytest.mark.docker
@each("parts")
def test_a_reply_cut_by_a_kill_resumes_at_the_first_part_not_sent(channel):
    driver, settings, log = channel
    parts = driver.split(LONG)
    assert len(parts) >= 3
    _queue(log, driver.main_jid, "cut", LONG)
    crashed = RouterProcess(settings, module=driver.service_module, NANOCLAW_FAULT="delivery-part-recorded",
                            **driver.service_env)  # killed once part 1 is recorded
    assert crashed.proc.wait(timeout=60) == -signal.SIGKILL
    restarted = RouterProcess(settings, module=driver.service_module, **driver.service_env).wait_ready()
    try:
        wait_for(lambda: _outcome(log, "cut"), timeout=120, what="the rest of the reply")
    finally:
        assert restarted.stop() == 0
    assert [s.text for s in driver.shown(driver.main_jid)] == parts  # each part once, in order
    assert [e.part for e in of_type(log, t.OutboundPartSent)] == list(range(1, len(parts) + 1))
