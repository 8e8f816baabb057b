"""The message run: one group's pending messages through one container.

Safe to run twice and safe to run late: everything it needs is read from the
log. It is given the window of messages after the group's cursor, if that
window wakes the agent (rules/windows.py) and no cap is reached; due tasks
go first. On a failure with nothing sent the cursor goes back and another
attempt is asked for after a backoff (five at most, and only for kinds of
failure that trying again can fix); the chat is told, once per failure.
The lease, the outputs and the end are jobs/run_lifecycle.py's.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from loguru import logger

from base.timefmt import iso_now, to_iso
from events import Record, Transaction, types as t
from events.queries import (Group, due_tasks, group_busy, group_by_folder, outstanding_request,
                            was_handed_messages)
from jobs.run_lifecycle import Claim, Ending, Progress, RunLifecycle
from jobs.sessions import session_to_resume
from rules.allowlist import AllowlistFile
from rules.budgets import refuse_if_over
from rules.failures import Kind, retryable
from rules.ipc_folder import request_close
from rules.notices import tell_failure
from rules.ready import is_ready_request, ready_refusal, ready_to_retire
from rules.refusals import recorder
from rules.windows import Window, pending_window, prompt_for

MAX_RETRIES = 5
BASE_RETRY_S = 5.0


class MessageRun(RunLifecycle):
    """Runs the agent for one group, once, from what the log says is pending."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.allowlist = AllowlistFile(self.settings.sender_allowlist_path)

    def claim(self, tx: Transaction, folder: str) -> Claim | str:
        group = group_by_folder(tx, folder)
        if group is None:
            return "no such group"
        if group_busy(tx, folder):
            return "busy: the running agent takes these messages"
        if due_tasks(tx, iso_now(), folder):
            # tasks first: each is queued at its due time (or again by the dispatcher's 60 s pass), and
            # the task run's end asks for these messages
            return "tasks first"
        window = pending_window(tx, self.settings, group, self.allowlist.current())
        if not window.wakes:
            request = outstanding_request(tx, folder)
            if is_ready_request(request):
                return self._ready_claim(tx, group, window, request)  # type: ignore[arg-type]
            return "no trigger in the pending messages" if window.records else "nothing pending"
        if (over := refuse_if_over(tx, self.settings, group)) is not None:
            return over  # the messages wait in the log; the 60 s pass asks again
        return Claim(group=group, reply_to=group.jid, from_seq=window.cursor, through_seq=window.through_seq,
                     prompt=prompt_for(window.records, self.settings.timezone),
                     session_id=session_to_resume(tx, folder, self.settings.agent_provider),
                     attempt=_attempt(tx, folder))

    def _ready_claim(self, tx: Transaction, group: Group, window: Window, request: Record) -> Claim | str:
        """A ready agent: the group's container and CLI started with no messages, waiting for the first."""
        if (refused := ready_refusal(tx, self.settings, group, request)) is not None:
            return refused
        retiring = ready_to_retire(tx, self.settings)  # the most recently asked for are kept
        if not self.runs.ready_memory_room(self.settings.ready_agents_memory_mb, leaving=set(retiring)):
            return "no memory left for a ready agent (READY_AGENTS_MEMORY_MB)"
        for other in retiring:
            logger.info("{}: its ready agent retires for {}'s (READY_AGENTS={})", other, group.folder,
                        self.settings.ready_agents)
            request_close(self.settings, other, recorder(tx, other))
        return Claim(group=group, reply_to=group.jid, from_seq=window.cursor, through_seq=window.cursor,
                     prompt="", session_id=session_to_resume(tx, group.folder, self.settings.agent_provider),
                     ready=True)

    def ended(self, tx: Transaction, claim: Claim, progress: Progress, ending: Ending) -> bool:
        if ending.kind == "stale_session" and claim.session_id:
            tx.append(t.SessionCleared(folder=claim.group.folder,
                                       reason=f"stale session: {(ending.error or '')[:200]}"))
        if claim.ready and not was_handed_messages(tx, claim.run_id):
            # nobody waited for it: no retry, no notice; its end still asks for what waits
            if ending.failed:
                logger.warning("{}: ready agent {} ended with {} before any message: {}", claim.group.folder,
                               claim.run_id, ending.kind, ending.error)
            return True
        if not ending.failed or progress.sent:
            return True
        retry_in_s = self._retry(tx, claim, ending.kind)  # type: ignore[arg-type]
        if not self.runs.stopping.is_set():  # a run the stopping worker cut off is its failure, not the agent's
            tell_failure(tx, self.settings, claim.group, claim.run_id, ending.kind,  # type: ignore[arg-type]
                         first=claim.attempt == 0, retry_in_s=retry_in_s)
        return False

    def spec_options(self, claim: Claim) -> dict:
        if not claim.ready:
            return {}
        return {"ready_wait_ms": self.settings.ready_agent_ttl_s * 1000,
                "handed_input": lambda: was_handed_messages(self.log, claim.run_id)}

    def ready_after(self, tx: Transaction, claim: Claim, ending: Ending) -> bool:
        """A run that answered well is followed by a ready agent; an unused one only when it was replaced.

        Not one that gave its slot to waiting work: its ready agent would
        only take the slot back from the next idle agent.
        """
        if ending.failed or self.runs.stopping.is_set() or self.runs.gave_way(claim.run_id):
            return False
        if claim.ready and not was_handed_messages(tx, claim.run_id):
            return self.runs.replaced(claim.run_id)
        return True

    def _retry(self, tx: Transaction, claim: Claim, kind: Kind) -> float | None:
        """Ask for another attempt after the backoff; returns its delay, or None when none follows."""
        attempt = claim.attempt + 1
        folder = claim.group.folder
        if not retryable(kind):
            logger.error("{}: {} cannot be fixed by trying again; the messages wait for the next one", folder, kind)
            return None
        if attempt > MAX_RETRIES:
            logger.error("{}: max retries exceeded; the messages wait for the next one", folder)
            return None
        delay = BASE_RETRY_S * 2 ** (attempt - 1)
        not_before = to_iso(datetime.now(timezone.utc) + timedelta(seconds=delay))
        tx.append(t.AgentRunRequested(folder=folder, chat_jid=claim.group.jid, reason="retry",
                                      attempt=attempt, not_before=not_before))
        logger.info("{}: retry {} of {} in {:.0f} s", folder, attempt, MAX_RETRIES, delay)
        return delay


def _attempt(tx: Transaction, folder: str) -> int:
    """The attempt number carried by the newest request for this group."""
    last = tx.read_since(0, types=[t.AgentRunRequested], streams=[folder], limit=1, newest=True)
    return last[0].event.attempt if last else 0
