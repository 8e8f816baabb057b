"""The trigger stage: which new messages wake a group's agent, and how.

Woken by every append (no 2 s poll), it reads the new messages past its
checkpoint. For each registered group whose messages pass the trigger rules
it either pipes the pending window into the group's running container
(an input file, then `MessagesPiped`) or asks for a run
(`AgentRunRequested`), which the jobs dispatcher turns into a huey job. The
decision, its events and the checkpoint commit together.
"""

from __future__ import annotations

import json
import random
import string
import time
from pathlib import Path

from loguru import logger

from events import Record, Transaction
from events import types as t
from events.consumer import Stage
from events.queries import cursor_of, group_from_row, outstanding_request, pending_messages
from base.agent_paths import PathRefused, closing_fd, open_under, write_file
from base.config import Settings
from base.faults import fault_point
from rules.allowlist import AllowlistFile
from rules.budgets import refuse_if_over
from rules.windows import message_wakes, prompt_for
from rules.refusals import record_refusal
from rules.triggers import needs_trigger

_BASE36 = string.digits + string.ascii_lowercase
INPUT_DIR = "input"
INPUT_FILE_MODE = 0o644  # the agent reads it; the folder is its own, so it can delete it


def input_file_name() -> str:
    """`<epoch ms>-<4 base36>.json`: name order is arrival order."""
    suffix = "".join(random.choices(_BASE36, k=4))
    return f"{int(time.time() * 1000)}-{suffix}.json"


def write_input_file(settings: Settings, folder: str, text: str, name: str | None = None) -> Path:
    """Atomically drop a follow-up message into a group's container input folder.

    The folder is the agent's: it is opened without following links and the
    file is made under a fresh temporary name, then renamed over whatever the
    agent put at `name` (a planted link is replaced, never written through).
    Raises PathRefused when that cannot be done safely. `name` is normally a
    fresh one; a given name stands for one an agent predicted.
    """
    directory = settings.ipc_dir / folder / INPUT_DIR
    name = name or input_file_name()
    fd = open_under(settings.ipc_dir, (folder, INPUT_DIR), create=True)
    assert fd is not None
    with closing_fd(fd):
        data = json.dumps({"type": "message", "text": text}).encode("utf-8")
        write_file(fd, name, data, mode=INPUT_FILE_MODE, shown=directory / name)
    return directory / name


class TriggerStage(Stage):
    """Turns triggering messages into piped input or run requests."""

    name = "triggers"
    types = (t.MessageReceived,)

    def __init__(self, settings: Settings, allowlist: AllowlistFile):
        self.settings = settings
        self.allowlist = allowlist

    def handle_batch(self, tx: Transaction, records: list[Record]) -> None:
        jids = sorted({r.event.chat_jid for r in records})  # type: ignore[attr-defined]
        marks = ", ".join("?" * len(jids))
        groups = {row["jid"]: row for row in tx.query(f"SELECT * FROM groups WHERE jid IN ({marks})", jids)}
        woken: dict[str, object] = {}
        for record in records:
            event: t.MessageReceived = record.event  # type: ignore[assignment]
            group = groups.get(event.chat_jid)
            if group is None or event.is_bot_message or group["jid"] in woken:
                continue
            if self._wakes(group, event):
                woken[group["jid"]] = group
        for group in woken.values():
            self._act(tx, group)

    def _wakes(self, group, event: t.MessageReceived) -> bool:
        if not needs_trigger(bool(group["is_main"]), bool(group["requires_trigger"])):
            return True
        rules = self.allowlist.current()
        wakes = message_wakes(event, trigger=group["trigger"], default_trigger=self.settings.trigger, rules=rules)
        if not wakes and rules.log_denied and not event.is_from_me \
                and not rules.may_trigger(event.chat_jid, event.sender):
            logger.debug("{} may not trigger the assistant in {} (sender allowlist)", event.sender, event.chat_jid)
        return wakes

    def _act(self, tx: Transaction, group) -> None:
        jid, folder = group["jid"], group["folder"]
        running = tx.query(
            "SELECT run_id FROM runs WHERE folder = ? AND state = 'running' AND task_id IS NULL "
            "ORDER BY started_seq DESC LIMIT 1", (folder,))
        if running:
            # a cap is checked at a run's start; follow-ups piped in would keep one run going past it
            if refuse_if_over(tx, self.settings, group_from_row(group)) is None:
                self._pipe(tx, running[0]["run_id"], jid, folder)
        elif outstanding_request(tx, folder) is None:
            fault_point("triggers-before-request")
            tx.append(t.AgentRunRequested(folder=folder, chat_jid=jid, reason="messages"))
            logger.info("{}: messages wait for the agent; run requested", folder)

    def _pipe(self, tx: Transaction, run_id: str, jid: str, folder: str) -> None:
        pending = pending_messages(tx, jid, cursor_of(tx, jid), self.settings.max_messages_per_prompt)
        if not pending:
            return
        try:
            path = write_input_file(self.settings, folder, prompt_for(pending, self.settings.timezone))
        except PathRefused as refused:
            # No MessagesPiped: the cursor stays, and the run's end asks for a new run that answers them.
            record_refusal(tx, folder, "pipe messages into the running agent", refused)
            logger.warning("{}: {} message(s) wait for the agent's next run", folder, len(pending))
            return
        tx.append(t.MessagesPiped(run_id=run_id, folder=folder, chat_jid=jid, through_seq=pending[-1].seq,
                                  message_count=len(pending), file=path.name))
        logger.info("{}: piped {} message(s) into the running agent", folder, len(pending))
