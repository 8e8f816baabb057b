"""A message the host refuses to pipe into a running agent is answered by the group's next run."""

from __future__ import annotations

import threading

import docker
import pytest

from base.config import load_settings
from events import consumer, types as t
from jobs.message_run import MessageRun
from jobs.runtime import LABEL_GROUP, LABEL_INSTALL
from router.channels.base import InboundMessage
from router.inbound import Inbound
from router.trigger_stage import TriggerStage
from rules.allowlist import AllowlistFile
from rules.groups import register_group
from tests.observe import of_type
from tests.waiting import wait_for

pytestmark = pytest.mark.docker


def say(inbound: Inbound, text: str, n: int) -> None:
    inbound.message("test", InboundMessage(chat_jid="local:me", message_id=f"m{n}", sender="alice",
                                           sender_name="Alice", content=text, timestamp="2026-01-01T10:00:00.000Z"))


def test_a_refused_pipe_is_answered_by_the_next_run(root, agent_image, monkeypatch, log, tmp_path):
    for key, value in {"CONTAINER_IMAGE": agent_image, "CONTAINER_NETWORK": "none", "AGENT_PROVIDER": "scripted",
                       "IDLE_TIMEOUT": "60000"}.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    settings.ensure_dirs()
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    allowlist = AllowlistFile(settings.sender_allowlist_path)
    inbound, stage = Inbound(log, allowlist), TriggerStage(settings, allowlist)
    say(inbound, "first question", 1)
    first = threading.Thread(target=MessageRun(settings, log).run, args=("main",))
    first.start()
    wait_for(lambda: of_type(log, t.AgentOutput), timeout=90, what="the first answer")
    victim = tmp_path / "victim"
    victim.mkdir()
    input_dir = settings.ipc_dir / "main" / "input"
    input_dir.rename(tmp_path / "old-input")  # the running container keeps its mount of the old folder
    input_dir.symlink_to(victim)
    say(inbound, "second question", 2)
    consumer.drain(log, stage)
    assert of_type(log, t.MessagesPiped) == [] and list(victim.iterdir()) == []
    engine = docker.from_env()
    for container in engine.containers.list(filters={"label": [f"{LABEL_INSTALL}={settings.root}",
                                                               f"{LABEL_GROUP}=main"]}):
        container.stop(timeout=1)  # the close sentinel cannot reach it either: end the run
    first.join(60)
    assert [r.reason for r in of_type(log, t.AgentRunRequested)][-1] == "drain"
    monkeypatch.setenv("IDLE_TIMEOUT", "1000")  # the next run may end soon after its answer
    assert MessageRun(load_settings(), log).run("main") == "success: ok"
    assert "second question" in of_type(log, t.OutboundQueued)[-1].text
    assert {e.operation for e in of_type(log, t.HostPathRefused)} >= {"pipe messages into the running agent",
                                                                      "use the folder"}
    assert list(victim.iterdir()) == []
