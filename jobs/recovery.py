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

import threading

from loguru import logger

from events import EventLog, Transaction
from events import types as t
from events.queries import cursor_of, group_busy, group_from_row, outstanding_request, pending_messages
from jobs.gateway import sweep_run_dirs
from jobs.liveness import is_alive, known_worker, sweep
from jobs.runtime import remove_orphans
from base.config import Settings
from rules.allowlist import AllowlistFile
from rules.windows import window_wakes

# Run ids of the containers this process is running right now.
active_runs: set[str] = set()
active_lock = threading.Lock()
# Set when this worker begins to stop: no new run starts, and one caught starting is asked to close.
stopping = threading.Event()


def _mine() -> set[str]:
    with active_lock:
        return set(active_runs)


def live_runs(settings: Settings, log: EventLog | Transaction) -> set[str]:
    """Run ids that are really running: this process's own, and those of live workers."""
    mine = _mine()
    running = log.query("SELECT run_id, worker FROM runs WHERE state = 'running'")
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
        interrupted = _finish_dead_runs(tx, live_runs(settings, tx))
        lost = _requests_without_runs(tx)
        requested = _request_waiting_groups(tx, settings, allowlist)
    _enqueue(lost)
    counts = {"containers_removed": len(removed), "runs_interrupted": interrupted,
              "runs_requested": requested, "jobs_requeued": len(lost)}
    if any(counts.values()):
        logger.info("recovery: {}", ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
    return counts


def _finish_dead_runs(tx: Transaction, alive: set[str]) -> int:
    dead = [r for r in tx.query("SELECT * FROM runs WHERE state = 'running'") if r["run_id"] not in alive]
    for run in dead:
        sent = tx.query("SELECT count(*) FROM outbound WHERE run_id = ?", (run["run_id"],))[0][0]
        rollback = _unanswered_from(tx, run) if sent else run["from_seq"]
        tx.append(t.AgentRunFinished(
            run_id=run["run_id"], folder=run["folder"], chat_jid=run["chat_jid"], status="interrupted",
            error="its worker stopped before the container finished", had_output=sent > 0,
            cursor_rollback_to=rollback))
        logger.warning("{}: run {} was interrupted ({}); {}", run["folder"], run["run_id"],
                       "replies were sent" if sent else "nothing was sent",
                       "its unanswered messages will be answered again" if rollback is not None
                       else "not repeating it")
    return len(dead)


def _unanswered_from(tx: Transaction, run) -> int | None:
    """For a dead run that replied: where the cursor goes back to if piped messages went unhandled."""
    started = tx.read_since(run["started_seq"] - 1, types=[t.AgentRunStarted], limit=1)[0].event
    # the `runs` row holds the piped high mark; the window first handed over is the started event's
    return unanswered_from(tx, run["folder"], run["run_id"], run["started_seq"], started.through_seq)


def unanswered_from(tx: Transaction, folder: str, run_id: str, since_seq: int, through_seq: int) -> int | None:
    """Where a run's cursor must go back to when messages piped into it were never handled.

    A piped file counts as handled once a successful output names it in
    `inputs` (the agent read it and finished that turn). The first one not
    handled, and every later one, left the window when piped; without the
    rollback they would be lost. None: every piped message was handled.
    """
    handled: set[str] = set()
    pipes: list[t.MessagesPiped] = []
    for record in tx.read_since(since_seq, types=[t.MessagesPiped, t.AgentOutput], streams=[folder], limit=None):
        event = record.event
        if event.run_id != run_id:
            continue
        if isinstance(event, t.MessagesPiped):
            pipes.append(event)
        elif event.status == "success":
            handled.update(event.inputs)
    answered_up_to = through_seq
    for pipe in pipes:
        if pipe.file not in handled:
            return answered_up_to
        answered_up_to = pipe.through_seq
    return None


def _request_waiting_groups(tx: Transaction, settings: Settings, allowlist: AllowlistFile) -> int:
    count = 0
    for row in tx.query("SELECT * FROM groups"):
        group = group_from_row(row)
        if group_busy(tx, group.folder) or outstanding_request(tx, group.folder) is not None:
            continue
        pending = pending_messages(tx, group.jid, cursor_of(tx, group.jid), settings.max_messages_per_prompt)
        if window_wakes(pending, is_main=group.is_main, requires_trigger=group.requires_trigger,
                        trigger=group.trigger, default_trigger=settings.trigger, rules=allowlist.current()):
            tx.append(t.AgentRunRequested(folder=group.folder, chat_jid=group.jid, reason="recovery"))
            count += 1
    return count


def _requests_without_runs(tx: Transaction) -> list[t.AgentRunRequested]:
    """Requests still waiting whose time has come: their job may have been lost."""
    from base.timefmt import iso_now

    now = iso_now()
    waiting = []
    for (folder,) in tx.query("SELECT folder FROM groups"):
        record = outstanding_request(tx, folder)
        if record is not None and (record.event.not_before or "") <= now:
            waiting.append(record.event)
    return waiting


def _enqueue(requests: list[t.AgentRunRequested]) -> None:
    if not requests:
        return
    from jobs.queue import run_agent

    for request in requests:
        run_agent(request.folder)
