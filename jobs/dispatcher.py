"""The dispatcher stage: the one way from the event log to huey's queue.

It runs in the service process beside the router's stages, and nothing else
enqueues. From the log: `AgentRunRequested` becomes `run_agent(folder)`,
`TaskRunRequested` becomes `run_task(task_id)`, and a task's schedule
events queue its job at its due time. A request's job is enqueued before
the checkpoint moves, so a crash can at worst enqueue it twice, which the
job shrugs off (it takes the group's lease or leaves). A `not_before`, and a
task's due time, become the job's ETA.

Huey can lose a job (it removes one from its queue before running it), so
`redispatch` enqueues again what the log says is still waiting: each
group's newest request that no run followed, once its time has come, and
every due task. The service calls it at start, whenever its worker starts,
and every 60 s; a job enqueued twice finds nothing to do the second time.
"""

from __future__ import annotations

from loguru import logger

from base.timefmt import iso_now, parse_iso
from events import EventLog, Record, Transaction, types as t
from events.consumer import Stage
from events.queries import due_tasks, list_groups, outstanding_request, task_by_id
from jobs.queue import JobQueue
from rules.ready import expired, is_ready_request, slot_free

TASK_EVENTS = (t.TaskScheduled, t.TaskUpdated, t.TaskResumed, t.TaskRunFinished)
REDISPATCH_S = 60.0


class DispatcherStage(Stage):
    name = "dispatcher"
    types = (t.AgentRunRequested, t.TaskRunRequested, *TASK_EVENTS)

    def __init__(self, queue: JobQueue):
        self.queue = queue

    def handle(self, tx: Transaction, record: Record) -> None:
        event = record.event
        if isinstance(event, t.AgentRunRequested):
            if event.reason == "ready" and not slot_free(tx, self.queue.settings):
                return  # a ready agent must not make a working one give its slot up; the next pass asks again
            self.queue.enqueue_agent(event.folder, parse_iso(event.not_before) if event.not_before else None)
        elif isinstance(event, t.TaskRunRequested):
            self.queue.enqueue_task(event.task_id, parse_iso(event.not_before) if event.not_before else None)
        else:
            self._queue_task(tx, event.task_id)  # type: ignore[attr-defined]

    def _queue_task(self, tx: Transaction, task_id: str) -> None:
        """Queue the task's run at its due time, as the projection says it is now."""
        task = task_by_id(tx, task_id)
        if task is not None and task["status"] == "active" and task["next_run"]:
            self.queue.enqueue_task(task_id, parse_iso(task["next_run"]))

    def redispatch(self, log: EventLog) -> dict[str, int]:
        """Enqueue again what waits in the log, in case huey lost its job; returns counts."""
        now = iso_now()
        waiting = []
        with log.transaction() as tx:
            for group in list_groups(tx):
                request = outstanding_request(tx, group.folder)
                if request is not None and (request.event.not_before or "") <= now:
                    if not is_ready_request(request):
                        waiting.append(group.folder)
                    elif slot_free(tx, self.queue.settings) and not expired(self.queue.settings, request):
                        waiting.append(group.folder)  # a ready agent, while it is still worth one
            tasks = due_tasks(tx, now)
        for folder in waiting:
            self.queue.enqueue_agent(folder)
        for task_id in tasks:
            self.queue.enqueue_task(task_id)
        if waiting or tasks:
            logger.debug("dispatcher: enqueued again {} request(s) and {} due task(s)", len(waiting), len(tasks))
        return {"requests": len(waiting), "tasks": len(tasks)}
