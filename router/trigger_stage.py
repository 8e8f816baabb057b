"""The trigger stage: which new messages wake a group's agent, and how.

Woken by every append (no 2 s poll), it reads the new messages past its
checkpoint. For each registered group whose messages pass the trigger rules
it either pipes the pending window into the group's running container
(an input file, then `MessagesPiped`) or asks for a run
(`AgentRunRequested`), which the jobs dispatcher turns into a huey job. The
decision, its events and the checkpoint commit together.
"""

from __future__ import annotations

from loguru import logger

from base.agent_paths import PathRefused
from base.config import Settings
from base.faults import fault_point
from events import Record, Transaction, types as t
from events.consumer import Stage
from events.queries import (Group, cursor_of, groups_by_jid, message_run_to_pipe_into, outstanding_request,
                            pending_messages)
from rules.allowlist import AllowlistFile
from rules.budgets import refuse_if_over
from rules.ipc_folder import write_input
from rules.ready import is_ready_request
from rules.refusals import record_refusal
from rules.windows import prompt_for, window_wakes


class TriggerStage(Stage):
    """Turns triggering messages into piped input or run requests."""

    name = "triggers"
    types = (t.MessageReceived,)

    def __init__(self, settings: Settings, allowlist: AllowlistFile):
        self.settings = settings
        self.allowlist = allowlist

    def handle_batch(self, tx: Transaction, records: list[Record]) -> None:
        groups = groups_by_jid(tx, {r.event.chat_jid for r in records})  # type: ignore[attr-defined]
        rules = self.allowlist.current()
        woken: dict[str, Group] = {}
        for record in records:
            event: t.MessageReceived = record.event  # type: ignore[assignment]
            group = groups.get(event.chat_jid)
            if group is None or event.is_bot_message or group.jid in woken:
                continue
            if window_wakes([record], group, default_trigger=self.settings.trigger, rules=rules):
                woken[group.jid] = group
            elif rules.log_denied and not event.is_from_me and not rules.may_trigger(event.chat_jid, event.sender):
                logger.debug("{} may not trigger the assistant in {} (sender allowlist)", event.sender,
                             event.chat_jid)
        for group in woken.values():
            self._act(tx, group)

    def _act(self, tx: Transaction, group: Group) -> None:
        jid, folder = group.jid, group.folder
        run_id = message_run_to_pipe_into(tx, folder)
        if run_id is not None:  # a ready agent too: this is what it waits for
            # a cap is checked at a run's start; follow-ups piped in would keep one run going past it
            if refuse_if_over(tx, self.settings, group) is None:
                self._pipe(tx, run_id, jid, folder)
            return
        request = outstanding_request(tx, folder)
        # a request for a ready agent may have been turned down (no free slot): a person's needs its own
        if request is None or is_ready_request(request):
            fault_point("triggers-before-request")
            tx.append(t.AgentRunRequested(folder=folder, chat_jid=jid, reason="messages"))
            logger.info("{}: messages wait for the agent; run requested", folder)

    def _pipe(self, tx: Transaction, run_id: str, jid: str, folder: str) -> None:
        pending = pending_messages(tx, jid, cursor_of(tx, jid), self.settings.max_messages_per_prompt)
        if not pending:
            return
        try:
            path = write_input(self.settings, folder, prompt_for(pending, self.settings.timezone))
        except PathRefused as refused:
            # No MessagesPiped: the cursor stays, and the run's end asks for a new run that answers them.
            record_refusal(tx, folder, "pipe messages into the running agent", refused)
            logger.warning("{}: {} message(s) wait for the agent's next run", folder, len(pending))
            return
        tx.append(t.MessagesPiped(run_id=run_id, folder=folder, chat_jid=jid, through_seq=pending[-1].seq,
                                  message_count=len(pending), file=path.name))
        logger.info("{}: piped {} message(s) into the running agent", folder, len(pending))
