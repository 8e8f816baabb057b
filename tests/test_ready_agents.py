"""Ready agents: started ahead of need, handed the first message like a follow-up, retired when stale.

With the scripted provider in the real image: a ready agent's first input is
its first turn, answered once; one whose wait ends unused ends quietly (no
retry, no notice); it gives its slot up before any idle agent; it retires
when its session or its group's settings change, and is replaced; the
worker measures what it holds. With the service: the main group gets one at
start, status shows it as ready, and a worker killed while it waits loses
nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time

import docker
import pytest

from base.config import load_settings
from events import consumer, types as t
from events.queries import group_by_folder, ready_runs
from jobs.containers import ContainerRunner
from jobs.message_run import MessageRun
from jobs.ready_agents import ReadyWatch
from jobs.run_state import READY_ESTIMATE_MB, RUNS
from jobs.worker import preempt_idle
from nanoclaw.status import gather
from router.inbound import Inbound
from router.trigger_stage import TriggerStage
from rules.allowlist import AllowlistFile
from rules.groups import register_group
from rules.ipc_folder import request_close
from rules.ready import request_ready
from tests.observe import of_type, our_containers
from tests.test_agent_job import say
from tests.test_service_e2e import chatting, replies
from tests.waiting import wait_for

pytestmark = pytest.mark.docker


@pytest.fixture
def world(scripted_env, log):
    settings = scripted_env(idle_timeout_ms=60_000, scripts={"*": {"turns": [[{"reply_prompt": True}]]}},
                            READY_AGENTS="2")
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    register_group(log, settings, jid="local:fam", name="Family", folder="family", requires_trigger=False)
    allowlist = AllowlistFile(settings.sender_allowlist_path)
    return settings, log, Inbound(log, allowlist), TriggerStage(settings, allowlist)


@pytest.fixture(autouse=True)
def close_what_is_left(log):
    """A failed test must not leave its ready agents waiting half an hour (closed before the log is)."""
    yield
    for ready in Ready.started_here:
        if ready.thread.is_alive():
            request_close(ready.settings, ready.folder)
            ready.thread.join(60)
    Ready.started_here.clear()


class Ready:
    """A ready agent started for `folder` in a thread, as the worker's job would."""

    started_here: list["Ready"] = []

    def __init__(self, settings, log, folder: str, runner: ContainerRunner | None = None):
        self.settings, self.log, self.folder = settings, log, folder
        with log.transaction() as tx:
            assert request_ready(tx, settings, group_by_folder(tx, folder))
        self.outcome: list[str] = []
        self.thread = threading.Thread(target=lambda: self.outcome.append(
            MessageRun(settings, log, runner).run(folder)))
        self.thread.start()
        Ready.started_here.append(self)

    def started(self) -> t.AgentRunStarted:
        def mine() -> list[t.AgentRunStarted]:
            return [s for s in of_type(self.log, t.AgentRunStarted) if s.folder == self.folder]

        wait_for(mine, timeout=30, what=f"{self.folder}'s ready agent started")
        return mine()[-1]

    def up(self) -> None:
        """Its container is running (the runner waits in its inbox)."""
        self.started()
        wait_for(lambda: any(c.status == "running" for c in our_containers(self.settings)
                             if c.labels.get("nanoclaw.group") == self.folder),
                 timeout=60, what=f"{self.folder}'s ready container running")

    def close(self) -> str:
        request_close(self.settings, self.folder)
        return self.join()

    def join(self, timeout: float = 90) -> str:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.folder}'s ready agent did not end"
        return self.outcome[0]


def finished(log, folder: str) -> list[t.AgentRunFinished]:
    return [f for f in of_type(log, t.AgentRunFinished) if f.folder == folder]


def requests(log, folder: str) -> list[str]:
    return [r.reason for r in of_type(log, t.AgentRunRequested) if r.folder == folder]


def test_a_ready_agent_is_handed_the_first_message_and_answers_it_once(world):
    settings, log, inbound, triggers = world
    ready = Ready(settings, log, "main")
    started = ready.started()
    assert started.ready and started.message_count == 0 and started.from_seq == started.through_seq
    ready.up()
    with log.transaction() as tx:
        assert [r["folder"] for r in ready_runs(tx)] == ["main"]
    assert [c.state for c in gather(settings).containers] == ["ready"]
    say(inbound, "local:me", "@Andy are you there")
    consumer.drain(log, triggers)
    [piped] = of_type(log, t.MessagesPiped)
    assert piped.run_id == started.run_id
    wait_for(lambda: of_type(log, t.OutboundQueued), timeout=60, what="the reply")
    assert "are you there" in of_type(log, t.OutboundQueued)[0].text
    assert [c.state for c in gather(settings).containers] == ["idle"]
    assert ready.close().startswith("success")
    [end] = finished(log, "main")
    assert end.status == "ok" and end.cursor_rollback_to is None
    assert len(of_type(log, t.OutboundQueued)) == 1
    # a run that answered well is followed by a fresh ready agent
    assert requests(log, "main") == ["ready", "ready"]
    assert our_containers(settings) == []


def test_a_message_piped_before_the_runner_is_up_is_its_first_turn(world):
    settings, log, inbound, triggers = world
    ready = Ready(settings, log, "family")
    ready.started()  # the lease shows; the container may not have started yet
    say(inbound, "local:fam", "quick, before you are up")
    consumer.drain(log, triggers)
    assert len(of_type(log, t.MessagesPiped)) == 1
    wait_for(lambda: of_type(log, t.OutboundQueued), timeout=60, what="the reply")
    ready.close()
    assert [o.text for o in of_type(log, t.OutboundQueued)] == [of_type(log, t.OutboundQueued)[0].text]
    assert "quick, before you are up" in of_type(log, t.OutboundQueued)[0].text


def test_a_message_recorded_before_the_ready_agent_claims_makes_it_a_normal_run(world):
    settings, log, inbound, triggers = world
    with log.transaction() as tx:
        assert request_ready(tx, settings, group_by_folder(tx, "family"))
    say(inbound, "local:fam", "here first")
    consumer.drain(log, triggers)
    assert requests(log, "family") == ["ready", "messages"]  # a person's request of its own
    quick = dataclasses.replace(settings, idle_timeout_ms=1000)
    assert MessageRun(quick, log).run("family").startswith("success")
    [started] = of_type(log, t.AgentRunStarted)
    assert not started.ready and started.message_count == 1
    assert len(of_type(log, t.OutboundQueued)) == 1


def test_an_unused_ready_agent_retires_after_its_wait_quietly(world, monkeypatch):
    settings, log, _, _ = world
    short = dataclasses.replace(settings, ready_agent_ttl_s=10)
    begun = time.monotonic()
    ready = Ready(short, log, "family")
    assert ready.join(timeout=60).startswith("success")
    assert time.monotonic() - begun >= 10
    [end] = finished(log, "family")
    assert end.status == "ok" and not end.had_output
    assert of_type(log, t.OutboundQueued) == []  # no answer, and no notice either
    assert requests(log, "family") == ["ready"]  # not followed by another: nobody came


def test_a_message_piped_near_the_end_of_the_wait_keeps_the_agent_for_its_follow_ups(world, root):
    settings, log, inbound, triggers = world
    (root / "scripts.json").write_text(json.dumps({"*": {"turns": [[{"sleep": 5}, {"reply_prompt": True}],
                                                                   [{"reply_prompt": True}]]}}))
    short = dataclasses.replace(settings, ready_agent_ttl_s=10)
    ready = Ready(short, log, "family")
    ready.up()
    time.sleep(7)
    say(inbound, "local:fam", "a question that takes a while")  # its turn runs past the end of the wait
    consumer.drain(log, triggers)
    wait_for(lambda: of_type(log, t.OutboundQueued), timeout=60, what="the answer")
    assert ready.thread.is_alive()  # not closed at the end of its wait: it was working
    say(inbound, "local:fam", "and a follow-up")
    consumer.drain(log, triggers)
    wait_for(lambda: len(of_type(log, t.OutboundQueued)) == 2, timeout=60, what="the follow-up's answer")
    ready.close()
    assert len(of_type(log, t.AgentRunStarted)) == 1 and len(of_type(log, t.MessagesPiped)) == 2


def test_a_ready_agent_that_cannot_start_tells_nobody_and_is_not_retried(world):
    settings, log, _, _ = world
    broken = dataclasses.replace(settings, container_image="nanoclaw-agent:no-such-tag")
    ready = Ready(broken, log, "family")
    assert ready.join().startswith("error")
    [end] = finished(log, "family")
    assert end.status == "error" and end.error_kind == "container"
    assert of_type(log, t.OutboundQueued) == [] and requests(log, "family") == ["ready"]  # no notice, no retry


def test_a_ready_agent_gives_its_slot_up_before_an_older_idle_agent(world):
    settings, log, inbound, _ = world
    say(inbound, "local:me", "@Andy hello")
    busy = threading.Thread(target=MessageRun(settings, log).run, args=("main",))
    busy.start()
    try:
        wait_for(lambda: of_type(log, t.OutboundQueued), timeout=60, what="main's answer")
        wait_for(lambda: RUNS.idle_runs(), timeout=10, what="main idle")
        ready = Ready(settings, log, "family")
        ready.up()
        two_slots = dataclasses.replace(settings, max_concurrent_containers=2)
        assert preempt_idle(two_slots, log, pending=1) == "family"  # the younger, but nobody talks to it
        assert ready.join().startswith("success")
        assert preempt_idle(two_slots, log, pending=1) is None  # one slot is free again
    finally:
        request_close(settings, "main")
        busy.join(60)


@pytest.mark.parametrize("change", ["session", "group settings", "image", "credential"])
def test_a_ready_agent_retires_when_what_it_started_with_changes_and_is_replaced(world, change, agent_image):
    settings, log, _, _ = world
    engine = docker.from_env()
    tag = f"nanoclaw-agent:ready-{os.getpid()}"
    engine.images.get(agent_image).tag(tag)  # a tag of its own, to rebuild under it
    settings = dataclasses.replace(settings, container_image=tag)
    try:
        runner = ContainerRunner(settings, log)
        ready = Ready(settings, log, "family", runner)
        ready.up()
        assert ReadyWatch(settings, log, runner).check() == []  # nothing changed (the slow checks included)
        if change == "session":
            log.append(t.SessionCleared(folder="family", reason="cleared by a person"))
            reason = "its session was cleared"
        elif change == "group settings":
            log.append(t.GroupUpdated(jid="local:fam", container_config=t.ContainerConfig(egress="open")))
            reason = "its group's container settings changed"
        elif change == "image":
            other = next(i for i in engine.images.list() if i.id != engine.images.get(tag).id and i.attrs["Size"])
            other.tag(tag)  # as `nanoclaw image build` would leave it
            reason = "the agent image was rebuilt"
        else:
            credentials = settings.home / ".claude" / ".credentials.json"
            credentials.parent.mkdir(exist_ok=True)
            credentials.write_text(json.dumps({"claudeAiOauth": {"accessToken": "sk-ant-oat01-refreshed"}}))
            reason = "the model credential changed"
        assert ReadyWatch(settings, log, runner).check() == [("family", reason)]
        assert ready.join().startswith("success")
        assert requests(log, "family") == ["ready", "ready"]  # a fresh one asked for in its place
    finally:
        engine.images.remove(tag, noprune=True)
        engine.close()


def test_the_watch_measures_ready_agents_and_keeps_them_in_their_memory_budget(world):
    settings, log, _, _ = world
    runner = ContainerRunner(settings, log)
    first, second = Ready(settings, log, "main", runner), Ready(settings, log, "family", runner)
    first.up()
    second.up()
    ReadyWatch(settings, log, runner).check()
    held = RUNS.ready_memory_mb()
    assert 2 < held < 2 * READY_ESTIMATE_MB, held  # two scripted runners, measured (not the estimate)
    # a budget just under what the two hold: the oldest goes, the other fits
    tight = dataclasses.replace(settings, ready_agents_memory_mb=int(held) - 1)
    retired = ReadyWatch(tight, log, runner).check()
    assert [folder for folder, _ in retired] == ["main"]
    assert "READY_AGENTS_MEMORY_MB" in retired[0][1]
    assert first.join().startswith("success")
    assert list(RUNS.ready().values())[0].folder == "family"
    # and no further one starts while they would not fit
    assert not RUNS.ready_memory_room(tight.ready_agents_memory_mb)
    with log.transaction() as tx:
        assert request_ready(tx, tight, group_by_folder(tx, "main"))
    assert MessageRun(tight, log).run("main") == "no memory left for a ready agent (READY_AGENTS_MEMORY_MB)"
    request_close(settings, "family")
    assert second.join().startswith("success")


def test_a_ready_agent_is_kept_for_the_most_recently_active_groups_only(world, monkeypatch):
    settings, log, _, _ = world
    one = dataclasses.replace(settings, ready_agents=1)
    first = Ready(one, log, "main")
    first.up()
    second = Ready(one, log, "family")  # its claim retires main's
    assert first.join().startswith("success")
    second.up()
    assert [s.folder for s in of_type(log, t.AgentRunStarted)] == ["main", "family"]
    request_close(settings, "family")
    second.join()


def test_the_service_starts_one_for_the_main_group_and_a_killed_worker_loses_nothing(scripted_env, log):
    settings = scripted_env(idle_timeout_ms=60_000, READY_AGENTS="2")
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    with chatting(settings) as (service, client):
        wait_for(lambda: [c for c in gather(load_settings()).containers if c.state == "ready"], timeout=60,
                 what="the main group's ready agent")
        first = of_type(log, t.AgentRunStarted)[-1]
        assert first.ready
        os.kill(service.worker_pid(), signal.SIGKILL)  # while it waits
        wait_for(lambda: [f for f in of_type(log, t.AgentRunFinished) if f.run_id == first.run_id],
                 timeout=60, what="recovery finishing the dead ready agent")
        client.send("are you still there")
        answer = replies(client, 1, timeout=90)
        answer += replies(client, 1, timeout=3)
    assert len(answer) == 1 and "are you still there" in answer[0]
    assert [f.status for f in of_type(log, t.AgentRunFinished)][0] == "interrupted"
    assert [o.origin for o in of_type(log, t.OutboundQueued)] == ["agent"]  # no notice
