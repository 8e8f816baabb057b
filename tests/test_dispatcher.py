"""The one way from the log to huey's queue: the dispatcher, from request events and its re-dispatch."""

from __future__ import annotations

import ast
from pathlib import Path

from events import consumer, types as t
from jobs.dispatcher import DispatcherStage
from jobs.queue import JobQueue
from rules.groups import register_group

REPO = Path(__file__).resolve().parents[1]


def queued(queue: JobQueue) -> list[tuple[str, tuple, str | None]]:
    """The jobs waiting in the queue's SQLite file: (job, arguments, ETA as ISO text or None)."""
    return [(task.name, task.args, task.eta.isoformat() if task.eta else None) for task in queue.huey.pending()]


def test_requests_become_jobs_now_or_at_their_time_and_only_once_per_event(settings, log):
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    queue = JobQueue(settings)
    stage = DispatcherStage(queue)
    log.append(t.AgentRunRequested(folder="main", chat_jid="local:me", reason="messages"))
    log.append(t.AgentRunRequested(folder="main", chat_jid="local:me", reason="retry", attempt=1,
                                   not_before="2099-01-01T00:00:00.000Z"))
    log.append(t.TaskRunRequested(task_id="t1", group_folder="main"))
    assert consumer.drain(log, stage) == 3
    assert consumer.drain(log, stage) == 0  # the checkpoint moved with the enqueues
    assert queued(queue) == [("run_agent", ("main",), None), ("run_agent", ("main",), "2099-01-01T00:00:00"),
                             ("run_task", ("t1",), None)]


def test_redispatch_enqueues_a_request_no_run_followed_and_due_tasks_again(settings, log):
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    register_group(log, settings, jid="local:fam", name="Family", folder="family")
    queue = JobQueue(settings)
    stage = DispatcherStage(queue)
    log.append(t.AgentRunRequested(folder="main", chat_jid="local:me", reason="messages"))
    log.append(t.AgentRunRequested(folder="family", chat_jid="local:fam", reason="retry", attempt=1,
                                   not_before="2099-01-01T00:00:00.000Z"))  # its time has not come
    log.append(t.TaskScheduled(task_id="due", group_folder="main", chat_jid="local:me", prompt="p",
                               schedule_type="once", schedule_value="2020-01-01T00:00:00",
                               next_run="2020-01-01T00:00:00.000Z"))
    assert stage.redispatch(log) == {"requests": 1, "tasks": 1}
    log.append(t.AgentRunStarted(run_id="r1", folder="main", chat_jid="local:me", container="c"))
    assert stage.redispatch(log) == {"requests": 0, "tasks": 1}  # a run followed the request
    assert queued(queue) == [("run_agent", ("main",), None), ("run_task", ("due",), None),
                             ("run_task", ("due",), None)]


def test_each_queue_uses_the_file_of_the_settings_it_was_built_from(settings, tmp_path, monkeypatch):
    from base.config import load_settings

    monkeypatch.setenv("NANOCLAW_ROOT", str(tmp_path / "other"))
    other = load_settings()
    other.ensure_dirs()
    JobQueue(other).enqueue_agent("main")
    assert queued(JobQueue(other)) == [("run_agent", ("main",), None)]
    assert queued(JobQueue(settings)) == []


def test_nothing_but_the_dispatcher_puts_work_on_the_queue():
    """Every other module only appends request events (the enqueue calls, found in the syntax trees)."""
    callers = set()
    for package in ("base", "events", "rules", "router", "jobs", "nanoclaw"):
        for path in (REPO / package).rglob("*.py"):
            if path == REPO / "jobs" / "queue.py":  # where the jobs are defined
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr in ("enqueue_agent", "enqueue_task", "huey"):
                    callers.add(str(path.relative_to(REPO)))
    # the worker consumes the queue (and reads its depth); it enqueues nothing
    assert callers == {"jobs/dispatcher.py", "jobs/worker.py"}
    worker = (REPO / "jobs" / "worker.py").read_text()
    assert "enqueue_" not in worker
