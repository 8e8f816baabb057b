"""Scheduled task runs: a due task becomes one agent run for its group.

Each task is queued with its due time as huey's ETA, so it starts on time; a
stale job (the task moved, was paused, or already ran) finds it not due and
leaves. The 60 s pass queues what is due and was missed, once, however many
slots the downtime swallowed. The run's outcome is a `TaskRunFinished` with
the next due time, recorded with the run's end in one transaction.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

from loguru import logger

from events import EventLog, Transaction
from events import types as t
from base.timefmt import iso_now, parse_iso
from jobs.agent import close_if_stopping, scripted_for
from jobs.containers import ContainerRunner, RunSpec, container_name, request_close
from jobs.contract import AgentInput, AgentResult
from jobs.liveness import this_worker
from jobs.recovery import active_lock, active_runs, stopping
from jobs.sessions import session_to_resume
from jobs.workspace import clear_input
from base.config import Settings
from base.faults import fault_point
from rules.budgets import refuse_if_over
from rules.failures import classify
from rules.egress import policy_of
from rules.groups import group_from_row
from rules.windows import cursor_of, pending_messages, run_in_progress
from rules.prompt import clean_output
from rules.schedule import ScheduleError, next_run_after_run
from rules.refusals import recorder
from rules.snapshots import write_groups_snapshot, write_tasks_snapshot

TASK_CLOSE_AFTER_MS = 10_000
BUSY_RETRY_S = 2.0
SUMMARY_CHARS = 200


class TaskRun:
    """Runs one due task, if it is still due and its group is free."""

    def __init__(self, settings: Settings, log: EventLog, runner: ContainerRunner | None = None):
        self.settings = settings
        self.log = log
        self.runner = runner or ContainerRunner(settings, log)

    def run(self, task_id: str) -> str:
        with self.log.transaction() as tx:
            decision = self._claim(tx, task_id)
            if isinstance(decision, str):
                return decision
            task, group, run_id = decision
        fault_point("task-run-started")
        started = time.monotonic()
        texts: list[str] = []
        errors: list[str] = []
        try:
            result = self.runner.run(self._spec(task, group, run_id),
                                     lambda r: self._on_output(task, group, run_id, r, texts, errors))
            self._finish(task, group, run_id, result, texts, errors, int((time.monotonic() - started) * 1000))
        finally:  # only once the run's end is recorded (or it crashed): recovery then finishes it
            with active_lock:
                active_runs.discard(run_id)
        return f"{result.status}: {result.error or 'ok'}"

    def _claim(self, tx: Transaction, task_id: str):
        if stopping.is_set():
            return "the worker is stopping: the 60 s pass queues it again"
        rows = tx.query("SELECT * FROM tasks WHERE id = ?", (task_id,))
        if not rows or rows[0]["status"] != "active":
            return "not active"
        task = rows[0]
        if task["next_run"] is None or task["next_run"] > iso_now():
            return "not due"
        group_rows = tx.query("SELECT * FROM groups WHERE folder = ?", (task["group_folder"],))
        if not group_rows:
            tx.append(t.TaskRunFinished(task_id=task_id, group_folder=task["group_folder"], status="error",
                                        error=f"Group not found: {task['group_folder']}",
                                        next_run=task["next_run"]))
            tx.append(t.TaskPaused(task_id=task_id, group_folder=task["group_folder"], by="scheduler"))
            return "group not found: task paused"
        group = group_from_row(group_rows[0])
        if (over := refuse_if_over(tx, self.settings, group, task["chat_jid"])) is not None:
            return over  # still due: the 60 s pass queues it again
        if run_in_progress(tx, group.folder):
            # an idle message agent gives way to the task
            request_close(self.settings, group.folder, recorder(tx, group.folder))
            self._again_soon(task_id)
            return "busy: retrying shortly"
        run_id = uuid.uuid4().hex[:12]
        cursor = cursor_of(tx, group.jid)
        # before the lease shows, as for a message run
        clear_input(self.settings, group.folder, recorder(tx, group.folder))
        tx.append(t.AgentRunStarted(run_id=run_id, folder=group.folder, chat_jid=group.jid,
                                    container=container_name(group.folder), from_seq=cursor, through_seq=cursor,
                                    task_id=task_id, worker=this_worker(self.settings)))
        with active_lock:
            active_runs.add(run_id)
        return task, group, run_id

    @staticmethod
    def _again_soon(task_id: str) -> None:
        from jobs.queue import run_task

        run_task.schedule((task_id,), delay=BUSY_RETRY_S)

    def _spec(self, task, group, run_id: str) -> RunSpec:
        write_tasks_snapshot(self.settings, self.log, group.folder, group.is_main)
        write_groups_snapshot(self.settings, self.log, group.folder, group.is_main)
        session = None
        if task["context_mode"] == "group":
            with self.log.transaction() as tx:
                session = session_to_resume(tx, group.folder, self.settings.agent_provider)
        agent_input = AgentInput(
            prompt=task["prompt"], sessionId=session, groupFolder=group.folder, chatJid=task["chat_jid"],
            isMain=group.is_main, isScheduledTask=True, assistantName=self.settings.assistant_name,
            script=task["script"], provider=self.settings.agent_provider,
            scripted=scripted_for(self.settings, group.folder, 0),
            timezone=self.settings.timezone, verbose=self.settings.verbose_container_logs)
        return RunSpec(folder=group.folder, group_name=group.name, is_main=group.is_main, input=agent_input,
                       run_id=run_id, idle_timeout_ms=TASK_CLOSE_AFTER_MS, idle_rearm=False,
                       timeout_ms=(group.container_config.timeout_ms if group.container_config else None),
                       egress=policy_of(group.container_config))

    def _on_output(self, task, group, run_id: str, result: AgentResult, texts: list[str], errors: list[str]):
        text = clean_output(result.result) if result.result else ""
        with self.log.transaction() as tx:
            index = len(texts) + len(errors)
            tx.append(t.AgentOutput(run_id=run_id, folder=group.folder, index=index, status=result.status,
                                    result=result.result, error=result.error, inputs=result.inputs))
            if text:  # a task's session is never saved
                outbound_id = f"{run_id}-{index}"
                tx.append(t.OutboundQueued(outbound_id=outbound_id, chat_jid=task["chat_jid"], text=text,
                                           origin="task", run_id=run_id), key=f"out:{outbound_id}")
        if result.result:
            texts.append(result.result)
        if result.status == "error":
            errors.append(result.error or "Unknown error")
        close_if_stopping(self.settings, group.folder)

    def _finish(self, task, group, run_id: str, result, texts: list[str], errors: list[str], duration_ms: int):
        error = result.error if result.status == "error" else (errors[-1] if errors else None)
        try:
            upcoming = next_run_after_run(task["schedule_type"], task["schedule_value"],
                                          tz=task["timezone"] or self.settings.timezone,
                                          previous_due=task["next_run"], now=datetime.now(timezone.utc))
        except ScheduleError as exc:
            logger.error("task {}: cannot compute its next run ({}); it will not run again", task["id"], exc)
            upcoming = None
        with self.log.transaction() as tx:
            tx.append(t.AgentRunFinished(run_id=run_id, folder=group.folder, chat_jid=group.jid,
                                         status="error" if error else "ok", error=error,
                                         exit_code=result.exit_code, duration_ms=duration_ms,
                                         had_output=bool(texts),
                                         error_kind=classify(error, timed_out=result.timed_out) if error else None))
            tx.append(t.TaskRunFinished(task_id=task["id"], group_folder=group.folder, run_id=run_id,
                                        status="error" if error else "success", duration_ms=duration_ms,
                                        result=texts[-1][:SUMMARY_CHARS] if texts else None, error=error,
                                        next_run=upcoming))
            if pending_messages(tx, group.jid, cursor_of(tx, group.jid), 1):
                tx.append(t.AgentRunRequested(folder=group.folder, chat_jid=group.jid, reason="drain"))
        logger.info("task {} ran for {} ({} ms, {}); next run {}", task["id"], group.folder, duration_ms,
                    "error: " + error if error else "ok", upcoming or "never")


def due_tasks(log: EventLog) -> list[str]:
    """Active tasks whose time has come (for the 60 s pass)."""
    rows = log.query("SELECT id FROM tasks WHERE status = 'active' AND next_run IS NOT NULL AND next_run <= ? "
                     "ORDER BY next_run", (iso_now(),))
    return [row["id"] for row in rows]


def eta_of(next_run: str | None) -> datetime | None:
    return None if next_run is None else parse_iso(next_run)
