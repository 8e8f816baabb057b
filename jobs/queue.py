"""The job queue: one SqliteHuey on `store/queue.db`, and the jobs it carries.

Huey only dispatches. Every job reads what to do from the event log and is
safe to run twice, because huey can lose a job in a crash (it deletes a task
before running it) and skips periodic runs while it is down; recovery looks
at the log, never at this queue.
"""

from __future__ import annotations

import threading

from huey import SqliteHuey, crontab
from loguru import logger

from events import EventLog
from base.config import QUEUE_NAME, load_settings

settings = load_settings()
huey = SqliteHuey(QUEUE_NAME, filename=str(settings.queue_path), results=False, utc=True)

_log: EventLog | None = None
_log_lock = threading.Lock()
_runner = None


def event_log() -> EventLog:
    """This process's one connection set to the event log, shared by the worker threads."""
    global _log
    with _log_lock:
        if _log is None:
            settings.store_dir.mkdir(parents=True, exist_ok=True)
            _log = EventLog(settings.db_path, sync=settings.event_log_sync)
        return _log


def container_runner():
    """The worker's one container runner (and so one Docker client) for every job."""
    global _runner
    log = event_log()  # before the lock, which event_log() takes too
    with _log_lock:
        if _runner is None:
            from jobs.containers import ContainerRunner

            _runner = ContainerRunner(settings, log)
        return _runner


@huey.task()
def run_agent(folder: str) -> None:
    """Run the group's agent on whatever the log says is pending."""
    from jobs.agent import AgentRun

    outcome = AgentRun(settings, event_log(), container_runner()).run(folder)
    logger.debug("{}: agent job done ({})", folder, outcome)


@huey.task()
def run_task(task_id: str) -> None:
    """Run a scheduled task if it is (still) due."""
    from jobs.tasks import TaskRun

    outcome = TaskRun(settings, event_log(), container_runner()).run(task_id)
    logger.debug("task {}: job done ({})", task_id, outcome)


@huey.periodic_task(crontab(minute="*"))
def every_minute() -> None:
    """The 60 s safety net: reconcile with the log, reap orphans, queue due tasks, daily clean-up."""
    from jobs.cleanup import cleanup_if_due
    from jobs.recovery import reconcile
    from jobs.tasks import due_tasks

    reconcile(settings, event_log())
    for task_id in due_tasks(event_log()):
        run_task(task_id)
    cleanup_if_due(settings, event_log())
