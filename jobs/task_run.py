"""The task run: a due scheduled task becomes one agent run for its group.

Each task is queued with its due time as huey's ETA, so it starts on time; a
stale job (the task moved, was paused, or already ran) finds it not due and
leaves. A task that finds its group busy asks an idle agent to finish and
leaves: the running run's end asks for due tasks before anything else. The
outcome is a `TaskRunFinished` with the next due time, recorded with the
run's end in one transaction. A task's answers go to its chat; its session
is never saved as the group's. The lease, the outputs and the end are
jobs/run_lifecycle.py's.
"""

from __future__ import annotations

from datetime import datetime, timezone

from loguru import logger

from base.timefmt import iso_now
from events import Transaction, types as t
from events.queries import cursor_of, group_busy, group_by_folder, task_by_id
from jobs.contract import AgentInput
from jobs.run_lifecycle import Claim, Ending, Progress, RunLifecycle
from jobs.sessions import session_to_resume
from rules.budgets import refuse_if_over
from rules.ipc_folder import request_close
from rules.refusals import recorder
from rules.schedule import ScheduleError, next_run_after_run

TASK_CLOSE_AFTER_MS = 10_000
SUMMARY_CHARS = 200


class TaskRun(RunLifecycle):
    """Runs one due task, if it is still due and its group is free."""

    origin = "task"
    keeps_session = False
    rolls_back = False
    started_fault = "task-run-started"
    stopping_note = "the worker is stopping: the 60 s pass queues it again"

    def claim(self, tx: Transaction, task_id: str) -> Claim | str:
        row = task_by_id(tx, task_id)
        if row is None or row["status"] != "active":
            return "not active"
        task = dict(row)
        if task["next_run"] is None or task["next_run"] > iso_now():
            return "not due"
        group = group_by_folder(tx, task["group_folder"])
        if group is None:
            tx.append(t.TaskRunFinished(task_id=task_id, group_folder=task["group_folder"], status="error",
                                        error=f"Group not found: {task['group_folder']}",
                                        next_run=task["next_run"]))
            tx.append(t.TaskPaused(task_id=task_id, group_folder=task["group_folder"], by="scheduler"))
            return "group not found: task paused"
        if (over := refuse_if_over(tx, self.settings, group, task["chat_jid"])) is not None:
            return over  # still due: the 60 s pass queues it again
        if group_busy(tx, group.folder):
            # an idle message agent gives way to the task; the running run's end asks for it
            request_close(self.settings, group.folder, recorder(tx, group.folder))
            return "busy: it runs when the current run ends"
        session = None
        if task["context_mode"] == "group":
            session = session_to_resume(tx, group.folder, self.settings.agent_provider)
        cursor = cursor_of(tx, group.jid)
        return Claim(group=group, reply_to=task["chat_jid"], from_seq=cursor, through_seq=cursor,
                     prompt=task["prompt"], session_id=session, task=task)

    def agent_input(self, claim: Claim) -> AgentInput:
        agent_input = super().agent_input(claim)
        agent_input.isScheduledTask = True
        agent_input.script = claim.task["script"]  # type: ignore[index]
        return agent_input

    def spec_options(self, claim: Claim) -> dict:
        return {"idle_timeout_ms": TASK_CLOSE_AFTER_MS, "idle_rearm": False}

    def ended(self, tx: Transaction, claim: Claim, progress: Progress, ending: Ending) -> bool:
        task = claim.task
        assert task is not None
        try:
            upcoming = next_run_after_run(task["schedule_type"], task["schedule_value"],
                                          tz=task["timezone"] or self.settings.timezone,
                                          previous_due=task["next_run"], now=datetime.now(timezone.utc))
        except ScheduleError as exc:
            logger.error("task {}: cannot compute its next run ({}); it will not run again", task["id"], exc)
            upcoming = None
        summary = progress.last_result[:SUMMARY_CHARS] if progress.last_result else None
        tx.append(t.TaskRunFinished(task_id=task["id"], group_folder=claim.group.folder, run_id=claim.run_id,
                                    status="error" if ending.failed else "success",
                                    duration_ms=ending.duration_ms, result=summary, error=ending.error,
                                    next_run=upcoming))
        logger.info("task {} ran for {} ({}); next run {}", task["id"], claim.group.folder,
                    "error: " + ending.error if ending.error else "ok", upcoming or "never")
        return True

