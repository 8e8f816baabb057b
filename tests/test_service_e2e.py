"""End to end: `nanoclaw run` (router + worker) answering the local chat from real containers."""

from __future__ import annotations

import json
import os
import signal
import time
from contextlib import contextmanager

import pytest

from events import types as t
from router.channels.local_client import LocalChatClient
from rules.groups import register_group
from tests.observe import our_containers  # noqa: F401  (other tests import it from here)
from tests.router_process import RouterProcess

pytestmark = pytest.mark.docker


@pytest.fixture
def service_env(settings, log, agent_image, monkeypatch):
    env = dict(CONTAINER_IMAGE=agent_image, CONTAINER_NETWORK="none", AGENT_PROVIDER="scripted",
               IDLE_TIMEOUT="2000")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    register_group(log, settings, jid="local:fam", name="Family", folder="family")
    return settings, log


def replies(client: LocalChatClient, count: int, timeout: float = 90) -> list[str]:
    found: list[str] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        event = client.next_event(0.5)
        if event and event.get("op") == "reply":
            found.append(event["text"])
    return found


@contextmanager
def chatting(settings, jid: str = "local:me"):
    """A running service and a terminal attached to one chat; stopped cleanly afterwards."""
    service = RouterProcess(settings, worker=True).wait_ready()
    client = LocalChatClient(service.socket, jid)
    try:
        yield service, client
    finally:
        client.close()
        service.stop(timeout=60)


def use_script(settings, monkeypatch, scripts: dict) -> None:
    path = settings.root / "scripts.json"
    path.write_text(json.dumps(scripts))
    monkeypatch.setenv("SCRIPTED_AGENT_FILE", str(path))


def test_a_message_in_the_main_group_is_answered_by_an_agent_container(service_env):
    settings, log = service_env
    with chatting(settings) as (service, client):
        client.send("what is 2 + 2?")
        answer = replies(client, 1)
    assert service.proc.returncode == 0
    assert len(answer) == 1 and "what is 2 + 2?</message>" in answer[0]  # the scripted agent echoes its prompt
    assert [e.status for e in [r.event for r in log.read_since(0, types=[t.AgentRunFinished])]] == ["ok"]
    assert our_containers(settings) == []


def test_a_trigger_group_answers_only_when_addressed_and_sees_the_context(service_env):
    settings, log = service_env
    with chatting(settings, "local:fam") as (_, client):
        client.send("we need milk")
        assert replies(client, 1, timeout=3) == []
        client.send("@Andy add it to the list")
        answer = replies(client, 1)
    assert "we need milk" in answer[0] and "@Andy add it to the list" in answer[0]


def test_a_worker_killed_mid_run_is_restarted_and_the_message_is_answered_once(service_env, monkeypatch):
    settings, log = service_env
    use_script(settings, monkeypatch, {"main": {"turns": [[{"sleep": 3}, {"reply": "finally"}]]}})
    with chatting(settings) as (service, client):
        client.send("slow question")
        deadline = time.monotonic() + 60
        while not log.read_since(0, types=[t.AgentRunStarted]) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(service.worker_pid(), signal.SIGKILL)
        answer = replies(client, 1, timeout=90)
        answer += replies(client, 1, timeout=5)  # and no second copy
    history = "\n".join(f"{r.seq} {str(r.event)[:150]}" for r in log.read_since(0, limit=None))
    assert answer == ["finally"], history + "\n" + service.stderr()
    finished = [r.event for r in log.read_since(0, types=[t.AgentRunFinished])]
    assert [f.status for f in finished] == ["interrupted", "ok"]
    assert our_containers(settings) == []


def test_a_message_sent_by_the_agents_tool_reaches_the_chat_through_ipc(service_env, monkeypatch):
    settings, log = service_env
    use_script(settings, monkeypatch, {"main": {"turns": [[
        {"tool": "send_message", "args": {"text": "from the tool"}}, {"sleep": 0.5}, {"reply": "done"}]]}})
    with chatting(settings) as (_, client):
        client.send("use your tool")
        answer = replies(client, 2)
    assert answer == ["from the tool", "done"]
    received = [r.event for r in log.read_since(0, types=[t.IpcReceived])]
    assert [(e.folder, e.kind, e.payload["text"]) for e in received] == [("main", "messages", "from the tool")]


def test_a_follow_up_is_piped_into_the_running_agent_not_a_new_container(service_env, monkeypatch):
    settings, log = service_env
    monkeypatch.setenv("IDLE_TIMEOUT", "60000")
    with chatting(settings) as (_, client):
        client.send("first question")
        first = replies(client, 1)
        client.send("and a follow-up")
        second = replies(client, 1)
    assert "first question" in first[0]
    assert "and a follow-up" in second[0] and "first question" not in second[0]
    assert len(log.read_since(0, types=[t.AgentRunStarted])) == 1
    piped = [r.event for r in log.read_since(0, types=[t.MessagesPiped])]
    assert len(piped) == 1 and piped[0].message_count == 1


def quoted(reply: str) -> list[str]:
    """The messages an echoing agent's reply quotes, in order."""
    return [line.split(">", 1)[1].rsplit("</message>", 1)[0] for line in reply.splitlines()
            if line.startswith("<message ")]


def test_the_main_group_and_a_triggered_group_talk_at_once_and_each_gets_its_replies_in_order(service_env):
    settings, log = service_env
    rounds = [(["main question 1"], ["we need milk", "@Andy add it to the list"]),
              (["main question 2"], ["@Andy and eggs too"]),
              (["main question 3"], ["thanks, that is all"])]  # no trigger: no reply in the family chat
    with chatting(settings) as (service, me):
        fam = LocalChatClient(service.socket, "local:fam")
        try:
            got_me, got_fam = [], []
            for mine, family in rounds:
                for text in mine:
                    me.send(text)
                for text in family:
                    fam.send(text)
                got_me += [quoted(r) for r in replies(me, 1)]
                got_fam += [quoted(r) for r in replies(fam, 1, timeout=90 if "@Andy" in " ".join(family) else 3)]
        finally:
            fam.close()
    assert got_me == [["main question 1"], ["main question 2"], ["main question 3"]]
    assert got_fam == [["we need milk", "@Andy add it to the list"], ["@Andy and eggs too"]]
    assert our_containers(settings) == []
