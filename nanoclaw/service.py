"""`nanoclaw run`: the service process that systemd starts.

It checks the container runtime first (a clear fatal message and exit 1
when it is down), removes this install's orphaned containers, opens the log
(rebuilding stale projections), and runs the router until SIGTERM or SIGINT,
then shuts down cleanly with exit code 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from functools import partial
from typing import TYPE_CHECKING, Callable

from loguru import logger

from base.config import Settings
from events import EventLog
from events.health import RECOVERY_HINT, log_problem
from jobs.credentials import warn_if_no_credentials
from jobs.dispatcher import REDISPATCH_S, DispatcherStage
from jobs.queue import JobQueue
from jobs.recovery import live_runs
from jobs.runtime import RuntimeUnavailable, check_runtime, engine_name, remove_orphans, start_hint
from router.app import RouterApp
from router.channels.base import ChannelStartError
from router.channels.local import LocalChatError
from router.channels.registry import NoChannelsError
from router.heartbeat import Heartbeat
from rules.groups import ensure_global_memory
from rules.ready import request_ready_at_start

if TYPE_CHECKING:
    from nanoclaw.dashboard import Dashboard

EXIT_FATAL = 1  # the unit restarts the service: what failed may be back (the container runtime)
# The unit's RestartPreventExitStatus: restarting cannot fix it, a person can (a damaged event log, a
# configuration error such as a token the platform refuses); the same code as a bad setting at the CLI.
EXIT_NEEDS_A_PERSON = 2
RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 30.0
WORKER_STOP_TIMEOUT_S = 30.0
WORKER_COMMAND = (sys.executable, "-m", "nanoclaw.cli", "worker", "--supervised")


def _fatal(message: str, code: int = EXIT_FATAL) -> int:
    banner = "FATAL: " + message
    width = max(len(line) for line in banner.splitlines()) + 4
    print("\n" + "=" * width + "\n  " + banner.replace("\n", "\n  ") + "\n" + "=" * width, file=sys.stderr)
    logger.critical(message.replace("\n", " "))
    return code


def run_service(settings: Settings, *, with_worker: bool = True) -> int:
    try:
        version = check_runtime(settings)
    except RuntimeUnavailable as exc:
        return _fatal(f"the container runtime is not reachable ({exc}).\n{start_hint(settings)}")
    logger.info("container runtime up ({} {})", engine_name(settings), version)
    warn_if_no_credentials(settings)
    ensure_global_memory(settings)
    if (problem := log_problem(settings.db_path)) is not None:
        return _fatal(f"the event log {settings.db_path} {problem}.\nNothing was changed. To recover: {RECOVERY_HINT}.",
                      code=EXIT_NEEDS_A_PERSON)
    log = EventLog(settings.db_path, sync=settings.event_log_sync)
    # after opening the log: it tells which runs other `nanoclaw worker` processes still drive
    remove_orphans(settings, keep=lambda: live_runs(settings, log))
    with log.transaction() as tx:
        request_ready_at_start(tx, settings)
    try:
        return asyncio.run(_serve(settings, log, with_worker))
    except (NoChannelsError, ChannelStartError) as exc:
        return _fatal(str(exc), code=EXIT_NEEDS_A_PERSON)
    except LocalChatError as exc:  # another router holds the socket: it may be gone by the next start
        return _fatal(str(exc))
    finally:
        log.close()


async def _serve(settings: Settings, log: EventLog, with_worker: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stopper(stop, signum))
    dispatcher = DispatcherStage(JobQueue(settings))
    redispatch = partial(dispatcher.redispatch, log)
    app = RouterApp(settings, log, extra_stages=[dispatcher], every=[(REDISPATCH_S, redispatch)])

    def worker_started() -> None:
        """A restarted worker may follow one that died holding jobs: enqueue again what waits."""
        if app.live:  # at the service's start, the first round of the 60 s pass does it
            asyncio.ensure_future(app.on_db(redispatch))

    worker = WorkerSupervisor(on_start=worker_started) if with_worker else None
    dashboard = await _start_dashboard(settings, log)
    heartbeat = _heartbeat(settings, app, stop, worker, dashboard)
    heartbeat.start()
    if worker:
        await worker.start()
    try:
        await app.serve(stop)
    finally:
        if worker:
            await worker.stop()
        if dashboard:
            await dashboard.stop()
        await heartbeat.stop()
    return 0


async def _start_dashboard(settings: Settings, log: EventLog) -> "Dashboard | None":
    """The dashboard, unless it is switched off; one that cannot listen is logged, and the service goes on."""
    if not settings.dashboard:
        return None
    from nanoclaw.dashboard import Dashboard

    dashboard = Dashboard(settings, log)
    try:
        await dashboard.start()
    except OSError as exc:
        logger.error("dashboard: cannot listen on {}:{} ({}); set DASHBOARD_PORT to a free port, or DASHBOARD=off",
                     settings.dashboard_bind, settings.dashboard_port, exc.strerror or exc)
        return None
    return dashboard


def _heartbeat(settings: Settings, app: RouterApp, stop: asyncio.Event, worker: "WorkerSupervisor | None",
               dashboard: "Dashboard | None" = None) -> Heartbeat:
    """`data/service.json` for `nanoclaw status`: this process, its state, channels and worker."""
    def worker_pid() -> int | None:
        process = worker.process if worker else None
        return process.pid if process and process.returncode is None else None

    return Heartbeat(settings, channels=lambda: [c.name for c in app.channels if c.is_connected()],
                     state=lambda: "stopping" if stop.is_set() else ("live" if app.live else "starting"),
                     worker_pid=worker_pid, dashboard=lambda: dashboard.url if dashboard else None,
                     problems=lambda: {c.name: c.problem for c in app.channels if c.problem})


class WorkerSupervisor:
    """Keeps `nanoclaw worker` running as a child process; restarts it if it dies."""

    def __init__(self, on_start: Callable[[], object] | None = None) -> None:
        self.on_start = on_start or (lambda: None)
        self.process: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._watch: asyncio.Task | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(*WORKER_COMMAND)
        logger.info("worker started (pid {})", self.process.pid)
        self.on_start()
        self._watch = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        delay = RESTART_DELAY_S
        while not self._stopping:
            code = await self.process.wait()
            if self._stopping:
                return
            logger.error("worker exited with code {}; restarting it in {:.0f} s", code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY_S)
            if not self._stopping:
                self.process = await asyncio.create_subprocess_exec(*WORKER_COMMAND)
                logger.info("worker restarted (pid {})", self.process.pid)
                self.on_start()

    async def stop(self) -> None:
        self._stopping = True
        if self.process and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), WORKER_STOP_TIMEOUT_S)
            except asyncio.TimeoutError:
                logger.warning("worker did not stop in {} s; killing it", WORKER_STOP_TIMEOUT_S)
                self.process.kill()
                await self.process.wait()
        if self._watch:
            self._watch.cancel()


def _stopper(stop: asyncio.Event, signum: int):
    def handler() -> None:
        logger.info("received {}, shutting down", signal.Signals(signum).name)
        stop.set()

    return handler
