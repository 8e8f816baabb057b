"""One agent run, from the group's lease to its recorded end: what message runs and task runs share.

A run claims the group in one transaction with `AgentRunStarted` (the
`running` row in `runs` is the lease: one container per group), starts the
container, records each result as `AgentOutput` plus its `OutboundQueued`,
and records its end as `AgentRunFinished`. What differs is what it is
given and what its end adds: jobs/message_run.py (the pending messages;
retries and failure notices) and jobs/task_run.py (one due task; its next
due time). Every run's end asks for what waits next, due tasks before
messages, as request events the dispatcher turns into jobs. A run whose
worker died is finished here too, by recovery (`finish_interrupted`).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from loguru import logger

from base.config import Settings
from base.faults import fault_point
from base.timefmt import iso_now
from events import EventLog, Transaction, types as t
from events.queries import Group, cursor_of, due_tasks, pending_messages, replies_queued_by_run, reply_thread
from jobs.containers import ContainerRunner, RunResult, RunSpec, container_name
from jobs.contract import AgentInput, AgentResult
from jobs.liveness import this_worker
from jobs.run_state import RUNS, WorkerRuns
from jobs.workspace import Mount
from rules.egress import policy_of
from rules.failures import Kind, classify
from rules.ipc_folder import clear_input, request_close
from rules.mounts import AllowlistLoader, validate_mounts
from rules.prompt import clean_output
from rules.ready import request_ready
from rules.refusals import recorder
from rules.snapshots import write_groups_snapshot, write_tasks_snapshot

UNRECORDED = "an agent output could not be recorded"  # rules/failures.py calls this kind `storage`


@dataclass
class Claim:
    """What a run was given: recorded in `AgentRunStarted` before its container starts."""

    group: Group
    reply_to: str                  # the chat its answers go to
    from_seq: int
    through_seq: int
    prompt: str
    session_id: str | None
    attempt: int = 0
    task: dict | None = None       # the `tasks` row, for a task run
    ready: bool = False            # a ready agent: started with no messages, waiting for the first
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    container: str = ""

    def __post_init__(self) -> None:
        self.container = self.container or container_name(self.group.folder)

    @property
    def message_count(self) -> int:
        return self.prompt.count("<message ") if self.task is None else 0


@dataclass
class Progress:
    """What a run has done so far, updated from the container's outputs."""

    outputs: int = 0
    sent: int = 0
    errors: list[str] = field(default_factory=list)
    session_id: str | None = None
    last_result: str | None = None


@dataclass(frozen=True)
class Ending:
    """How a run ended, as `AgentRunFinished` records it."""

    failed: bool
    status: str                    # ok | error | timeout
    error: str | None
    kind: Kind | None
    duration_ms: int


class RunLifecycle:
    """Subclasses say what a run is given (`claim`) and what its end adds (`ended`)."""

    origin = "agent"               # OutboundQueued.origin of its answers
    keeps_session = True           # whether a new session id becomes the group's
    rolls_back = True              # whether a failed run puts the group's cursor back
    started_fault = "agent-run-started"
    stopping_note = "the worker is stopping: the request waits for the next one"

    def __init__(self, settings: Settings, log: EventLog, runner: ContainerRunner | None = None,
                 runs: WorkerRuns = RUNS):
        self.settings = settings
        self.log = log
        self.runner = runner or ContainerRunner(settings, log)
        self.runs = runs
        self.mounts = AllowlistLoader(settings.mount_allowlist_path)

    def claim(self, tx: Transaction, key: str) -> Claim | str:
        """What to run for `key`, or why nothing runs."""
        raise NotImplementedError

    def agent_input(self, claim: Claim) -> AgentInput:
        return AgentInput(
            prompt=claim.prompt, sessionId=claim.session_id, groupFolder=claim.group.folder,
            chatJid=claim.reply_to, isMain=claim.group.is_main, assistantName=self.settings.assistant_name,
            provider=self.settings.agent_provider,
            scripted=scripted_for(self.settings, claim.group.folder, claim.attempt),
            timezone=self.settings.timezone, verbose=self.settings.verbose_container_logs,
            keepBrowserSession=bool(claim.group.container_config and claim.group.container_config.keep_browser_session))

    def spec_options(self, claim: Claim) -> dict:
        """Extra RunSpec fields (a task's shorter idle close)."""
        return {}

    def ended(self, tx: Transaction, claim: Claim, progress: Progress, ending: Ending) -> bool:
        """Record what the end adds; returns whether the run's end asks for what waits next."""
        return True

    def ready_after(self, tx: Transaction, claim: Claim, ending: Ending) -> bool:
        """Whether a ready agent (rules/ready.py) follows this run when nothing else waits."""
        return False

    # --- the lifecycle -----------------------------------------------------------

    def run(self, key: str) -> str:
        """Run it if there is something to run and the group is free; returns what happened."""
        with self.log.transaction() as tx:
            claim = self.stopping_note if self.runs.stopping.is_set() else self.claim(tx, key)
            if isinstance(claim, str):
                return claim
            # before the lease shows: once it does, the trigger stage pipes follow-ups into input/
            clear_input(self.settings, claim.group.folder, recorder(tx, claim.group.folder))
            started = tx.append(t.AgentRunStarted(
                run_id=claim.run_id, folder=claim.group.folder, chat_jid=claim.group.jid,
                container=claim.container, from_seq=claim.from_seq, through_seq=claim.through_seq,
                message_count=claim.message_count, task_id=claim.task["id"] if claim.task else None,
                session_id=claim.session_id, attempt=claim.attempt, worker=this_worker(self.settings),
                ready=claim.ready))
            self.runs.register(claim.run_id)  # before the commit, so recovery never takes it for dead
            if claim.ready:  # idle from its start: the first to give its slot up
                self.runs.mark_idle(claim.run_id, claim.group.folder, started.seq, ready=True,
                                   container=claim.container)
        if self.runs.stopping.is_set():
            # the stop listed the running runs from the log before this start committed: close it here
            request_close(self.settings, claim.group.folder)
        try:
            fault_point(self.started_fault)
            logger.info("{}: agent run {} started ({}, attempt {})", claim.group.folder, claim.run_id,
                        f"task {claim.task['id']}" if claim.task else
                        "ready agent" if claim.ready else f"{claim.message_count} message(s)",
                        claim.attempt + 1)
            progress = Progress(session_id=claim.session_id)
            result = self.runner.run(self._spec(claim), lambda r: self._on_output(claim, progress, r))
            self._finish(claim, progress, result)
        finally:
            self.runs.release(claim.run_id)
        return f"{result.status}: {result.error or 'ok'}"

    def _spec(self, claim: Claim) -> RunSpec:
        group = claim.group
        write_tasks_snapshot(self.settings, self.log, group.folder, group.is_main)
        write_groups_snapshot(self.settings, self.log, group.folder, group.is_main)
        config = group.container_config or t.ContainerConfig()
        accepted, _ = validate_mounts(config.additional_mounts, is_main=group.is_main, loader=self.mounts,
                                      home=self.settings.home, install_root=self.settings.root,
                                      local_chat_socket=self.settings.local_chat_socket, group=group.folder)
        return RunSpec(folder=group.folder, group_name=group.name, is_main=group.is_main,
                       input=self.agent_input(claim), run_id=claim.run_id, name=claim.container,
                       timeout_ms=config.timeout_ms, egress=policy_of(config),
                       extra_mounts=[Mount(m.host_path, m.container_path, m.readonly) for m in accepted],
                       **self.spec_options(claim))

    def _on_output(self, claim: Claim, progress: Progress, result: AgentResult) -> None:
        index = progress.outputs
        progress.outputs += 1
        folder = claim.group.folder
        try:
            seq = self._record_output(claim, progress, result, index)
        except (sqlite3.Error, OSError) as exc:  # disk full, I/O error: the answer must not vanish unrecorded
            logger.error("{}: an output of run {} could not be recorded ({}); its messages will run again",
                         folder, claim.run_id, exc)
            progress.errors.append(f"{UNRECORDED}: {exc}")
            request_close(self.settings, folder)
            return
        progress.last_result = result.result or progress.last_result
        if result.status == "error":
            progress.errors.append(result.error or "Unknown error")
            request_close(self.settings, folder)  # an error ends the turn now, not at the idle timeout
        else:
            self.runs.mark_idle(claim.run_id, folder, seq)
        fault_point("agent-output-queued")

    def _record_output(self, claim: Claim, progress: Progress, result: AgentResult, index: int) -> int:
        """AgentOutput, its answer and a new session, in one transaction; returns the output's seq."""
        text = clean_output(result.result) if result.result else ""
        folder = claim.group.folder
        with self.log.transaction() as tx:
            seq = tx.append(t.AgentOutput(run_id=claim.run_id, folder=folder, index=index, status=result.status,
                                          result=result.result, new_session_id=result.newSessionId,
                                          error=result.error, inputs=result.inputs)).seq
            if text:
                outbound_id = f"{claim.run_id}-{index}"
                tx.append(t.OutboundQueued(outbound_id=outbound_id, chat_jid=claim.reply_to, text=text,
                                           origin=self.origin, run_id=claim.run_id,
                                           thread_id=reply_thread(tx, claim.reply_to)), key=f"out:{outbound_id}")
            session = result.newSessionId
            if self.keeps_session and session and session != progress.session_id:
                tx.append(t.SessionUpdated(folder=folder, session_id=session, run_id=claim.run_id))
        progress.sent += bool(text)
        if self.keeps_session and result.newSessionId:
            progress.session_id = result.newSessionId
        return seq

    def _log_file(self, result: RunResult) -> str | None:
        """The run log's path under logs/, for `AgentRunFinished` (the dashboard's runs page shows it)."""
        if not getattr(result, "log_file", None):
            return None
        try:
            return str(Path(result.log_file).relative_to(self.settings.logs_dir))
        except ValueError:
            return None

    def _finish(self, claim: Claim, progress: Progress, result: RunResult) -> None:
        failed = result.status == "error" or bool(progress.errors)
        error = result.error or (progress.errors[-1] if progress.errors else None)
        ending = Ending(failed=failed, error=error if failed else None,
                        status="timeout" if result.timed_out and failed else ("error" if failed else "ok"),
                        kind=classify(error, timed_out=result.timed_out) if failed else None,
                        duration_ms=result.duration_ms)
        folder, jid = claim.group.folder, claim.group.jid
        with self.log.transaction() as tx:
            rollback = cursor_rollback(tx, folder, claim.run_id, claim.from_seq, claim.through_seq,
                                       failed=failed, sent=progress.sent > 0) if self.rolls_back else None
            tx.append(t.AgentRunFinished(run_id=claim.run_id, folder=folder, chat_jid=jid, status=ending.status,
                                         error=ending.error, exit_code=result.exit_code,
                                         duration_ms=result.duration_ms, had_output=progress.sent > 0,
                                         cursor_rollback_to=rollback, error_kind=ending.kind,
                                         log_file=self._log_file(result)))
            if self.ended(tx, claim, progress, ending) and not request_what_waits(tx, claim.group) \
                    and self.ready_after(tx, claim, ending):
                request_ready(tx, self.settings, claim.group)
        if failed:
            logger.warning("{}: run {} ended with {} ({}): {}{}", folder, claim.run_id, ending.status, ending.kind,
                           ending.error, " (replies already sent; not repeated)" if progress.sent else "")
        else:
            logger.info("{}: run {} finished after {} ms, {} repl(ies)", folder, claim.run_id,
                        result.duration_ms, progress.sent)


def request_what_waits(tx: Transaction, group: Group) -> bool:
    """After a run: the group's due tasks first, else its pending messages, as request events.

    Returns whether anything was asked for.
    """
    due = due_tasks(tx, iso_now(), group.folder)
    if due:
        for task_id in due:
            tx.append(t.TaskRunRequested(task_id=task_id, group_folder=group.folder, reason="due"))
    elif pending_messages(tx, group.jid, cursor_of(tx, group.jid), 1):
        tx.append(t.AgentRunRequested(folder=group.folder, chat_jid=group.jid, reason="drain"))
    else:
        return False
    return True


def finish_interrupted(tx: Transaction, run) -> None:
    """A run whose worker died (a `runs` row): its end, rolling back only past what it answered."""
    sent = replies_queued_by_run(tx, run["run_id"])
    rollback = None  # a task run was handed no messages
    if run["task_id"] is None:
        # the `runs` row holds the piped high mark; the window first handed over is the started event's
        started = tx.read_since(run["started_seq"] - 1, types=[t.AgentRunStarted], limit=1)[0].event
        rollback = cursor_rollback(tx, run["folder"], run["run_id"], run["from_seq"], started.through_seq,
                                   failed=True, sent=sent > 0, since_seq=run["started_seq"])
    tx.append(t.AgentRunFinished(
        run_id=run["run_id"], folder=run["folder"], chat_jid=run["chat_jid"], status="interrupted",
        error="its worker stopped before the container finished", had_output=sent > 0,
        cursor_rollback_to=rollback))
    logger.warning("{}: run {} was interrupted ({}); {}", run["folder"], run["run_id"],
                   "replies were sent" if sent else "nothing was sent",
                   "its unanswered messages will be answered again" if rollback is not None else "not repeating it")


def cursor_rollback(tx: Transaction, folder: str, run_id: str, from_seq: int, through_seq: int, *,
                    failed: bool, sent: bool, since_seq: int | None = None) -> int | None:
    """Where a message run's end puts the group's cursor back to, or None to leave it.

    A failed run that sent nothing gives its whole window back; otherwise
    only the messages piped in that no successful output answered go back.
    """
    if failed and not sent:
        return from_seq
    return unanswered_from(tx, folder, run_id, from_seq if since_seq is None else since_seq, through_seq)


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


def scripted_for(settings: Settings, folder: str, attempt: int) -> dict | None:
    """For the scripted provider: the group's script from SCRIPTED_AGENT_FILE, by attempt.

    The file maps a folder (or `*`) to one script or to a list of scripts,
    the n-th used for the n-th attempt (the last one for any later attempt).
    """
    path = settings.scripted_agent_file
    if settings.agent_provider != "scripted" or path is None:
        return None
    try:
        scripts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("cannot read SCRIPTED_AGENT_FILE {}: {}; echoing instead", path, exc)
        return None
    chosen = scripts.get(folder, scripts.get("*"))
    if isinstance(chosen, list):
        chosen = chosen[min(attempt, len(chosen) - 1)] if chosen else None
    return chosen if isinstance(chosen, dict) else None

