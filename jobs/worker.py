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

from events.health import RECOVERY_HINT, log_problem
from jobs.agent import idle_since
from jobs.containers import request_close
from jobs.liveness import release_worker, this_worker
from jobs.recovery import active_lock, active_runs, live_runs, reconcile, stopping
from jobs.runtime import remove_orphans
from base.config import Settings

SHUTDOWN_TIMEOUT_S = 20
LEFTOVER_RECORD_S = 3.0
PREEMPT_CHECK_S = 0.25
OPEN_FILES_WANTED = 65_536  # when the hard limit is unlimited
EXIT_DAMAGED_LOG = 2        # as the service's: restarting cannot repair the file


class _Consumer(Consumer):
    """huey's consumer, asking running agents to finish before it waits for them."""

    def __init__(self, huey, settings: Settings, supervised: bool = False, **options):
        super().__init__(huey, **options)
        self.settings = settings
        self.supervised = supervised

    def _set_signal_handlers(self) -> None:
        super()._set_signal_handlers()
        if self.supervised:
            # Ctrl-C in a terminal reaches the service's whole process group; huey would take SIGINT as
            # "stop now" and cut busy agents off. The service stops its worker with SIGTERM instead.
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    def stop(self, graceful: bool = False) -> None:
        stopping.set()
        with active_lock:
            mine = set(active_runs)
        if mine:
            logger.info("asking {} running agent(s) to finish", len(mine))
        for folder in self._folders_of(mine):
            request_close(self.settings, folder)
        super().stop(graceful=graceful)
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """After the bounded wait: stop what still runs, so no container outlives the worker."""
        from jobs.queue import event_log

        with active_lock:
            left = set(active_runs)
        if not left:
            return
        logger.warning("{} agent(s) did not finish within {} s; stopping their containers "
                       "(what they had not answered runs again after restart)", len(left), SHUTDOWN_TIMEOUT_S)
        remove_orphans(self.settings, keep=lambda: live_runs(self.settings, event_log()) - left)
        deadline = time.monotonic() + LEFTOVER_RECORD_S
        while time.monotonic() < deadline and self._still_active(left):
            time.sleep(0.05)  # their jobs record how they ended; recovery does it if they cannot

    @staticmethod
    def _still_active(run_ids: set[str]) -> bool:
        with active_lock:
            return bool(run_ids & active_runs)

    @staticmethod
    def _folders_of(run_ids: set[str]) -> set[str]:
        """The groups of this worker's own runs: other workers' agents are theirs to close."""
        from jobs.queue import event_log

        rows = event_log().query("SELECT run_id, folder FROM runs WHERE state = 'running'")
        return {row["folder"] for row in rows if row["run_id"] in run_ids}


def preempt_idle(settings: Settings, pending: int) -> str | None:
    """Close the longest-idle agent when work waits and every slot is busy; returns its folder."""
    with active_lock:
        if pending <= 0 or len(active_runs) < settings.max_concurrent_containers or not idle_since:
            return None
        run_id, (_, folder) = min(idle_since.items(), key=lambda item: item[1][0])
        idle_since.pop(run_id)
    logger.info("{}: idle agent gives its slot to a waiting group", folder)
    request_close(settings, folder)
    return folder


def _preempt_loop(settings: Settings, huey, stop: threading.Event) -> None:
    while not stop.wait(PREEMPT_CHECK_S):
        try:
            preempt_idle(settings, huey.pending_count())
        except Exception as exc:  # the monitor must outlive a bad moment of the queue
            logger.warning("idle preemption check failed: {}", exc)


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
    from jobs.queue import event_log, huey

    logger.info("worker {} starting", this_worker(settings))  # its identity first: its runs carry it
    if (problem := log_problem(settings.db_path)) is not None:
        logger.critical("the event log {} {}; the worker does not start. To recover: {}", settings.db_path,
                        problem, RECOVERY_HINT)
        return EXIT_DAMAGED_LOG
    raise_open_files_limit()
    reconcile(settings, event_log())
    consumer = _Consumer(
        huey, settings, supervised=supervised, workers=settings.max_concurrent_containers, worker_type="thread",
        initial_delay=0.01, max_delay=0.1, backoff=1.1, flush_locks=True, periodic=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S, graceful_signal="TERM",
    )
    stop = threading.Event()
    monitor = threading.Thread(target=_preempt_loop, args=(settings, huey, stop), daemon=True)
    monitor.start()
    logger.info("worker consuming with {} slot(s)", settings.max_concurrent_containers)
    try:
        consumer.run()
    finally:
        stop.set()
        release_worker(settings)
    return 0
