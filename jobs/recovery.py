"""Crash recovery from the log, at worker start and in the 60 s pass.

Never from huey's queue: a run the log says started and never finished gets
`AgentRunFinished(interrupted)` (its cursor rolled back when it had sent
nothing, so it runs again; when it had, only past what it answered, so no
reply is repeated and no message piped after its last reply is lost); a
group with triggering work past its cursor and nobody on it gets a request;
a request that no run followed gets its job again. Containers of this install
that no live run owns are removed. A run is live while this process runs it,
or while the worker process that stamped it still holds its lock
(jobs/liveness.py), so several workers per install never reap each other.
"""

from __future__ import annotations

from loguru import logger

from base.config import Settings
from events import EventLog, Transaction, types as t
from events.queries import group_busy, list_groups, outstanding_request, running_runs
from jobs.gateway import sweep_run_dirs
from jobs.liveness import is_alive, known_worker, sweep
from jobs.run_lifecycle import finish_interrupted
from jobs.run_state import RUNS
from jobs.runtime import remove_orphans
from rules.allowlist import AllowlistFile
from rules.windows import pending_window


def live_runs(settings: Settings, log: EventLog | Transaction) -> set[str]:
    """Run ids that are really running: this process's own, and those of live workers."""
    mine = RUNS.mine()
    running = running_runs(log)
    alive = {worker: is_alive(settings, worker) for worker in {row["worker"] for row in running}}
    me = known_worker(settings)
    return mine | {row["run_id"] for row in running if row["worker"] != me and alive[row["worker"]]}


def reconcile(settings: Settings, log: EventLog) -> dict[str, int]:
    """Bring runs, requests and containers back in line with the log; returns counts."""
    removed = remove_orphans(settings, keep=lambda: live_runs(settings, log))
    sweep(settings)  # lock files of workers killed before they could remove them
    sweep_run_dirs(settings, live_runs(settings, log))  # gateway sockets of runs whose worker died
    allowlist = AllowlistFile(settings.sender_allowlist_path)
    with log.transaction() as tx:
        # read inside the write transaction: a job registers its run before it commits AgentRunStarted
        alive = live_runs(settings, tx)
        dead = [r for r in running_runs(tx) if r["run_id"] not in alive]
        for run in dead:
            finish_interrupted(tx, run)
        requested = _request_waiting_groups(tx, settings, allowlist)
    counts = {"containers_removed": len(removed), "runs_interrupted": len(dead), "runs_requested": requested}
    if any(counts.values()):
        logger.info("recovery: {}", ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
    return counts


def _request_waiting_groups(tx: Transaction, settings: Settings, allowlist: AllowlistFile) -> int:
    """A request for each group whose pending window wakes its agent and that nobody works on or waits for."""
    count = 0
    for group in list_groups(tx):
        if group_busy(tx, group.folder) or outstanding_request(tx, group.folder) is not None:
            continue
        if pending_window(tx, settings, group, allowlist.current()).wakes:
            tx.append(t.AgentRunRequested(folder=group.folder, chat_jid=group.jid, reason="recovery"))
            count += 1
    return count
