"""The worker process: huey's consumer with thread workers, one per container slot.

Before consuming it recovers from the log (a previous worker may have died
mid-run). While it runs, an idle agent gives up its slot when another group
waits and every slot is taken, oldest idle first. On
SIGTERM running agents get the close sentinel and a bounded wait; what they
did not answer is re-run after restart.
"""

from __future__ import annotations

import resource
import signal
import threading
import time

from huey.consumer import Consumer
from loguru import logger

from base.config import Settings
from events import EventLog
from events.health import RECOVERY_HINT, log_problem
from events.queries import outstanding_request, piped_since, running_runs
from jobs.liveness import release_worker, this_worker
from jobs.queue import JobQueue
from jobs.ready_agents import ReadyWatch
from jobs.recovery import live_runs, reconcile
from jobs.run_state import RUNS
from jobs.runtime import remove_orphans
from rules.ipc_folder import request_close
from rules.ready import is_ready_request

SHUTDOWN_TIMEOUT_S = 20
LEFTOVER_RECORD_S = 3.0
PREEMPT_CHECK_S = 0.25
OPEN_FILES_WANTED = 65_536  # when the hard limit is unlimited
EXIT_DAMAGED_LOG = 2        # as the service's: restarting cannot repair the file


class _Consumer(Consumer):
    """huey's consumer, asking running agents to finish before it waits for them."""

    def __init__(self, queue: JobQueue, supervised: bool = False, **options):
        super().__init__(queue.huey, **options)
        self.settings = queue.settings
        self.log = queue.event_log()
        self.supervised = supervised

    def _set_signal_handlers(self) -> None:
        super()._set_signal_handlers()
        if self.supervised:
            # Ctrl-C in a terminal reaches the service's whole process group; huey would take SIGINT as
            # "stop now" and cut busy agents off. The service stops its worker with SIGTERM instead.
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    def stop(self, graceful: bool = False) -> None:
        RUNS.stopping.set()
        mine = RUNS.mine()
        if mine:
            logger.info("asking {} running agent(s) to finish", len(mine))
        for folder in self._folders_of(mine):
            request_close(self.settings, folder)
        super().stop(graceful=graceful)
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """After the bounded wait: stop what still runs, so no container outlives the worker."""
        left = RUNS.mine()
        if not left:
            return
        logger.warning("{} agent(s) did not finish within {} s; stopping their containers "
                       "(what they had not answered runs again after restart)", len(left), SHUTDOWN_TIMEOUT_S)
        remove_orphans(self.settings, keep=lambda: live_runs(self.settings, self.log) - left)
        deadline = time.monotonic() + LEFTOVER_RECORD_S
        while time.monotonic() < deadline and RUNS.any_of(left):
            time.sleep(0.05)  # their jobs record how they ended; recovery does it if they cannot

    def _folders_of(self, run_ids: set[str]) -> set[str]:
        """The groups of this worker's own runs: other workers' agents are theirs to close."""
        return {row["folder"] for row in running_runs(self.log) if row["run_id"] in run_ids}


def preempt_idle(settings: Settings, log: EventLog, pending: int) -> str | None:
    """Close the longest-idle agent when work waits and every slot is busy; returns its folder.

    Idle means answered and handed nothing since: a run the router piped a
    message into after its answer is working, whatever its idle mark says.
    """
    if pending <= 0:
        return None
    idle = RUNS.take_longest_idle(settings.max_concurrent_containers,
                                  lambda run_id, idle: piped_since(log, run_id, idle.folder, idle.after_seq))
    if idle is None:
        return None
    logger.info("{}: idle agent gives its slot to a waiting group", idle.folder)
    request_close(settings, idle.folder)
    return idle.folder


def waiting_work(queue: JobQueue, log: EventLog) -> int:
    """Jobs waiting for a slot, but a ready agent's: one must never make a working agent give way."""
    count = 0
    for job in queue.huey.pending():
        if job.name == "run_agent" and is_ready_request(outstanding_request(log, job.args[0])):
            continue
        count += 1
    return count


def _monitor_loop(queue: JobQueue, stop: threading.Event) -> None:
    """Every quarter second: idle agents make way for waiting work, stale ready agents retire."""
    ready = ReadyWatch(queue.settings, queue.event_log(), queue.container_runner())
    while not stop.wait(PREEMPT_CHECK_S):
        # the monitor must outlive a bad moment of the queue or of Docker, and one check must not skip the other
        try:
            if len(RUNS.mine()) >= queue.settings.max_concurrent_containers:  # only then may anyone wait
                preempt_idle(queue.settings, queue.event_log(), waiting_work(queue, queue.event_log()))
        except Exception as exc:
            logger.warning("idle preemption check failed: {}", exc)
        try:
            ready.check()
        except Exception as exc:
            logger.warning("ready agent check failed: {}", exc)


def raise_open_files_limit() -> int:
    """Lift this process's open-file limit to its hard limit; returns the new soft limit.

    Every run's gateway sockets and their connections are descriptors of the
    worker (up to about 200 per run under attack), and systemd's default
    soft limit is 1024: a few hostile runs must not stop every other group.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            logger.warning("could not raise the open-file limit from {}: {}", soft, exc)
    return soft


def run_worker(settings: Settings, *, supervised: bool = False) -> int:
    logger.info("worker {} starting", this_worker(settings))  # its identity first: its runs carry it
    if (problem := log_problem(settings.db_path)) is not None:
        logger.critical("the event log {} {}; the worker does not start. To recover: {}", settings.db_path,
                        problem, RECOVERY_HINT)
        return EXIT_DAMAGED_LOG
    raise_open_files_limit()
    queue = JobQueue(settings)
    reconcile(settings, queue.event_log())
    consumer = _Consumer(
        queue, supervised=supervised, workers=settings.max_concurrent_containers, worker_type="thread",
        initial_delay=0.01, max_delay=0.1, backoff=1.1, flush_locks=True, periodic=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S, graceful_signal="TERM",
    )
    stop = threading.Event()
    monitor = threading.Thread(target=_monitor_loop, args=(queue, stop), daemon=True)
    monitor.start()
    logger.info("worker consuming with {} slot(s)", settings.max_concurrent_containers)
    try:
        consumer.run()
    finally:
        stop.set()
        release_worker(settings)
    return 0
