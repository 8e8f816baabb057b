"""The rules of ready agents, over a real log: who asks for one, when one may start, which ones retire."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from base.config import ConfigError, load_settings
from events import consumer, types as t
from events.queries import group_by_folder, outstanding_request, ready_runs, was_handed_messages
from jobs.dispatcher import DispatcherStage
from jobs.queue import JobQueue
from jobs.run_state import READY_ESTIMATE_MB, WorkerRuns
from router.inbound import Inbound
from router.trigger_stage import TriggerStage
from rules.allowlist import AllowlistFile
from rules.groups import register_group
from rules.ready import ready_refusal, ready_to_retire, request_ready, request_ready_at_start
from tests.test_agent_job import say


@pytest.fixture
def ready_settings(settings):
    return dataclasses.replace(settings, ready_agents=2)


@pytest.fixture
def groups(ready_settings, log):
    register_group(log, ready_settings, jid="local:me", name="Me", folder="main", is_main=True)
    register_group(log, ready_settings, jid="local:fam", name="Family", folder="family")
    register_group(log, ready_settings, jid="local:work", name="Work", folder="work")
    return log


def start(log, folder: str, jid: str, run_id: str, *, ready: bool, seq: int = 0) -> None:
    log.append(t.AgentRunStarted(run_id=run_id, folder=folder, chat_jid=jid, container=f"c-{run_id}",
                                 from_seq=seq, through_seq=seq, ready=ready))


def test_the_settings_default_to_two_ready_agents_and_are_checked(root, monkeypatch):
    monkeypatch.delenv("READY_AGENTS")
    settings = load_settings()
    assert (settings.ready_agents, settings.ready_agent_ttl_s, settings.ready_agents_memory_mb) == (2, 1800, 1024)
    monkeypatch.setenv("READY_AGENT_TTL", "5")
    with pytest.raises(ConfigError, match="READY_AGENT_TTL"):
        load_settings()


def test_one_is_asked_for_the_main_group_at_start_unless_off_or_already_asked(ready_settings, groups):
    with groups.transaction() as tx:
        assert request_ready_at_start(tx, ready_settings)
        assert not request_ready_at_start(tx, ready_settings)  # one outstanding already
        assert not request_ready(tx, dataclasses.replace(ready_settings, ready_agents=0),
                                 group_by_folder(tx, "family"))
    [request] = [r.event for r in groups.read_since(0, types=[t.AgentRunRequested])]
    assert (request.folder, request.reason) == ("main", "ready")


def test_no_ready_agent_is_asked_for_a_group_with_a_run(ready_settings, groups):
    start(groups, "family", "local:fam", "run-1", ready=False)
    with groups.transaction() as tx:
        assert not request_ready(tx, ready_settings, group_by_folder(tx, "family"))


def test_a_request_expires_after_the_ttl_and_none_starts_without_a_free_slot(ready_settings, groups):
    with groups.transaction() as tx:
        request_ready(tx, ready_settings, group_by_folder(tx, "family"))
        request = outstanding_request(tx, "family")
        group = group_by_folder(tx, "family")
        assert ready_refusal(tx, ready_settings, group, request) is None
        later = datetime.now(timezone.utc) + timedelta(seconds=ready_settings.ready_agent_ttl_s + 1)
        assert ready_refusal(tx, ready_settings, group, request, later) == "the request for a ready agent expired"
        one_slot = dataclasses.replace(ready_settings, max_concurrent_containers=1)
    start(groups, "work", "local:work", "run-w", ready=False)
    with groups.transaction() as tx:
        assert ready_refusal(tx, one_slot, group, request) == "no free slot for a ready agent"


def test_the_oldest_ready_agents_retire_so_the_newest_request_fits(ready_settings, groups):
    start(groups, "main", "local:me", "r-main", ready=True)
    start(groups, "work", "local:work", "r-work", ready=True)
    start(groups, "family", "local:fam", "busy", ready=False)  # a message run is no ready agent
    with groups.transaction() as tx:
        assert [r["run_id"] for r in ready_runs(tx)] == ["r-main", "r-work"]
        assert ready_to_retire(tx, ready_settings) == ["main"]  # two allowed: one goes for the new one
    groups.append(t.MessagesPiped(run_id="r-main", folder="main", chat_jid="local:me", through_seq=99,
                                  message_count=1, file="1.json"))
    with groups.transaction() as tx:
        assert [r["run_id"] for r in ready_runs(tx)] == ["r-work"]  # handed a message: a message run now
        assert was_handed_messages(tx, "r-main") and not was_handed_messages(tx, "r-work")
        assert ready_to_retire(tx, ready_settings) == []


def test_a_message_for_a_group_whose_ready_request_was_turned_down_gets_a_request_of_its_own(ready_settings, groups):
    allowlist = AllowlistFile(ready_settings.sender_allowlist_path)
    with groups.transaction() as tx:
        request_ready(tx, ready_settings, group_by_folder(tx, "main"))
    say(Inbound(groups, allowlist), "local:me", "hello")
    consumer.drain(groups, TriggerStage(ready_settings, allowlist))
    assert [r.event.reason for r in groups.read_since(0, types=[t.AgentRunRequested])] == ["ready", "messages"]


def test_the_dispatcher_queues_no_ready_agent_while_every_slot_is_taken(ready_settings, groups):
    one_slot = dataclasses.replace(ready_settings, max_concurrent_containers=1)
    queue = JobQueue(one_slot)
    stage = DispatcherStage(queue)
    start(groups, "work", "local:work", "run-w", ready=False)
    with groups.transaction() as tx:
        request_ready(tx, one_slot, group_by_folder(tx, "family"))
    consumer.drain(groups, stage)
    assert stage.redispatch(groups) == {"requests": 0, "tasks": 0}
    assert queue.huey.pending() == []
    groups.append(t.AgentRunFinished(run_id="run-w", folder="work", chat_jid="local:work", status="ok"))
    assert stage.redispatch(groups) == {"requests": 1, "tasks": 0}  # a slot is free: now it may start


def test_ready_agents_give_their_slot_up_first_and_fit_in_their_memory_budget():
    runs = WorkerRuns()
    for run_id in ("idle-old", "ready-new"):
        runs.register(run_id)
    runs.mark_idle("idle-old", "main", 1)
    runs.mark_idle("ready-new", "family", 2, ready=True, container="c")
    taken = runs.take_longest_idle(2, lambda run_id, idle: False)
    assert taken is not None and taken.folder == "family"
    assert runs.ready() == {}
    runs.register("r2")
    runs.mark_idle("r2", "work", 3, ready=True, container="c2")
    assert runs.ready_memory_mb() == READY_ESTIMATE_MB  # not measured yet
    runs.set_memory("r2", 150.0)
    assert runs.ready_memory_mb() == 150.0
    assert runs.ready_memory_room(300) and not runs.ready_memory_room(299)
    assert runs.ready_memory_room(150, leaving={"work"})  # the one retiring to make room is not counted
    assert runs.retire("r2", replace=True) is not None and runs.replaced("r2")
    assert runs.retire("r2", replace=True) is None  # once
    runs.release("r2")
    assert not runs.replaced("r2")


def test_a_run_that_gave_its_slot_away_is_not_followed_by_a_ready_agent(ready_settings, groups):
    from jobs.message_run import MessageRun
    from jobs.run_lifecycle import Claim, Ending

    runs = WorkerRuns()
    run = MessageRun(ready_settings, groups, runner=object(), runs=runs)  # no container is started here
    with groups.transaction() as tx:
        claim = Claim(group=group_by_folder(tx, "family"), reply_to="local:fam", from_seq=0, through_seq=1,
                      prompt="<message>hi</message>", session_id=None)
    ok = Ending(failed=False, status="ok", error=None, kind=None, duration_ms=10)
    runs.register(claim.run_id)
    runs.mark_idle(claim.run_id, "family", 1)
    with groups.transaction() as tx:
        assert run.ready_after(tx, claim, ok)  # it answered and was closed as idle: a ready agent follows
    assert runs.take_longest_idle(1, lambda run_id, idle: False) is not None
    with groups.transaction() as tx:
        assert not run.ready_after(tx, claim, ok)  # it made way for waiting work: its slot stays theirs


def test_an_expired_ready_request_neither_blocks_a_new_one_nor_is_queued_again(ready_settings, groups):
    from freezegun import freeze_time

    queue = JobQueue(ready_settings)
    stage = DispatcherStage(queue)
    with groups.transaction() as tx:
        assert request_ready(tx, ready_settings, group_by_folder(tx, "family"))
    consumer.drain(groups, stage)
    assert len(queue.huey.pending()) == 1
    queue.huey.flush()
    with freeze_time(datetime.now(timezone.utc) + timedelta(seconds=ready_settings.ready_agent_ttl_s + 5)):
        assert stage.redispatch(groups) == {"requests": 0, "tasks": 0}  # not worth a container any more
        with groups.transaction() as tx:
            assert request_ready(tx, ready_settings, group_by_folder(tx, "family"))  # a fresh one may be asked
    assert [r.event.reason for r in groups.read_since(0, types=[t.AgentRunRequested])] == ["ready", "ready"]


def test_the_watch_does_not_take_a_gateway_not_open_yet_for_a_changed_credential(ready_settings, groups,
                                                                                 monkeypatch):
    from jobs import ready_agents

    class NotOpenYet:  # a runner whose gateway has no such run (opened later, or closed already)
        class gateway:
            @staticmethod
            def auth_of(run_id):
                raise KeyError(run_id)

        def docker(self):
            raise LookupError("not asked")

    monkeypatch.setattr(ready_agents, "upstream_auth", lambda settings: "a credential")
    runs = WorkerRuns()
    runs.register("r1")
    runs.mark_idle("r1", "family", 1, ready=True, container="c1")
    watch = ready_agents.ReadyWatch(ready_settings, groups, NotOpenYet(), runs)
    assert watch.check() == [] and "r1" in runs.ready()


def test_a_waiting_ready_job_is_not_work_an_idle_agent_must_give_way_to(ready_settings, groups):
    from jobs.worker import waiting_work

    queue = JobQueue(ready_settings)
    with groups.transaction() as tx:
        request_ready(tx, ready_settings, group_by_folder(tx, "family"))
    groups.append(t.AgentRunRequested(folder="main", chat_jid="local:me", reason="messages"))
    queue.enqueue_agent("family")
    queue.enqueue_agent("main")
    queue.enqueue_task("some-task")
    assert waiting_work(queue, groups) == 2  # main's messages and the task; not family's ready agent
