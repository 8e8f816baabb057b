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
from jobs.runtime import RuntimeUnavailable, check_runtime, remove_orphans
from nanoclaw.config import Settings
from router.app import RouterApp
from router.channels.local import LocalChatError
from router.channels.registry import NoChannelsError
from router.groups import ensure_global_memory

EXIT_FATAL = 1


def _fatal(message: str) -> int:
    banner = "FATAL: " + message
    width = max(len(line) for line in banner.splitlines()) + 4
    print("\n" + "=" * width + "\n  " + banner.replace("\n", "\n  ") + "\n" + "=" * width, file=sys.stderr)
    logger.critical(message.replace("\n", " "))
    return EXIT_FATAL


def run_service(settings: Settings) -> int:
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
        return asyncio.run(_serve(settings, log))
    except (NoChannelsError, LocalChatError) as exc:
        return _fatal(str(exc))
    finally:
        log.close()


async def _serve(settings: Settings, log: EventLog) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stopper(stop, signum))
    await RouterApp(settings, log).serve(stop)
    return 0


def _stopper(stop: asyncio.Event, signum: int):
    def handler() -> None:
        logger.info("received {}, shutting down", signal.Signals(signum).name)
        stop.set()

    return handler
