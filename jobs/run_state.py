"""What this worker process is doing right now: its runs, which of them wait idle, and whether it stops.

One object per worker process, shared by its job threads, its preemption
monitor and its shutdown. The log says which runs started and ended (the
`runs` projection) and a worker's lock file says whether that worker lives
(jobs/liveness.py); this says which runs this process drives, which is what
recovery must never take for dead. A run counts as idle from its answer
(`mark_idle`, with the seq of that output) until it is handed more work:
any `MessagesPiped` for it after that seq makes it busy again, as the log
shows, since the router pipes from another process. A ready agent
(rules/ready.py) is idle from its start and gives its slot up before any
other; the worker also keeps the memory its container was last seen to hold,
and whether it was retired to be replaced by a fresh one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

READY_ESTIMATE_MB = 300.0  # what a ready agent is taken to hold before one was measured


@dataclass(frozen=True)
class Idle:
    since: float       # time.monotonic() of its answer (a ready agent: of its start)
    folder: str
    after_seq: int     # the seq of that answer: a pipe after it means work
    ready: bool = False
    container: str = ""  # a ready agent's, for the watch that measures it


class WorkerRuns:
    """This process's live runs, their idle marks, and the stopping flag."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: set[str] = set()
        self._idle: dict[str, Idle] = {}
        self._memory_mb: dict[str, float] = {}   # ready agents' containers, as last measured
        self._largest_ready_mb = 0.0
        self._replaced: set[str] = set()
        self._gave_way: set[str] = set()         # runs closed to free their slot for waiting work
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
            self._memory_mb.pop(run_id, None)
            self._replaced.discard(run_id)
            self._gave_way.discard(run_id)

    def mine(self) -> set[str]:
        with self._lock:
            return set(self._active)

    def any_of(self, run_ids: set[str]) -> bool:
        with self._lock:
            return bool(run_ids & self._active)

    def mark_idle(self, run_id: str, folder: str, after_seq: int, *, ready: bool = False,
                  container: str = "") -> None:
        """The run answered (or, ready, started) and waits for input (only while it is still one of ours)."""
        with self._lock:
            if run_id in self._active:
                self._idle[run_id] = Idle(time.monotonic(), folder, after_seq, ready, container)

    def mark_busy(self, run_id: str) -> None:
        with self._lock:
            self._idle.pop(run_id, None)
            self._memory_mb.pop(run_id, None)

    def ready(self) -> dict[str, Idle]:
        """The ready agents still waiting for their first input, oldest first."""
        with self._lock:
            return dict(sorted(((r, i) for r, i in self._idle.items() if i.ready), key=lambda item: item[1].since))

    def retire(self, run_id: str, *, replace: bool) -> Idle | None:
        """Take a ready agent's mark to close it; None when it was taken (preempted, handed work) already."""
        with self._lock:
            idle = self._idle.get(run_id)
            if idle is None or not idle.ready:
                return None
            del self._idle[run_id]
            if replace:
                self._replaced.add(run_id)
            return idle

    def replaced(self, run_id: str) -> bool:
        """Whether the run was a ready agent retired because what it was started with changed."""
        with self._lock:
            return run_id in self._replaced

    def set_memory(self, run_id: str, megabytes: float) -> None:
        with self._lock:
            if run_id in self._idle:
                self._memory_mb[run_id] = megabytes
                self._largest_ready_mb = max(self._largest_ready_mb, megabytes)

    def ready_memory_mb(self, leaving: frozenset[str] | set[str] = frozenset()) -> float:
        """What the waiting ready agents hold (not those of `leaving`), unmeasured ones at the estimate."""
        with self._lock:
            estimate = self._estimate_mb()
            return sum(self._memory_mb.get(r, estimate) for r, i in self._idle.items()
                       if i.ready and i.folder not in leaving)

    def ready_memory_room(self, budget_mb: int, leaving: frozenset[str] | set[str] = frozenset()) -> bool:
        """Whether one more ready agent fits in `budget_mb`, at the largest one seen (or the estimate)."""
        with self._lock:
            estimate = self._estimate_mb()
        return self.ready_memory_mb(leaving) + estimate <= budget_mb

    def _estimate_mb(self) -> float:
        """What one ready agent is taken to hold: the largest measured, else READY_ESTIMATE_MB (lock held)."""
        return self._largest_ready_mb or READY_ESTIMATE_MB

    def idle_runs(self) -> dict[str, Idle]:
        with self._lock:
            return dict(self._idle)

    def take_longest_idle(self, slots: int, piped_since: Callable[[str, Idle], bool]) -> Idle | None:
        """When every slot is taken: a ready agent, else the longest-idle run, that got no work; unmarked.

        `piped_since(run_id, idle)` tells whether the log shows input piped
        into the run after its answer; such a run is busy again and is unmarked.
        """
        with self._lock:
            if len(self._active) < slots:
                return None
            # ready agents first (nobody is talking to them yet), then the longest idle
            candidates = sorted(self._idle.items(), key=lambda item: (not item[1].ready, item[1].since))
        for run_id, idle in candidates:
            if piped_since(run_id, idle):
                self.mark_busy(run_id)
                continue
            with self._lock:
                if self._idle.pop(run_id, None) is not None:
                    self._gave_way.add(run_id)
                    return idle
        return None

    def gave_way(self, run_id: str) -> bool:
        """Whether the run was closed to give its slot to waiting work (then no ready agent follows it)."""
        with self._lock:
            return run_id in self._gave_way


RUNS = WorkerRuns()  # this process's one instance
