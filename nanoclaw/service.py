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

from loguru import logger

from events import EventLog
from jobs.dispatcher import DispatcherStage
from jobs.runtime import RuntimeUnavailable, check_runtime, remove_orphans
from nanoclaw.config import Settings
from router.app import RouterApp
from router.channels.local import LocalChatError
from router.channels.registry import NoChannelsError
from router.groups import ensure_global_memory

EXIT_FATAL = 1
RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 30.0
WORKER_STOP_TIMEOUT_S = 30.0


def _fatal(message: str) -> int:
    banner = "FATAL: " + message
    width = max(len(line) for line in banner.splitlines()) + 4
    print("\n" + "=" * width + "\n  " + banner.replace("\n", "\n  ") + "\n" + "=" * width, file=sys.stderr)
    logger.critical(message.replace("\n", " "))
    return EXIT_FATAL


def run_service(settings: Settings, *, with_worker: bool = True) -> int:
    try:
        version = check_runtime()
    except RuntimeUnavailable as exc:
        return _fatal(f"the container runtime is not reachable ({exc}).\n"
                      "Start Docker (sudo systemctl start docker) and run nanoclaw again.")
    logger.info("container runtime up (Docker {})", version)
    remove_orphans(settings)
    ensure_global_memory(settings)
    log = EventLog(settings.db_path, sync=settings.event_log_sync)
    try:
        return asyncio.run(_serve(settings, log, with_worker))
    except (NoChannelsError, LocalChatError) as exc:
        return _fatal(str(exc))
    finally:
        log.close()


async def _serve(settings: Settings, log: EventLog, with_worker: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stopper(stop, signum))
    worker = WorkerSupervisor() if with_worker else None
    if worker:
        await worker.start()
    try:
        await RouterApp(settings, log, extra_stages=[DispatcherStage()]).serve(stop)
    finally:
        if worker:
            await worker.stop()
    return 0


class WorkerSupervisor:
    """Keeps `nanoclaw worker` running as a child process; restarts it if it dies."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._watch: asyncio.Task | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(sys.executable, "-m", "nanoclaw.cli", "worker")
        logger.info("worker started (pid {})", self.process.pid)
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
                self.process = await asyncio.create_subprocess_exec(sys.executable, "-m", "nanoclaw.cli", "worker")
                logger.info("worker restarted (pid {})", self.process.pid)

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
