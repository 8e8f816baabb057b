"""The router as a real process: the local chat through its socket, replay, crashes, shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from events import types as t
from router.channels.local_client import ChatClientError, LocalChatClient
from rules.groups import register_group
from tests.observe import of_type
from tests.router_process import RouterProcess
from tests.waiting import wait_for

pytestmark = pytest.mark.docker  # `nanoclaw run` checks the container runtime first


@pytest.fixture
def main_group(settings, log):
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    return log


@pytest.fixture
def router(settings, main_group):
    process = RouterProcess(settings).wait_ready()
    yield process
    process.kill()


def test_a_message_in_the_terminal_becomes_an_event_and_a_run_request(router, main_group):
    client = LocalChatClient(router.socket, "local:me", sender="alice")
    try:
        ack = client.send("what is the weather")
    finally:
        client.close()
    messages = of_type(main_group, t.MessageReceived)
    assert ack["seq"] and [(m.content, m.sender_name, m.channel) for m in messages] == [
        ("what is the weather", "alice", "local")]
    request = wait_for(lambda: of_type(main_group, t.AgentRunRequested), what="a run request")
    assert (request[0].folder, request[0].chat_jid) == ("main", "local:me")
    assert of_type(main_group, t.ChatSeen)[0].channel == "local"


def test_the_socket_is_for_its_owner_only(router):
    assert oct(router.socket.stat().st_mode & 0o777) == "0o600"


def test_an_unregistered_local_chat_is_refused_with_the_command_to_register_it(router):
    with pytest.raises(ChatClientError, match="nanoclaw groups add local:stranger"):
        LocalChatClient(router.socket, "local:stranger")


def test_a_queued_reply_reaches_the_attached_terminal_and_is_recorded(router, main_group, settings):
    client = LocalChatClient(router.socket, "local:me")
    try:
        main_group.append(t.OutboundQueued(outbound_id="o1", chat_jid="local:me", text="Sunny."), key="out:o1")
        event = wait_for(lambda: client.next_event(0.1), what="a reply")
    finally:
        client.close()
    assert (event["op"], event["text"], event["id"]) == ("reply", "Sunny.", "o1")
    sent = wait_for(lambda: of_type(main_group, t.OutboundSent), what="OutboundSent")
    assert [(s.outbound_id, s.channel) for s in sent] == [("o1", "local")]
    transcript = (settings.data_dir / "local" / "me.jsonl").read_text().splitlines()
    assert [json.loads(line)["text"] for line in transcript] == ["Sunny."]


def test_one_shot_chat_prints_the_replies_that_follow(router, main_group, settings):
    def fake_agent() -> None:
        wait_for(lambda: of_type(main_group, t.AgentRunRequested), what="request")
        for n, text in enumerate(["First part.", "Second part."]):
            main_group.append(t.OutboundQueued(outbound_id=f"a{n}", chat_jid="local:me", text=text))

    agent = threading.Thread(target=fake_agent)
    agent.start()
    result = subprocess.run([sys.executable, "-m", "nanoclaw.cli", "chat", "--group", "main", "--wait", "20",
                             "hello", "there"], capture_output=True, text=True, env=os.environ.copy(), timeout=60)
    agent.join()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["First part.", "Second part."]
    assert of_type(main_group, t.MessageReceived)[0].content == "hello there"


def test_one_shot_chat_without_a_reply_gives_up_after_wait(router):
    result = subprocess.run([sys.executable, "-m", "nanoclaw.cli", "chat", "--wait", "0.5", "anyone?"],
                            capture_output=True, text=True, env=os.environ.copy(), timeout=30)
    assert result.returncode == 1 and "no reply within 0.5 s" in result.stderr


def test_a_crash_between_send_and_record_delivers_the_reply_once(settings, main_group):
    main_group.append(t.OutboundQueued(outbound_id="o1", chat_jid="local:me", text="Only once."), key="out:o1")
    crashed = RouterProcess(settings, NANOCLAW_FAULT="delivery-after-send")
    assert crashed.proc.wait(timeout=30) == -signal.SIGKILL
    assert of_type(main_group, t.OutboundSent) == []  # sent, but the record was lost
    restarted = RouterProcess(settings).wait_ready()
    try:
        wait_for(lambda: of_type(main_group, t.OutboundSent), what="the resend to be recorded")
        assert "already delivered" in restarted.stderr()
    finally:
        restarted.stop()
    lines = (settings.data_dir / "local" / "me.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["o1"]
    assert len(of_type(main_group, t.OutboundSent)) == 1


def test_a_crash_between_sending_a_file_and_its_record_keeps_the_copy_for_the_resend(settings, main_group):
    from tests.test_sent_files import png
    from tests.test_telegram_delivery import queue_file
    queue_file(settings, main_group, "f1", "shot.png", png(), "image/png", "", jid="local:me")
    copy = settings.data_dir / "outbox" / "f1" / "shot.png"
    crashed = RouterProcess(settings, NANOCLAW_FAULT="delivery-after-send")
    assert crashed.proc.wait(timeout=30) == -signal.SIGKILL
    assert copy.exists()  # sent, the record lost: the copy waits for the resend
    restarted = RouterProcess(settings).wait_ready()
    try:
        wait_for(lambda: of_type(main_group, t.OutboundSent), what="the resend to be recorded")
    finally:
        restarted.stop()
    lines = [json.loads(line) for line in (settings.data_dir / "local" / "me.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == ["f1"]  # the local chat took it once
    assert Path(lines[0]["file"]["path"]).read_bytes() == png()
    assert not copy.parent.exists()  # released once recorded


def test_messages_recorded_while_the_router_was_down_are_acted_on_at_start(settings, main_group):
    main_group.append(t.MessageReceived(chat_jid="local:me", message_id="x1", sender="a", sender_name="A",
                                        content="are you there?", timestamp="2026-01-01T00:00:00.000Z"))
    router = RouterProcess(settings).wait_ready()
    try:
        assert of_type(main_group, t.AgentRunRequested)  # replayed before going live
        assert "replayed 1 event(s) past the triggers stage" in router.stderr()
    finally:
        router.stop()


def test_a_crash_after_recording_a_message_loses_nothing(settings, main_group):
    crashed = RouterProcess(settings, NANOCLAW_FAULT="triggers-before-request").wait_ready()
    client = LocalChatClient(crashed.socket, "local:me")
    try:
        client.send("remember me")
    except ChatClientError:
        pass  # the router may die before it acknowledges
    finally:
        client.close()
    assert crashed.proc.wait(timeout=30) == -signal.SIGKILL
    assert [m.content for m in of_type(main_group, t.MessageReceived)] == ["remember me"]
    assert of_type(main_group, t.AgentRunRequested) == []
    restarted = RouterProcess(settings).wait_ready()
    try:
        assert len(of_type(main_group, t.AgentRunRequested)) == 1
    finally:
        restarted.stop()


def test_sigterm_stops_the_router_cleanly(router):
    assert router.stop() == 0
    assert not router.socket.exists()
    assert "router stopped" in router.stderr()


def test_a_second_router_refuses_to_share_the_socket(router, settings):
    second = RouterProcess(settings)
    assert second.proc.wait(timeout=30) == 1
    assert "another router is already serving" in second.stderr()


def test_without_docker_the_router_stops_with_a_clear_fatal_message(settings, main_group):
    process = RouterProcess(settings, DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert process.proc.wait(timeout=30) == 1
    assert "FATAL: the container runtime is not reachable" in process.stderr()


def test_the_terminal_sees_typing_while_the_agent_works(router, main_group):
    client = LocalChatClient(router.socket, "local:me")
    try:
        main_group.append(t.AgentRunStarted(run_id="r1", folder="main", chat_jid="local:me", container="c"))
        on = wait_for(lambda: client.next_event(0.1), what="typing on")
        main_group.append(t.AgentRunFinished(run_id="r1", folder="main", chat_jid="local:me", status="ok"))
        off = wait_for(lambda: client.next_event(0.1), what="typing off")
    finally:
        client.close()
    assert (on["op"], on["on"], off["op"], off["on"]) == ("typing", True, "typing", False)


def test_interactive_chat_sends_each_line_prints_replies_and_leaves_on_end_of_input(router, main_group):
    proc = subprocess.Popen([sys.executable, "-m", "nanoclaw.cli", "chat"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        proc.stdin.write("first line\n")
        proc.stdin.flush()
        wait_for(lambda: of_type(main_group, t.MessageReceived), what="the first line")
        main_group.append(t.OutboundQueued(outbound_id="o1", chat_jid="local:me", text="Got it."))
        wait_for(lambda: of_type(main_group, t.OutboundSent), what="the reply to be sent")
        time.sleep(0.3)
        out, err = proc.communicate("second line\n", timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Andy: Got it." in out
    assert [m.content for m in of_type(main_group, t.MessageReceived)] == ["first line", "second line"]
