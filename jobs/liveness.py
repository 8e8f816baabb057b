"""Which worker processes are alive, so recovery never takes a live run for dead.

Every process that runs agents holds an exclusive `flock` on its own file in
`data/workers/` for as long as it lives, and stamps its runs with that
worker id. The kernel drops the lock when the process dies, SIGKILL
included, so another worker (or the service at start-up) can tell a run
whose worker is gone from one that is merely long, without heartbeats or
clocks. Several `nanoclaw worker` processes per install are then safe.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
import threading
from pathlib import Path

from base.config import Settings

_leases: dict[Path, "WorkerLease"] = {}
_leases_lock = threading.Lock()


def workers_dir(settings: Settings) -> Path:
    return settings.data_dir / "workers"


class WorkerLease:
    """This process's identity as a worker, held by a lock the kernel releases at death."""

    def __init__(self, settings: Settings):
        folder = workers_dir(settings)
        folder.mkdir(parents=True, exist_ok=True)
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.path = folder / f"{self.worker_id}.lock"
        self._file = open(self.path, "w", encoding="utf-8")
        fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    def release(self) -> None:
        """Give the identity up (the process stops running agents)."""
        self.path.unlink(missing_ok=True)
        self._file.close()


def this_worker(settings: Settings) -> str:
    """The worker id of this process for this install, taken on first use."""
    with _leases_lock:
        lease = _leases.get(settings.root)
        if lease is None or lease._file.closed:
            lease = _leases[settings.root] = WorkerLease(settings)
        return lease.worker_id


def release_worker(settings: Settings) -> None:
    """This process stops running agents for the install: its lock file goes."""
    with _leases_lock:
        lease = _leases.pop(settings.root, None)
    if lease is not None and not lease._file.closed:
        lease.release()


def sweep(settings: Settings) -> int:
    """Delete the lock files of workers that died without releasing them; returns how many."""
    folder = workers_dir(settings)
    names = [path.stem for path in folder.glob("*.lock")] if folder.is_dir() else []
    return sum(not is_alive(settings, name) for name in names)


def known_worker(settings: Settings) -> str | None:
    """This process's worker id if it has taken one, without taking one."""
    with _leases_lock:
        lease = _leases.get(settings.root)
        return lease.worker_id if lease is not None and not lease._file.closed else None


def is_alive(settings: Settings, worker_id: str | None) -> bool:
    """True while the process holding `worker_id` lives (on this machine)."""
    if not worker_id or "/" in worker_id or worker_id.startswith("."):
        return False
    path = workers_dir(settings) / f"{worker_id}.lock"
    try:
        probe = open(path, "r", encoding="utf-8")
    except FileNotFoundError:
        return False
    with probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        path.unlink(missing_ok=True)  # a dead worker's file: nobody will take this id again
        return False
