"""The trigger stage over a real log: request a run, or pipe into a running one."""

from __future__ import annotations

import json
import os

import msgspec
import pytest

from events import consumer, types as t
from events.queries import cursor_of, pending_messages
from router.channels.base import InboundMessage
from router.inbound import Inbound
from router.trigger_stage import TriggerStage
from rules.allowlist import AllowlistFile
from rules.groups import register_group


@pytest.fixture
def world(settings, log):
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    register_group(log, settings, jid="tg:fam", name="Family", folder="family")
    register_group(log, settings, jid="tg:quiet", name="Quiet", folder="quiet", requires_trigger=False)
    allowlist = AllowlistFile(settings.sender_allowlist_path)
    return Inbound(log, allowlist), TriggerStage(settings, allowlist)


_counter = iter(range(10**6))


def say(inbound: Inbound, jid: str, text: str, *, sender: str = "alice", is_from_me: bool = False,
        is_bot: bool = False) -> int | None:
    n = next(_counter)
    return inbound.message("test", InboundMessage(
        chat_jid=jid, message_id=f"m{n}", sender=sender, sender_name=sender.title(), content=text,
        timestamp="2026-01-01T10:00:00.000Z", is_from_me=is_from_me, is_bot_message=is_bot))


def requests(log) -> list[tuple[str, str]]:
    return [(r.event.folder, r.event.reason) for r in log.read_since(0, types=[t.AgentRunRequested])]


def start_run(log, folder: str, jid: str, through: int, run_id: str = "r1") -> None:
    log.append(t.AgentRunStarted(run_id=run_id, folder=folder, chat_jid=jid, container="c", through_seq=through))


def test_main_group_messages_request_a_run_without_a_trigger(world, log):
    inbound, stage = world
    say(inbound, "local:me", "what's the weather")
    consumer.drain(log, stage)
    assert requests(log) == [("main", "messages")]


def test_a_trigger_group_waits_for_its_trigger_and_keeps_the_rest_as_context(world, log):
    inbound, stage = world
    say(inbound, "tg:fam", "we need milk")
    consumer.drain(log, stage)
    assert requests(log) == []
    say(inbound, "tg:fam", "@Andy add it to the list")
    consumer.drain(log, stage)
    assert requests(log) == [("family", "messages")]


def test_a_no_trigger_group_answers_everything(world, log):
    inbound, stage = world
    say(inbound, "tg:quiet", "anything")
    consumer.drain(log, stage)
    assert requests(log) == [("quiet", "messages")]


def test_unregistered_chats_and_bot_echoes_never_wake_the_agent(world, log):
    inbound, stage = world
    say(inbound, "tg:stranger", "@Andy hi")
    say(inbound, "local:me", "Andy: an echo of my own reply", is_bot=True)
    consumer.drain(log, stage)
    assert requests(log) == []
    assert len(log.read_since(0, types=[t.MessageReceived])) == 2  # stored, not acted on


def test_a_waiting_request_is_not_repeated_until_a_run_starts(world, log):
    inbound, stage = world
    for text in ("one", "two"):
        say(inbound, "local:me", text)
        consumer.drain(log, stage)
    assert requests(log) == [("main", "messages")]
    start_run(log, "main", "local:me", log.last_seq())
    log.append(t.AgentRunFinished(run_id="r1", folder="main", chat_jid="local:me", status="ok"))
    say(inbound, "local:me", "three")
    consumer.drain(log, stage)
    assert requests(log) == [("main", "messages"), ("main", "messages")]


def test_follow_ups_are_piped_into_a_running_container(world, settings, log):
    inbound, stage = world
    first = say(inbound, "tg:fam", "@Andy plan dinner")
    consumer.drain(log, stage)
    start_run(log, "family", "tg:fam", through=first)
    say(inbound, "tg:fam", "no fish please")          # context only
    last = say(inbound, "tg:fam", "@Andy and dessert")
    consumer.drain(log, stage)
    piped = log.read_since(0, types=[t.MessagesPiped])
    assert len(piped) == 1 and piped[0].event.through_seq == last and piped[0].event.message_count == 2
    files = sorted((settings.ipc_dir / "family" / "input").glob("*.json"))
    assert [f.name for f in files] == [piped[0].event.file]
    text = json.loads(files[0].read_text())["text"]
    assert "no fish please" in text and "and dessert" in text and "plan dinner" not in text
    assert log.query("SELECT seq FROM cursors WHERE chat_jid = 'tg:fam'")[0][0] == last
    assert requests(log) == [("family", "messages")]


def test_the_pending_window_keeps_only_the_newest_messages(world, settings, log):
    inbound, stage = world
    start_run(log, "main", "local:me", through=0)
    for n in range(15):
        say(inbound, "local:me", f"message {n}")
    consumer.drain(log, stage)
    text = json.loads(next((settings.ipc_dir / "main" / "input").glob("*.json")).read_text())["text"]
    assert text.count("<message ") == settings.max_messages_per_prompt == 10
    assert "message 5<" in text and "message 4<" not in text


def test_trigger_mode_allowlist_stores_everyone_but_only_allowed_senders_trigger(world, settings, log):
    inbound, stage = world
    settings.config_dir.mkdir(parents=True)
    settings.sender_allowlist_path.write_text(json.dumps(
        {"default": {"allow": "*", "mode": "trigger"}, "chats": {"tg:fam": {"allow": ["alice"], "mode": "trigger"}}}))
    say(inbound, "tg:fam", "@Andy hi", sender="mallory")
    consumer.drain(log, stage)
    assert requests(log) == []
    say(inbound, "tg:fam", "@Andy hi", sender="mallory", is_from_me=True)
    consumer.drain(log, stage)
    assert requests(log) == [("family", "messages")]
    assert len(log.read_since(0, types=[t.MessageReceived])) == 2


def test_drop_mode_refuses_to_store_unknown_senders(world, settings, log):
    inbound, _ = world
    settings.config_dir.mkdir(parents=True)
    settings.sender_allowlist_path.write_text(json.dumps(
        {"default": {"allow": ["alice"], "mode": "drop"}, "chats": {}}))
    assert say(inbound, "tg:fam", "@Andy hi", sender="mallory") is None
    assert say(inbound, "tg:fam", "@Andy hi", sender="mallory", is_from_me=True) is not None
    assert say(inbound, "tg:fam", "hi", sender="alice") is not None
    assert say(inbound, "tg:stranger", "hi", sender="mallory") is not None  # only registered chats drop
    assert len(log.read_since(0, types=[t.MessageReceived])) == 3


def test_main_ignores_the_allowlist_in_trigger_mode(world, settings, log):
    inbound, stage = world
    settings.config_dir.mkdir(parents=True)
    settings.sender_allowlist_path.write_text(json.dumps({"default": {"allow": [], "mode": "trigger"}}))
    say(inbound, "local:me", "hello", sender="mallory")
    consumer.drain(log, stage)
    assert requests(log) == [("main", "messages")]


def test_a_redelivered_message_is_stored_once(world, log):
    inbound, _ = world
    message = InboundMessage(chat_jid="tg:fam", message_id="42", sender="a", sender_name="A", content="hi",
                             timestamp="2026-01-01T10:00:00.000Z")
    assert inbound.message("test", message) == inbound.message("test", message)
    assert len(log.read_since(0, types=[t.MessageReceived])) == 1


def test_every_field_a_channel_reports_is_recorded_with_the_channels_name(world, log):
    inbound, _ = world
    message = InboundMessage(chat_jid="tg:fam", message_id="43", sender="a", sender_name="A", content="yes",
                             timestamp="2026-01-01T10:00:00.000Z", is_from_me=True, is_bot_message=True,
                             reply_to_message_id="42", reply_to_message_content="hi", reply_to_sender_name="B",
                             thread_id="7")
    seq = inbound.message("telegram", message)
    event = log.get(seq).event
    assert (type(event), event.channel) == (t.MessageReceived, "telegram")
    assert {name: getattr(event, name) for name in message.__struct_fields__} == msgspec.structs.asdict(message)


def test_a_channels_message_has_the_fields_of_the_event_but_the_channel():
    event = {f.name: f for f in msgspec.structs.fields(t.MessageReceived) if f.name != "channel"}
    reported = {f.name: f for f in msgspec.structs.fields(InboundMessage)}
    assert reported == event


def test_chat_metadata_is_recorded_when_it_changes_only(world, log):
    inbound, _ = world
    for name in ("Family", "Family", "Family & friends"):
        inbound.chat_metadata("tg:fam", "2026-01-01T10:00:00.000Z", name, "telegram", True)
    seen = log.read_since(0, types=[t.ChatSeen])
    assert [r.event.name for r in seen] == ["Family", "Family & friends"]
    assert log.query("SELECT name, is_group FROM chats WHERE jid = 'tg:fam'")[0][:] == ("Family & friends", 1)


def test_a_refused_pipe_records_why_and_leaves_the_messages_pending(world, settings, log, tmp_path):
    inbound, stage = world
    first = say(inbound, "tg:fam", "@Andy plan dinner")
    consumer.drain(log, stage)
    start_run(log, "family", "tg:fam", through=first)
    victim = tmp_path / "victim"
    victim.mkdir()
    (settings.ipc_dir / "family").mkdir(parents=True, exist_ok=True)
    (settings.ipc_dir / "family" / "input").symlink_to(victim)
    last = say(inbound, "tg:fam", "@Andy and dessert")
    consumer.drain(log, stage)
    assert os.listdir(victim) == []
    assert log.read_since(0, types=[t.MessagesPiped]) == []
    [refusal] = [r.event for r in log.read_since(0, types=[t.HostPathRefused])]
    assert (refusal.folder, refusal.operation) == ("family", "pipe messages into the running agent")
    assert refusal.path == str(settings.ipc_dir / "family" / "input") and "symbolic link" in refusal.reason
    with log.transaction() as tx:  # still after the cursor: the run's end asks for a run that answers it
        assert [r.seq for r in pending_messages(tx, "tg:fam", cursor_of(tx, "tg:fam"), 10)] == [last]
