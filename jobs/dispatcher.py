"""The dispatcher stage: run requests in the log become huey jobs.

It runs in the service process beside the router's stages. A request's job
is enqueued before the checkpoint moves, so a crash can at worst enqueue it
twice, which the job shrugs off (it takes the group's lease or leaves).
A retry's `not_before` becomes the job's ETA.
"""

from __future__ import annotations

from events import Record, Transaction
from events import types as t
from events.consumer import Stage
from events.timefmt import parse_iso


class DispatcherStage(Stage):
    name = "dispatcher"
    types = (t.AgentRunRequested,)

    def handle(self, tx: Transaction, record: Record) -> None:
        from jobs.queue import run_agent

        request: t.AgentRunRequested = record.event  # type: ignore[assignment]
        if request.not_before:
            run_agent.schedule((request.folder,), eta=parse_iso(request.not_before))
        else:
            run_agent(request.folder)
