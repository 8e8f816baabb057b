"""The job queue: a SqliteHuey on `store/queue.db`, built from the settings it is given, and its jobs.

Huey only dispatches. Every job reads what to do from the event log and is
safe to run twice, because huey can lose a job in a crash (it deletes a task
before running it) and skips periodic runs while it is down; recovery looks
at the log, never at this queue. Only the dispatcher (jobs/dispatcher.py)
puts jobs on it; the worker (jobs/worker.py) consumes it. The jobs' names
(`jobs.queue.run_agent`, ...) are what queue.db stores, so they stay fixed.
"""

from __future__ import annotations

import threading
from datetime import datetime

from huey import SqliteHuey, crontab
from loguru import logger

from base.config import QUEUE_NAME, Settings
from events import EventLog
from jobs.cleanup import cleanup_if_due
from jobs.containers import ContainerRunner
from jobs.message_run import MessageRun
from jobs.recovery import reconcile
from jobs.task_run import TaskRun


class JobQueue:
    """The queue and its three jobs; in the worker they run, elsewhere they are only enqueued."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.huey = SqliteHuey(QUEUE_NAME, filename=str(settings.queue_path), results=False, utc=True)
        self._lock = threading.Lock()
        self._log: EventLog | None = None
        self._runner: ContainerRunner | None = None

        def run_agent(folder: str) -> None:
            """Run the group's agent on whatever the log says is pending."""
            outcome = MessageRun(settings, self.event_log(), self.container_runner()).run(folder)
            logger.debug("{}: agent job done ({})", folder, outcome)

        def run_task(task_id: str) -> None:
            """Run a scheduled task if it is (still) due."""
            outcome = TaskRun(settings, self.event_log(), self.container_runner()).run(task_id)
            logger.debug("task {}: job done ({})", task_id, outcome)

        def every_minute() -> None:
            """The 60 s safety net: bring runs and containers in line with the log, daily clean-up."""
            reconcile(settings, self.event_log())
            cleanup_if_due(settings, self.event_log())

        self._agent_job = self.huey.task()(run_agent)
        self._task_job = self.huey.task()(run_task)
        self.huey.periodic_task(crontab(minute="*"))(every_minute)

    def event_log(self) -> EventLog:
        """This process's one connection set to the event log, shared by the worker threads."""
        with self._lock:
            if self._log is None:
                self.settings.store_dir.mkdir(parents=True, exist_ok=True)
                self._log = EventLog(self.settings.db_path, sync=self.settings.event_log_sync)
            return self._log

    def container_runner(self) -> ContainerRunner:
        """The worker's one container runner (and so one Docker client) for every job."""
        log = self.event_log()  # before the lock, which event_log() takes too
        with self._lock:
            if self._runner is None:
                self._runner = ContainerRunner(self.settings, log)
            return self._runner

    def enqueue_agent(self, folder: str, eta: datetime | None = None) -> None:
        _enqueue(self._agent_job, folder, eta)

    def enqueue_task(self, task_id: str, eta: datetime | None = None) -> None:
        _enqueue(self._task_job, task_id, eta)


def _enqueue(job, argument: str, eta: datetime | None) -> None:
    """Now, or kept by huey until `eta`."""
    if eta is None:
        job(argument)
    else:
        job.schedule((argument,), eta=eta)
