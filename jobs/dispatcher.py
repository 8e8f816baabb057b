"""The dispatcher stage: run requests in the log become huey jobs.

It runs in the service process beside the router's stages. A request's job
is enqueued before the checkpoint moves, so a crash can at worst enqueue it
twice, which the job shrugs off (it takes the group's lease or leaves).
A retry's `not_before`, and a task's due time, become the job's ETA.
"""

from __future__ import annotations

from events import Record, Transaction
from events import types as t
from events.consumer import Stage
from base.timefmt import parse_iso


TASK_EVENTS = (t.TaskScheduled, t.TaskUpdated, t.TaskResumed, t.TaskRunFinished)


class DispatcherStage(Stage):
    name = "dispatcher"
    types = (t.AgentRunRequested, *TASK_EVENTS)

    def handle(self, tx: Transaction, record: Record) -> None:
        from jobs.queue import run_agent

        event = record.event
        if isinstance(event, t.AgentRunRequested):
            if event.not_before:
                run_agent.schedule((event.folder,), eta=parse_iso(event.not_before))
            else:
                run_agent(event.folder)
        else:
            self._queue_task(tx, event.task_id)  # type: ignore[attr-defined]

    @staticmethod
    def _queue_task(tx: Transaction, task_id: str) -> None:
        """Queue the task's run at its due time, as the projection says it is now."""
        from jobs.queue import run_task

        rows = tx.query("SELECT status, next_run FROM tasks WHERE id = ?", (task_id,))
        if rows and rows[0]["status"] == "active" and rows[0]["next_run"]:
            run_task.schedule((task_id,), eta=parse_iso(rows[0]["next_run"]))
