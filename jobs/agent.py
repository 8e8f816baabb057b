"""The agent-run job: one group's pending messages through one container.

Safe to run twice and safe to run late: everything it needs is read from the
log. It takes the group's lease (a `running` row in `runs`, claimed in one
transaction with `AgentRunStarted`), so a second job for a busy group just
leaves; it records every result as `AgentOutput` plus `OutboundQueued`, and on
the way out decides, from what was actually sent, whether the messages must
be tried again.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from loguru import logger

from events import EventLog, Transaction
from events import types as t
from base.timefmt import iso_now, to_iso
from jobs.containers import ContainerRunner, RunResult, RunSpec, container_name, request_close
from jobs.contract import AgentInput, AgentResult
from jobs.liveness import this_worker
from rules.mounts import AllowlistLoader, validate_mounts
from jobs.recovery import active_lock, active_runs, stopping, unanswered_from
from jobs.sessions import session_to_resume
from jobs.workspace import Mount, clear_input
from base.config import Settings
from base.faults import fault_point
from rules.allowlist import AllowlistFile
from rules.budgets import refuse_if_over
from rules.groups import Group, group_from_row
from rules.windows import cursor_of, pending_messages, prompt_for, run_in_progress, window_wakes
from rules.egress import policy_of
from rules.failures import Kind, classify, retryable
from rules.notices import tell_failure
from rules.prompt import clean_output
from rules.refusals import recorder
from rules.snapshots import write_groups_snapshot, write_tasks_snapshot

MAX_RETRIES = 5
UNRECORDED = "an agent output could not be recorded"  # rules/failures.py calls this kind `storage`
BASE_RETRY_S = 5.0
# Runs whose agent finished a turn and waits for input: run id -> (since, folder).
idle_since: dict[str, tuple[float, str]] = {}


@dataclass
class Plan:
    """What a run was given: recorded in `AgentRunStarted` before the container starts."""

    run_id: str
    group: Group
    container: str
    from_seq: int
    through_seq: int
    prompt: str
    session_id: str | None
    attempt: int


@dataclass
class Progress:
    """What a run has done so far, updated from the container's outputs."""

    outputs: int = 0
    sent: int = 0
    errors: list[str] = field(default_factory=list)
    session_id: str | None = None


class AgentRun:
    """Runs the agent for one group, once, from what the log says is pending."""

    def __init__(self, settings: Settings, log: EventLog, runner: ContainerRunner | None = None):
        self.settings = settings
        self.log = log
        self.runner = runner or ContainerRunner(settings, log)
        self.allowlist = AllowlistFile(settings.sender_allowlist_path)
        self.mounts = AllowlistLoader(settings.mount_allowlist_path)

    def run(self, folder: str) -> str:
        """Run the group's agent if it has work and no live run; returns what happened."""
        with self.log.transaction() as tx:
            plan = self._plan(tx, folder)
            if isinstance(plan, str):
                return plan
            # before the lease shows: once it does, the trigger stage pipes follow-ups into input/
            clear_input(self.settings, folder, recorder(tx, folder))
            tx.append(t.AgentRunStarted(
                run_id=plan.run_id, folder=folder, chat_jid=plan.group.jid, container=plan.container,
                from_seq=plan.from_seq, through_seq=plan.through_seq,
                message_count=plan.prompt.count("<message "), session_id=plan.session_id, attempt=plan.attempt,
                worker=this_worker(self.settings)))
            with active_lock:  # before the commit, so recovery never takes this run for dead
                active_runs.add(plan.run_id)
        try:
            result = self._drive(plan)
        finally:  # only once the run's end is recorded (or it crashed): recovery then finishes it
            with active_lock:
                active_runs.discard(plan.run_id)
        return f"{result.status}: {result.error or 'ok'}"

    def _drive(self, plan: Plan) -> RunResult:
        fault_point("agent-run-started")
        logger.info("{}: agent run {} started ({} message(s), attempt {})", plan.group.folder, plan.run_id,
                    plan.prompt.count("<message "), plan.attempt + 1)
        progress = Progress(session_id=plan.session_id)
        try:
            result = self.runner.run(self._spec(plan), lambda r: self._on_output(plan, progress, r))
        finally:
            with active_lock:
                idle_since.pop(plan.run_id, None)
        self._finish(plan, progress, result)
        return result

    # --- before the container --------------------------------------------------

    def _plan(self, tx: Transaction, folder: str) -> Plan | str:
        if stopping.is_set():
            return "the worker is stopping: the request waits for the next one"
        rows = tx.query("SELECT jid FROM groups WHERE folder = ?", (folder,))
        if not rows:
            return "no such group"
        if run_in_progress(tx, folder):
            return "busy: the running agent takes these messages"
        due = tx.query("SELECT id FROM tasks WHERE group_folder = ? AND status = 'active' AND next_run <= ? "
                       "ORDER BY next_run", (folder, iso_now()))
        if due:  # tasks first: the task run asks for the messages again when it ends
            from jobs.queue import run_task

            for row in due:
                run_task(row["id"])
            return "tasks first"
        group = group_from_row(tx.query("SELECT * FROM groups WHERE jid = ?", (rows[0]["jid"],))[0])
        cursor = cursor_of(tx, group.jid)
        pending = pending_messages(tx, group.jid, cursor, self.settings.max_messages_per_prompt)
        if not pending:
            return "nothing pending"
        if not window_wakes(pending, is_main=group.is_main, requires_trigger=group.requires_trigger,
                            trigger=group.trigger, default_trigger=self.settings.trigger,
                            rules=self.allowlist.current()):
            return "no trigger in the pending messages"
        if (over := refuse_if_over(tx, self.settings, group)) is not None:
            return over  # the messages wait in the log; the 60 s pass asks again
        return Plan(run_id=uuid.uuid4().hex[:12], group=group, container=container_name(folder),
                    from_seq=cursor, through_seq=pending[-1].seq,
                    prompt=prompt_for(pending, self.settings.timezone),
                    session_id=session_to_resume(tx, folder, self.settings.agent_provider),
                    attempt=_attempt(tx, folder))

    def _spec(self, plan: Plan) -> RunSpec:
        group = plan.group
        write_tasks_snapshot(self.settings, self.log, group.folder, group.is_main)
        write_groups_snapshot(self.settings, self.log, group.folder, group.is_main)
        config = group.container_config or t.ContainerConfig()
        accepted, _ = validate_mounts(config.additional_mounts, is_main=group.is_main, loader=self.mounts,
                                      home=self.settings.home, install_root=self.settings.root,
                                      local_chat_socket=self.settings.local_chat_socket, group=group.folder)
        agent_input = AgentInput(
            prompt=plan.prompt, sessionId=plan.session_id, groupFolder=group.folder, chatJid=group.jid,
            isMain=group.is_main, assistantName=self.settings.assistant_name,
            provider=self.settings.agent_provider,
            scripted=scripted_for(self.settings, plan.group.folder, plan.attempt),
            timezone=self.settings.timezone, verbose=self.settings.verbose_container_logs)
        return RunSpec(folder=group.folder, group_name=group.name, is_main=group.is_main, input=agent_input,
                       run_id=plan.run_id, name=plan.container, timeout_ms=config.timeout_ms,
                       extra_mounts=[Mount(m.host_path, m.container_path, m.readonly) for m in accepted],
                       egress=policy_of(config))

    # --- while it runs ---------------------------------------------------------

    def _on_output(self, plan: Plan, progress: Progress, result: AgentResult) -> None:
        index = progress.outputs
        progress.outputs += 1
        try:
            queued, session = self._record_output(plan, progress, result, index)
        except (sqlite3.Error, OSError) as exc:  # disk full, I/O error: the answer must not vanish unrecorded
            logger.error("{}: an output of run {} could not be recorded ({}); its messages will run again",
                         plan.group.folder, plan.run_id, exc)
            progress.errors.append(f"{UNRECORDED}: {exc}")
            request_close(self.settings, plan.group.folder)
            return
        progress.sent += queued
        progress.session_id = session or progress.session_id
        if result.status == "error":
            progress.errors.append(result.error or "Unknown error")
            request_close(self.settings, plan.group.folder)  # an error ends the turn now, not at the idle timeout
        with active_lock:
            if result.status == "success" and plan.run_id in active_runs:
                idle_since[plan.run_id] = (time.monotonic(), plan.group.folder)
        close_if_stopping(self.settings, plan.group.folder)
        fault_point("agent-output-queued")

    def _record_output(self, plan: Plan, progress: Progress, result: AgentResult, index: int) -> tuple[int, str | None]:
        """AgentOutput, its reply and a new session, in one transaction; (replies queued, new session)."""
        text = clean_output(result.result) if result.result else ""
        queued, session = 0, None
        with self.log.transaction() as tx:
            tx.append(t.AgentOutput(run_id=plan.run_id, folder=plan.group.folder, index=index,
                                    status=result.status, result=result.result,
                                    new_session_id=result.newSessionId, error=result.error, inputs=result.inputs))
            if text:
                outbound_id = f"{plan.run_id}-{index}"
                tx.append(t.OutboundQueued(outbound_id=outbound_id, chat_jid=plan.group.jid, text=text,
                                           origin="agent", run_id=plan.run_id), key=f"out:{outbound_id}")
                queued = 1
            if result.newSessionId and result.newSessionId != progress.session_id:
                tx.append(t.SessionUpdated(folder=plan.group.folder, session_id=result.newSessionId,
                                           run_id=plan.run_id))
                session = result.newSessionId
        return queued, session

    # --- after it ended ----------------------------------------------------------

    def _finish(self, plan: Plan, progress: Progress, result: RunResult) -> None:
        failed = result.status == "error" or bool(progress.errors)
        error = result.error or (progress.errors[-1] if progress.errors else None)
        status = "timeout" if result.timed_out and failed else ("error" if failed else "ok")
        kind = classify(error, timed_out=result.timed_out) if failed else None
        folder, jid = plan.group.folder, plan.group.jid
        with self.log.transaction() as tx:
            unanswered = unanswered_from(tx, folder, plan.run_id, plan.from_seq, plan.through_seq)
            rollback = plan.from_seq if failed and not progress.sent else unanswered
            tx.append(t.AgentRunFinished(run_id=plan.run_id, folder=folder, chat_jid=jid, status=status,
                                         error=error, exit_code=result.exit_code, duration_ms=result.duration_ms,
                                         had_output=progress.sent > 0, cursor_rollback_to=rollback,
                                         error_kind=kind))
            if kind == "stale_session" and plan.session_id:
                tx.append(t.SessionCleared(folder=folder, reason=f"stale session: {(error or '')[:200]}"))
            if failed and not progress.sent:
                retry_in_s = self._retry(tx, plan, kind)  # type: ignore[arg-type]
                if not stopping.is_set():  # a run the stopping worker cut off is its failure, not the agent's
                    tell_failure(tx, self.settings, plan.group, plan.run_id, kind,  # type: ignore[arg-type]
                                 first=plan.attempt == 0, retry_in_s=retry_in_s)
            elif pending_messages(tx, jid, cursor_of(tx, jid), 1):
                tx.append(t.AgentRunRequested(folder=folder, chat_jid=jid, reason="drain"))
        if failed:
            logger.warning("{}: run {} ended with {} ({}): {}{}", folder, plan.run_id, status, kind, error,
                           " (replies already sent; not repeated)" if progress.sent else "")
        else:
            logger.info("{}: run {} finished after {} ms, {} repl(ies)", folder, plan.run_id,
                        result.duration_ms, progress.sent)

    def _retry(self, tx: Transaction, plan: Plan, kind: Kind) -> float | None:
        """Ask for another attempt after the backoff; returns its delay, or None when none follows."""
        attempt = plan.attempt + 1
        if not retryable(kind):
            logger.error("{}: {} cannot be fixed by trying again; the messages wait for the next one",
                         plan.group.folder, kind)
            return None
        if attempt > MAX_RETRIES:
            logger.error("{}: max retries exceeded; the messages wait for the next one", plan.group.folder)
            return None
        delay = BASE_RETRY_S * 2 ** (attempt - 1)
        not_before = to_iso(datetime.now(timezone.utc) + timedelta(seconds=delay))
        tx.append(t.AgentRunRequested(folder=plan.group.folder, chat_jid=plan.group.jid, reason="retry",
                                      attempt=attempt, not_before=not_before))
        logger.info("{}: retry {} of {} in {:.0f} s", plan.group.folder, attempt, MAX_RETRIES, delay)
        return delay


def _attempt(tx: Transaction, folder: str) -> int:
    """The attempt number carried by the newest request for this group."""
    last = tx.read_since(0, types=[t.AgentRunRequested], streams=[folder], limit=1, newest=True)
    return last[0].event.attempt if last else 0


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


def close_if_stopping(settings: Settings, folder: str) -> None:
    """After each output of a run whose worker is stopping: the close sentinel, again.

    The agent drops a stale sentinel when it starts, so one written by the
    worker's stop before the agent was up would be lost; written after an
    output, it is seen as soon as the agent waits for input.
    """
    if stopping.is_set():
        request_close(settings, folder)
