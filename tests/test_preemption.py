"""Idle agents give way to waiting groups, and only idle ones: a run just handed a message is busy."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from events import consumer, types as t
from jobs.message_run import MessageRun
from jobs.run_state import RUNS
from jobs.worker import preempt_idle
from router.inbound import Inbound
from router.trigger_stage import TriggerStage
from rules.allowlist import AllowlistFile
from rules.groups import register_group
from tests.observe import of_type
from tests.test_agent_job import say
from tests.waiting import wait_for

pytestmark = pytest.mark.docker

# First turn answers at once; the follow-up's turn takes 4 s, the time a real model thinks.
SCRIPT = {"turns": [[{"reply_prompt": True}], [{"sleep": 4}, {"reply_prompt": True}]]}


@pytest.fixture
def world(scripted_env, log):
    settings = scripted_env(idle_timeout_ms=60_000, scripts={"*": SCRIPT})
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    allowlist = AllowlistFile(settings.sender_allowlist_path)
    return settings, log, Inbound(log, allowlist), TriggerStage(settings, allowlist)


def test_a_run_just_piped_a_message_is_not_closed_as_idle_and_is_once_it_answered(world):
    settings, log, inbound, triggers = world
    one_slot = dataclasses.replace(settings, max_concurrent_containers=1)
    say(inbound, "local:me", "@Andy first")
    run = threading.Thread(target=MessageRun(settings, log).run, args=("main",))
    run.start()
    try:
        wait_for(lambda: of_type(log, t.OutboundQueued), timeout=90, what="the first reply")
        wait_for(RUNS.idle_runs, timeout=10, what="the run marked idle after its answer")
        say(inbound, "local:me", "@Andy a follow-up that takes a while")
        consumer.drain(log, triggers)
        assert len(of_type(log, t.MessagesPiped)) == 1
        # another group waits and the one slot is taken, but this agent is working on the follow-up
        assert preempt_idle(one_slot, log, pending=1) is None
        wait_for(lambda: len(of_type(log, t.OutboundQueued)) == 2, timeout=60, what="the follow-up's reply")
        # answered, it is idle again, and gives its slot away
        wait_for(lambda: preempt_idle(one_slot, log, pending=1) == "main", timeout=10, what="the idle agent closed")
    finally:
        run.join(90)
    finished = of_type(log, t.AgentRunFinished)
    assert [f.status for f in finished] == ["ok"] and finished[0].cursor_rollback_to is None
