"""Scheduled tasks: on time, once after downtime, with their outcome in the log."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from base.config import load_settings
from base.timefmt import iso_now, parse_iso, to_iso
from events import types as t
from events.queries import due_tasks
from jobs.task_run import TaskRun
from nanoclaw.cli import main
from router.channels.local_client import LocalChatClient
from rules.groups import register_group
from tests.observe import of_type
from tests.router_process import RouterProcess

pytestmark = pytest.mark.docker


@pytest.fixture
def world(root, agent_image, monkeypatch, log):
    for key, value in dict(CONTAINER_IMAGE=agent_image, CONTAINER_NETWORK="none", AGENT_PROVIDER="scripted",
                           IDLE_TIMEOUT="2000").items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    settings.ensure_dirs()
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    return settings, log


def schedule(log, task_id: str, *, kind="once", value="2026-01-01T09:00:00", next_run=None, script=None,
             prompt="Good morning! Summarise my day."):
    log.append(t.TaskScheduled(task_id=task_id, group_folder="main", chat_jid="local:me", prompt=prompt,
                               schedule_type=kind, schedule_value=value, script=script,
                               next_run=next_run or iso_now()))


def test_a_due_once_task_runs_replies_and_completes(world):
    settings, log = world
    schedule(log, "t1")
    assert TaskRun(settings, log).run("t1") == "success: ok"
    reply = of_type(log, t.OutboundQueued)[0]
    assert reply.origin == "task" and reply.text.startswith("[SCHEDULED TASK")  # the scripted agent echoes
    finished = of_type(log, t.TaskRunFinished)[0]
    assert (finished.status, finished.next_run) == ("success", None)
    assert log.query("SELECT status FROM tasks WHERE id = 't1'")[0][0] == "completed"
    assert log.query("SELECT count(*) FROM task_runs")[0][0] == 1
    assert of_type(log, t.AgentRunStarted)[0].task_id == "t1"


def test_a_task_that_is_not_due_or_not_active_does_not_run(world):
    settings, log = world
    schedule(log, "later", next_run=to_iso(datetime.now(timezone.utc) + timedelta(hours=1)))
    assert TaskRun(settings, log).run("later") == "not due"
    schedule(log, "paused")
    log.append(t.TaskPaused(task_id="paused", group_folder="main"))
    assert TaskRun(settings, log).run("paused") == "not active"
    assert of_type(log, t.AgentRunStarted) == []


def test_a_cron_task_missed_during_downtime_runs_once_and_moves_to_the_next_slot(world):
    settings, log = world
    three_hours_ago = to_iso(datetime.now(timezone.utc) - timedelta(hours=3))
    schedule(log, "hourly", kind="cron", value="0 * * * *", next_run=three_hours_ago)
    assert due_tasks(log, iso_now()) == ["hourly"]
    TaskRun(settings, log).run("hourly")
    assert due_tasks(log, iso_now()) == []
    next_run = parse_iso(log.query("SELECT next_run FROM tasks WHERE id = 'hourly'")[0][0])
    now = datetime.now(timezone.utc)
    assert now < next_run <= now + timedelta(hours=1) and next_run.minute == 0
    assert len(of_type(log, t.TaskRunFinished)) == 1


def test_an_interval_task_keeps_its_grid(world):
    settings, log = world
    due = datetime.now(timezone.utc) - timedelta(seconds=2.5)
    schedule(log, "every-minute", kind="interval", value="60000", next_run=to_iso(due))
    TaskRun(settings, log).run("every-minute")
    next_run = parse_iso(log.query("SELECT next_run FROM tasks WHERE id = 'every-minute'")[0][0])
    assert abs((next_run - due).total_seconds() - 60) < 0.01


def test_a_pre_check_script_that_says_no_skips_the_agent(world):
    settings, log = world
    schedule(log, "check", script='echo \'{"wakeAgent": false}\'')
    assert TaskRun(settings, log).run("check") == "success: ok"
    assert of_type(log, t.OutboundQueued) == []
    assert of_type(log, t.TaskRunFinished)[0].status == "success"


def test_a_task_for_a_removed_group_is_paused_with_an_error(world):
    settings, log = world
    log.append(t.TaskScheduled(task_id="orphan", group_folder="gone", chat_jid="local:gone", prompt="x",
                               schedule_type="once", schedule_value="2026-01-01T09:00:00", next_run=iso_now()))
    assert TaskRun(settings, log).run("orphan") == "group not found: task paused"
    assert log.query("SELECT status FROM tasks WHERE id = 'orphan'")[0][0] == "paused"
    assert of_type(log, t.TaskRunFinished)[0].error == "Group not found: gone"


def test_the_tasks_command_lists_pauses_resumes_and_cancels(world, capsys):
    settings, log = world
    schedule(log, "t1", next_run=to_iso(datetime.now(timezone.utc) + timedelta(hours=1)))
    assert main(["tasks", "list", "--json"]) == 0
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == ["t1"]
    assert main(["tasks", "pause", "t1"]) == 0
    assert main(["tasks", "pause", "t1"]) == 1
    assert main(["tasks", "resume", "t1"]) == 0
    assert main(["tasks", "cancel", "t1"]) == 0
    assert "task t1 of main cancelled" in capsys.readouterr().out
    assert [type(e).__name__ for e in (r.event for r in log.read_since(0, limit=None))][-3:] == [
        "TaskPaused", "TaskResumed", "TaskCancelled"]
    assert log.query("SELECT count(*) FROM tasks")[0][0] == 0


def test_the_service_starts_a_task_on_time(world):
    settings, log = world
    service = RouterProcess(settings, worker=True).wait_ready(timeout=60, worker_too=True)
    client = LocalChatClient(service.socket, "local:me")
    try:
        due = datetime.now(timezone.utc) + timedelta(seconds=3)
        schedule(log, "soon", next_run=to_iso(due), prompt="ring ring")
        deadline = time.monotonic() + 60
        while not of_type(log, t.AgentRunStarted) and time.monotonic() < deadline:
            time.sleep(0.02)
        started_at = parse_iso(log.read_since(0, types=[t.AgentRunStarted])[0].at)
        reply = None
        while reply is None and time.monotonic() < deadline:
            event = client.next_event(0.5)
            reply = event["text"] if event and event.get("op") == "reply" else None
    finally:
        client.close()
        service.stop(timeout=60)
    # huey's scheduler looks at jobs with an ETA once a second; the rest is slack for a loaded machine
    # (v1 polled every 60 s and could be up to a minute late)
    assert 0 <= (started_at - due).total_seconds() < 2.0
    assert "ring ring" in reply


def test_a_due_task_goes_before_waiting_messages_which_are_answered_after_it(world):
    settings, log = world
    from jobs.message_run import MessageRun
    from router.channels.base import InboundMessage
    from router.inbound import Inbound
    from rules.allowlist import AllowlistFile

    schedule(log, "t1", prompt="the task")
    Inbound(log, AllowlistFile(settings.sender_allowlist_path)).message("test", InboundMessage(
        chat_jid="local:me", message_id="m1", sender="a", sender_name="A", content="a message",
        timestamp="2026-01-01T10:00:00.000Z"))
    assert MessageRun(settings, log).run("main") == "tasks first"
    TaskRun(settings, log).run("t1")
    assert of_type(log, t.AgentRunRequested)[-1].reason == "drain"
    assert MessageRun(settings, log).run("main") == "success: ok"
    texts = [o.text for o in of_type(log, t.OutboundQueued)]
    assert "the task" in texts[0] and "a message" in texts[1]


def test_the_service_keeps_an_interval_task_on_its_grid(world, monkeypatch):
    settings, log = world
    (settings.root / "scripts.json").write_text(json.dumps({"main": {"turns": [[{"reply": "tick"}, {"crash": 0}]]}}))
    monkeypatch.setenv("SCRIPTED_AGENT_FILE", str(settings.root / "scripts.json"))
    with RouterProcess(settings, worker=True).wait_ready(timeout=60, worker_too=True) as service:
        first_due = datetime.now(timezone.utc) + timedelta(seconds=2)
        schedule(log, "tick", kind="interval", value="4000", next_run=to_iso(first_due), prompt="tick")
        deadline = time.monotonic() + 60
        while len(of_type(log, t.TaskRunFinished)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        service.stop(timeout=60)
    starts = [parse_iso(r.at) for r in log.read_since(0, types=[t.AgentRunStarted], limit=None)][:2]
    assert len(starts) == 2
    for n, started in enumerate(starts):  # on the grid, each within huey's once-a-second look at its schedule
        assert 0 <= (started - (first_due + timedelta(seconds=4 * n))).total_seconds() < 2.0


def test_a_task_missed_while_the_service_was_down_runs_once_after_the_restart(world):
    settings, log = world
    schedule(log, "nightly", kind="cron", value="0 3 * * *",
             next_run=to_iso(datetime.now(timezone.utc) - timedelta(days=2)))  # two nights missed
    with RouterProcess(settings, worker=True).wait_ready(timeout=60, worker_too=True) as service:
        deadline = time.monotonic() + 60
        while not of_type(log, t.TaskRunFinished) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(3)  # room for a second, wrong, run
        service.stop(timeout=60)
    assert len(of_type(log, t.TaskRunFinished)) == 1
    next_run = parse_iso(log.query("SELECT next_run FROM tasks WHERE id = 'nightly'")[0][0])
    assert next_run > datetime.now(timezone.utc) and (next_run.hour, next_run.minute) == (3, 0)


def test_a_task_that_finds_its_group_busy_runs_when_that_run_ends_without_polling(world, monkeypatch):
    """The task asks the idle agent to finish and leaves; the run's end asks for the task, before messages."""
    import threading

    from jobs.message_run import MessageRun
    from router.inbound import Inbound
    from rules.allowlist import AllowlistFile
    from tests.test_agent_job import say

    settings, log = world
    monkeypatch.setenv("IDLE_TIMEOUT", "60000")  # only the task's close request ends this run quickly
    settings = load_settings()
    say(Inbound(log, AllowlistFile(settings.sender_allowlist_path)), "local:me", "a message")
    message_run = threading.Thread(target=MessageRun(settings, log).run, args=("main",))
    message_run.start()
    deadline = time.monotonic() + 60
    while not of_type(log, t.OutboundQueued) and time.monotonic() < deadline:
        time.sleep(0.05)
    schedule(log, "t1", prompt="the task")
    started = time.monotonic()
    assert TaskRun(settings, log).run("t1") == "busy: it runs when the current run ends"
    message_run.join(60)
    assert time.monotonic() - started < 30  # closed on request, not at the 60 s idle timeout
    finished, requested = of_type(log, t.AgentRunFinished), of_type(log, t.TaskRunRequested)
    assert [f.status for f in finished] == ["ok"]
    assert [(r.task_id, r.reason) for r in requested] == [("t1", "due")]
    assert of_type(log, t.AgentRunRequested) == []  # nothing is pending; the task goes first anyway
    assert TaskRun(settings, log).run("t1") == "success: ok"
