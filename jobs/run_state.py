"""What this worker process is doing right now: its runs, which of them wait idle, and whether it stops.

One object per worker process, shared by its job threads, its preemption
monitor and its shutdown. The log says which runs started and ended (the
`runs` projection) and a worker's lock file says whether that worker lives
(jobs/liveness.py); this says which runs this process drives, which is what
recovery must never take for dead. A run counts as idle from its answer
(`mark_idle`, with the seq of that output) until it is handed more work:
any `MessagesPiped` for it after that seq makes it busy again, as the log
shows, since the router pipes from another process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Idle:
    since: float       # time.monotonic() of its answer
    folder: str
    after_seq: int     # the seq of that answer: a pipe after it means work


class WorkerRuns:
    """This process's live runs, their idle marks, and the stopping flag."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: set[str] = set()
        self._idle: dict[str, Idle] = {}
        self.stopping = threading.Event()  # set when the worker begins to stop: no new run starts

    def register(self, run_id: str) -> None:
        """Before its start commits, so recovery never takes the run for dead."""
        with self._lock:
            self._active.add(run_id)

    def release(self, run_id: str) -> None:
        """Once the run's end is recorded (or it crashed): recovery then finishes it."""
        with self._lock:
            self._active.discard(run_id)
            self._idle.pop(run_id, None)

    def mine(self) -> set[str]:
        with self._lock:
            return set(self._active)

    def any_of(self, run_ids: set[str]) -> bool:
        with self._lock:
            return bool(run_ids & self._active)

    def mark_idle(self, run_id: str, folder: str, after_seq: int) -> None:
        """The run answered and waits for input (only while it is still one of ours)."""
        with self._lock:
            if run_id in self._active:
                self._idle[run_id] = Idle(time.monotonic(), folder, after_seq)

    def mark_busy(self, run_id: str) -> None:
        with self._lock:
            self._idle.pop(run_id, None)

    def idle_runs(self) -> dict[str, Idle]:
        with self._lock:
            return dict(self._idle)

    def take_longest_idle(self, slots: int, piped_since: Callable[[str, Idle], bool]) -> Idle | None:
        """When every slot is taken: the longest-idle run that got no work since its answer, unmarked.

        `piped_since(run_id, idle)` tells whether the log shows input piped
        into the run after its answer; such a run is busy again and is unmarked.
        """
        with self._lock:
            if len(self._active) < slots:
                return None
            candidates = sorted(self._idle.items(), key=lambda item: item[1].since)
        for run_id, idle in candidates:
            if piped_since(run_id, idle):
                self.mark_busy(run_id)
                continue
            with self._lock:
                if self._idle.pop(run_id, None) is not None:
                    return idle
        return None


RUNS = WorkerRuns()  # this process's one instance
