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
from events import Transaction, types as t
from events.queries import due_tasks, group_busy, group_by_folder
from jobs.run_lifecycle import Claim, Ending, Progress, RunLifecycle
from jobs.sessions import session_to_resume
from rules.allowlist import AllowlistFile
from rules.budgets import refuse_if_over
from rules.failures import Kind, retryable
from rules.notices import tell_failure
from rules.windows import pending_window, prompt_for

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
        if not window.records:
            return "nothing pending"
        if not window.wakes:
            return "no trigger in the pending messages"
        if (over := refuse_if_over(tx, self.settings, group)) is not None:
            return over  # the messages wait in the log; the 60 s pass asks again
        return Claim(group=group, reply_to=group.jid, from_seq=window.cursor, through_seq=window.through_seq,
                     prompt=prompt_for(window.records, self.settings.timezone),
                     session_id=session_to_resume(tx, folder, self.settings.agent_provider),
                     attempt=_attempt(tx, folder))

    def ended(self, tx: Transaction, claim: Claim, progress: Progress, ending: Ending) -> bool:
        if ending.kind == "stale_session" and claim.session_id:
            tx.append(t.SessionCleared(folder=claim.group.folder,
                                       reason=f"stale session: {(ending.error or '')[:200]}"))
        if not ending.failed or progress.sent:
            return True
        retry_in_s = self._retry(tx, claim, ending.kind)  # type: ignore[arg-type]
        if not self.runs.stopping.is_set():  # a run the stopping worker cut off is its failure, not the agent's
            tell_failure(tx, self.settings, claim.group, claim.run_id, ending.kind,  # type: ignore[arg-type]
                         first=claim.attempt == 0, retry_in_s=retry_in_s)
        return False

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
