"""The service's pulse: `data/service.json`, rewritten every few seconds by `nanoclaw run`.

`nanoclaw status` and `nanoclaw doctor` tell a running service from a dead
one without talking to it: the file names the pid (which must be alive),
the channels connected and the worker's pid, and its `updated_at` must be
fresh. Written atomically; removed when the service stops cleanly.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Callable, Literal

import msgspec
from loguru import logger

from base.config import Settings
from base.timefmt import iso_now

HEARTBEAT_INTERVAL_S = 2.0
CHANGE_CHECK_S = 0.2  # a change of state, channels or worker is written at once, not at the next beat
STATUS_FILE = "service.json"

ServiceState = Literal["starting", "live", "stopping"]


class ServiceBeat(msgspec.Struct, kw_only=True):
    """What the running service says about itself."""

    pid: int
    started_at: str
    updated_at: str
    state: ServiceState
    root: str
    channels: list[str] = []
    worker_pid: int | None = None
    interval_s: float = HEARTBEAT_INTERVAL_S
    dashboard: str | None = None  # where the dashboard listens (without its token)
    channel_problems: dict[str, str] = {}  # channel -> what its owner must fix, in plain words


def status_path(settings: Settings) -> Path:
    return settings.data_dir / STATUS_FILE


def write_beat(path: Path, beat: ServiceBeat) -> None:
    """Replace the file atomically (a reader never sees half of it)."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_bytes(msgspec.json.encode(beat))
    os.replace(temp, path)


def read_beat(path: Path) -> ServiceBeat | None:
    """The last beat written, or None when there is no file; a broken file raises ValueError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return msgspec.json.decode(data, type=ServiceBeat)
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path} is not a service status file: {exc}") from exc


class Heartbeat:
    """Writes the beat every HEARTBEAT_INTERVAL_S, and at once on a change, until stopped."""

    def __init__(self, settings: Settings, *, state: Callable[[], ServiceState],
                 channels: Callable[[], list[str]], worker_pid: Callable[[], int | None],
                 dashboard: Callable[[], str | None] = lambda: None,
                 problems: Callable[[], dict[str, str]] = dict):
        self.settings = settings
        self.path = status_path(settings)
        self._state, self._channels, self._worker_pid = state, channels, worker_pid
        self._dashboard, self._problems = dashboard, problems
        self._started_at = iso_now()
        self._task: asyncio.Task | None = None
        self._last: tuple = ()

    def beat(self) -> ServiceBeat:
        beat = ServiceBeat(pid=os.getpid(), started_at=self._started_at, updated_at=iso_now(),
                           state=self._state(), root=str(self.settings.root), channels=self._channels(),
                           worker_pid=self._worker_pid(), dashboard=self._dashboard(),
                           channel_problems=self._problems())
        self._last = self._facts()
        try:
            write_beat(self.path, beat)
        except OSError as exc:
            logger.warning("cannot write the service status file {} ({}); nanoclaw status will say the "
                           "service is down; retrying in {:.0f} s", self.path, exc, HEARTBEAT_INTERVAL_S)
        return beat

    def _facts(self) -> tuple:
        """What, when it changes, is written at once."""
        return self._state(), self._channels(), self._worker_pid(), self._problems()

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.beat()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + HEARTBEAT_INTERVAL_S
        while True:
            await asyncio.sleep(CHANGE_CHECK_S)
            if loop.time() >= due or self._facts() != self._last:
                self.beat()
                due = loop.time() + HEARTBEAT_INTERVAL_S

    async def stop(self) -> None:
        """Stop beating and remove the file: a clean stop leaves nothing that says 'up'."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.path.unlink(missing_ok=True)
